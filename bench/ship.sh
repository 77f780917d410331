#!/usr/bin/env bash
# Shipping to Kafka: throughput, latency, source overhead, memory and Kafka
# bytes of the pg_engage shipper against a local single-node Kafka broker, in
# both delivery modes (engage.delivery at_least_once and exactly_once).
#
# One cluster with shared_preload_libraries = 'pg_engage' (engage.enabled off
# at first) and one broker (scripts/kafka.sh, port BENCH_KAFKA_PORT).
#
# Throughput: the workload of bench/decode.sh (bench/workload.sh: BENCH_ROWS
#   inserts, BENCH_UPDATES updates) is written while the shipper is off, so it
#   waits as a backlog in BENCH_RUNS shipper slots (each made by the shipper
#   itself), one SQL slot and BENCH_RUNS walsender slots, all engage_decoder.
#   Then BENCH_RUNS rounds, the four methods rotated each round:
#   - pure decode: SELECT count(*), sum(octet_length(data)) FROM
#     pg_logical_slot_peek_changes('bench_sql', <end>, NULL), timed in the server;
#   - shipper: enable it on slot ship_<round> (topic prefix ship<round>, its
#     topics created beforehand with 3 partitions), time from the reload that
#     enables it until engage.shipper shows it running on that slot with
#     confirmed_lsn >= the workload's end LSN and in_flight = 0 (polled every
#     50 ms), while sampling its /proc/<pid>/status and CPU time; then off;
#   - shipper, exactly_once: the same on slot eo_<round> (topic prefix
#     eo<round>), engage.delivery = exactly_once: the end LSN is confirmed only
#     once Kafka committed every transaction up to it;
#   - walsender: pg_recvlogical --start -S recv_<round> -f /dev/null --endpos <end>.
#   Medians are kept.  Each shipper round's topics must hold every change
#   (at_least_once: sum of the partitions' high minus low watermarks;
#   exactly_once: what a read_committed consumer reads, since transaction
#   markers take offsets too).  Kafka bytes per event: the log segments of the
#   round's topics on the broker's disk (exactly_once: with its progress topic,
#   and the growth of the broker's __transaction_state during the round).
# Latency: the shipper running (topic prefix lat, topic lat.members created
#   first with message.timestamp.type=LogAppendTime), pgbench -R BENCH_LATENCY_RATE
#   -T BENCH_LATENCY_SECONDS, 2 clients, each transaction inserting 10 members;
#   per event: the broker's append time minus the record's commit time "ts".
#   One warm-up event goes first (a topic's first event in a shipper session
#   waits for librdkafka's topic lookup); its latency is reported apart.
#   Once with engage.wake_on_commit off (at_least_once), then BENCH_LATENCY_ROUNDS
#   rounds of at_least_once and exactly_once (the order alternating), each on a
#   fresh slot and prefix.  Besides the append time (read afterwards), a live
#   consumer with isolation.level=read_committed, assigned at the topic's end
#   before pgbench starts, takes commit-to-visible: the time poll() handed it
#   the event minus the event's commit time "ts" (the same clock).
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
# BENCH_LATENCY_ROUNDS (3: latency runs per delivery mode, medians kept),
# BENCH_SAVE_LOG (a file to copy the server's log to before the cleanup),
# BENCH_WARMUP (1: one unmeasured round of each shipper mode first; 0: none),
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
LATENCY_ROUNDS=${BENCH_LATENCY_ROUNDS:-3}
WARMUP=${BENCH_WARMUP:-1}
LATENCY_ROWS=10                 # members inserted per latency transaction
CHANGES=$((ROWS + UPDATES))
VENV=${PG_ENGAGE_VENV:-$HOME/.cache/pg_engage/venv}

for v in ROWS UPDATES RUNS PORT KAFKA_PORT MEMBERS PGBENCH_SECONDS \
         LATENCY_SECONDS LATENCY_RATE LATENCY_ROUNDS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "BENCH_$v must be a positive integer (got '${!v}')"
done
[[ $OVERHEAD_ROUNDS =~ ^[0-9]+$ ]] || die "BENCH_OVERHEAD_ROUNDS must be 0 (skip) or more (got '$OVERHEAD_ROUNDS')"
((RUNS <= 12)) || die "BENCH_RUNS is at most 12 (three slots per round)"
[[ $WARMUP =~ ^[01]$ ]] || die "BENCH_WARMUP must be 0 or 1 (got '$WARMUP')"

