#!/usr/bin/env bash
# Shipping to Kafka: throughput, latency, source overhead and memory of the
# pg_engage shipper against a local single-node Kafka broker.
#
# One cluster with shared_preload_libraries = 'pg_engage' (engage.enabled off
# at first) and one broker (scripts/kafka.sh, port BENCH_KAFKA_PORT).
#
# Throughput: the workload of bench/decode.sh (bench/workload.sh: BENCH_ROWS
#   inserts, BENCH_UPDATES updates) is written while the shipper is off, so it
#   waits as a backlog in BENCH_RUNS shipper slots (each made by the shipper
#   itself), one SQL slot and BENCH_RUNS walsender slots, all engage_decoder.
#   Then BENCH_RUNS rounds, the three methods rotated each round:
#   - pure decode: SELECT count(*), sum(octet_length(data)) FROM
#     pg_logical_slot_peek_changes('bench_sql', <end>, NULL), timed in the server;
#   - shipper: enable it on slot ship_<round> (topic prefix ship<round>, its
#     topics created beforehand with 3 partitions), time from the reload that
#     enables it until engage.shipper shows it running on that slot with
#     confirmed_lsn >= the workload's end LSN and in_flight = 0 (polled every
#     50 ms), while sampling its /proc/<pid>/status and CPU time; then off;
#   - walsender: pg_recvlogical --start -S recv_<round> -f /dev/null --endpos <end>.
#   Medians are kept.  Each shipper round's topics must hold every change
#   (sum of the partitions' high minus low watermarks).
# Latency: the shipper running (topic prefix lat, topic lat.members created
#   first with message.timestamp.type=LogAppendTime), pgbench -R BENCH_LATENCY_RATE
#   -T BENCH_LATENCY_SECONDS, 2 clients, each transaction inserting 10 members;
#   per event: the broker's append time minus the record's commit time "ts".
#   One warm-up event goes first (a topic's first event in a shipper session
#   waits for librdkafka's topic lookup); its latency is reported apart.
# Source overhead: pgbench (2 clients, BENCH_PGBENCH_SECONDS, fsync and
#   synchronous_commit on; a transaction inserts a member and an audience
#   row and updates a campaign_audience row) with no slot, with the shipper
#   running, and with wal2json + pg_recvlogical; BENCH_OVERHEAD_ROUNDS rounds,
#   the order reversed every other round, medians kept.  All slots are dropped
#   first; each config makes and drops its own.  The CPU time of the capturing
#   processes and of the broker (on the same machine) is measured alongside.
#
# Usage (as root, from anywhere):  bench/ship.sh
# Quick smoke run:  BENCH_ROWS=100000 BENCH_UPDATES=20000 BENCH_RUNS=1 \
#                   BENCH_PGBENCH_SECONDS=10 BENCH_OVERHEAD_ROUNDS=1 BENCH_LATENCY_SECONDS=10 bench/ship.sh
# Other knobs: BENCH_PORT (55492), BENCH_KAFKA_PORT (19692; the controller
# listens on it + 1000), BENCH_MEMBERS (100000), BENCH_LATENCY_RATE (500
# transactions/s), BENCH_NO_BUILD=1 or NO_BUILD=1 (use the installed build),
# BENCH_KEEP=1 or KEEP=1 (leave the cluster and the broker running),
# PG_ENGAGE_VENV (Python environment, as scripts/test.sh),
# BENCH_KAFKA_PROPERTIES (engage.kafka_properties of the shipper, default empty:
# the shipper's defaults; e.g. 'compression.type=none' to compare with lz4).
#
# Exit status: 0 when every target is met, 3 when one is missed, 1 on error.
set -euo pipefail

