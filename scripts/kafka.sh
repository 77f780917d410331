#!/usr/bin/env bash
# Apache Kafka (KRaft) for pg_engage's tests, run from Maven Central jars: a single-node broker,
# or a cluster of combined broker+controller nodes on loopback.
#
#   scripts/kafka.sh fetch              download the jars (cached, skipped when complete)
#   scripts/kafka.sh start DIR [PORT]   format DIR if new, start the broker, wait until ready;
#                                       prints the bootstrap address (the only line on stdout)
#   scripts/kafka.sh stop DIR           SIGTERM, wait (then SIGKILL); idempotent
#   scripts/kafka.sh kill9 DIR          SIGKILL (simulated crash); idempotent
#   scripts/kafka.sh restart DIR        stop if running, start again on DIR's data and ports
#   scripts/kafka.sh status DIR         exit 0 if the broker of DIR runs
#
# Cluster (N nodes, default 3; node i is DIR/b<i>, node.id i, client port BASEPORT+i-1,
# controller port BASEPORT+1000+i-1 or KAFKA_CONTROLLER_PORT+i-1; every node is a voter of a
# static controller quorum, so the cluster survives the loss of any one node):
#   scripts/kafka.sh cluster-start DIR BASEPORT [N]
#                                       format DIR if new, start every node, wait until every
#                                       broker is in the metadata and in sync on a probe topic
#                                       (auto-created, replication factor min(N,3)) and a write
#                                       with acks=all is acknowledged (needs kcat); prints the
#                                       bootstrap list
#                                       "127.0.0.1:P1,127.0.0.1:P2,..." (the only line on stdout)
#   scripts/kafka.sh cluster-stop DIR   SIGTERM every node at once, wait (then SIGKILL); idempotent
#   scripts/kafka.sh cluster-kill9 DIR I
#                                       SIGKILL node I (simulated crash); idempotent
#   scripts/kafka.sh cluster-restart-broker DIR I
#                                       stop node I if running, start it again, wait until it is
#                                       back: every running node in the metadata and in sync on
#                                       the probe topic, a write acknowledged; prints the list
#   scripts/kafka.sh cluster-status DIR one line per node ("b1 running PID 127.0.0.1:PORT" or
#                                       "b2 stopped - 127.0.0.1:PORT"); exit 0 if all run
# Cluster settings: default.replication.factor=min(N,3), min.insync.replicas=2 (1 when N=1),
# offsets and transaction state topics replicated the same way (transaction.state.log.min.isr=2),
# auto.create.topics.enable=true, num.partitions=KAFKA_PARTITIONS.
#
# Environment: KAFKA_JARS (jar cache, default ~/.cache/pg_engage/kafka-<version>),
# KAFKA_VERSION (override the version pinned in scripts/kafka/pom.xml),
# KAFKA_PARTITIONS (num.partitions, default 3), KAFKA_CONTROLLER_PORT (default PORT+1000),
# KAFKA_START_TIMEOUT (s, default 90), KAFKA_STOP_TIMEOUT (s, default 30; cluster-stop 15),
# KAFKA_HEAP (default -Xmx512m; cluster nodes -Xmx256m), KAFKA_JVM_OPTS (more JVM options;
# cluster nodes default to -XX:TieredStopAtLevel=1), JAVA (default java),
# KAFKA_SESSION_TIMEOUT_MS (broker.session.timeout.ms, default 4000: a killed broker is fenced
# and its partitions get new leaders after that long),
# KAFKA_SASL_PORT (single broker only: also listen with SASL_PLAINTEXT, mechanism PLAIN, on this
# port when the data dir is first formatted), KAFKA_SASL_USERS (its users, "name:password,...",
# default "engage:engage-secret").
# DIR layout (of a single broker, and of each cluster node DIR/b<i>): server.properties, data/
# (KRaft log dir), kafka.pid, kafka.log (JVM stdout/stderr, WARN+), server.log (log4j INFO+),
# format.log.
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
    else
      echo "advertised.listeners=PLAINTEXT://127.0.0.1:$port$sasl"
      echo "controller.quorum.voters=1@127.0.0.1:$cport"
    fi
    common_config "$dir" 1 1
  } >"$dir/server.properties"
}