# Targets.
MAX_SHIP_RATIO=1.5              # shipping time / pure decode time
MAX_CPU_RATIO=1.5               # shipper CPU-seconds / pure decode CPU-seconds
MAX_P99_MS=20                   # commit-to-acknowledgement p99
MAX_HWM_MIB=64                  # shipper peak RSS on the backlog
MAX_TPS_COST=5                  # % TPS the shipper may cost the source
MIN_EO_RATIO=0.8                # exactly_once throughput / at_least_once throughput
MAX_EO_P99_MS=50                # exactly_once commit-to-visible p99 (read_committed)

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
    if [ -n "${BENCH_SAVE_LOG:-}" ]; then cp "$DIR/server.log" "$BENCH_SAVE_LOG" || true; fi
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


def consumer(**extra):
    return Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": "engage-ship-bench",
                     "enable.auto.commit": False, "auto.offset.reset": "earliest", **extra})


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


def count_committed(prefix, expected):
    """Messages a read_committed consumer reads in the topics of a prefix (the
    transaction markers, which take offsets too, are not messages)."""
    expected = int(expected)
    cons = consumer(**{"isolation.level": "read_committed"})
    per_topic, n = {}, 0
    try:
        parts = [p for p in partitions(cons, prefix) if p[3] > p[2]]
        cons.assign([TopicPartition(t, p, low) for t, p, low, _ in parts])
        deadline = time.monotonic() + 300
        idle_since = time.monotonic()
        while n < expected or time.monotonic() - idle_since < 1:
            if time.monotonic() > deadline or time.monotonic() - idle_since > 10:
                break
            batch = cons.consume(num_messages=10000, timeout=0.5)
            if batch:
                idle_since = time.monotonic()
            for m in batch:
                if m.error():
                    sys.exit(f"consumer error: {m.error()}")
                per_topic[m.topic()] = per_topic.get(m.topic(), 0) + 1
                n += 1
    finally:
        cons.close()
    print(json.dumps({"messages": n, "topics": per_topic}))


def log_bytes(kdir, prefix):
    """Bytes of the log segments on the broker's disk: of the topics of a prefix
    (<prefix>.* and the progress topic <prefix>-progress) and of the broker's
    transaction state log (__transaction_state)."""
    data = os.path.join(kdir, "data")
    out = {"topics": 0, "progress": 0, "txn_state": 0}
    for d in os.listdir(data):
        topic = d.rsplit("-", 1)[0]
        if topic.startswith(prefix + "."):
            key = "topics"
        elif topic == prefix + "-progress":
            key = "progress"
        elif topic == "__transaction_state":
            key = "txn_state"
        else:
            continue
        path = os.path.join(data, d)
        for f in os.listdir(path):
            if f.endswith(".log"):
                try:
                    out[key] += os.path.getsize(os.path.join(path, f))
                except OSError:
                    pass
    print(json.dumps(out))


