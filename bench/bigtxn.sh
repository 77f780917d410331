#!/usr/bin/env bash
# One huge PostgreSQL transaction shipped under engage.delivery = exactly_once.
#
# One cluster with shared_preload_libraries = 'pg_engage' (engage.delivery =
# exactly_once, no initial snapshot) and one broker (scripts/kafka.sh, port
# BENCH_KAFKA_PORT, the broker's default transaction.max.timeout.ms of 15 min).
# The shipper runs on its slot with topic prefix "big" (big.members created
# first, 3 partitions) and ships a warm-up row.  Then ONE statement,
#   INSERT INTO engage.members (name, email, contact)
#   SELECT ... FROM generate_series(1, BENCH_BIG_ROWS)
# is one PostgreSQL transaction of BENCH_BIG_ROWS (5,000,000) row changes.  The
# decoder keeps at most logical_decoding_work_mem of it in memory and spills the
# rest to pg_replslot/<slot>/; at its commit the shipper sends it all in one
# Kafka transaction and commits that.
#
# A monitor samples every 0.5 s: what a live consumer with
# isolation.level=read_committed (assigned at the topic's end after the
# warm-up) has read, the partitions' high watermarks (what the broker has
# appended, committed or not) and last stable offsets, the shipper's state,
# counters, wait event (pg_stat_activity) and VmRSS/VmHWM, and the spill
# files' size.  Checks:
#   - one Kafka transaction: the read_committed consumer reads nothing while
#     the rows are appended (high watermark growing), and when it reads its
#     first row the last stable offsets already cover all of them; in the end
#     it has read exactly BENCH_BIG_ROWS rows;
#   - the time from the PostgreSQL commit to the Kafka commit (the first row
#     visible) is within the broker's transaction.max.timeout.ms (15 min);
#   - the shipper's VmHWM is at most 128 MiB.
#
# Usage (as root, from anywhere):  bench/bigtxn.sh
# Knobs: BENCH_BIG_ROWS (5000000), BENCH_PORT (55493), BENCH_KAFKA_PORT (19693;
# the controller listens on it + 1000), BENCH_DECODING_WORK_MEM
# (logical_decoding_work_mem, default 64MB, the server's default),
# BENCH_KAFKA_PROPERTIES (engage.kafka_properties), BENCH_TIMEOUT (s to wait
# for the rows in Kafka, 1800), BENCH_NO_BUILD=1 or NO_BUILD=1, BENCH_KEEP=1
# or KEEP=1, PG_ENGAGE_VENV.
#
# Exit status: 0 when every check passes, 3 when one fails, 1 on error.
set -euo pipefail

