#!/usr/bin/env bash
# s3proxy (an S3 API server, filesystem backend) for the pipeline's tests, run from Maven Central jars.
#
#   scripts/s3proxy.sh fetch              download the jars (cached, skipped when complete)
#   scripts/s3proxy.sh start DIR [PORT]   start a server storing objects under DIR/data, wait until it
#                                         answers; prints the endpoint URL (the only line on stdout)
#   scripts/s3proxy.sh stop DIR           SIGTERM, wait (then SIGKILL); idempotent
#   scripts/s3proxy.sh status DIR         exit 0 (and print the pid) if the server of DIR runs
#
# Each object is a plain file DIR/data/<bucket>/<key>. Requests must be signed (AWS signature v2 or
# v4) with the fixed test identity S3PROXY_IDENTITY / S3PROXY_CREDENTIAL (default pg_engage /
# pg_engage-secret): set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY to them. S3PROXY_AUTH=none
# accepts any request instead.
# Environment: S3PROXY_JARS (jar cache, default ~/.cache/pg_engage/s3proxy-<version>),
# S3PROXY_START_TIMEOUT (s, default 60), S3PROXY_STOP_TIMEOUT (s, default 20),
# S3PROXY_HEAP (default -Xmx256m), JAVA (default java).
# DIR layout: s3proxy.conf, data/, s3proxy.pid, s3proxy.log (JVM output, WARN+ and s3proxy INFO).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
POM_DIR="$SCRIPT_DIR/s3proxy"

# Print a message on stderr.
log() { echo "s3proxy.sh: $*" >&2; }

# Print a message on stderr and exit 1.
die() { log "ERROR: $*"; exit 1; }

# Print the s3proxy version pinned in the pom.
s3proxy_version() {
  sed -n 's:.*<s3proxy.version>\([^<]*\)</s3proxy.version>.*:\1:p' "$POM_DIR/pom.xml" | head -n1
}

# Print the jar cache directory.
jars_dir() { echo "${S3PROXY_JARS:-$HOME/.cache/pg_engage/s3proxy-$(s3proxy_version)}"; }

# Print the fingerprint that the completion marker must hold (the pom's content).
fetch_stamp() { sha256sum <"$POM_DIR/pom.xml" | cut -d' ' -f1; }

# Succeed if the jar cache $1 is complete for fingerprint $2.
fetched() { [[ -f "$1/.complete" && "$(cat "$1/.complete")" == "$2" ]]; }

# Download the jars into the cache unless the completion marker is already there.
cmd_fetch() {
  local jars stamp
  jars="$(jars_dir)"; stamp="$(fetch_stamp)"
  fetched "$jars" "$stamp" && return 0
  mkdir -p "$(dirname "$jars")"
  # Subshell: the lock fd must not leak into the JVM started later by this script.
  (
    flock 9
    fetched "$jars" "$stamp" || download "$jars" "$stamp"
  ) 9>"$jars.lock"
}

# Download the jars into a temp dir, then move it to $1 with completion marker $2.
download() {
  local jars="$1" stamp="$2" tmp
  command -v mvn >/dev/null || die "mvn not found (apt-get install -y maven)"
  log "fetching s3proxy $(s3proxy_version) jars into $jars"
  tmp="$(mktemp -d "$jars.tmp.XXXXXX")"
  if ! (cd "$POM_DIR" && mvn -q -B dependency:copy-dependencies -DoutputDirectory="$tmp") \
        >"$tmp.log" 2>&1; then
    cat "$tmp.log" >&2; rm -rf "$tmp" "$tmp.log"; die "mvn dependency:copy-dependencies failed"
  fi
  rm -f "$tmp.log"
  ls "$tmp"/s3proxy-*.jar >/dev/null 2>&1 || { rm -rf "$tmp"; die "no s3proxy jar fetched"; }
  echo "$stamp" >"$tmp/.complete"
  rm -rf "$jars"
  mv "$tmp" "$jars"
}

# Succeed if something accepts TCP connections on 127.0.0.1:$1.
port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

# Print the pid of DIR's server if it is alive (and really is that server), else fail.
running_pid() {
  local dir="$1" pid
  [[ -f "$dir/s3proxy.pid" ]] || return 1
  pid="$(cat "$dir/s3proxy.pid")"
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$dir/s3proxy.conf" || return 1
  echo "$pid"
}

# Print the port of DIR's server from its config.
conf_port() { sed -n 's|^s3proxy.endpoint=http://[^:]*:\([0-9]*\)$|\1|p' "$1/s3proxy.conf"; }