def visible(prefix, out_path, stop_path):
    """A live read_committed consumer of <prefix>.members, from its end: for each
    row record, the time it was handed to the application minus its commit time
    (commit-to-visible), and the broker's append time minus its commit time.
    Writes "ready" to out_path.ready once assigned; ends when stop_path holds the
    number of events to wait for and it has seen them (or 30 s after that)."""
    cons = consumer(**{"isolation.level": "read_committed"})
    vis, app, warm, seen = [], [], 0, 0
    parts = [p for p in partitions(cons, prefix) if p[0] == prefix + ".members"]
    if not parts:
        sys.exit(f"no topic {prefix}.members")
    cons.assign([TopicPartition(t, p, high) for t, p, _, high in parts])
    # The assignment starts fetching only at the first poll.
    cons.poll(0.5)
    with open(out_path + ".ready", "w") as f:
        f.write("ready\n")
    stop_at, want = None, None
    while True:
        m = cons.poll(0.05)
        now = time.time()
        if m is not None:
            if m.error():
                sys.exit(f"consumer error: {m.error()}")
            record = json.loads(m.value())
            if record.get("op") != "insert":
                continue
            seen += 1
            if record["new"]["name"] == "latency warm-up":
                warm += 1
                continue
            ts = parse_ts(record["ts"]) * 1000.0
            vis.append(now * 1000.0 - ts)
            kind, append_ms = m.timestamp()
            if kind == TIMESTAMP_LOG_APPEND_TIME:
                app.append(append_ms - ts)
        if want is None and os.path.exists(stop_path):
            with open(stop_path) as f:
                text = f.read().strip()
            if text:
                want, stop_at = int(text), time.monotonic() + 30
        if want is not None and (len(vis) >= want or time.monotonic() > stop_at):
            break
    cons.close()

    def pct(values, q):
        values = sorted(values)
        return round(values[max(0, math.ceil(q * len(values)) - 1)], 1) if values else None

    with open(out_path, "w") as f:
        json.dump({"count": len(vis), "warmup_seen": warm,
                   "p50_ms": pct(vis, 0.50), "p99_ms": pct(vis, 0.99), "max_ms": pct(vis, 1.0),
                   "min_ms": pct(vis, 0.0),
                   "append_p50_ms": pct(app, 0.50), "append_p99_ms": pct(app, 0.99),
                   "append_max_ms": pct(app, 1.0)}, f)


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
        idle_since = time.monotonic()
        while ends:
            if time.monotonic() > deadline:
                sys.exit(f"could not read {sorted(ends)} to the end")
            # Under exactly_once a partition's last offset is a transaction
            # marker, never handed out: its end is where the position passes
            # the high watermark, or (older clients) 3 s without a message.
            batch = cons.consume(num_messages=10000, timeout=0.5)
            if batch:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > 3:
                break
            for tp in cons.position([TopicPartition(t, p) for t, p in ends]):
                if tp.offset >= ends[(tp.topic, tp.partition)]:
                    del ends[(tp.topic, tp.partition)]
            for m in batch:
                if m.error():
                    sys.exit(f"consumer error: {m.error()}")
                kind, append_ms = m.timestamp()
                if kind != TIMESTAMP_LOG_APPEND_TIME:
                    bad_ts += 1
                record = json.loads(m.value())
                key = (m.topic(), m.partition())
                if key in ends and m.offset() >= ends[key] - 1:
                    del ends[key]
                if record.get("op") != "insert":
                    continue    # not a row of the run (a schema record, say)
                ms = append_ms - parse_ts(record["ts"]) * 1000.0
                if record["new"]["name"] == "latency warm-up":
                    warmup.append(ms)
                else:
                    lat.append(ms)
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
     "count-committed": lambda: count_committed(args[0], args[1]),
     "log-bytes": lambda: log_bytes(args[0], args[1]),
     "visible": lambda: visible(args[0], args[1], args[2]),
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
    "engage.delivery = at_least_once" \
    "engage.snapshot_mode = never" \
    "engage.on_slot_loss = continue" \
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

# --- Slots: the shipper makes its own, two per round; then SQL and walsender. ---
# No initial snapshot (engage.snapshot_mode = never above): the rounds ship the
# workload's changes only, as before snapshots existed; and the phases below
# drop and remake slots, which must not start re-snapshots either
# (engage.on_slot_loss = continue: the gap is only announced).
for ((r = 1; r <= RUNS; r++)); do
    shipper_on "ship_$r"
    shipper_off
    shipper_on "eo_$r"
    shipper_off
done
if [ "$WARMUP" = 1 ]; then
    for m in alo eo; do shipper_on "warm_$m"; shipper_off; done
fi
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
    py make-topics 3 CreateTime "ship$r.audience_members" "ship$r.campaign_audience" \
        "eo$r.audience_members" "eo$r.campaign_audience"
done
if [ "$WARMUP" = 1 ]; then
    # The broker's first transactional session after its start is slow (its
    # transaction coordinator and the JVM warm up: a first exactly_once round
    # took 1.5-3x the later ones): one unmeasured round of each mode first.
    py make-topics 3 CreateTime warma.audience_members warma.campaign_audience \
        warme.audience_members warme.campaign_audience
    for m in alo eo; do
        if [ $m = alo ]; then d=at_least_once; else d=exactly_once; fi
        engage_set engage.slot_name "warm_$m" engage.topic_prefix "warm${m:0:1}" engage.delivery "$d"
        j=$(py ship "warm_$m" "$END_LSN" $((120 + CHANGES / 2000)))
        shipper_off
        printf '  warm-up  %-13s %8.3f s (not counted)\n' "$d" "$(jget "$j" seconds)" >&2
    done
    engage_set engage.delivery at_least_once
    sql1 "SELECT pg_drop_replication_slot('warm_alo'), pg_drop_replication_slot('warm_eo')" >/dev/null