{
# shellcheck source=SCRIPTDIR/../scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

ROWS=${BENCH_BIG_ROWS:-5000000}
PORT=${BENCH_PORT:-55493}
KAFKA_PORT=${BENCH_KAFKA_PORT:-19693}
WORK_MEM=${BENCH_DECODING_WORK_MEM:-64MB}
TIMEOUT=${BENCH_TIMEOUT:-1800}
VENV=${PG_ENGAGE_VENV:-$HOME/.cache/pg_engage/venv}
for v in ROWS PORT KAFKA_PORT TIMEOUT; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "BENCH_$v must be a positive integer (got '${!v}')"
done

# Targets.
MAX_HWM_MIB=128                 # shipper peak RSS
MAX_TXN_S=900                   # the broker's transaction.max.timeout.ms (default)

# shellcheck disable=SC2034  # read by ensure_packages
ENGAGE_PACKAGES=(postgresql-15 postgresql-server-dev-15 librdkafka-dev build-essential pkg-config
    maven openjdk-17-jre-headless python3-venv)
ensure_packages
[ "${BENCH_NO_BUILD:-${NO_BUILD:-0}}" = 1 ] || build_install
if ! "$VENV/bin/python" -c 'import confluent_kafka, psycopg' 2>/dev/null; then
    say "preparing the Python environment in $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check -r "$ROOT/test/requirements.txt"
    cp "$ROOT/test/requirements.txt" "$VENV/requirements.txt"
fi

DIR=$(mktemp -d /tmp/engage-bigtxn.XXXXXX)
KDIR=$DIR/kafka
MON_PID=
# shellcheck disable=SC2317  # run by the trap
cleanup() {
    if [ -n "$MON_PID" ]; then kill "$MON_PID" 2>/dev/null || true; wait "$MON_PID" 2>/dev/null || true; fi
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
sql1() { psql_bench -At -c "$1"; }
wait_for() {
    local what=$1 timeout=$2 sql=$3 deadline=$((SECONDS + $2))
    until [ "$(sql1 "$sql")" = t ]; do
        ((SECONDS < deadline)) || die "timed out after ${timeout}s waiting for $what" \
            "(shipper: $(sql1 "SELECT state || ', ' || coalesce(last_error, '') FROM engage.shipper"))"
        sleep 0.1
    done
}
commas() { awk -v n="$1" 'BEGIN { s = sprintf("%d", n)
    while (s ~ /[0-9][0-9][0-9][0-9]/) sub(/[0-9][0-9][0-9]($|,)/, ",&", s); print s }'; }
verdict() { if [ "$1" = 1 ]; then echo PASS; else echo FAIL; fi; }
df_avail_mib() { df -Pm "$1" | awk 'NR == 2 { print $4 }'; }

# --- Python side: topics and the monitor. -------------------------------------
PY=$DIR/bigtxn.py
cat >"$PY" <<'PY'
"""Helpers of bench/bigtxn.sh: make-topic NAME; monitor TOPIC ROWS SHIPPER_PID SPILL_DIR OUT."""
import json
import os
import sys
import threading
import time

import psycopg
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

BOOTSTRAP = os.environ["BENCH_BOOTSTRAP"]


def consumer(isolation):
    return Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": "engage-bigtxn-" + isolation,
                     "enable.auto.commit": False, "auto.offset.reset": "earliest",
                     "isolation.level": isolation})


def make_topic(name):
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    for f in admin.create_topics([NewTopic(name, 3, 1)]).values():
        f.result(timeout=30)