# Print the properties every broker shares: log dir DIR, replication factor $2, min ISR $3.
common_config() {
  local dir="$1" rf="$2" isr="$3"
  if is_kafka4; then
    echo "share.coordinator.state.topic.replication.factor=$rf"
    echo "share.coordinator.state.topic.min.isr=$isr"
  fi
  echo "log.dirs=$dir/data"
  echo "num.partitions=${KAFKA_PARTITIONS:-3}"
  echo "auto.create.topics.enable=true"
  ((rf == 1)) || echo "default.replication.factor=$rf"
  echo "offsets.topic.replication.factor=$rf"
  echo "offsets.topic.num.partitions=5"
  echo "transaction.state.log.replication.factor=$rf"
  echo "transaction.state.log.min.isr=$isr"
  echo "transaction.state.log.num.partitions=5"
  echo "min.insync.replicas=$isr"
  echo "group.initial.rebalance.delay.ms=0"
  # After kill9 the restarted broker cannot register until the controller expires its old
  # session (DUPLICATE_BROKER_REGISTRATION); the 9 s default made such restarts take ~12 s.
  echo "broker.heartbeat.interval.ms=1000"
  echo "broker.session.timeout.ms=${KAFKA_SESSION_TIMEOUT_MS:-4000}"
}

# Print a new cluster id: 16 random bytes in URL-safe base64 without padding (what random-uuid
# prints); one starting with "-" would be taken for an option by the tool, so draw again.
new_cluster_id() {
  local cluster_id=-
  while [[ "$cluster_id" == -* ]]; do
    cluster_id="$(head -c16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
  done
  echo "$cluster_id"
}

# Format DIR/data for cluster id $2 with StorageTool's extra arguments $3...
format_dir() {
  local dir="$1" cluster_id="$2"
  shift 2
  java_cmd "$dir"
  if ! "${JAVA_CMD[@]}" kafka.tools.StorageTool format -t "$cluster_id" -c "$dir/server.properties" "$@" \
      >"$dir/format.log" 2>&1; then
    cat "$dir/format.log" >&2; die "formatting $dir/data failed"
  fi
}

# Format DIR/data as a fresh single-node KRaft log dir.
format_storage() {
  local args=()
  if is_kafka4; then args+=(--standalone); fi
  format_dir "$1" "$(new_cluster_id)" "${args[@]}"
}