fi
PEEK="SELECT count(*), sum(octet_length(data)) FROM pg_logical_slot_peek_changes('bench_sql', '$END_LSN', NULL)"
DECODE_S='' DECODE_CPU='' SHIP_S='' RECV_S='' SHIP_JSON=() KAFKA_COUNTS=()
EO_S='' EO_JSON=() EO_COUNTS=() EO_MARKS=() ALO_BYTES='' EO_BYTES='' EO_PARTS=''
TOTAL_BYTES=
METHODS=(decode ship eo recv)
for ((r = 1; r <= RUNS; r++)); do
    for ((i = 0; i < 4; i++)); do
        m=${METHODS[$(( (r - 1 + i) % 4 ))]} extra=
        case $m in
            decode)
                IFS='|' read -r n TOTAL_BYTES ms cpu <<<"$(sql1 "SELECT * FROM bench.timed(\$q\$$PEEK\$q\$)")"
                [ "$n" = "$CHANGES" ] || die "pure decode gave $n records, expected $CHANGES"
                s=$(awk -v ms="$ms" 'BEGIN { printf "%.3f", ms / 1000 }')
                DECODE_S+="$s "
                DECODE_CPU+="$cpu "
                extra="(CPU s: $cpu)"
                ;;
            ship)
                engage_set engage.slot_name "ship_$r" engage.topic_prefix "ship$r" \
                    engage.delivery at_least_once
                j=$(py ship "ship_$r" "$END_LSN" $((120 + CHANGES / 2000)))
                shipper_off
                s=$(jget "$j" seconds)
                [ "$(jget "$j" events)" = "$CHANGES" ] ||
                    say "WARNING: round $r: the shipper acknowledged $(jget "$j" events) events, expected $CHANGES"
                SHIP_S+="$s "
                SHIP_JSON+=("$j")
                KAFKA_COUNTS+=("$(jget "$(py count "ship$r")" messages)")
                b=$(py log-bytes "$KDIR" "ship$r")
                ALO_BYTES+="$(jget "$b" topics) "
                extra="(first ack $(jget "$j" first_ack_s) s; CPU s: shipper $(jget "$j" shipper_cpu_s)"
                extra+=", broker $(jget "$j" broker_cpu_s); in Kafka ${KAFKA_COUNTS[-1]}"
                extra+="; VmHWM $(( $(jget "$j" vm_hwm_kb) / 1024 )) MiB)"
                ;;
            eo)
                b0=$(py log-bytes "$KDIR" "eo$r")
                engage_set engage.slot_name "eo_$r" engage.topic_prefix "eo$r" \
                    engage.delivery exactly_once
                j=$(py ship "eo_$r" "$END_LSN" $((120 + CHANGES / 2000)))
                shipper_off
                engage_set engage.delivery at_least_once
                s=$(jget "$j" seconds)
                [ "$(jget "$j" events)" -ge "$CHANGES" ] ||
                    say "WARNING: round $r: the exactly_once shipper acknowledged $(jget "$j" events) events, expected $CHANGES (+ progress records)"
                EO_S+="$s "
                EO_JSON+=("$j")
                c=$(py count-committed "eo$r" "$CHANGES")
                EO_COUNTS+=("$(jget "$c" messages)")
                EO_MARKS+=("$(jget "$(py count "eo$r")" messages)")
                b1=$(py log-bytes "$KDIR" "eo$r")
                EO_BYTES+="$(( $(jget "$b1" topics) + $(jget "$b1" progress) + $(jget "$b1" txn_state) - $(jget "$b0" txn_state) )) "
                EO_PARTS+="$(jget "$b1" topics)+$(jget "$b1" progress)+$(( $(jget "$b1" txn_state) - $(jget "$b0" txn_state) )) "
                extra="(first ack $(jget "$j" first_ack_s) s; CPU s: shipper $(jget "$j" shipper_cpu_s)"
                extra+=", broker $(jget "$j" broker_cpu_s); read_committed ${EO_COUNTS[-1]}"
                extra+=" (offsets with markers ${EO_MARKS[-1]}); VmHWM $(( $(jget "$j" vm_hwm_kb) / 1024 )) MiB)"
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
# The same for the exactly_once rounds.
EO_HWM=0 EO_ANON=0 EO_RSS=0 EO_FIRST_ACK='' EO_SHIPPER_CPU='' EO_BROKER_CPU='' EO_STREAM_S=''
for j in "${EO_JSON[@]}"; do
    EO_FIRST_ACK+="$(jget "$j" first_ack_s) "
    EO_STREAM_S+="$(awk -v a="$(jget "$j" seconds)" -v b="$(jget "$j" first_ack_s)" 'BEGIN { printf "%.3f", a - b }') "
    EO_SHIPPER_CPU+="$(jget "$j" shipper_cpu_s) "
    EO_BROKER_CPU+="$(jget "$j" broker_cpu_s) "
    for v in HWM:vm_hwm_kb ANON:rss_anon_kb RSS:vm_rss_kb; do
        k=EO_${v%%:*} x=$(jget "$j" "${v#*:}")
        if [ -n "$x" ] && ((x > ${!k})); then printf -v "$k" '%s' "$x"; fi
    done