def tree_bytes(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


def proc_status(pid):
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM", "RssAnon"):
                    out[k] = int(v.split()[0])
    except OSError:
        pass
    return out


def monitor(topic, rows, shipper_pid, spill_dir, out):
    rows = int(rows)
    probe_rc = consumer("read_committed")
    probe_ru = consumer("read_uncommitted")
    nparts = len(probe_ru.list_topics(topic, timeout=20).topics[topic].partitions)
    tps = [TopicPartition(topic, p) for p in range(nparts)]

    def ends(cons):
        return sum(cons.get_watermark_offsets(tp, timeout=10, cached=False)[1] for tp in tps)

    start = {tp.partition: probe_ru.get_watermark_offsets(tp, timeout=10, cached=False)[1] for tp in tps}
    base_hw = sum(start.values())
    state = {"seen": 0, "first": None, "lso_at_first": None, "hw_at_first": None, "all": None,
             "error": None}
    stop = threading.Event()

    def read():
        cons = consumer("read_committed")
        cons.assign([TopicPartition(topic, p, off) for p, off in start.items()])
        try:
            while not stop.is_set():
                batch = cons.consume(num_messages=10000, timeout=0.2)
                for m in batch:
                    if m.error():
                        state["error"] = str(m.error())
                        return
                if batch and state["first"] is None:
                    state["first"] = time.time()
                    # All of the transaction must be visible once any of it is.
                    state["lso_at_first"] = ends(probe_rc) - base_hw
                    state["hw_at_first"] = ends(probe_ru) - base_hw
                state["seen"] += len(batch)
                if state["seen"] >= rows and state["all"] is None:
                    state["all"] = time.time()
        finally:
            cons.close()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    with open(out + ".ready", "w") as f:
        f.write("ready\n")
    conn = psycopg.connect(host=os.environ["BENCH_DIR"], port=os.environ["BENCH_PORT"],
                           user="postgres", dbname="bench", autocommit=True)
    query = """SELECT s.state, s.events_shipped, s.in_flight, s.confirmed_lsn::text,
                      coalesce(a.wait_event_type || ':' || a.wait_event, 'CPU'), coalesce(s.last_error, '')
               FROM engage.shipper s LEFT JOIN pg_stat_activity a ON a.pid = s.pid"""
    samples, peak_spill, peak_hwm, waits = [], 0, 0, {}
    invisible_while_appending = 0
    deadline = time.monotonic() + float(os.environ.get("BENCH_TIMEOUT", "1800"))
    with open(out + ".samples", "w") as trace:
        trace.write("time\tread_committed_seen\tappended\tstable\tshipped\tin_flight\tconfirmed"
                    "\tvm_rss_kb\tvm_hwm_kb\tspill_bytes\twait\tstate\n")
        while True:
            now = time.time()
            hw = ends(probe_ru) - base_hw
            lso = ends(probe_rc) - base_hw
            st, shipped, in_flight, confirmed, wait, err = conn.execute(query).fetchone()
            mem = proc_status(shipper_pid)
            spill = tree_bytes(spill_dir)
            peak_spill = max(peak_spill, spill)
            peak_hwm = max(peak_hwm, mem.get("VmHWM", 0))
            waits[wait] = waits.get(wait, 0) + 1
            seen = state["seen"]
            if hw > 0 and seen == 0:
                invisible_while_appending += 1
            samples.append((now, seen, hw, lso))
            trace.write(f"{now:.3f}\t{seen}\t{hw}\t{lso}\t{shipped}\t{in_flight}\t{confirmed}\t"
                        f"{mem.get('VmRSS', 0)}\t{mem.get('VmHWM', 0)}\t{spill}\t{wait}\t{st}\n")
            trace.flush()
            if state["error"] or st == "stopped on error":
                break
            if state["all"] is not None and os.path.exists(out + ".committed"):
                break
            if time.monotonic() > deadline:
                break
            time.sleep(max(0.0, 0.5 - (time.time() - now)))
    stop.set()
    reader.join(timeout=30)
    appended = [t for t, _, hw, _ in samples if hw > 0]
    # Samples where the consumer had read some rows but the stable offsets did
    # not yet cover all of them (a split transaction would show here).
    partial = sum(1 for _, seen, _, lso in samples if 0 < seen and lso < rows)
    result = {"seen": state["seen"], "first_visible": state["first"], "all_visible": state["all"],
              "lso_at_first": state["lso_at_first"], "hw_at_first": state["hw_at_first"],
              "first_appended": appended[0] if appended else None,
              "invisible_while_appending": invisible_while_appending, "partial_samples": partial,
              "samples": len(samples), "peak_spill_bytes": peak_spill, "peak_hwm_kb": peak_hwm,
              "final_hwm_kb": proc_status(shipper_pid).get("VmHWM"), "waits": waits,
              "error": state["error"] or (err or None)}
    with open(out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"make-topic": lambda: make_topic(*args), "monitor": lambda: monitor(*args)}[cmd]()
PY
export BENCH_DIR=$DIR BENCH_PORT=$PORT BENCH_BOOTSTRAP=127.0.0.1:$KAFKA_PORT BENCH_TIMEOUT=$TIMEOUT
py() { "$VENV/bin/python" "$PY" "$@"; }
jget() { "$VENV/bin/python" -c 'import json, sys; v = json.loads(sys.argv[1])[sys.argv[2]]; print("" if v is None else v)' "$1" "$2"; }

# --- Broker and cluster. --------------------------------------------------------
DF0=$(df_avail_mib /tmp)
say "disk: $DF0 MiB free under /tmp; the run needs several GiB (WAL, the table, spill files, Kafka's log)"
((DF0 > 12000)) || die "less than 12 GiB free under /tmp"
say "Kafka broker in $KDIR, port $KAFKA_PORT"
"$ROOT/scripts/kafka.sh" start "$KDIR" "$KAFKA_PORT" >/dev/null
say "cluster in $DIR, port $PORT"
cluster_init "$DIR" "$PORT" \
    "shared_preload_libraries = 'pg_engage'" \
    "engage.database = 'bench'" \
    "engage.brokers = '127.0.0.1:$KAFKA_PORT'" \
    "engage.enabled = off" \
    "engage.delivery = exactly_once" \
    "engage.snapshot_mode = never" \
    "engage.topic_prefix = 'big'" \
    "engage.kafka_properties = '${BENCH_KAFKA_PROPERTIES:-}'" \
    "logical_decoding_work_mem = '$WORK_MEM'" \
    "shared_buffers = 512MB" \
    "max_wal_size = 16GB" \
    "checkpoint_timeout = 1h" \
    "autovacuum = off" \
    "client_min_messages = warning"
cluster_start "$DIR"
cluster_psql "$DIR" "$PORT" postgres -c "CREATE DATABASE bench"
psql_bench -c "CREATE EXTENSION pg_engage"
py make-topic big.members

psql_bench -c "ALTER SYSTEM SET engage.enabled = on" -c "SELECT pg_reload_conf()" >/dev/null
wait_for "the shipper to run" 120 "SELECT state = 'running' AND pid IS NOT NULL FROM engage.shipper"
warm=$(sql1 "INSERT INTO engage.members (name) VALUES ('big warm-up'); SELECT pg_current_wal_insert_lsn()")
wait_for "the shipper to commit the warm-up row" 120 \
    "SELECT confirmed_lsn >= '$warm' AND in_flight = 0 FROM engage.shipper"
SHIPPER_PID=$(sql1 "SELECT pid FROM engage.shipper")
SLOT=$(sql1 "SELECT current_setting('engage.slot_name')")
HWM0=$(awk '/^VmHWM:/ { print $2 }' "/proc/$SHIPPER_PID/status")
say "shipper pid $SHIPPER_PID on slot $SLOT, VmHWM $((HWM0 / 1024)) MiB after the warm-up"

py monitor big.members "$ROWS" "$SHIPPER_PID" "$DIR/data/pg_replslot/$SLOT" "$DIR/monitor.json" \
    2>"$DIR/monitor.log" &
MON_PID=$!
for _ in $(seq 300); do [ -e "$DIR/monitor.json.ready" ] && break; sleep 0.1; done
[ -e "$DIR/monitor.json.ready" ] || { cat "$DIR/monitor.log" >&2; die "the monitor did not start"; }

say "one transaction: INSERT of $(commas "$ROWS") members (logical_decoding_work_mem $WORK_MEM)"
T0=$(date +%s.%N)
psql_bench -c "INSERT INTO engage.members (name, email, contact)
               SELECT 'big ' || g, 'big' || g || '@example.com', '+1 555 ' || lpad(g::text, 7, '0')
               FROM generate_series(1, $ROWS) g"
T_COMMIT=$(date +%s.%N)
END_LSN=$(sql1 "SELECT pg_current_wal_insert_lsn()")
WAL_MB=$(sql1 "SELECT round(pg_wal_lsn_diff('$END_LSN', '$warm') / 1048576.0)")
touch "$DIR/monitor.json.committed"
say "committed after $(awk -v a="$T0" -v b="$T_COMMIT" 'BEGIN { printf "%.1f", b - a }') s; $WAL_MB MiB of WAL; waiting for Kafka"
wait "$MON_PID" || { cat "$DIR/monitor.log" >&2; die "the monitor failed"; }
MON_PID=
M=$(cat "$DIR/monitor.json")
wait_for "the shipper to confirm the transaction" 300 \
    "SELECT confirmed_lsn >= '$END_LSN' AND in_flight = 0 FROM engage.shipper"
DF1=$(df_avail_mib /tmp)
KAFKA_MB=$(du -sm "$KDIR/data" | cut -f1)
PG_MB=$(du -sm "$DIR/data" | cut -f1)
FINAL_HWM=$(awk '/^VmHWM:/ { print $2 }' "/proc/$SHIPPER_PID/status")
PEAK_HWM=$(jget "$M" peak_hwm_kb)
if ((FINAL_HWM > PEAK_HWM)); then PEAK_HWM=$FINAL_HWM; fi

SEEN=$(jget "$M" seen)
FIRST=$(jget "$M" first_visible)
[ -n "$FIRST" ] || die "no row became visible to the read_committed consumer (monitor: $M)"
ALL=$(jget "$M" all_visible)
APPENDED=$(jget "$M" first_appended)
SHIP_S=$(awk -v a="$T_COMMIT" -v b="$FIRST" 'BEGIN { printf "%.1f", b - a }')
OPEN_S=$(awk -v a="$APPENDED" -v b="$FIRST" 'BEGIN { printf "%.1f", b - a }')
RATE=$(awk -v n="$ROWS" -v s="$SHIP_S" 'BEGIN { printf "%.0f", n / s }')
INSERT_S=$(awk -v a="$T0" -v b="$T_COMMIT" 'BEGIN { printf "%.1f", b - a }')
V_ONE=$(verdict "$(( SEEN == ROWS && $(jget "$M" lso_at_first) >= ROWS && $(jget "$M" partial_samples) == 0 &&
                     $(jget "$M" invisible_while_appending) > 0 ))")