# Set JAVA_CMD to the JVM command line with Kafka's class path and logging into DIR $1.
java_cmd() {
  local heap opts
  read -r -a heap <<<"${KAFKA_HEAP:--Xmx512m}"
  read -r -a opts <<<"${KAFKA_JVM_OPTS:-}"
  JAVA_CMD=("${JAVA:-java}" "${heap[@]}" "${opts[@]+"${opts[@]}"}" -XX:+UseG1GC -Djava.awt.headless=true
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

# Start the JVM of DIR's broker in the background (own session); set SPAWNED_PID and LOG_OFFSET.
spawn() {
  local dir="$1" port cport
  port="$(client_port "$dir")"
  cport="$(listener_port "$dir" CONTROLLER)"
  port_open "$port" && die "port $port is already in use"
  port_open "$cport" && die "controller port $cport is already in use"
  LOG_OFFSET=0
  [[ -f "$dir/server.log" ]] && LOG_OFFSET="$(stat -c %s "$dir/server.log")"
  java_cmd "$dir"
  setsid "${JAVA_CMD[@]}" kafka.Kafka "$dir/server.properties" </dev/null >>"$dir/kafka.log" 2>&1 &
  SPAWNED_PID=$!
  echo "$SPAWNED_PID" >"$dir/kafka.pid"
}

# Succeed once DIR's broker accepts clients and logged its start after log offset $2.
started() {
  port_open "$(client_port "$1")" &&
    tail -c +"$(($2 + 1))" "$1/server.log" 2>/dev/null | grep -q "Kafka Server started"
}

# Fail (with logs) unless DIR's broker JVM (pid $2) is alive and $3 (SECONDS) is not yet passed;
# on failure the JVM is killed.
still_starting() {
  local dir="$1" pid="$2" deadline="$3"
  if ! kill -0 "$pid" 2>/dev/null; then
    show_logs "$dir"; rm -f "$dir/kafka.pid"; die "broker JVM of $dir (pid $pid) died during start-up"
  fi
  if ((SECONDS >= deadline)); then
    show_logs "$dir"; kill -KILL "$pid" 2>/dev/null || true; rm -f "$dir/kafka.pid"
    die "broker of $dir not ready within ${KAFKA_START_TIMEOUT:-90}s"
  fi
}

# Launch the broker of DIR in the background (own session) and wait until it is ready.
launch() {
  local dir="$1" pid offset deadline
  spawn "$dir"
  pid="$SPAWNED_PID"; offset="$LOG_OFFSET"
  deadline=$((SECONDS + ${KAFKA_START_TIMEOUT:-90}))
  until started "$dir" "$offset"; do
    still_starting "$dir" "$pid" "$deadline"
    sleep 0.2
  done
  log "broker ready (pid $pid) on 127.0.0.1:$(client_port "$dir"), controller 127.0.0.1:$(listener_port "$dir" CONTROLLER)"
  echo "127.0.0.1:$(client_port "$dir")"
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

# ---------------------------------------------------------------- 3-broker cluster

# Set the cluster's JVM defaults: three JVMs share the machine, so small heaps, and the C1 JIT
# only (start-up about twice as fast on 2 cores; plenty for test loads).
cluster_jvm_defaults() {
  export KAFKA_HEAP="${KAFKA_HEAP:--Xmx256m}"
  export KAFKA_JVM_OPTS="${KAFKA_JVM_OPTS:--XX:TieredStopAtLevel=1}"
}

# Name of the topic the readiness check produces to (auto-created with the cluster's defaults).
PROBE_TOPIC=engage-cluster-probe

# Print the number of brokers of cluster DIR (its b1, b2, ... subdirs).
cluster_size() {
  local n=0
  while [[ -d "$1/b$((n + 1))" ]]; do n=$((n + 1)); done
  echo "$n"
}

# Print the bootstrap list (comma-separated client addresses) of cluster DIR.
cluster_bootstrap() {
  local dir="$1" i list=""
  for ((i = 1; i <= $(cluster_size "$dir"); i++)); do
    list+="${list:+,}127.0.0.1:$(client_port "$dir/b$i")"
  done
  echo "$list"
}

# Print the replication factor of an N=$1 broker cluster: 3, or N when smaller.
cluster_rf() { echo $(($1 < 3 ? $1 : 3)); }

# Write DIR/b$2/server.properties: node $2 of $3, client ports from $4, controller ports from $5.
write_node_config() {
  local dir="$1" i="$2" n="$3" base="$4" cbase="$5" node="$1/b$2" voters="" j rf
  for ((j = 1; j <= n; j++)); do voters+="${voters:+,}$j@127.0.0.1:$((cbase + j - 1))"; done
  rf="$(cluster_rf "$n")"
  {
    echo "# written by scripts/kafka.sh (cluster node $i of $n) for Kafka $(kafka_version)"
    echo "process.roles=broker,controller"
    echo "node.id=$i"
    echo "listeners=PLAINTEXT://127.0.0.1:$((base + i - 1)),CONTROLLER://127.0.0.1:$((cbase + i - 1))"
    echo "advertised.listeners=PLAINTEXT://127.0.0.1:$((base + i - 1))"
    echo "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
    echo "inter.broker.listener.name=PLAINTEXT"
    echo "controller.listener.names=CONTROLLER"
    # A static quorum: every node is a voter, formatted with the same cluster id.
    echo "controller.quorum.voters=$voters"
    common_config "$node" "$rf" "$((rf < 2 ? rf : 2))"
  } >"$node/server.properties"
}

# Create and format the N=$2 nodes of cluster DIR, client ports from $3 (all formats in parallel).
cluster_format() {
  local dir="$1" n="$2" base="$3" cbase cluster_id i pids=()
  cbase="${KAFKA_CONTROLLER_PORT:-$((base + 1000))}"
  cluster_id="$(new_cluster_id)"
  for ((i = 1; i <= n; i++)); do
    mkdir -p "$dir/b$i"
    write_node_config "$dir" "$i" "$n" "$base" "$cbase"
    format_dir "$dir/b$i" "$cluster_id" &
    pids+=($!)
  done
  for i in "${pids[@]}"; do wait "$i" || die "formatting the cluster in $dir failed"; done
}

# Print the node numbers of cluster DIR whose broker runs, comma-separated.
running_nodes() {
  local dir="$1" i list=""
  for ((i = 1; i <= $(cluster_size "$dir"); i++)); do
    running_pid "$dir/b$i" >/dev/null && list+="${list:+,}$i"
  done
  echo "$list"
}

# Succeed if the cluster of DIR works with the nodes that run: a message to the probe topic
# (auto-created with the default replication factor) is acknowledged with acks=all, the metadata
# lists exactly the running brokers, and each of them is in sync in every probe partition.
cluster_probe() {
  local dir="$1" bootstrap nodes md
  bootstrap="$(cluster_bootstrap "$dir")"; nodes="$(running_nodes "$dir")"
  echo ready | timeout 20 kcat -P -b "$bootstrap" -t "$PROBE_TOPIC" -X acks=all \
    -X message.timeout.ms=8000 -X socket.timeout.ms=5000 >/dev/null 2>&1 || return 1
  md="$(timeout 20 kcat -L -b "$bootstrap" -t "$PROBE_TOPIC" -m 5 2>/dev/null)" || return 1
  # Lines "  broker 2 at 127.0.0.1:19501" and "    partition 0, leader 2, replicas: 2,3,1, isrs: 2,3,1".
  awk -v nodes="$nodes" '
    BEGIN { n = split(nodes, want, ","); for (k = 1; k <= n; k++) running[want[k]] = 1 }
    /^  broker [0-9]+ at / { listed[$2] = 1; brokers++ }
    /^    partition [0-9]+, leader/ {
      parts++; split($0, f, "isrs: "); split(f[2], isr, ",")
      delete in_sync; for (k in isr) in_sync[isr[k] + 0] = 1
      for (k in running) if (!(k in in_sync)) bad++
    }
    END {
      for (k in running) if (!(k in listed)) bad++
      exit !(parts > 0 && brokers == n && !bad)
    }' <<<"$md"
}

# Wait until broker JVMs of nodes $3... of cluster DIR have started (log offsets in OFFSETS[i],
# pids in PIDS[i]), then until cluster_probe passes; deadline $2 (SECONDS).
cluster_await() {
  local dir="$1" deadline="$2" i pending
  shift 2
  pending=("$@")
  while ((${#pending[@]})); do
    local left=()
    for i in "${pending[@]}"; do
      started "$dir/b$i" "${OFFSETS[$i]}" && continue
      still_starting "$dir/b$i" "${PIDS[$i]}" "$deadline"
      left+=("$i")
    done
    pending=("${left[@]+"${left[@]}"}")
    ((${#pending[@]})) && sleep 0.2
  done
  until cluster_probe "$dir"; do
    for i in "${!PIDS[@]}"; do still_starting "$dir/b$i" "${PIDS[$i]}" "$deadline"; done
    sleep 0.5
  done
}

# Check "$2" is node number of cluster DIR $1 and print the node's dir.
node_dir() {
  local n
  n="$(cluster_size "$1")"
  [[ "$2" =~ ^[0-9]+$ ]] && (("$2" >= 1 && "$2" <= n)) || die "no broker $2 in $1 (1..$n)"
  echo "$1/b$2"
}

# Exit trap of cluster-start: when it fails, SIGKILL the nodes it spawned (pids in SPAWNED_PIDS).
kill_spawned() {
  local rc=$? pid
  ((rc == 0)) && return 0
  for pid in "${SPAWNED_PIDS[@]+"${SPAWNED_PIDS[@]}"}"; do kill -KILL "$pid" 2>/dev/null || true; done
  return "$rc"
}

# cluster-start DIR BASEPORT [N]: format DIR's N nodes if new, start them all, wait until ready.
cmd_cluster_start() {
  [[ $# -ge 2 ]] || die "usage: kafka.sh cluster-start DIR BASEPORT [N]"
  cluster_jvm_defaults
  local dir base="$2" n="${3:-3}" i deadline
  [[ "$base" =~ ^[0-9]+$ && "$n" =~ ^[0-9]+$ ]] && ((n >= 1)) || die "bad BASEPORT or N: $base $n"
  command -v kcat >/dev/null || die "kcat not found (apt-get install -y kcat): the readiness check needs it"
  dir="$(abs_dir "$1")"
  cmd_fetch
  if [[ -f "$dir/b1/data/meta.properties" ]]; then
    [[ "$(client_port "$dir/b1")" == "$base" && "$(cluster_size "$dir")" == "$n" ]] ||
      die "$dir is already formatted for $(cluster_size "$dir") brokers from port $(client_port "$dir/b1")"
  else
    cluster_format "$dir" "$n" "$base"
  fi
  declare -gA PIDS=() OFFSETS=()
  local spawned=()
  SPAWNED_PIDS=()
  trap kill_spawned EXIT
  for ((i = 1; i <= n; i++)); do
    if PIDS[$i]="$(running_pid "$dir/b$i")"; then
      OFFSETS[$i]=0
    else
      spawn "$dir/b$i"
      PIDS[$i]="$SPAWNED_PID"; OFFSETS[$i]="$LOG_OFFSET"; spawned+=("$i"); SPAWNED_PIDS+=("$SPAWNED_PID")
    fi
  done
  deadline=$((SECONDS + ${KAFKA_START_TIMEOUT:-90}))
  cluster_await "$dir" "$deadline" "${spawned[@]+"${spawned[@]}"}"
  trap - EXIT
  log "cluster of $n brokers ready in $dir"
  cluster_bootstrap "$dir"
}

# cluster-stop DIR: SIGTERM every broker at once, wait for them (SIGKILL after the deadline).
# A clean stop takes about 7 s.  Now and then a node waits for the controller to approve its
# controlled shutdown after the quorum is gone (Kafka would wait up to 5 minutes): hence a
# shorter default deadline than a single broker's.
cmd_cluster_stop() {
  [[ $# -ge 1 ]] || die "usage: kafka.sh cluster-stop DIR"
  local dir i pid pids=() deadline grace="${KAFKA_STOP_TIMEOUT:-15}"
  [[ -d "$1" ]] || return 0
  dir="$(cd "$1" && pwd)"
  for ((i = 1; i <= $(cluster_size "$dir"); i++)); do
    pid="$(running_pid "$dir/b$i")" && { kill -TERM "$pid" 2>/dev/null || true; pids+=("$pid"); }
  done
  deadline=$((SECONDS + grace))
  for pid in "${pids[@]+"${pids[@]}"}"; do
    if ! wait_exit "$pid" $((deadline > SECONDS ? deadline - SECONDS : 0)); then
      log "broker (pid $pid) still stopping after ${grace}s, sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      wait_exit "$pid" 10 || die "pid $pid survived SIGKILL"
    fi
  done
  for ((i = 1; i <= $(cluster_size "$dir"); i++)); do rm -f "$dir/b$i/kafka.pid"; done
}

# cluster-kill9 DIR I: SIGKILL broker I (1-based) of the cluster.
cmd_cluster_kill9() {
  [[ $# -ge 2 ]] || die "usage: kafka.sh cluster-kill9 DIR I"
  local dir node
  dir="$(cd "$1" 2>/dev/null && pwd)" || die "no such dir: $1"
  node="$(node_dir "$dir" "$2")"
  cmd_kill9 "$node"
}

# cluster-restart-broker DIR I: stop broker I if running, start it again, wait until it is back in
# the cluster with the other running nodes (cluster_probe); prints the bootstrap list.
cmd_cluster_restart_broker() {
  [[ $# -ge 2 ]] || die "usage: kafka.sh cluster-restart-broker DIR I"
  cluster_jvm_defaults
  local dir node i="$2" deadline
  dir="$(cd "$1" 2>/dev/null && pwd)" || die "no such dir: $1"
  node="$(node_dir "$dir" "$i")"
  [[ -f "$node/data/meta.properties" ]] || die "$node has no formatted Kafka data (use cluster-start)"
  cmd_stop "$node"
  cmd_fetch
  declare -gA PIDS=() OFFSETS=()
  spawn "$node"
  PIDS[$i]="$SPAWNED_PID"; OFFSETS[$i]="$LOG_OFFSET"
  deadline=$((SECONDS + ${KAFKA_START_TIMEOUT:-90}))
  cluster_await "$dir" "$deadline" "$i"
  log "broker $i of $dir ready again (pid ${PIDS[$i]})"
  cluster_bootstrap "$dir"
}

# cluster-status DIR: one line per broker ("b1 running 1234 127.0.0.1:19500" or "b2 stopped ...");
# exit 0 if every broker runs.
cmd_cluster_status() {
  [[ $# -ge 1 ]] || die "usage: kafka.sh cluster-status DIR"
  local dir i pid rc=0 n
  dir="$(cd "$1" 2>/dev/null && pwd)" || return 1
  n="$(cluster_size "$dir")"
  ((n > 0)) || return 1
  for ((i = 1; i <= n; i++)); do
    if pid="$(running_pid "$dir/b$i")"; then
      echo "b$i running $pid 127.0.0.1:$(client_port "$dir/b$i")"
    else
      echo "b$i stopped - 127.0.0.1:$(client_port "$dir/b$i")"; rc=1
    fi
  done
  return "$rc"
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
    cluster-start) cmd_cluster_start "$@" ;;
    cluster-stop) cmd_cluster_stop "$@" ;;
    cluster-kill9) cmd_cluster_kill9 "$@" ;;
    cluster-restart-broker) cmd_cluster_restart_broker "$@" ;;
    cluster-status) cmd_cluster_status "$@" ;;
    *) die "usage: kafka.sh fetch|start DIR [PORT]|stop DIR|kill9 DIR|restart DIR|status DIR|cluster-start DIR BASEPORT [N]|cluster-stop DIR|cluster-kill9 DIR I|cluster-restart-broker DIR I|cluster-status DIR" ;;
  esac
}

main "$@"