done
say "exactly_once shipper states seen: $(jget "${EO_JSON[0]}" states)"
EO_MED=$(median "$EO_S")
EO_MIN=$(tr ' ' '\n' <<<"${EO_COUNTS[*]}" | sort -n | head -n1)
EO_MAX=$(tr ' ' '\n' <<<"${EO_COUNTS[*]}" | sort -n | tail -n1)

# --- Latency. -------------------------------------------------------------------
# at_least_once with engage.wake_on_commit (committing backends wake the
# shipper) and without (the shipper finds commits at its next
# engage.poll_interval); then both delivery modes, wake_on_commit on, in
# LATENCY_ROUNDS alternating rounds.
cat >"$DIR/latency.sql" <<SQL
INSERT INTO engage.members (name, email, contact)
SELECT 'latency ' || g, 'latency' || g || '@example.com', NULL FROM generate_series(1, $LATENCY_ROWS) g;
SQL
# Runs pgbench at the latency rate with wake_on_commit $1, delivery $3, into topic
# prefix $2; sets LAT_RESULT (the latencies from the append times, JSON), LAT_VIS
# (commit-to-visible of the live read_committed consumer, JSON), LAT_HWM (the
# shipper's VmHWM, kB) and LAT_TXNS.
latency_run() {
    local wake=$1 prefix=$2 delivery=${3:-at_least_once} out txns end warm j pid vis_pid
    # A fresh slot at the current position, so that nothing is in backlog.
    sql1 "SELECT count(pg_drop_replication_slot(slot_name)) FROM pg_replication_slots" >/dev/null
    py make-topics 3 LogAppendTime "$prefix.members"
    engage_set engage.topic_prefix "$prefix" engage.wake_on_commit "$wake" engage.delivery "$delivery"
    shipper_on engage_shipper
    # librdkafka looks up a topic it has not produced to yet about once a second,
    # so the first event of each topic in a shipper session waits up to ~1 s.  One
    # warm-up event (left out of the figures, reported apart) gets that done first.
    warm=$(sql1 "INSERT INTO engage.members (name) VALUES ('latency warm-up');
                 SELECT pg_current_wal_insert_lsn()")
    wait_for "the shipper to acknowledge the warm-up event" 60 \
        "SELECT confirmed_lsn >= '$warm' AND in_flight = 0 FROM engage.shipper"
    # The live read_committed consumer, assigned at the topic's end (past the warm-up).
    rm -f "$DIR/$prefix.vis" "$DIR/$prefix.vis.ready" "$DIR/$prefix.stop"
    py visible "$prefix" "$DIR/$prefix.vis" "$DIR/$prefix.stop" &
    vis_pid=$!
    for _ in $(seq 300); do [ -e "$DIR/$prefix.vis.ready" ] && break; sleep 0.1; done
    [ -e "$DIR/$prefix.vis.ready" ] || die "the read_committed consumer did not start"
    say "latency ($delivery, wake_on_commit $wake): pgbench -R $LATENCY_RATE -T $LATENCY_SECONDS, 2 clients," \
        "$LATENCY_ROWS inserts per transaction"
    out=$("$PGBIN/pgbench" -h "$DIR" -p "$PORT" -U postgres -n -c 2 -j 2 -M prepared \
        -R "$LATENCY_RATE" -T "$LATENCY_SECONDS" -f "$DIR/latency.sql" bench 2>&1) ||
        { echo "$out" >&2; die "pgbench (latency) failed"; }
    txns=$(awk '/number of transactions actually processed/ { split($NF, a, "/"); print a[1] }' <<<"$out")
    end=$(sql1 "SELECT pg_current_wal_insert_lsn()")
    psql_bench -c "CHECKPOINT"
    wait_for "the shipper to acknowledge the latency run" 300 \
        "SELECT confirmed_lsn >= '$end' AND in_flight = 0 FROM engage.shipper"
    echo "$((txns * LATENCY_ROWS))" >"$DIR/$prefix.stop"
    wait "$vis_pid" || die "the read_committed consumer failed"
    LAT_VIS=$(cat "$DIR/$prefix.vis")
    [ "$(jget "$LAT_VIS" count)" = "$((txns * LATENCY_ROWS))" ] ||
        say "WARNING: the read_committed consumer saw $(jget "$LAT_VIS" count) events, pgbench inserted $((txns * LATENCY_ROWS))"
    j=$(py latency "$prefix")
    [ "$(jget "$j" count)" = "$((txns * LATENCY_ROWS))" ] ||
        say "WARNING: latency topic holds $(jget "$j" count) events, pgbench inserted $((txns * LATENCY_ROWS))"
    pid=$(sql1 "SELECT pid FROM engage.shipper")
    LAT_HWM=$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0)
    printf '  latency %-13s commit-to-visible p50 %s / p99 %s / max %s ms; commit-to-append p50 %s / p99 %s ms; VmHWM %s MiB\n' \
        "$delivery" "$(jget "$LAT_VIS" p50_ms)" "$(jget "$LAT_VIS" p99_ms)" "$(jget "$LAT_VIS" max_ms)" \
        "$(jget "$j" p50_ms)" "$(jget "$j" p99_ms)" "$((LAT_HWM / 1024))" >&2
    shipper_off
    engage_set engage.delivery at_least_once
    sql1 "SELECT count(pg_drop_replication_slot(slot_name)) FROM pg_replication_slots" >/dev/null
    LAT_TXNS=$txns
    LAT_RESULT=$j
}
latency_run off latoff
LAT_OFF_JSON=$LAT_RESULT
LAT_OFF_VIS=$LAT_VIS
# Per mode: the runs' results (JSON lines) and their p50 / p99 / max.
ALO_LAT=() ALO_VIS=() EO_LAT=() EO_VIS=() ALO_HWM_LAT=0 EO_HWM_LAT=0
for ((r = 1; r <= LATENCY_ROUNDS; r++)); do
    if ((r % 2)); then order=(at_least_once exactly_once); else order=(exactly_once at_least_once); fi
    for d in "${order[@]}"; do
        if [ "$d" = at_least_once ]; then
            latency_run on "lat$r" at_least_once
            ALO_LAT+=("$LAT_RESULT") ALO_VIS+=("$LAT_VIS")
            if ((LAT_HWM > ALO_HWM_LAT)); then ALO_HWM_LAT=$LAT_HWM; fi
        else
            latency_run on "lateo$r" exactly_once
            EO_LAT+=("$LAT_RESULT") EO_VIS+=("$LAT_VIS")
            if ((LAT_HWM > EO_HWM_LAT)); then EO_HWM_LAT=$LAT_HWM; fi
        fi
    done