# The whole script is one group, read before it runs: editing the file during a
# run cannot change what that run executes.
{
# shellcheck source=SCRIPTDIR/../scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
# shellcheck source=SCRIPTDIR/workload.sh
source "$(dirname "${BASH_SOURCE[0]}")/workload.sh"

ROWS=${BENCH_ROWS:-1000000}
UPDATES=${BENCH_UPDATES:-200000}
RUNS=${BENCH_RUNS:-3}
PORT=${BENCH_PORT:-55492}
KAFKA_PORT=${BENCH_KAFKA_PORT:-19692}
MEMBERS=${BENCH_MEMBERS:-100000}
PGBENCH_SECONDS=${BENCH_PGBENCH_SECONDS:-60}
OVERHEAD_ROUNDS=${BENCH_OVERHEAD_ROUNDS:-2}
LATENCY_SECONDS=${BENCH_LATENCY_SECONDS:-30}
LATENCY_RATE=${BENCH_LATENCY_RATE:-500}
LATENCY_ROWS=10                 # members inserted per latency transaction
CHANGES=$((ROWS + UPDATES))
VENV=${PG_ENGAGE_VENV:-$HOME/.cache/pg_engage/venv}

for v in ROWS UPDATES RUNS PORT KAFKA_PORT MEMBERS PGBENCH_SECONDS OVERHEAD_ROUNDS \
         LATENCY_SECONDS LATENCY_RATE; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "BENCH_$v must be a positive integer (got '${!v}')"
done
((RUNS <= 15)) || die "BENCH_RUNS is at most 15 (two slots per round)"

# Targets.
MAX_SHIP_RATIO=1.5              # shipping time / pure decode time
MAX_CPU_RATIO=1.5               # shipper CPU-seconds / pure decode CPU-seconds
MAX_P99_MS=20                   # commit-to-acknowledgement p99
MAX_HWM_MIB=64                  # shipper peak RSS on the backlog
MAX_TPS_COST=5                  # % TPS the shipper may cost the source

# shellcheck disable=SC2034  # read by ensure_packages
ENGAGE_PACKAGES=(postgresql-15 postgresql-server-dev-15 postgresql-15-wal2json
    librdkafka-dev build-essential pkg-config maven openjdk-17-jre-headless python3-venv)
ensure_packages
[ "${BENCH_NO_BUILD:-${NO_BUILD:-0}}" = 1 ] || build_install

# The Python environment of the integration tests (confluent-kafka, psycopg).
if ! "$VENV/bin/python" -c 'import confluent_kafka, psycopg' 2>/dev/null; then
    say "preparing the Python environment in $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check -r "$ROOT/test/requirements.txt"
    cp "$ROOT/test/requirements.txt" "$VENV/requirements.txt"
fi

DIR=$(mktemp -d /tmp/engage-ship.XXXXXX)
KDIR=$DIR/kafka
RECV_PID=
# shellcheck disable=SC2317  # run by the trap
cleanup() {
    if [ -n "$RECV_PID" ]; then
        kill -INT "$RECV_PID" 2>/dev/null || true
        wait "$RECV_PID" 2>/dev/null || true
    fi
    if [ "${BENCH_KEEP:-${KEEP:-0}}" = 1 ]; then
        say "left running: $PGBIN/psql -h $DIR -p $PORT -U postgres bench; broker 127.0.0.1:$KAFKA_PORT"
        say "stop with: runuser -u postgres -- $PGBIN/pg_ctl -D $DIR/data stop;" \
            "$ROOT/scripts/kafka.sh stop $KDIR; rm -rf $DIR"
        return
    fi
    cluster_stop "$DIR" immediate
    "$ROOT/scripts/kafka.sh" stop "$KDIR" || true
    rm -rf "$DIR"
}
trap cleanup EXIT

psql_bench() { cluster_psql "$DIR" "$PORT" bench "$@"; }
# One value from a query on the bench database.
sql1() { psql_bench -At -c "$1"; }

# Polls a query (one boolean) every 0.1 s until it is true; dies after $2 s.
wait_for() {
    local what=$1 timeout=$2 sql=$3 deadline=$((SECONDS + $2))
    until [ "$(sql1 "$sql")" = t ]; do
        ((SECONDS < deadline)) || die "timed out after ${timeout}s waiting for $what" \
            "(shipper: $(sql1 "SELECT state || ', ' || coalesce(last_error, '') FROM engage.shipper"))"
        sleep 0.1
    done
}

# Sets engage.* settings (name value pairs) with ALTER SYSTEM and reloads.
engage_set() {
    while [ $# -ge 2 ]; do
        psql_bench -c "ALTER SYSTEM SET $1 = '$2'"
        shift 2
    done
    sql1 "SELECT pg_reload_conf()" >/dev/null
}

# True (SQL) when the shipper runs a session on slot $1.
running_on() {
    echo "SELECT s.state = 'running' AND EXISTS (SELECT FROM pg_replication_slots r
              WHERE r.slot_name = '$1' AND r.active_pid = s.pid) FROM engage.shipper s"
}

# Enables the shipper on slot $1 and waits until it streams from it.
shipper_on() {
    engage_set engage.slot_name "$1" engage.enabled on
    wait_for "the shipper to run on slot $1" 60 "$(running_on "$1")"
}

# Disables the shipper and waits until its worker is gone.
shipper_off() {
    engage_set engage.enabled off
    wait_for "the shipper to stop" 60 \
        "SELECT state = 'stopped' AND pid IS NULL AND NOT EXISTS (SELECT FROM pg_stat_activity
              WHERE backend_type = 'pg_engage shipper') FROM engage.shipper"
}

