#!/usr/bin/env bash
# Single-node Apache Kafka broker (KRaft) for pg_engage's tests, run from Maven Central jars.
#
#   scripts/kafka.sh fetch              download the jars (cached, skipped when complete)
#   scripts/kafka.sh start DIR [PORT]   format DIR if new, start the broker, wait until ready;
#                                       prints the bootstrap address (the only line on stdout)
#   scripts/kafka.sh stop DIR           SIGTERM, wait (then SIGKILL); idempotent
#   scripts/kafka.sh kill9 DIR          SIGKILL (simulated crash); idempotent
#   scripts/kafka.sh restart DIR        stop if running, start again on DIR's data and ports
#   scripts/kafka.sh status DIR         exit 0 if the broker of DIR runs
#
# Environment: KAFKA_JARS (jar cache, default ~/.cache/pg_engage/kafka-<version>),
# KAFKA_VERSION (override the version pinned in scripts/kafka/pom.xml),
# KAFKA_PARTITIONS (num.partitions, default 3), KAFKA_CONTROLLER_PORT (default PORT+1000),
# KAFKA_START_TIMEOUT (s, default 90), KAFKA_STOP_TIMEOUT (s, default 30),
# KAFKA_HEAP (default -Xmx512m), JAVA (default java),
# KAFKA_SASL_PORT (also listen with SASL_PLAINTEXT, mechanism PLAIN, on this port when the
# data dir is first formatted), KAFKA_SASL_USERS (its users, "name:password,...", default
# "engage:engage-secret").
# DIR layout: server.properties, data/ (KRaft log dir), kafka.pid, kafka.log (JVM stdout/stderr,
# WARN+), server.log (log4j INFO+), format.log.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
POM_DIR="$SCRIPT_DIR/kafka"

# Print a message on stderr.
log() { echo "kafka.sh: $*" >&2; }

# Print a message on stderr and exit 1.
die() { log "ERROR: $*"; exit 1; }

# Print the Kafka version: $KAFKA_VERSION or the one pinned in the pom.
kafka_version() {
  if [[ -n "${KAFKA_VERSION:-}" ]]; then echo "$KAFKA_VERSION"; return; fi
  sed -n 's:.*<kafka.version>\([^<]*\)</kafka.version>.*:\1:p' "$POM_DIR/pom.xml" | head -n1
}

# Print the jar cache directory.
jars_dir() { echo "${KAFKA_JARS:-$HOME/.cache/pg_engage/kafka-$(kafka_version)}"; }

# Print the fingerprint that the completion marker must hold (pom content + version).
fetch_stamp() { { cat "$POM_DIR/pom.xml"; kafka_version; } | sha256sum | cut -d' ' -f1; }

# Succeed if the jar cache $1 is complete for fingerprint $2.
fetched() { [[ -f "$1/.complete" && "$(cat "$1/.complete")" == "$2" ]]; }

# Download the jars into the cache unless the completion marker is already there.
cmd_fetch() {
  local jars stamp
  jars="$(jars_dir)"; stamp="$(fetch_stamp)"
  fetched "$jars" "$stamp" && return 0
  mkdir -p "$(dirname "$jars")"
  # Subshell: the lock fd must not leak into the broker JVM started later by this script.
  (
    flock 9
    fetched "$jars" "$stamp" || download "$jars" "$stamp"
  ) 9>"$jars.lock"
}

# Download the jars into a temp dir, then move it to $1 with completion marker $2.
download() {
  local jars="$1" stamp="$2" tmp
  command -v mvn >/dev/null || die "mvn not found (apt-get install -y maven)"
  log "fetching Kafka $(kafka_version) jars into $jars"
  tmp="$(mktemp -d "$jars.tmp.XXXXXX")"
  if ! (cd "$POM_DIR" && mvn -q -B dependency:copy-dependencies \
          -Dkafka.version="$(kafka_version)" -DoutputDirectory="$tmp") >"$tmp.log" 2>&1; then
    cat "$tmp.log" >&2; rm -rf "$tmp" "$tmp.log"; die "mvn dependency:copy-dependencies failed"
  fi
  rm -f "$tmp.log"
  ls "$tmp"/kafka_2.13-*.jar >/dev/null 2>&1 || { rm -rf "$tmp"; die "no kafka_2.13 jar fetched"; }
  echo "$stamp" >"$tmp/.complete"
  rm -rf "$jars"
  mv "$tmp" "$jars"
}

# Succeed if something accepts TCP connections on 127.0.0.1:$1.
port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

# Print the pid of DIR's broker if it is alive (and really is that broker), else fail.
running_pid() {
  local dir="$1" pid
  [[ -f "$dir/kafka.pid" ]] || return 1
  pid="$(cat "$dir/kafka.pid")"
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$dir/server.properties" || return 1
  echo "$pid"
}

# Print the value of key $2 in properties file $1.
prop() { sed -n "s/^$2=//p" "$1" | tail -n1; }

