# Shared shell helpers for pg_engage's scripts: packages, build, throwaway clusters.
# Source it; it defines functions only.

PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Debian packages the build, the tests and the demo need.
ENGAGE_PACKAGES=(postgresql-15 postgresql-server-dev-15 postgresql-15-pgtap
    libtap-parser-sourcehandler-pgtap-perl postgresql-15-cron
    postgresql-15-wal2json postgresql-15-decoderbufs librdkafka-dev kcat
    build-essential pkg-config rsync maven openjdk-17-jre-headless
    python3-venv)

# Print a progress line on stderr.
say() { printf '==> %s\n' "$*" >&2; }

# Stop with a message.
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Install missing Debian packages (needs root; a no-op when all are present).
ensure_packages() {
    local missing=()
    for p in "${ENGAGE_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    say "installing ${missing[*]}"
    [ "$(id -u)" = 0 ] || die "need root to install: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# Build and install the extension and the plugin into the server's directories.
build_install() {
    say "building and installing pg_engage"
    make -C "$ROOT" -s PG_CONFIG="$PGBIN/pg_config" >/dev/null
    make -C "$ROOT" -s install PG_CONFIG="$PGBIN/pg_config" >/dev/null
}

# Run a command as the unprivileged postgres user (the server refuses root).
as_pg() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# True when this server accepts output_plugin_libraries (15.19 and later).
server_has_plugin_list() {
    local config
    config=$("$PGBIN/postgres" --describe-config 2>/dev/null) || return 1
    grep -q '^output_plugin_libraries' <<<"$config"
}

# Create a throwaway cluster in DIR listening on PORT (loopback and a socket in DIR).
# Extra postgresql.conf lines may follow as arguments.
cluster_init() {
    local dir=$1 port=$2; shift 2
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres: "$dir"
    as_pg "$PGBIN/initdb" -D "$dir/data" -U postgres -A trust --no-sync >/dev/null
    {
        echo "port = $port"
        echo "listen_addresses = '127.0.0.1'"
        echo "unix_socket_directories = '$dir'"
        echo "wal_level = logical"
        echo "max_replication_slots = 10"
        echo "max_wal_senders = 10"
        echo "timezone = 'UTC'"
        server_has_plugin_list &&
            echo "output_plugin_libraries = 'pgoutput, test_decoding, engage_decoder, wal2json, decoderbufs'"
        for line in "$@"; do echo "$line"; done
    } | as_pg tee -a "$dir/data/postgresql.conf" >/dev/null
}

# Start the cluster in DIR and wait until it accepts connections.
cluster_start() {
    local dir=$1
    as_pg "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null ||
        { tail -n 30 "$dir/server.log" >&2; die "PostgreSQL did not start (log: $dir/server.log)"; }
}

# Stop the cluster in DIR if it is running.
cluster_stop() {
    local dir=$1 mode=${2:-fast}
    [ -f "$dir/data/postmaster.pid" ] || return 0
    as_pg "$PGBIN/pg_ctl" -D "$dir/data" -m "$mode" -w -t 60 stop >/dev/null || true
}

# psql against the cluster in DIR on PORT, database DB, quiet and strict.
cluster_psql() {
    local dir=$1 port=$2 db=$3; shift 3
    "$PGBIN/psql" -h "$dir" -p "$port" -U postgres -d "$db" -X -q -v ON_ERROR_STOP=1 "$@"
}

# The pipeline's Python environment (pipeline/requirements.txt): create or refresh the venv at
# ${PIPELINE_VENV:-~/.cache/pg_engage/pipeline-venv} when the requirements differ from the copy
# installed in it; set PYTHON to its python. Needs python3-venv (ensure_packages).
pipeline_env() {
    local venv="${PIPELINE_VENV:-$HOME/.cache/pg_engage/pipeline-venv}"
    local req="$ROOT/pipeline/requirements.txt"
    if [ ! -x "$venv/bin/pytest" ] || ! cmp -s "$req" "$venv/requirements.txt"; then
        say "preparing the pipeline's Python environment in $venv"
        python3 -m venv --clear "$venv"
        "$venv/bin/pip" install -q --disable-pip-version-check -r "$req"
        cp "$req" "$venv/requirements.txt"
    fi
    PYTHON="$venv/bin/python"
}