# Median of the numbers in $1.
median() {
    tr ' ' '\n' <<<"$1" | grep . | sort -g |
        awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# Smallest of the numbers in $1.
fastest() { tr ' ' '\n' <<<"$1" | grep . | sort -g | head -n1; }

# 1,234,567
commas() { awk -v n="$1" 'BEGIN { s = sprintf("%d", n)
    while (s ~ /[0-9][0-9][0-9][0-9]/) sub(/[0-9][0-9][0-9]($|,)/, ",&", s); print s }'; }

# --- Python side: the timed shipper run, Kafka counts and latencies. -----------
PY=$DIR/shipbench.py
cat >"$PY" <<'PY'
"""Helpers of bench/ship.sh (argv: command and arguments; settings in BENCH_* variables)."""
import json
import math
import os
import sys
import time
from datetime import datetime, timezone

import psycopg
from confluent_kafka import Consumer, TopicPartition, TIMESTAMP_LOG_APPEND_TIME
from confluent_kafka.admin import AdminClient, NewTopic

BOOTSTRAP = os.environ["BENCH_BOOTSTRAP"]


def connect():
    return psycopg.connect(host=os.environ["BENCH_DIR"], port=os.environ["BENCH_PORT"],
                           user="postgres", dbname="bench", autocommit=True)


def proc_mem(pid):
    """kB values of /proc/<pid>/status (empty when the process is gone)."""
    mem = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
                    mem[key] = int(value.split()[0])
    except OSError:
        pass
    return mem


def cpu_seconds(pid):
    """User + system CPU seconds of a process (all its threads) so far; None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, TypeError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ship(slot, end_lsn, timeout):
    """Enables the shipper and times it until it confirmed end_lsn with nothing in flight."""
    query = """SELECT s.state, s.pid, s.confirmed_lsn >= %s::pg_lsn, s.in_flight, s.events_shipped,
                      s.last_error,
                      EXISTS (SELECT FROM pg_replication_slots r
                              WHERE r.slot_name = %s AND r.active_pid = s.pid)
               FROM engage.shipper s"""
    broker_pid = os.environ.get("BENCH_KAFKA_PID")
    with connect() as conn:
        base = conn.execute("SELECT events_shipped FROM engage.shipper").fetchone()[0]
        conn.execute("ALTER SYSTEM SET engage.enabled = on")
        broker_cpu0 = cpu_seconds(broker_pid)
        t0 = time.monotonic()
        conn.execute("SELECT pg_reload_conf()")
        peak, states, pid_seen, polls, first_ack, trace = {}, [], None, 0, None, []
        while True:
            state, pid, done, in_flight, shipped, error, on_slot = conn.execute(
                query, (end_lsn, slot)).fetchone()
            now = time.monotonic()
            polls += 1
            trace.append(f"{now - t0:.3f} {state} {shipped - base} {in_flight}")
            if first_ack is None and shipped > base:
                first_ack = now - t0
            if not states or states[-1] != state:
                states.append(state)
            if pid:
                pid_seen = pid
                for key, value in proc_mem(pid).items():
                    peak[key] = max(peak.get(key, 0), value)
            if state == "running" and on_slot and done and in_flight == 0:
                shipper_cpu = cpu_seconds(pid)
                broker_cpu = cpu_seconds(broker_pid)
                break
            if state == "stopped on error":
                sys.exit(f"shipper stopped on error: {error}")
            if now - t0 > timeout:
                sys.exit(f"shipper not done after {timeout} s (state {state}, "
                         f"in flight {in_flight}, shipped {shipped - base}, error {error})")
            time.sleep(max(0.0, 0.05 - (time.monotonic() - now)))
    with open(os.path.join(os.environ["BENCH_DIR"], f"{slot}.trace"), "w") as f:
        f.write("seconds state acknowledged in_flight\n" + "\n".join(trace) + "\n")
    print(json.dumps({"seconds": round(now - t0, 3), "events": shipped - base, "pid": pid_seen,
                      "first_ack_s": round(first_ack, 3) if first_ack is not None else None,
                      "polls": polls, "states": states, "last_error": error,
                      "shipper_cpu_s": shipper_cpu,
                      "broker_cpu_s": round(broker_cpu - broker_cpu0, 2)
                      if broker_cpu is not None and broker_cpu0 is not None else None,
                      "vm_hwm_kb": peak.get("VmHWM"), "vm_rss_kb": peak.get("VmRSS"),
                      "rss_anon_kb": peak.get("RssAnon"), "rss_file_kb": peak.get("RssFile"),
                      "rss_shmem_kb": peak.get("RssShmem")}))


def consumer():
    return Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": "engage-ship-bench",
                     "enable.auto.commit": False, "auto.offset.reset": "earliest"})


def partitions(cons, prefix):
    """(topic, partition, low, high) of every topic named <prefix>.*"""
    md = cons.list_topics(timeout=20)
    out = []
    for name in sorted(md.topics):
        if name.startswith(prefix + "."):
            for p in sorted(md.topics[name].partitions):
                low, high = cons.get_watermark_offsets(TopicPartition(name, p), timeout=20)
                out.append((name, p, low, high))
    return out


def count(prefix):
    """Messages in the topics of a prefix, from the partitions' watermarks."""
    cons = consumer()
    try:
        parts = partitions(cons, prefix)
    finally:
        cons.close()
    per_topic = {}
    for name, _, low, high in parts:
        per_topic[name] = per_topic.get(name, 0) + high - low
    print(json.dumps({"messages": sum(per_topic.values()), "topics": per_topic}))


def make_topics(partitions_, timestamp_type, *names):
    """Creates topics; timestamp_type is CreateTime or LogAppendTime (the broker's append time)."""
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP, "log_level": 4})
    futures = admin.create_topics([NewTopic(name, int(partitions_), 1,
                                            config={"message.timestamp.type": timestamp_type})
                                   for name in names])
    for f in futures.values():
        f.result(timeout=30)