done
engage_set engage.wake_on_commit on
# The values of field $2 in the JSON objects $3...
fields() { local f=$1; shift; for j in "$@"; do printf '%s ' "$(jget "$j" "$f")"; done; }

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
if ((OVERHEAD_ROUNDS > 0)); then
    NONE_TPS=$(median "${TPS[none]}")
    SHIP_TPS=$(median "${TPS[shipper]}")
    W2J_TPS=$(median "${TPS[wal2json]}")
else
    NONE_TPS=1 SHIP_TPS=1 W2J_TPS=1
    TPS[none]='' TPS[shipper]='' TPS[wal2json]='' BROKER_CPU[none]='' BROKER_CPU[shipper]=''
    CAPTURE_CPU[shipper]='' CAPTURE_CPU[wal2json]=''
fi
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
LAT_JSON=${ALO_LAT[0]}
P99=$(median "$(fields p99_ms "${ALO_LAT[@]}")")
V_P99=$(verdict "$(awk -v p="$P99" -v m="$MAX_P99_MS" 'BEGIN { print (p <= m) }')")
V_TPS=$(verdict "$(awk -v c="$SHIP_COST" -v m="$MAX_TPS_COST" 'BEGIN { print (c <= m) }')")
((OVERHEAD_ROUNDS > 0)) || V_TPS=PASS
# exactly_once against at_least_once.
EO_RATIO=$(awk -v e="$EO_MED" -v a="$SHIP_MED" 'BEGIN { printf "%.2f", a / e }')
V_EO_RATIO=$(verdict "$(awk -v r="$EO_RATIO" -v m="$MIN_EO_RATIO" 'BEGIN { print (r >= m) }')")
EO_P99=$(median "$(fields p99_ms "${EO_VIS[@]}")")
V_EO_P99=$(verdict "$(awk -v p="$EO_P99" -v m="$MAX_EO_P99_MS" 'BEGIN { print (p <= m) }')")
V_EO_COUNT=$(verdict "$(( EO_MIN == CHANGES && EO_MAX == CHANGES ))")
V_EO_HWM=$(verdict "$(awk -v k="$EO_HWM" -v m="$MAX_HWM_MIB" 'BEGIN { print (k / 1024 <= m) }')")
# Bytes per event (medians of the rounds).
per_event() { awk -v b="$1" -v n="$CHANGES" 'BEGIN { printf "%.1f", b / n }'; }
ALO_BPE=$(per_event "$(median "$ALO_BYTES")")
EO_BPE=$(per_event "$(median "$EO_BYTES")")
# p50 / p99 / max medians of the runs in $2... (field prefix $1: "" or "append_").
lat3() { local f=$1; shift
    echo "$(median "$(fields "${f}p50_ms" "$@")") / $(median "$(fields "${f}p99_ms" "$@")") / $(median "$(fields "${f}max_ms" "$@")")"; }
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
echo "| commit-to-ack latency at $(commas "$LAT_RATE") changes/s: p50 / p99 / max (medians of $LATENCY_ROUNDS runs) | $(lat3 "" "${ALO_LAT[@]}") ms (p99 runs $(fields p99_ms "${ALO_LAT[@]}"); $(commas "$(jget "$LAT_JSON" count)") events a run) | p99 <= $MAX_P99_MS ms | $V_P99 |"
echo "| the same without engage.wake_on_commit (poll every 10 ms): p50 / p99 / max | $(jget "$LAT_OFF_JSON" p50_ms) / $(jget "$LAT_OFF_JSON" p99_ms) / $(jget "$LAT_OFF_JSON" max_ms) ms ($(commas "$(jget "$LAT_OFF_JSON" count)") events) | for comparison | |"
echo "| latency of a topic's first event in a shipper session (warm-up, left out above) | $(jget "$LAT_JSON" warmup_ms) ms | | |"
if ((OVERHEAD_ROUNDS > 0)); then
    echo "| pgbench TPS, no slot | $NONE_TPS (runs ${TPS[none]% }; broker CPU ${BROKER_CPU[none]% } s) | | |"
    echo "| pgbench TPS, shipper running | $SHIP_TPS (runs ${TPS[shipper]% }; cost ${SHIP_COST}%; CPU s: shipper ${CAPTURE_CPU[shipper]% }, broker ${BROKER_CPU[shipper]% }) | cost <= ${MAX_TPS_COST}% | $V_TPS |"
    echo "| pgbench TPS, wal2json + pg_recvlogical | $W2J_TPS (runs ${TPS[wal2json]% }; cost ${W2J_COST}%; CPU s: walsender + pg_recvlogical ${CAPTURE_CPU[wal2json]% }) | for comparison | |"