# Print the port of listener $2 (PLAINTEXT or CONTROLLER) in DIR/server.properties.
listener_port() {
  prop "$1/server.properties" listeners | tr ',' '\n' | sed -n "s|^$2://[^:]*:\([0-9]*\)$|\1|p"
}

# Print the client (PLAINTEXT) port of DIR's broker.
client_port() { listener_port "$1" PLAINTEXT; }

# Succeed if the pinned version is 4.x or later (KRaft dynamic quorum, --standalone).
is_kafka4() { [[ "$(kafka_version | cut -d. -f1)" -ge 4 ]]; }

# Print the PLAIN JAAS line of the SASL listener for the users in $KAFKA_SASL_USERS.
sasl_jaas() {
  local users="${KAFKA_SASL_USERS:-engage:engage-secret}" entry line
  line="listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required"
  IFS=',' read -r -a entries <<<"$users"
  for entry in "${entries[@]}"; do line+=" user_${entry%%:*}=\"${entry#*:}\""; done
  echo "$line;"
}

# Write DIR/server.properties for a broker+controller on ports $2 (client) and $3 (controller).
write_config() {
  local dir="$1" port="$2" cport="$3" sasl="" sasl_map=""
  if [[ -n "${KAFKA_SASL_PORT:-}" ]]; then
    sasl=",SASL_PLAINTEXT://127.0.0.1:$KAFKA_SASL_PORT"
    sasl_map=",SASL_PLAINTEXT:SASL_PLAINTEXT"
  fi
  {
    echo "# written by scripts/kafka.sh for Kafka $(kafka_version)"
    echo "process.roles=broker,controller"
    echo "node.id=1"
    echo "listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport$sasl"
    echo "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT$sasl_map"
    if [[ -n "$sasl" ]]; then
      echo "sasl.enabled.mechanisms=PLAIN"
      sasl_jaas
    fi
    echo "inter.broker.listener.name=PLAINTEXT"
    echo "controller.listener.names=CONTROLLER"
    if is_kafka4; then
      echo "advertised.listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport$sasl"
      echo "controller.quorum.bootstrap.servers=127.0.0.1:$cport"
      echo "share.coordinator.state.topic.replication.factor=1"
      echo "share.coordinator.state.topic.min.isr=1"
    else
      echo "advertised.listeners=PLAINTEXT://127.0.0.1:$port$sasl"
      echo "controller.quorum.voters=1@127.0.0.1:$cport"
    fi
    echo "log.dirs=$dir/data"
    echo "num.partitions=${KAFKA_PARTITIONS:-3}"
    echo "auto.create.topics.enable=true"
    echo "offsets.topic.replication.factor=1"
    echo "offsets.topic.num.partitions=5"
    echo "transaction.state.log.replication.factor=1"
    echo "transaction.state.log.min.isr=1"
    echo "transaction.state.log.num.partitions=5"
    echo "min.insync.replicas=1"
    echo "group.initial.rebalance.delay.ms=0"
    # After kill9 the restarted broker cannot register until the controller expires its old
    # session (DUPLICATE_BROKER_REGISTRATION); the 9 s default made such restarts take ~12 s.
    echo "broker.heartbeat.interval.ms=1000"
    echo "broker.session.timeout.ms=${KAFKA_SESSION_TIMEOUT_MS:-4000}"
  } >"$dir/server.properties"
}

# Format DIR/data as a fresh single-node KRaft log dir.
format_storage() {
  local dir="$1" cluster_id
  # A cluster id is 16 random bytes in URL-safe base64 without padding (what random-uuid prints).
  # One starting with "-" would be taken for an option by the tool: draw again.
  cluster_id=-
  while [[ "$cluster_id" == -* ]]; do
    cluster_id="$(head -c16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
  done
  local args=(format -t "$cluster_id" -c "$dir/server.properties")
  if is_kafka4; then args+=(--standalone); fi
  java_cmd "$dir"
  if ! "${JAVA_CMD[@]}" kafka.tools.StorageTool "${args[@]}" >"$dir/format.log" 2>&1; then
    cat "$dir/format.log" >&2; die "formatting $dir/data failed"
  fi
}

# Set JAVA_CMD to the JVM command line with Kafka's class path and logging into DIR $1.
java_cmd() {
  local heap
  read -r -a heap <<<"${KAFKA_HEAP:--Xmx512m}"
  JAVA_CMD=("${JAVA:-java}" "${heap[@]}" -XX:+UseG1GC -Djava.awt.headless=true
    -Dlog4j2.configurationFile="$POM_DIR/log4j2.properties" -Dkafka.logs.dir="$1"
    -cp "$(jars_dir)/*")
}

# Print the last lines of DIR's logs on stderr.
show_logs() {
  local f
  for f in "$1/kafka.log" "$1/server.log"; do
    [[ -f "$f" ]] || continue
    echo "----- tail of $f -----" >&2; tail -n 40 "$f" >&2
  done
}