def parse_ts(text):
    """Seconds since the epoch of an engage_decoder commit time, 2026-11-25T09:00:00.123456Z."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()


def latency(prefix):
    """Append time minus commit time of every event in the topics of a prefix (ms)."""
    cons = consumer()
    lat, warmup, bad_ts = [], [], 0
    try:
        parts = [p for p in partitions(cons, prefix) if p[3] > p[2]]
        ends = {(t, p): high for t, p, _, high in parts}
        cons.assign([TopicPartition(t, p, low) for t, p, low, _ in parts])
        deadline = time.monotonic() + 300
        while ends:
            if time.monotonic() > deadline:
                sys.exit(f"could not read {sorted(ends)} to the end")
            for m in cons.consume(num_messages=10000, timeout=1):
                if m.error():
                    sys.exit(f"consumer error: {m.error()}")
                kind, append_ms = m.timestamp()
                if kind != TIMESTAMP_LOG_APPEND_TIME:
                    bad_ts += 1
                record = json.loads(m.value())
                ms = append_ms - parse_ts(record["ts"]) * 1000.0
                if record["new"]["name"] == "latency warm-up":
                    warmup.append(ms)
                else:
                    lat.append(ms)
                key = (m.topic(), m.partition())
                if key in ends and m.offset() >= ends[key] - 1:
                    del ends[key]
    finally:
        cons.close()
    if bad_ts:
        sys.exit(f"{bad_ts} messages do not carry the broker's append time")
    lat.sort()
    n = len(lat)

    def pct(q):
        return lat[max(0, math.ceil(q * n) - 1)] if n else float("nan")

    print(json.dumps({"count": n, "p50_ms": round(pct(0.50), 1), "p99_ms": round(pct(0.99), 1),
                      "max_ms": round(lat[-1], 1) if n else None,
                      "min_ms": round(lat[0], 1) if n else None,
                      "warmup_ms": round(warmup[0], 1) if warmup else None}))


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"ship": lambda: ship(args[0], args[1], float(args[2])),
     "count": lambda: count(args[0]),
     "make-topics": lambda: make_topics(*args),
     "latency": lambda: latency(args[0])}[cmd]()
PY
export BENCH_DIR=$DIR BENCH_PORT=$PORT BENCH_BOOTSTRAP=127.0.0.1:$KAFKA_PORT
py() { "$VENV/bin/python" "$PY" "$@"; }
# Field $2 of the JSON object $1.
jget() { "$VENV/bin/python" -c 'import json, sys; v = json.loads(sys.argv[1])[sys.argv[2]]; print("" if v is None else v)' "$1" "$2"; }

# --- Broker and cluster. --------------------------------------------------------
say "Kafka broker in $KDIR, port $KAFKA_PORT"
"$ROOT/scripts/kafka.sh" start "$KDIR" "$KAFKA_PORT" >/dev/null
BENCH_KAFKA_PID=$(cat "$KDIR/kafka.pid")
export BENCH_KAFKA_PID

say "cluster in $DIR, port $PORT"
cluster_init "$DIR" "$PORT" \
    "shared_preload_libraries = 'pg_engage'" \
    "engage.database = 'bench'" \
    "engage.brokers = '127.0.0.1:$KAFKA_PORT'" \
    "engage.enabled = off" \
    "engage.kafka_properties = '${BENCH_KAFKA_PROPERTIES:-}'" \
    "max_replication_slots = 40" \
    "shared_buffers = 512MB" \
    "max_wal_size = 16GB" \
    "min_wal_size = 1GB" \
    "checkpoint_timeout = 1h" \
    "autovacuum = off" \
    "work_mem = 1GB" \
    "client_min_messages = warning"
cluster_start "$DIR"
cluster_psql "$DIR" "$PORT" postgres -c "CREATE DATABASE bench"

workload_sizes "$ROWS" "$UPDATES" "$MEMBERS"
say "setup: $MEMBERS members, $AUDIENCES audiences, $CAMPAIGNS campaigns x $MEMBERS audience rows"
{ workload_setup_sql; cat <<SQL; } | psql_bench
CREATE SCHEMA bench;
-- CPU seconds (user + system) this backend has used so far.
CREATE FUNCTION bench.cpu_s() RETURNS float8 LANGUAGE sql AS \$\$
    SELECT (f[12]::float8 + f[13]::float8) / 100
      FROM (SELECT regexp_split_to_array(split_part(pg_read_file('/proc/self/stat'), ') ', 2), ' ') AS f) AS s
\$\$;
-- Runs query (one row: two bigints) and times it inside the server, wall and CPU.
CREATE FUNCTION bench.timed(query text, OUT n bigint, OUT bytes bigint, OUT ms float8, OUT cpu_s float8)
LANGUAGE plpgsql AS \$\$
DECLARE
    t0 timestamptz := clock_timestamp();
    c0 float8 := bench.cpu_s();
BEGIN
    EXECUTE query INTO n, bytes;
    ms := 1000 * extract(epoch FROM clock_timestamp() - t0);
    cpu_s := bench.cpu_s() - c0;
END
\$\$;
SQL

# --- Slots: the shipper makes its own, one per round; then SQL and walsender. ---
for ((r = 1; r <= RUNS; r++)); do
    shipper_on "ship_$r"
    shipper_off
done
sql1 "SELECT pg_create_logical_replication_slot('bench_sql', 'engage_decoder')" >/dev/null
for ((r = 1; r <= RUNS; r++)); do
    sql1 "SELECT pg_create_logical_replication_slot('recv_$r', 'engage_decoder')" >/dev/null
done
START_LSN=$(sql1 "SELECT min(restart_lsn) FROM pg_replication_slots")

say "workload: $ROWS inserts ($INSERT_BATCH per transaction), $UPDATES updates ($UPDATE_BATCH per transaction)"
load_start=$(date +%s)
workload_changes_sql | PGOPTIONS='-c synchronous_commit=off' psql_bench
END_LSN=$(sql1 "SELECT pg_current_wal_insert_lsn()")
WAL_MB=$(sql1 "SELECT round(pg_wal_lsn_diff('$END_LSN', '$START_LSN') / 1048576.0)")
# Also puts WAL after END_LSN, so that every reader can pass it.
psql_bench -c "CHECKPOINT"
say "workload written in $(( $(date +%s) - load_start )) s: $WAL_MB MiB of WAL ($START_LSN .. $END_LSN)"

# --- Throughput rounds. ---------------------------------------------------------
# The shipper's topics exist, as in production (auto-creating them would add
# the broker's topic creation to the first round trip), with the broker's
# default 3 partitions.
for ((r = 1; r <= RUNS; r++)); do
    py make-topics 3 CreateTime "ship$r.audience_members" "ship$r.campaign_audience"
done
PEEK="SELECT count(*), sum(octet_length(data)) FROM pg_logical_slot_peek_changes('bench_sql', '$END_LSN', NULL)"
DECODE_S='' DECODE_CPU='' SHIP_S='' RECV_S='' SHIP_JSON=() KAFKA_COUNTS=()
METHODS=(decode ship recv)
for ((r = 1; r <= RUNS; r++)); do
    for ((i = 0; i < 3; i++)); do
        m=${METHODS[$(( (r - 1 + i) % 3 ))]} extra=
        case $m in
            decode)
                IFS='|' read -r n _ ms cpu <<<"$(sql1 "SELECT * FROM bench.timed(\$q\$$PEEK\$q\$)")"
                [ "$n" = "$CHANGES" ] || die "pure decode gave $n records, expected $CHANGES"
                s=$(awk -v ms="$ms" 'BEGIN { printf "%.3f", ms / 1000 }')
                DECODE_S+="$s "
                DECODE_CPU+="$cpu "
                extra="(CPU s: $cpu)"
                ;;
            ship)
                engage_set engage.slot_name "ship_$r" engage.topic_prefix "ship$r"
                j=$(py ship "ship_$r" "$END_LSN" $((120 + CHANGES / 2000)))
                shipper_off
                s=$(jget "$j" seconds)
                [ "$(jget "$j" events)" = "$CHANGES" ] ||
                    say "WARNING: round $r: the shipper acknowledged $(jget "$j" events) events, expected $CHANGES"
                SHIP_S+="$s "
                SHIP_JSON+=("$j")
                KAFKA_COUNTS+=("$(jget "$(py count "ship$r")" messages)")
                extra="(first ack $(jget "$j" first_ack_s) s; CPU s: shipper $(jget "$j" shipper_cpu_s)"
                extra+=", broker $(jget "$j" broker_cpu_s); in Kafka ${KAFKA_COUNTS[-1]})"
                ;;
            recv)
                t0=$(date +%s.%N)
                "$PGBIN/pg_recvlogical" -h "$DIR" -p "$PORT" -U postgres -d bench --start \
                    -S "recv_$r" -P engage_decoder -f /dev/null --endpos "$END_LSN" --no-loop
                s=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.3f", b - a }')
                RECV_S+="$s "
                ;;
        esac
        printf '  round %d/%d  %-7s %8.3f s %s\n' "$r" "$RUNS" "$m" "$s" "$extra" >&2
    done
done
DECODE_MED=$(median "$DECODE_S")
SHIP_MED=$(median "$SHIP_S")
RECV_MED=$(median "$RECV_S")
KAFKA_MIN=$(tr ' ' '\n' <<<"${KAFKA_COUNTS[*]}" | sort -n | head -n1)
PEAK_HWM=0 PEAK_ANON=0 PEAK_RSS=0 FIRST_ACK='' STREAM_S='' RUN_SHIPPER_CPU='' RUN_BROKER_CPU=''
for j in "${SHIP_JSON[@]}"; do
    FIRST_ACK+="$(jget "$j" first_ack_s) "
    STREAM_S+="$(awk -v a="$(jget "$j" seconds)" -v b="$(jget "$j" first_ack_s)" 'BEGIN { printf "%.3f", a - b }') "
    RUN_SHIPPER_CPU+="$(jget "$j" shipper_cpu_s) "
    RUN_BROKER_CPU+="$(jget "$j" broker_cpu_s) "
    for v in HWM:vm_hwm_kb ANON:rss_anon_kb RSS:vm_rss_kb; do
        k=PEAK_${v%%:*} x=$(jget "$j" "${v#*:}")
        if [ -n "$x" ] && ((x > ${!k})); then printf -v "$k" '%s' "$x"; fi
    done
done
say "shipper states seen: $(jget "${SHIP_JSON[0]}" states)"

# --- Latency. -------------------------------------------------------------------
# Twice: with engage.wake_on_commit (committing backends wake the shipper) and
# without (the shipper finds commits at its next engage.poll_interval).
cat >"$DIR/latency.sql" <<SQL
INSERT INTO engage.members (name, email, contact)
SELECT 'latency ' || g, 'latency' || g || '@example.com', NULL FROM generate_series(1, $LATENCY_ROWS) g;
SQL
# Runs pgbench at the latency rate with wake_on_commit $1 into topic prefix $2; sets
# LAT_RESULT (the latencies, JSON) and LAT_TXNS.
latency_run() {
    local wake=$1 prefix=$2 out txns end warm j
    # A fresh slot at the current position, so that nothing is in backlog.
    sql1 "SELECT count(pg_drop_replication_slot(slot_name)) FROM pg_replication_slots" >/dev/null
    py make-topics 3 LogAppendTime "$prefix.members"
    engage_set engage.topic_prefix "$prefix" engage.wake_on_commit "$wake"
    shipper_on engage_shipper
    # librdkafka looks up a topic it has not produced to yet about once a second,
    # so the first event of each topic in a shipper session waits up to ~1 s.  One
    # warm-up event (left out of the figures, reported apart) gets that done first.
    warm=$(sql1 "INSERT INTO engage.members (name) VALUES ('latency warm-up');
                 SELECT pg_current_wal_insert_lsn()")
    wait_for "the shipper to acknowledge the warm-up event" 60 \
        "SELECT confirmed_lsn >= '$warm' AND in_flight = 0 FROM engage.shipper"
    say "latency (wake_on_commit $wake): pgbench -R $LATENCY_RATE -T $LATENCY_SECONDS, 2 clients," \
        "$LATENCY_ROWS inserts per transaction"
    out=$("$PGBIN/pgbench" -h "$DIR" -p "$PORT" -U postgres -n -c 2 -j 2 -M prepared \
        -R "$LATENCY_RATE" -T "$LATENCY_SECONDS" -f "$DIR/latency.sql" bench 2>&1) ||
        { echo "$out" >&2; die "pgbench (latency) failed"; }
    txns=$(awk '/number of transactions actually processed/ { split($NF, a, "/"); print a[1] }' <<<"$out")
    end=$(sql1 "SELECT pg_current_wal_insert_lsn()")
    psql_bench -c "CHECKPOINT"
    wait_for "the shipper to acknowledge the latency run" 300 \
        "SELECT confirmed_lsn >= '$end' AND in_flight = 0 FROM engage.shipper"
    j=$(py latency "$prefix")
    [ "$(jget "$j" count)" = "$((txns * LATENCY_ROWS))" ] ||
        say "WARNING: latency topic holds $(jget "$j" count) events, pgbench inserted $((txns * LATENCY_ROWS))"
    shipper_off
    sql1 "SELECT count(pg_drop_replication_slot(slot_name)) FROM pg_replication_slots" >/dev/null
    LAT_TXNS=$txns
    LAT_RESULT=$j
}
latency_run off latoff
LAT_OFF_JSON=$LAT_RESULT
latency_run on lat
LAT_JSON=$LAT_RESULT
engage_set engage.wake_on_commit on

# --- Source overhead. -----------------------------------------------------------
cat >"$DIR/overhead.sql" <<SQL
\set audience random(1, $AUDIENCES)
\set campaign random(1, $CAMPAIGNS)
\set member random(1, $MEMBERS)
BEGIN;
INSERT INTO engage.members (name, email, contact)
VALUES ('pgbench', 'pgbench@example.com', '+1 555 0000000') RETURNING member_id AS new_member \gset
INSERT INTO engage.audience_members (audience_id, member_id, email, contact)
VALUES (:audience, :new_member, 'pgbench@example.com', '+1 555 0000000');
UPDATE engage.campaign_audience SET opened = true, opened_at = now()
 WHERE campaign_id = :campaign AND member_id = :member;
END;
SQL
engage_set engage.topic_prefix ovh
py make-topics 3 CreateTime ovh.members ovh.audience_members ovh.campaign_audience
declare -A TPS CAPTURE_CPU BROKER_CPU
SHIPPER_LAG='' MACHINE_BUSY=''

# CPU seconds (user + system, all threads) of process $1 so far; 0 when gone.
cpu_s() {
    awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); print ($12 + $13) / hz }' "/proc/$1/stat" 2>/dev/null ||
        echo 0
}
# Busy and total jiffies of the whole machine (every job on it, not only ours).
machine_jiffies() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8 }' /proc/stat; }

overhead_run() {
    local config=$1 out tps capture=() c0=0 c1=0 b0 b1 m0 m1 p cc bc busy
    case $config in
        shipper)
            shipper_on engage_shipper
            capture=("$(sql1 "SELECT pid FROM engage.shipper")")
            ;;
        wal2json)
            sql1 "SELECT pg_create_logical_replication_slot('w2j', 'wal2json')" >/dev/null
            "$PGBIN/pg_recvlogical" -h "$DIR" -p "$PORT" -U postgres -d bench --start -S w2j \
                -P wal2json -f /dev/null 2>>"$DIR/pg_recvlogical.log" &
            RECV_PID=$!
            wait_for "pg_recvlogical to stream" 60 \
                "SELECT active FROM pg_replication_slots WHERE slot_name = 'w2j'"
            capture=("$RECV_PID" "$(sql1 "SELECT active_pid FROM pg_replication_slots WHERE slot_name = 'w2j'")")
            ;;
    esac
    psql_bench -c "CHECKPOINT"
    for p in "${capture[@]}"; do c0=$(awk -v a="$c0" -v b="$(cpu_s "$p")" 'BEGIN { print a + b }'); done
    b0=$(cpu_s "$BENCH_KAFKA_PID")
    m0=$(machine_jiffies)
    out=$("$PGBIN/pgbench" -h "$DIR" -p "$PORT" -U postgres -n -c 2 -j 2 -M prepared \
        -T "$PGBENCH_SECONDS" -f "$DIR/overhead.sql" bench 2>&1) ||
        { echo "$out" >&2; die "pgbench ($config) failed"; }
    tps=$(awk '/^tps = / { printf "%.1f", $3 }' <<<"$out")
    for p in "${capture[@]}"; do c1=$(awk -v a="$c1" -v b="$(cpu_s "$p")" 'BEGIN { print a + b }'); done
    b1=$(cpu_s "$BENCH_KAFKA_PID")
    m1=$(machine_jiffies)
    cc=$(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.1f", b - a }')
    bc=$(awk -v a="$b0" -v b="$b1" 'BEGIN { printf "%.1f", b - a }')
    busy=$(awk -v a="$m0" -v b="$m1" 'BEGIN { split(a, x, " "); split(b, y, " ")
        printf "%.0f", 100 * (y[1] - x[1]) / (y[2] - x[2]) }')
    CAPTURE_CPU[$config]+="$cc "
    BROKER_CPU[$config]+="$bc "
    MACHINE_BUSY+="$busy "
    case $config in
        shipper)
            SHIPPER_LAG+="$(sql1 "SELECT lag_bytes FROM engage.shipper") "
            shipper_off
            sql1 "SELECT pg_drop_replication_slot('engage_shipper')" >/dev/null
            ;;
        wal2json)
            kill -INT "$RECV_PID"
            wait "$RECV_PID" || true
            RECV_PID=
            sql1 "SELECT pg_drop_replication_slot('w2j')" >/dev/null
            ;;
    esac
    TPS[$config]+="$tps "
    printf '  overhead %-8s %8s tps (CPU s: capture %s, broker %s; machine busy %s%%)\n' \
        "$config" "$tps" "$cc" "$bc" "$busy" >&2
}
say "source overhead: pgbench, 2 clients, $PGBENCH_SECONDS s per run, $OVERHEAD_ROUNDS round(s)"
for ((r = 1; r <= OVERHEAD_ROUNDS; r++)); do
    if ((r % 2)); then order=(none shipper wal2json); else order=(wal2json shipper none); fi
    for c in "${order[@]}"; do overhead_run "$c"; done
done

# --- Report. --------------------------------------------------------------------
NONE_TPS=$(median "${TPS[none]}")
SHIP_TPS=$(median "${TPS[shipper]}")
W2J_TPS=$(median "${TPS[wal2json]}")
RATIO=$(awk -v s="$SHIP_MED" -v d="$DECODE_MED" 'BEGIN { printf "%.2f", s / d }')
SHIP_COST=$(awk -v a="$NONE_TPS" -v b="$SHIP_TPS" 'BEGIN { printf "%.1f", 100 * (a - b) / a }')
W2J_COST=$(awk -v a="$NONE_TPS" -v b="$W2J_TPS" 'BEGIN { printf "%.1f", 100 * (a - b) / a }')
rate() { commas "$(awk -v c="$CHANGES" -v s="$1" 'BEGIN { printf "%.0f", c / s }')"; }
mib() { awk -v k="$1" 'BEGIN { printf "%.0f", k / 1024 }'; }
verdict() { if [ "$1" = 1 ]; then echo PASS; else echo FAIL; fi; }
V_RATIO=$(verdict "$(awk -v r="$RATIO" -v m="$MAX_SHIP_RATIO" 'BEGIN { print (r <= m) }')")
DECODE_CPU_MED=$(median "$DECODE_CPU")
SHIPPER_CPU_MED=$(median "$RUN_SHIPPER_CPU")
CPU_RATIO=$(awk -v s="$SHIPPER_CPU_MED" -v d="$DECODE_CPU_MED" 'BEGIN { printf "%.2f", s / d }')
V_CPU=$(verdict "$(awk -v r="$CPU_RATIO" -v m="$MAX_CPU_RATIO" 'BEGIN { print (r <= m) }')")
V_HWM=$(verdict "$(awk -v k="$PEAK_HWM" -v m="$MAX_HWM_MIB" 'BEGIN { print (k / 1024 <= m) }')")
V_COUNT=$(verdict "$(( KAFKA_MIN >= CHANGES ))")
P99=$(jget "$LAT_JSON" p99_ms)
V_P99=$(verdict "$(awk -v p="$P99" -v m="$MAX_P99_MS" 'BEGIN { print (p <= m) }')")
V_TPS=$(verdict "$(awk -v c="$SHIP_COST" -v m="$MAX_TPS_COST" 'BEGIN { print (c <= m) }')")
LAT_RATE=$(awk -v t="$LAT_TXNS" -v r="$LATENCY_ROWS" -v s="$LATENCY_SECONDS" 'BEGIN { printf "%.0f", t * r / s }')

echo
echo "Shipping $CHANGES row changes ($ROWS inserts in $INSERT_BATCH-row transactions, $UPDATES updates" \
     "in $UPDATE_BATCH-row transactions; $WAL_MB MiB of WAL) to Kafka on 127.0.0.1:$KAFKA_PORT; median of $RUNS"
echo "$("$PGBIN/postgres" --version); $(nproc) CPUs; $(free -g | awk '/^Mem:/ { print $2 }') GiB RAM; Linux $(uname -r)"
echo
echo "| metric | result | target | verdict |"
echo "|---|---:|---|---|"
echo "| pure SQL decode (peek, engage_decoder) | $(rate "$DECODE_MED") changes/s ($DECODE_MED s; runs $DECODE_S) | | |"
echo "| shipper: enable to last acknowledgement | $(rate "$SHIP_MED") changes/s ($SHIP_MED s; runs $SHIP_S) | | |"
echo "| shipping time / pure decode time | ${RATIO}x | <= ${MAX_SHIP_RATIO}x | $V_RATIO |"
echo "| the same, fastest runs (the least disturbed by other jobs) | $(awk -v s="$(fastest "$SHIP_S")" -v d="$(fastest "$DECODE_S")" 'BEGIN { printf "%.2fx", s / d }') | | |"
echo "| messages in Kafka per shipper round (watermarks) | $(commas "$KAFKA_MIN") (fewest of $RUNS) | >= $(commas "$CHANGES") | $V_COUNT |"
echo "| shipper: enable to first acknowledgement | $(median "$FIRST_ACK") s (runs ${FIRST_ACK% }) | | |"
echo "| shipper: first to last acknowledgement | $(rate "$(median "$STREAM_S")") changes/s ($(median "$STREAM_S") s; runs ${STREAM_S% }) | | |"
echo "| CPU: pure decode (its backend) | $DECODE_CPU_MED s (runs ${DECODE_CPU% }) | | |"
echo "| CPU during shipping: shipper process (all threads) / Kafka broker | $SHIPPER_CPU_MED s (runs ${RUN_SHIPPER_CPU% }) / $(median "$RUN_BROKER_CPU") s (medians) | | |"
echo "| shipper CPU / pure decode CPU | ${CPU_RATIO}x | <= ${MAX_CPU_RATIO}x | $V_CPU |"
echo "| walsender: pg_recvlogical -f /dev/null to end LSN | $(rate "$RECV_MED") changes/s ($RECV_MED s; runs $RECV_S) | for the record | |"
echo "| walsender time / pure decode time (medians; fastest runs) | $(awk -v s="$RECV_MED" -v d="$DECODE_MED" 'BEGIN { printf "%.2fx", s / d }'); $(awk -v s="$(fastest "$RECV_S")" -v d="$(fastest "$DECODE_S")" 'BEGIN { printf "%.2fx", s / d }') | | |"
echo "| commit-to-ack latency at $(commas "$LAT_RATE") changes/s: p50 / p99 / max | $(jget "$LAT_JSON" p50_ms) / $P99 / $(jget "$LAT_JSON" max_ms) ms ($(commas "$(jget "$LAT_JSON" count)") events) | p99 <= $MAX_P99_MS ms | $V_P99 |"
echo "| the same without engage.wake_on_commit (poll every 10 ms): p50 / p99 / max | $(jget "$LAT_OFF_JSON" p50_ms) / $(jget "$LAT_OFF_JSON" p99_ms) / $(jget "$LAT_OFF_JSON" max_ms) ms ($(commas "$(jget "$LAT_OFF_JSON" count)") events) | for comparison | |"
echo "| latency of a topic's first event in a shipper session (warm-up, left out above) | $(jget "$LAT_JSON" warmup_ms) ms | | |"
echo "| pgbench TPS, no slot | $NONE_TPS (runs ${TPS[none]% }; broker CPU ${BROKER_CPU[none]% } s) | | |"
echo "| pgbench TPS, shipper running | $SHIP_TPS (runs ${TPS[shipper]% }; cost ${SHIP_COST}%; CPU s: shipper ${CAPTURE_CPU[shipper]% }, broker ${BROKER_CPU[shipper]% }) | cost <= ${MAX_TPS_COST}% | $V_TPS |"
echo "| pgbench TPS, wal2json + pg_recvlogical | $W2J_TPS (runs ${TPS[wal2json]% }; cost ${W2J_COST}%; CPU s: walsender + pg_recvlogical ${CAPTURE_CPU[wal2json]% }) | for comparison | |"
echo "| shipper memory, peak (throughput runs) | VmHWM $(mib "$PEAK_HWM") MiB; VmRSS $(mib "$PEAK_RSS") MiB, of it private (RssAnon) $(mib "$PEAK_ANON") MiB | VmHWM <= $MAX_HWM_MIB MiB | $V_HWM |"
echo
echo "Shipper lag at the end of each pgbench run (bytes): ${SHIPPER_LAG% }"
echo "Whole machine busy during the pgbench runs (%, every job on it, in run order): ${MACHINE_BUSY% }"
echo "pg_engage lines in the server log (count, message):"
grep -E 'pg_engage|ERROR|WARNING|FATAL|PANIC' "$DIR/server.log" | sed -E 's/^[0-9-]+ [0-9:.]+ [A-Z]+ \[[0-9]+\] //' |
    sort | uniq -c | sort -rn | head -n 30 || true
[ "$V_RATIO$V_CPU$V_COUNT$V_P99$V_HWM$V_TPS" = PASSPASSPASSPASSPASSPASS ] || exit 3
exit 0
}