fi
echo "| shipper memory, peak (throughput runs) | VmHWM $(mib "$PEAK_HWM") MiB; VmRSS $(mib "$PEAK_RSS") MiB, of it private (RssAnon) $(mib "$PEAK_ANON") MiB | VmHWM <= $MAX_HWM_MIB MiB | $V_HWM |"
echo
echo "Delivery modes, side by side (the same backlog; rounds interleaved; latency: $LATENCY_ROUNDS alternating runs per mode, medians of the runs' figures):"
echo
echo "| metric | at_least_once | exactly_once | exactly_once / at_least_once | target | verdict |"
echo "|---|---:|---:|---:|---|---|"
echo "| backlog throughput, enable to last acknowledgement (exactly_once: to the last Kafka commit) | $(rate "$SHIP_MED") changes/s ($SHIP_MED s; runs ${SHIP_S% }) | $(rate "$EO_MED") changes/s ($EO_MED s; runs ${EO_S% }) | ${EO_RATIO}x (fastest runs $(awk -v e="$(fastest "$EO_S")" -v a="$(fastest "$SHIP_S")" 'BEGIN { printf "%.2f", a / e }')x) | >= ${MIN_EO_RATIO}x | $V_EO_RATIO |"
echo "| messages in Kafka per round | $(commas "$KAFKA_MIN") (watermarks) | $(commas "$EO_MIN")..$(commas "$EO_MAX") read_committed (offsets incl. markers ${EO_MARKS[*]}) | | exactly $(commas "$CHANGES") | $V_EO_COUNT |"
echo "| shipper CPU / broker CPU during the round (medians) | $SHIPPER_CPU_MED / $(median "$RUN_BROKER_CPU") s | $(median "$EO_SHIPPER_CPU") / $(median "$EO_BROKER_CPU") s (runs ${EO_SHIPPER_CPU% } / ${EO_BROKER_CPU% }) | $(awk -v e="$(median "$EO_SHIPPER_CPU")" -v a="$SHIPPER_CPU_MED" 'BEGIN { printf "%.2f", e / a }')x shipper | | |"
echo "| enable to first acknowledgement (session start; exactly_once: init_transactions, progress topic made and read) | $(median "$FIRST_ACK") s (runs ${FIRST_ACK% }) | $(median "$EO_FIRST_ACK") s (runs ${EO_FIRST_ACK% }) | | | |"
echo "| first to last acknowledgement (streaming, without the session start) | $(rate "$(median "$STREAM_S")") changes/s ($(median "$STREAM_S") s; runs ${STREAM_S% }) | $(rate "$(median "$EO_STREAM_S")") changes/s ($(median "$EO_STREAM_S") s; runs ${EO_STREAM_S% }) | $(awk -v e="$(median "$EO_STREAM_S")" -v a="$(median "$STREAM_S")" 'BEGIN { printf "%.2f", a / e }')x | | |"
echo "| shipper VmHWM, backlog rounds (peak) | $(mib "$PEAK_HWM") MiB (RssAnon $(mib "$PEAK_ANON")) | $(mib "$EO_HWM") MiB (RssAnon $(mib "$EO_ANON")) | | <= $MAX_HWM_MIB MiB | $V_HWM / $V_EO_HWM |"
echo "| shipper VmHWM, latency runs (peak) | $(mib "$ALO_HWM_LAT") MiB | $(mib "$EO_HWM_LAT") MiB | | | |"
echo "| Kafka bytes per event on the broker's disk (median of rounds) | $ALO_BPE | $EO_BPE (topics+progress+txn state, bytes per round: ${EO_PARTS% }) | $(awk -v e="$EO_BPE" -v a="$ALO_BPE" 'BEGIN { printf "%.2f", e / a }')x | | |"
echo "| decoded record bytes per event (engage_decoder, uncompressed) | $(per_event "$TOTAL_BYTES") | the same | | | |"
echo "| commit-to-visible, read_committed consumer, at $(commas "$LAT_RATE") changes/s: p50 / p99 / max | $(lat3 "" "${ALO_VIS[@]}") ms (p99 runs $(fields p99_ms "${ALO_VIS[@]}")) | $(lat3 "" "${EO_VIS[@]}") ms (p99 runs $(fields p99_ms "${EO_VIS[@]}")) | | exactly_once p99 <= $MAX_EO_P99_MS ms | $V_EO_P99 |"
echo "| commit-to-append (broker's LogAppendTime; before the Kafka commit under exactly_once): p50 / p99 / max | $(lat3 "" "${ALO_LAT[@]}") ms | $(lat3 "" "${EO_LAT[@]}") ms | | | |"
echo "| commit-to-visible without wake_on_commit (at_least_once, one run): p50 / p99 / max | $(jget "$LAT_OFF_VIS" p50_ms) / $(jget "$LAT_OFF_VIS" p99_ms) / $(jget "$LAT_OFF_VIS" max_ms) ms | | | | |"
echo
echo "Shipper lag at the end of each pgbench run (bytes): ${SHIPPER_LAG% }"
echo "Whole machine busy during the pgbench runs (%, every job on it, in run order): ${MACHINE_BUSY% }"
echo "pg_engage lines in the server log (count, message):"
grep -E 'pg_engage|ERROR|WARNING|FATAL|PANIC' "$DIR/server.log" | sed -E 's/^[0-9-]+ [0-9:.]+ [A-Z]+ \[[0-9]+\] //' |
    sort | uniq -c | sort -rn | head -n 30 || true
((OVERHEAD_ROUNDS > 0)) || echo "Source overhead not measured (BENCH_OVERHEAD_ROUNDS=0)."
[ "$V_RATIO$V_CPU$V_COUNT$V_P99$V_HWM$V_TPS$V_EO_RATIO$V_EO_P99$V_EO_COUNT$V_EO_HWM" = \
  PASSPASSPASSPASSPASSPASSPASSPASSPASSPASS ] || exit 3
exit 0
}