# Launch the broker of DIR in the background (own session) and wait until it is ready.
launch() {
  local dir="$1" port cport pid deadline offset=0
  port="$(client_port "$dir")"
  cport="$(listener_port "$dir" CONTROLLER)"
  port_open "$port" && die "port $port is already in use"
  port_open "$cport" && die "controller port $cport is already in use"
  [[ -f "$dir/server.log" ]] && offset="$(stat -c %s "$dir/server.log")"
  java_cmd "$dir"
  setsid "${JAVA_CMD[@]}" kafka.Kafka "$dir/server.properties" </dev/null >>"$dir/kafka.log" 2>&1 &
  pid=$!
  echo "$pid" >"$dir/kafka.pid"
  deadline=$((SECONDS + ${KAFKA_START_TIMEOUT:-90}))
  until port_open "$port" && tail -c +"$((offset + 1))" "$dir/server.log" 2>/dev/null \
          | grep -q "Kafka Server started"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      show_logs "$dir"; rm -f "$dir/kafka.pid"; die "broker JVM (pid $pid) died during start-up"
    fi
    if ((SECONDS >= deadline)); then
      show_logs "$dir"; kill -KILL "$pid" 2>/dev/null || true; rm -f "$dir/kafka.pid"
      die "broker not ready within ${KAFKA_START_TIMEOUT:-90}s"
    fi
    sleep 0.2
  done
  log "broker ready (pid $pid) on 127.0.0.1:$port, controller 127.0.0.1:$cport"
  echo "127.0.0.1:$port"
}

# Make DIR absolute (creating it) and print it.
abs_dir() { mkdir -p "$1" && (cd "$1" && pwd); }

# start DIR [PORT]: format DIR if it has no data yet, then launch the broker.
cmd_start() {
  [[ $# -ge 1 ]] || die "usage: kafka.sh start DIR [PORT]"
  local dir port="${2:-9092}" cport
  dir="$(abs_dir "$1")"
  cmd_fetch
  if [[ -f "$dir/data/meta.properties" && $# -ge 2 && "$(client_port "$dir")" != "$port" ]]; then
    die "$dir is already formatted for port $(client_port "$dir"), not $port"
  fi
  if running_pid "$dir" >/dev/null; then
    log "already running"; echo "127.0.0.1:$(client_port "$dir")"; return 0
  fi
  if [[ ! -f "$dir/data/meta.properties" ]]; then
    cport="${KAFKA_CONTROLLER_PORT:-$((port + 1000))}"
    write_config "$dir" "$port" "$cport"
    format_storage "$dir"
  fi
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

# stop DIR: SIGTERM, wait for a clean exit, SIGKILL after the deadline.
cmd_stop() {
  [[ $# -ge 1 ]] || die "usage: kafka.sh stop DIR"
  local dir pid
  [[ -d "$1" ]] || return 0
  dir="$(cd "$1" && pwd)"
  if pid="$(running_pid "$dir")"; then
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_exit "$pid" "${KAFKA_STOP_TIMEOUT:-30}"; then
      log "broker (pid $pid) ignored SIGTERM for ${KAFKA_STOP_TIMEOUT:-30}s, sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      wait_exit "$pid" 10 || die "pid $pid survived SIGKILL"
    fi
  fi
  rm -f "$dir/kafka.pid"
}

# kill9 DIR: SIGKILL the broker (simulated crash) and wait until it is gone.
cmd_kill9() {
  [[ $# -ge 1 ]] || die "usage: kafka.sh kill9 DIR"
  local dir pid
  [[ -d "$1" ]] || return 0
  dir="$(cd "$1" && pwd)"
  if pid="$(running_pid "$dir")"; then
    kill -KILL "$pid" 2>/dev/null || true
    wait_exit "$pid" 10 || die "pid $pid survived SIGKILL"
  fi
  rm -f "$dir/kafka.pid"
}

# restart DIR: stop if running, then start on the existing data dir and ports.
cmd_restart() {
  [[ $# -ge 1 ]] || die "usage: kafka.sh restart DIR"
  local dir
  dir="$(cd "$1" 2>/dev/null && pwd)" || die "no such dir: $1"
  [[ -f "$dir/data/meta.properties" ]] || die "$dir has no formatted Kafka data (use start)"
  cmd_stop "$dir"
  cmd_fetch
  launch "$dir"
}

# status DIR: exit 0 (and print the pid) if the broker of DIR runs.
cmd_status() {
  [[ $# -ge 1 ]] || die "usage: kafka.sh status DIR"
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
    kill9) cmd_kill9 "$@" ;;
    restart) cmd_restart "$@" ;;
    status) cmd_status "$@" ;;
    *) die "usage: kafka.sh fetch|start DIR [PORT]|stop DIR|kill9 DIR|restart DIR|status DIR" ;;
  esac
}

main "$@"