V_TIME=$(verdict "$(awk -v s="$SHIP_S" -v m="$MAX_TXN_S" 'BEGIN { print (s <= m) }')")
V_HWM=$(verdict "$(awk -v k="$PEAK_HWM" -v m="$MAX_HWM_MIB" 'BEGIN { print (k / 1024 <= m) }')")

echo
echo "One PostgreSQL transaction of $(commas "$ROWS") inserts into engage.members ($WAL_MB MiB of WAL) shipped under" \
     "engage.delivery = exactly_once to Kafka on 127.0.0.1:$KAFKA_PORT (big.members, 3 partitions)"
echo "$("$PGBIN/postgres" --version); $(nproc) CPUs; $(free -g | awk '/^Mem:/ { print $2 }') GiB RAM; Linux $(uname -r);" \
     "logical_decoding_work_mem $WORK_MEM; engage.kafka_properties '${BENCH_KAFKA_PROPERTIES:-}'"
echo
echo "| metric | result | target | verdict |"
echo "|---|---:|---|---|"
echo "| INSERT (one statement, one transaction) | $INSERT_S s | | |"
echo "| PostgreSQL commit to the rows visible to read_committed (the Kafka commit) | $SHIP_S s ($(commas "$RATE") rows/s) | <= $MAX_TXN_S s (transaction.max.timeout.ms) | $V_TIME |"
echo "| Kafka transaction open: first row appended to its commit (0.5 s samples) | $OPEN_S s | | |"
echo "| read_committed consumer: rows read | $(commas "$SEEN") | $(commas "$ROWS") | |"
echo "| rows it read while the broker appended (samples with rows appended, none visible) | 0 ($(jget "$M" invisible_while_appending) samples) | 0 | |"
echo "| stable offsets when it read its first row / appended then | $(commas "$(jget "$M" lso_at_first)") / $(commas "$(jget "$M" hw_at_first)") (offsets, incl. markers) | >= $(commas "$ROWS") | |"
echo "| samples with some rows read but not all of them stable | $(jget "$M" partial_samples) | 0 | |"
echo "| one Kafka transaction (all of the above) | | | $V_ONE |"
echo "| first to last row read by the consumer | $(awk -v a="$FIRST" -v b="$ALL" 'BEGIN { printf "%.1f", b - a }') s | | |"
echo "| shipper VmHWM (peak; after the warm-up: $((HWM0 / 1024)) MiB) | $((PEAK_HWM / 1024)) MiB | <= $MAX_HWM_MIB MiB | $V_HWM |"
echo "| decoder spill files, peak (pg_replslot/$SLOT) | $(( $(jget "$M" peak_spill_bytes) / 1048576 )) MiB | | |"
echo "| Kafka log on disk / PostgreSQL data dir (WAL included) | $KAFKA_MB MiB / $PG_MB MiB | | |"
echo "| free under /tmp before / after (before cleanup) | $DF0 / $DF1 MiB | | |"
echo "| shipper wait events (0.5 s samples) | $(jget "$M" waits) | | |"
echo
echo "Samples (every 0.5 s): $DIR/monitor.json.samples (removed on exit unless KEEP=1); every 10th:"
awk -F'\t' 'NR == 1 || NR % 10 == 2' "$DIR/monitor.json.samples" | column -t -s $'\t'
echo "pg_engage lines in the server log (count, message):"
grep -E 'pg_engage|ERROR|WARNING|FATAL|PANIC' "$DIR/server.log" | sed -E 's/^[0-9-]+ [0-9:.]+ [A-Z]+ \[[0-9]+\] //' |
    sort | uniq -c | sort -rn | head -n 20 || true
[ "$V_ONE$V_TIME$V_HWM" = PASSPASSPASS ] || exit 3
exit 0
}
