#!/usr/bin/env bash
# Runs the pg_regress files (all but the slow 70_big) against a throwaway
# server under valgrind memcheck, then lists memcheck reports whose stack
# passes through engage_decoder or pg_engage code.  Exit 1 when there is one.
# PostgreSQL-core reports of a non-valgrind build (uninitialised padding in
# WAL writes, regex cache copies) are noise here and are only counted.
# Usage (as root): scripts/valgrind-regress.sh        (takes about a minute)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PORT=${VALGRIND_PORT:-55477}
OUR_FRAMES='engage_decoder\.so|pg_engage\.so|\((engage_decoder|jsonvalue|relinfo|record|message|options|pg_engage|guc|launcher|shipper|tracker|producer|status|emit|shared|topicname|topicnames|tablelist|emitauth|credentials|confcheck)\.c:[0-9]+\)'
WORK=$(mktemp -d /tmp/pg_engage_valgrind.XXXXXX)
chmod 755 "$WORK"

# Stops the server and removes the work directory.
cleanup() {
    as_pg "$PGBIN/pg_ctl" -D "$WORK/pg/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# Starts the postmaster, and every backend it forks, under memcheck.
start_under_valgrind() {
    cluster_init "$WORK/pg" "$PORT" "logical_decoding_work_mem = 64kB" "max_replication_slots = 20"
    mkdir -p "$WORK/vg" && chown postgres: "$WORK/vg"
    as_pg valgrind --quiet --trace-children=yes --leak-check=no \
        --log-file="$WORK/vg/%p.log" "$PGBIN/postgres" -D "$WORK/pg/data" >"$WORK/pg/server.log" 2>&1 &
    local deadline=$((SECONDS + 180))
    until "$PGBIN/pg_isready" -q -h "$WORK/pg" -p "$PORT"; do
        [ $SECONDS -lt $deadline ] || die "server under valgrind did not start"
        sleep 1
    done
}

# Runs the regression files with pg_regress on the running server.
run_regress() {
    local tree="$WORK/tree" tests
    rsync -a --exclude .git "$ROOT/" "$tree/"
    chown -R postgres: "$tree"
    cluster_psql "$WORK/pg" "$PORT" postgres -c "CREATE DATABASE vg_regress"
    cluster_psql "$WORK/pg" "$PORT" vg_regress -c "CREATE EXTENSION pg_engage"
    tests=$(cd "$tree/sql" && ls ./*.sql | sed 's|^\./||; s|\.sql$||' | grep -v '^70_big$')
    # shellcheck disable=SC2086  # one argument per test
    (cd "$tree" && as_pg "$("$PGBIN/pg_config" --pgxs | xargs dirname)/../test/regress/pg_regress" \
        --use-existing --host="$WORK/pg" --port="$PORT" --user=postgres --inputdir=. \
        --bindir="$PGBIN" --dbname=vg_regress $tests)
}

main() {
    ensure_packages
    command -v valgrind >/dev/null || { apt-get install -y -qq valgrind >/dev/null; }
    build_install
    start_under_valgrind
    run_regress
    local ours
    # A frame of ours reads "(in .../engage_decoder.so)" or, with debug
    # information, "function (jsonvalue.c:123)".
    ours=$(grep -l -E "$OUR_FRAMES" "$WORK"/vg/*.log || true)
    say "memcheck reports in total: $(grep -chE '^==[0-9]+== (Invalid|Conditional|Use of uninit|Syscall param|Source and dest)' "$WORK"/vg/*.log | paste -sd+ | bc)"
    if [ -n "$ours" ]; then
        cat $ours
        die "memcheck reports in pg_engage code (above)"
    fi
    say "no memcheck report in pg_engage code"
}

main "$@"