# Write DIR/s3proxy.conf for a server on port $2 storing under DIR/data.
write_config() {
  local dir="$1" port="$2"
  {
    echo "# written by scripts/s3proxy.sh for s3proxy $(s3proxy_version)"
    echo "s3proxy.endpoint=http://127.0.0.1:$port"
    if [[ "${S3PROXY_AUTH:-}" == none ]]; then
      echo "s3proxy.authorization=none"
    else
      echo "s3proxy.authorization=aws-v2-or-v4"
      echo "s3proxy.identity=${S3PROXY_IDENTITY:-pg_engage}"
      echo "s3proxy.credential=${S3PROXY_CREDENTIAL:-pg_engage-secret}"
    fi
    echo "jclouds.provider=filesystem-nio2"
    echo "jclouds.filesystem.basedir=$dir/data"
  } >"$dir/s3proxy.conf"
}

# Print the tail of DIR's log on stderr.
show_log() {
  [[ -f "$1/s3proxy.log" ]] || return 0
  echo "----- tail of $1/s3proxy.log -----" >&2; tail -n 40 "$1/s3proxy.log" >&2
}

# Launch the server of DIR in the background (own session) and wait until it answers.
launch() {
  local dir="$1" port pid heap deadline
  port="$(conf_port "$dir")"
  port_open "$port" && die "port $port is already in use"
  read -r -a heap <<<"${S3PROXY_HEAP:--Xmx256m}"
  setsid "${JAVA:-java}" "${heap[@]}" -Djava.awt.headless=true \
    -Dlogback.configurationFile="$POM_DIR/logback.xml" -cp "$(jars_dir)/*" \
    org.gaul.s3proxy.Main --properties "$dir/s3proxy.conf" </dev/null >>"$dir/s3proxy.log" 2>&1 &
  pid=$!
  echo "$pid" >"$dir/s3proxy.pid"
  deadline=$((SECONDS + ${S3PROXY_START_TIMEOUT:-60}))
  until port_open "$port"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      show_log "$dir"; rm -f "$dir/s3proxy.pid"; die "s3proxy JVM (pid $pid) died during start-up"
    fi
    if ((SECONDS >= deadline)); then
      show_log "$dir"; kill -KILL "$pid" 2>/dev/null || true; rm -f "$dir/s3proxy.pid"
      die "s3proxy not ready within ${S3PROXY_START_TIMEOUT:-60}s"
    fi
    sleep 0.1
  done
  log "s3proxy ready (pid $pid) on http://127.0.0.1:$port, objects under $dir/data"
  echo "http://127.0.0.1:$port"
}

# Make DIR absolute (creating it) and print it.
abs_dir() { mkdir -p "$1" && (cd "$1" && pwd); }

# start DIR [PORT]: write the config, then launch the server.
cmd_start() {
  [[ $# -ge 1 ]] || die "usage: s3proxy.sh start DIR [PORT]"
  local dir port="${2:-8080}"
  dir="$(abs_dir "$1")"
  cmd_fetch
  if running_pid "$dir" >/dev/null; then
    log "already running"; echo "http://127.0.0.1:$(conf_port "$dir")"; return 0
  fi
  mkdir -p "$dir/data"
  write_config "$dir" "$port"
  launch "$dir"
}

# Wait until pid $1 has exited or $2 seconds passed; fail on timeout.
wait_exit() {
  local pid="$1" deadline=$((SECONDS + $2))
  while kill -0 "$pid" 2>/dev/null; do
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}

# stop DIR: SIGTERM, wait for the exit, SIGKILL after the deadline.
cmd_stop() {
  [[ $# -ge 1 ]] || die "usage: s3proxy.sh stop DIR"
  local dir pid
  [[ -d "$1" ]] || return 0
  dir="$(cd "$1" && pwd)"
  if pid="$(running_pid "$dir")"; then
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_exit "$pid" "${S3PROXY_STOP_TIMEOUT:-20}"; then
      log "s3proxy (pid $pid) ignored SIGTERM, sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      wait_exit "$pid" 10 || die "pid $pid survived SIGKILL"
    fi
  fi
  rm -f "$dir/s3proxy.pid"
}

# status DIR: exit 0 (and print the pid) if the server of DIR runs.
cmd_status() {
  [[ $# -ge 1 ]] || die "usage: s3proxy.sh status DIR"
  local dir
  dir="$(cd "$1" 2>/dev/null && pwd)" || return 1
  running_pid "$dir"
}

# Dispatch the subcommand.
main() {
  local cmd="${1:-}"
  shift || true
  case "$cmd" in
    fetch) cmd_fetch ;;
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    status) cmd_status "$@" ;;
    *) die "usage: s3proxy.sh fetch|start DIR [PORT]|stop DIR|status DIR" ;;
  esac
}

main "$@"
