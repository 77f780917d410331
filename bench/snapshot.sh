#!/usr/bin/env bash
# Initial snapshot of a large engage.audience_members into Kafka: how fast the
# shipper reads and ships the existing rows, compared with the speed limit of
# reading the table (COPY ... TO '/dev/null'), its memory, and what it costs
# the writers meanwhile.
#
# One cluster with shared_preload_libraries = 'pg_engage' (engage.enabled off,
# no slot) and one broker (scripts/kafka.sh, port BENCH_KAFKA_PORT).
#
# Fill: BENCH_MEMBERS members, BENCH_ROWS / BENCH_MEMBERS audiences, one
#   campaign of BENCH_MEMBERS campaign_audience rows, and BENCH_ROWS
#   audience_members rows by INSERT ... SELECT generate_series (in key order,
#   or with BENCH_FILL_ORDER=random in a random physical order, as a table
#   filled over time would be).  The primary key, the foreign keys and the
#   secondary indexes of audience_members are dropped before and put back after
#   (so the foreign keys are validated once, not row by row); no trigger is
#   disabled.  Then VACUUM ANALYZE and CHECKPOINT.
# Plans: EXPLAIN of the shipper's chunk query (as extension/snapshotread.c builds it) for the
#   first chunk, one halfway and one 95% through, and whether it is JIT-compiled.
# COPY: COPY engage.audience_members TO '/dev/null', BENCH_COPY_RUNS times
#   (psql \timing); the median is the read speed limit.  For the record also
#   COPY (SELECT row_to_json(r) ...): reading plus rendering each row as JSON.
# pgbench alone: the source-overhead script of bench/ship.sh (a member insert,
#   an audience_members insert and a campaign_audience update per transaction;
#   BENCH_PGBENCH_CLIENTS clients, fsync and synchronous_commit on) for
#   BENCH_PGBENCH_SECONDS, shipper off and no slot; every transaction logged
#   (pgbench -l).
# Initial snapshot: the same pgbench started, then the shipper enabled (topic
#   prefix snap, its topics created first with 3 partitions): it creates its
#   slot and, engage.snapshot_mode being initial, snapshots every captured
#   table; engage.snapshots and engage.shipper are polled every 0.1 s until
#   every snapshot is done and the slot's confirmed position is past the WAL
#   insert position seen when they were (all acknowledged).  Rates come from
#   each snapshot's started_at / finished_at; pgbench's figures from the
#   transactions that ended inside audience_members' [started_at, finished_at].
#   Meanwhile each poll samples the shipper's /proc/<pid>/status (VmHWM, and its
#   own memory: VmRSS - RssShmem, since VmHWM also counts every shared buffer
#   the snapshot read, about the table's size; the target is on its own), its
#   relation locks (pg_locks: it must hold only ACCESS SHARE on engage.*), the
#   client backends waiting on a lock and who holds it (pg_blocking_pids), and
#   the shipper's wait event; log_lock_waits with deadlock_timeout =
#   BENCH_LOCK_LOG_MS also logs every lock wait longer than that.
# Streaming only: pgbench again for BENCH_PGBENCH_SECONDS, the shipper running
#   with no snapshot (what the snapshot costs beyond streaming).
# Chunk sizes (BENCH_COMPARE_CHUNKS, default the initial snapshot's and 50000,
#   or 10000 when that is 50000): an on-demand snapshot of audience_members
#   (engage.snapshot()) per value and round, BENCH_COMPARE_ROUNDS rounds in
#   alternating order, without pgbench unless BENCH_COMPARE_PGBENCH=1: the
#   snapshot's own speed.  The shipper is restarted (engage.enabled off, on)
#   before each, so each starts with a fresh process and session.
#
# Usage (as root, from anywhere):  bench/snapshot.sh
# Quick smoke run:  BENCH_ROWS=200000 BENCH_PGBENCH_SECONDS=10 bench/snapshot.sh
# Knobs: BENCH_ROWS (10000000; ROWS also works), BENCH_CHUNK_ROWS
# (engage.snapshot_chunk_rows of the initial snapshot; default: the shipper's
# default), BENCH_COMPARE_CHUNKS (see above; "" for none), BENCH_COMPARE_ROUNDS (1),
# BENCH_COMPARE_PGBENCH (0), BENCH_COPY_RUNS (3), BENCH_FILL_ORDER (key | random), BENCH_MEMBERS (100000),
# BENCH_PGBENCH_SECONDS (60), BENCH_PGBENCH_CLIENTS (2), BENCH_PGBENCH_SEGMENT
# (5: pgbench runs in segments of this many seconds so that each ends cleanly
# with its log), BENCH_LOCK_LOG_MS (20), BENCH_PORT (55900), BENCH_KAFKA_PORT
# (19992; the controller listens on it + 1000), BENCH_PERF (seconds of
# `perf record -g` of the shipper during the initial snapshot; 0: none),
# BENCH_NO_BUILD=1 or NO_BUILD=1 (use the installed build), BENCH_KEEP=1 or
# KEEP=1 (leave the cluster and the broker running), PG_ENGAGE_VENV (Python
# environment, as scripts/test.sh), PGBIN (the server's bin directory).
#
# Exit status: 0 when every target is met, 3 when one is missed, 1 on error.
set -euo pipefail

# The whole script is one group, read before it runs: editing the file during a
# run cannot change what that run executes.
{
# shellcheck source=SCRIPTDIR/../scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

ROWS=${BENCH_ROWS:-${ROWS:-10000000}}
CHUNK_ROWS=${BENCH_CHUNK_ROWS:-}
COMPARE_CHUNKS=${BENCH_COMPARE_CHUNKS-default}
COMPARE_PGBENCH=${BENCH_COMPARE_PGBENCH:-0}
COMPARE_ROUNDS=${BENCH_COMPARE_ROUNDS:-1}
COPY_RUNS=${BENCH_COPY_RUNS:-3}
FILL_ORDER=${BENCH_FILL_ORDER:-key}
MEMBERS=${BENCH_MEMBERS:-100000}
PGBENCH_SECONDS=${BENCH_PGBENCH_SECONDS:-60}
CLIENTS=${BENCH_PGBENCH_CLIENTS:-2}
SEGMENT=${BENCH_PGBENCH_SEGMENT:-5}
LOCK_LOG_MS=${BENCH_LOCK_LOG_MS:-20}
PORT=${BENCH_PORT:-55900}
KAFKA_PORT=${BENCH_KAFKA_PORT:-19992}
PERF_SECONDS=${BENCH_PERF:-0}
VENV=${PG_ENGAGE_VENV:-$HOME/.cache/pg_engage/venv}
PREFIX=snap

for v in ROWS COMPARE_ROUNDS COPY_RUNS MEMBERS PGBENCH_SECONDS CLIENTS SEGMENT LOCK_LOG_MS \
         PORT KAFKA_PORT; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "BENCH_$v must be a positive integer (got '${!v}')"
done
[[ $PERF_SECONDS =~ ^[0-9]+$ ]] || die "BENCH_PERF must be a number of seconds (got '$PERF_SECONDS')"
for c in $CHUNK_ROWS ${COMPARE_CHUNKS#default}; do
    [[ $c =~ ^[1-9][0-9]*$ ]] || die "chunk sizes must be positive integers (got '$c')"
done
case $FILL_ORDER in key|random) ;; *) die "BENCH_FILL_ORDER is key or random (got '$FILL_ORDER')" ;; esac
AUDIENCES=$(( (ROWS + MEMBERS - 1) / MEMBERS ))

# Targets.
MIN_COPY_RATIO=0.5              # snapshot rows/s / COPY rows/s
MAX_HWM_MIB=128                 # shipper peak RSS during the snapshot, without the shared
                                # buffers it touched (VmHWM counts those too: see the report)

# shellcheck disable=SC2034  # read by ensure_packages
ENGAGE_PACKAGES=(postgresql-15 postgresql-server-dev-15 librdkafka-dev build-essential
    pkg-config maven openjdk-17-jre-headless python3-venv)
ensure_packages
[ "${BENCH_NO_BUILD:-${NO_BUILD:-0}}" = 1 ] || build_install

# The Python environment of the integration tests (confluent-kafka, psycopg).
if ! "$VENV/bin/python" -c 'import confluent_kafka, psycopg' 2>/dev/null; then
    say "preparing the Python environment in $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check -r "$ROOT/test/requirements.txt"
    cp "$ROOT/test/requirements.txt" "$VENV/requirements.txt"
fi

DIR=$(mktemp -d /tmp/engage-snapshot.XXXXXX)
chmod 755 "$DIR"
KDIR=$DIR/kafka
PGBENCH_LOOP_PID=
PERF_PID=
# shellcheck disable=SC2317  # run by the trap
cleanup() {
    touch "$DIR/stop-pgbench" 2>/dev/null || true
    for p in $PGBENCH_LOOP_PID $PERF_PID; do
        kill -INT "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
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

# Sets settings (name value pairs) with ALTER SYSTEM and reloads.
engage_set() {
    while [ $# -ge 2 ]; do
        psql_bench -c "ALTER SYSTEM SET $1 = '$2'"
        shift 2
    done
    sql1 "SELECT pg_reload_conf()" >/dev/null
}

# Median of the numbers in $1.
median() {
    tr ' ' '\n' <<<"$1" | grep . | sort -g |
        awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# 1,234,567
commas() { awk -v n="$1" 'BEGIN { s = sprintf("%d", n)
    while (s ~ /[0-9][0-9][0-9][0-9]/) sub(/[0-9][0-9][0-9]($|,)/, ",&", s); print s }'; }

# --- Python side: the snapshot monitor, pgbench logs, Kafka. --------------------
PY=$DIR/snapbench.py
cat >"$PY" <<'PY'
"""Helpers of bench/snapshot.sh (argv: command and arguments; settings in BENCH_* variables)."""
import glob
import json
import math
import os
import sys
import time

import psycopg
from confluent_kafka import Consumer, TopicPartition
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


def cpu_seconds(path):
    """User + system CPU seconds from a /proc/.../stat file; None when it is gone."""
    try:
        with open(path) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, TypeError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_jiffies():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:8]]
    return v[0] + v[1] + v[2] + v[5] + v[6], sum(v)


SAMPLE = """
SELECT s.state, s.pid, s.confirmed_lsn, s.in_flight, s.last_error,
       (SELECT coalesce(json_agg(json_build_object('rel', l.relation::regclass::text, 'mode', l.mode,
                                                   'granted', l.granted)), '[]')
          FROM pg_locks AS l
         WHERE l.pid = s.pid AND l.locktype = 'relation' AND l.database = d.oid),
       (SELECT coalesce(json_agg(json_build_object('pid', a.pid, 'event', a.wait_event,
                                                   'blockers', pg_blocking_pids(a.pid))), '[]')
          FROM pg_stat_activity AS a
         WHERE a.backend_type = 'client backend' AND a.wait_event_type = 'Lock'),
       (SELECT coalesce(a.wait_event_type || ':' || a.wait_event, 'CPU') FROM pg_stat_activity AS a
         WHERE a.pid = s.pid),
       (SELECT json_agg(json_build_object('id', n.id, 'table', n.table_name, 'state', n.state,
                                          'rows', n.rows_read, 'chunks', n.chunks,
                                          'started', extract(epoch FROM n.started_at),
                                          'finished', extract(epoch FROM n.finished_at),
                                          'error', n.error) ORDER BY n.id)
          FROM engage.snapshots AS n WHERE n.id > %(after)s),
       pg_current_wal_insert_lsn(), extract(epoch FROM clock_timestamp())
FROM engage.shipper AS s, pg_database AS d
WHERE d.datname = current_database()
"""


def snap(how, after, timeout, chunk_rows, table="engage.audience_members"):
    """Starts snapshots (how: 'initial': enable the shipper; 'requested': engage.snapshot() of
    table) and follows them (snapshot ids > after) until every one is done and the
    slot confirmed the WAL written until then; prints what was seen (JSON)."""
    timeout = float(timeout)
    broker_pid = os.environ.get("BENCH_KAFKA_PID")
    with connect() as conn:
        broker_cpu0 = cpu_seconds(f"/proc/{broker_pid}/stat")
        m0 = machine_jiffies()
        t0 = time.monotonic()
        if how == "initial":
            conn.execute("ALTER SYSTEM SET engage.enabled = on")
            conn.execute("SELECT pg_reload_conf()")
            shipper_cpu0 = main_cpu0 = 0.0
            pid0 = None
        else:
            pid0 = conn.execute("SELECT pid FROM engage.shipper").fetchone()[0]
            with open(f"/proc/{pid0}/clear_refs", "w") as f:
                f.write("5")        # resets VmHWM to the current RSS
            shipper_cpu0 = cpu_seconds(f"/proc/{pid0}/stat")
            main_cpu0 = cpu_seconds(f"/proc/{pid0}/task/{pid0}/stat")
            conn.execute("SELECT engage.snapshot(ARRAY[%s::regclass])", (table,))
        peak, locks, blocked, by_shipper, waits = {}, {}, 0, 0, {}
        samples, pid_seen, done_at, end_lsn, snaps, trace = 0, None, None, None, [], []
        shipper_cpu = main_cpu = None
        while True:
            (state, pid, confirmed, in_flight, error, held, waiting, wait_event, snaps_now,
             insert_lsn, now_epoch) = conn.execute(SAMPLE, {"after": int(after)}).fetchone()
            now = time.monotonic()
            samples += 1
            if pid:
                pid_seen = pid
                mem = proc_mem(pid)
                for key, value in mem.items():
                    peak[key] = max(peak.get(key, 0), value)
                if "VmRSS" in mem and "RssShmem" in mem:
                    # The shipper's own memory: its RSS without the shared buffers it touched.
                    peak["private"] = max(peak.get("private", 0), mem["VmRSS"] - mem["RssShmem"])
                c = cpu_seconds(f"/proc/{pid}/stat")
                if c is not None:
                    shipper_cpu = c
                    main_cpu = cpu_seconds(f"/proc/{pid}/task/{pid}/stat")
            for lock in held:
                if lock["rel"].startswith("engage."):
                    locks.setdefault(lock["rel"], set()).add(lock["mode"])
            if waiting:
                blocked += len(waiting)
                by_shipper += sum(1 for w in waiting if pid and pid in (w["blockers"] or []))
            if wait_event:
                waits[wait_event] = waits.get(wait_event, 0) + 1
            snaps = snaps_now or []
            rows = sum(s["rows"] for s in snaps)
            trace.append(f"{now - t0:.2f} {state} {rows} {in_flight} {wait_event}")
            if state == "stopped on error":
                sys.exit(f"shipper stopped on error: {error}")
            failed = [s for s in snaps if s["state"] in ("failed", "cancelled")]
            if failed:
                sys.exit(f"snapshot failed: {failed}")
            if done_at is None and snaps and all(s["state"] == "done" for s in snaps):
                done_at, end_lsn = now - t0, insert_lsn
            if done_at is not None and state == "running" and lsn_int(confirmed) >= lsn_int(end_lsn):
                break
            if now - t0 > timeout:
                sys.exit(f"snapshots not done after {timeout} s (shipper {state}, {error}; {snaps})")
            time.sleep(max(0.0, 0.1 - (time.monotonic() - now)))
        confirmed_at = time.monotonic() - t0
        broker_cpu = cpu_seconds(f"/proc/{broker_pid}/stat")
        m1 = machine_jiffies()
    with open(os.path.join(os.environ["BENCH_DIR"], f"snap-{how}-{after}.trace"), "w") as f:
        f.write("seconds state rows_read in_flight wait_event\n" + "\n".join(trace) + "\n")
    print(json.dumps({
        "how": how, "chunk_rows": int(chunk_rows), "pid": pid_seen, "same_pid": pid0 in (None, pid_seen),
        "snapshots": snaps, "done_s": round(done_at, 2), "confirmed_s": round(confirmed_at, 2),
        "end_lsn": end_lsn, "samples": samples,
        "vm_hwm_kb": peak.get("VmHWM"), "vm_rss_kb": peak.get("VmRSS"), "rss_anon_kb": peak.get("RssAnon"),
        "rss_shmem_kb": peak.get("RssShmem"), "private_kb": peak.get("private"),
        "shipper_locks": {k: sorted(v) for k, v in locks.items()},
        "blocked_samples": blocked, "blocked_by_shipper_samples": by_shipper,
        "shipper_waits": waits,
        "shipper_cpu_s": round(shipper_cpu - shipper_cpu0, 2) if shipper_cpu is not None else None,
        "shipper_main_thread_cpu_s": round(main_cpu - main_cpu0, 2) if main_cpu is not None else None,
        "broker_cpu_s": round(broker_cpu - broker_cpu0, 2)
        if broker_cpu is not None and broker_cpu0 is not None else None,
        "machine_busy_pct": round(100.0 * (m1[0] - m0[0]) / max(1, m1[1] - m0[1])),
    }))


def lsn_int(text):
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) + int(lo, 16)


def pgbench(logdir, start, end):
    """Transactions of the pgbench logs in logdir that ended in [start, end] (epoch seconds;
    empty: all of them, the window from the first to the last segment): tps and latencies."""
    ends, lats = [], []
    for path in glob.glob(os.path.join(logdir, "log*")):
        with open(path) as f:
            for line in f:
                # client_id transaction_no time script_no time_epoch time_us
                p = line.split()
                if len(p) < 6 or p[2] == "failed" or p[2] == "skipped":
                    continue
                ends.append(int(p[4]) + int(p[5]) / 1e6)
                lats.append(int(p[2]) / 1000.0)
    if not ends:
        sys.exit(f"no pgbench transactions logged in {logdir}")
    bounds = json.load(open(os.path.join(logdir, "bounds.json"))) if not start else None
    lo = float(start) if start else bounds["start"]
    hi = float(end) if end else bounds["end"]
    sel = sorted(l for t, l in zip(ends, lats) if lo <= t <= hi)
    n = len(sel)

    def pct(q):
        return sel[max(0, math.ceil(q * n) - 1)] if n else float("nan")

    print(json.dumps({"tps": round(n / (hi - lo), 1) if hi > lo else None, "count": n,
                      "seconds": round(hi - lo, 2), "avg_ms": round(sum(sel) / n, 2) if n else None,
                      "p99_ms": round(pct(0.99), 1), "max_ms": round(sel[-1], 1) if n else None,
                      "covered": bool(bounds) or (min(ends) <= lo and max(ends) >= hi)}))


def consumer():
    return Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": "engage-snapshot-bench",
                     "enable.auto.commit": False})


def count(topic):
    """Messages in a topic, from the partitions' watermarks."""
    cons = consumer()
    try:
        md = cons.list_topics(topic, timeout=20)
        total = 0
        for p in md.topics[topic].partitions:
            low, high = cons.get_watermark_offsets(TopicPartition(topic, p), timeout=20)
            total += high - low
    finally:
        cons.close()
    print(total)


def make_topics(partitions_, *names):
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP, "log_level": 4})
    futures = admin.create_topics([NewTopic(name, int(partitions_), 1) for name in names])
    for f in futures.values():
        f.result(timeout=30)


def jget(obj, *path):
    v = json.loads(obj)
    for p in path:
        v = v[int(p)] if isinstance(v, list) else v[p]
    print("" if v is None else v if not isinstance(v, (dict, list)) else json.dumps(v))


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"snap": lambda: snap(*args),
     "pgbench": lambda: pgbench(*args),
     "count": lambda: count(args[0]),
     "make-topics": lambda: make_topics(*args),
     "jget": lambda: jget(*args)}[cmd]()
PY
export BENCH_DIR=$DIR BENCH_PORT=$PORT BENCH_BOOTSTRAP=127.0.0.1:$KAFKA_PORT
py() { "$VENV/bin/python" "$PY" "$@"; }
jget() { py jget "$@"; }

# --- Broker and cluster. --------------------------------------------------------
say "Kafka broker in $KDIR, port $KAFKA_PORT"
"$ROOT/scripts/kafka.sh" start "$KDIR" "$KAFKA_PORT" >/dev/null
BENCH_KAFKA_PID=$(cat "$KDIR/kafka.pid")
export BENCH_KAFKA_PID

say "cluster in $DIR, port $PORT ($("$PGBIN/postgres" --version))"
cluster_init "$DIR" "$PORT" \
    "shared_preload_libraries = 'pg_engage'" \
    "engage.database = 'bench'" \
    "engage.brokers = '127.0.0.1:$KAFKA_PORT'" \
    "engage.enabled = off" \
    "engage.topic_prefix = '$PREFIX'" \
    "shared_buffers = 1GB" \
    "maintenance_work_mem = 1GB" \
    "max_parallel_maintenance_workers = 2" \
    "max_wal_size = 16GB" \
    "min_wal_size = 1GB" \
    "checkpoint_timeout = 1h" \
    "autovacuum = off" \
    "log_lock_waits = on" \
    "deadlock_timeout = '${LOCK_LOG_MS}ms'" \
    "client_min_messages = warning"
cluster_start "$DIR"
cluster_psql "$DIR" "$PORT" postgres -c "CREATE DATABASE bench"
DEFAULT_CHUNK_ROWS=$(sql1 "SHOW engage.snapshot_chunk_rows")
CHUNK_ROWS=${CHUNK_ROWS:-$DEFAULT_CHUNK_ROWS}
[ "$CHUNK_ROWS" = "$DEFAULT_CHUNK_ROWS" ] || engage_set engage.snapshot_chunk_rows "$CHUNK_ROWS"
if [ "$COMPARE_CHUNKS" = default ]; then
    if [ "$CHUNK_ROWS" = 50000 ]; then COMPARE_CHUNKS="50000 10000"; else COMPARE_CHUNKS="$CHUNK_ROWS 50000"; fi
fi

# --- Fill. ----------------------------------------------------------------------
say "fill: $MEMBERS members, $AUDIENCES audiences, 1 campaign of $MEMBERS, $(commas "$ROWS") audience_members ($FILL_ORDER order)"
fill_start=$(date +%s)
ORDER_BY=
[ "$FILL_ORDER" = random ] && ORDER_BY="ORDER BY hashint8(k)"
psql_bench <<SQL
CREATE EXTENSION pg_engage;
INSERT INTO engage.users (username, department) VALUES ('bench', 'marketing');
INSERT INTO engage.templates (name, type) VALUES ('bench', 'newsletter');
INSERT INTO engage.audiences (name, segment_types, location_type)
SELECT 'audience ' || a, '{newsletter,eu}', 'country' FROM generate_series(1, $AUDIENCES) a;
INSERT INTO engage.members (name, email, contact)
SELECT 'Member ' || m, 'member' || m || '@example.com', '+1 555 ' || lpad(m::text, 7, '0')
FROM generate_series(1, $MEMBERS) m;
INSERT INTO engage.campaigns (template_id, user_id, audience_id, name) VALUES (1, 1, 1, 'campaign 1');
INSERT INTO engage.campaign_audience (campaign_id, member_id, email)
SELECT 1, m, 'member' || m || '@example.com' FROM generate_series(1, $MEMBERS) m;
-- audience_members' key, foreign keys and other indexes are put back after the
-- fill, as they were: built in one go and validated once.
SELECT string_agg(format('ALTER TABLE engage.audience_members ADD CONSTRAINT %I %s',
                         conname, pg_get_constraintdef(oid)), E';\n' ORDER BY contype DESC, conname) || ';'
       AS constraint_defs
FROM pg_constraint WHERE conrelid = 'engage.audience_members'::regclass AND contype IN ('p', 'f') \gset
SELECT string_agg(pg_get_indexdef(i.indexrelid), E';\n') || ';' AS index_defs
FROM pg_index AS i
WHERE i.indrelid = 'engage.audience_members'::regclass
  AND NOT EXISTS (SELECT FROM pg_constraint c WHERE c.conindid = i.indexrelid) \gset
\o $DIR/restore.sql
\qecho :constraint_defs
\qecho :index_defs
\o
SELECT format('ALTER TABLE engage.audience_members %s',
              string_agg(format('DROP CONSTRAINT %I', conname), ', ' ORDER BY contype, conname)) AS drop_cons
FROM pg_constraint WHERE conrelid = 'engage.audience_members'::regclass AND contype IN ('p', 'f') \gset
:drop_cons;
DROP INDEX engage.audience_members_dedupe_idx, engage.audience_members_member_idx;
INSERT INTO engage.audience_members (audience_id, member_id, email, contact)
SELECT 1 + k / $MEMBERS, 1 + k % $MEMBERS,
       'member' || (1 + k % $MEMBERS) || '@example.com',
       CASE WHEN k % 4 <> 3 THEN '+1 555 ' || lpad((1 + k % $MEMBERS)::text, 7, '0') END
FROM generate_series(0, $ROWS - 1) k $ORDER_BY;
\i $DIR/restore.sql
VACUUM ANALYZE;
CHECKPOINT;
SQL
[ "$(sql1 "SELECT count(*) FROM pg_index WHERE indrelid = 'engage.audience_members'::regclass")" = 3 ] ||
    die "audience_members should have its 3 indexes back"
[ "$(sql1 "SELECT count(*) FROM pg_constraint WHERE conrelid = 'engage.audience_members'::regclass AND contype IN ('p', 'f') AND convalidated")" = 3 ] ||
    die "audience_members should have its key and 2 validated foreign keys back"
TABLE_MB=$(sql1 "SELECT round(pg_table_size('engage.audience_members') / 1048576.0)")
INDEX_MB=$(sql1 "SELECT round(pg_indexes_size('engage.audience_members') / 1048576.0)")
CORRELATION=$(sql1 "SELECT round(correlation::numeric, 3) FROM pg_stats
                    WHERE schemaname = 'engage' AND tablename = 'audience_members' AND attname = 'audience_id'")
FILL_S=$(( $(date +%s) - fill_start ))
say "filled in $FILL_S s: table $TABLE_MB MiB, indexes $INDEX_MB MiB, audience_id correlation $CORRELATION"

# The plan the shipper's chunk query gets (extension/snapshotread.c, chunk_query(): no LIMIT,
# a cursor planned for all its rows, no parallel workers), for the first chunk,
# one halfway and one 95% through.
CHUNK_SELECT="SELECT r, r.audience_id::pg_catalog.text, r.member_id::pg_catalog.text FROM ONLY engage.audience_members AS r"
# EXPLAIN of the chunk query after the key of the fill's row $1 (0: the first chunk).
chunk_plan() {
    local where=
    ((${1} == 0)) || where="WHERE ROW(r.audience_id, r.member_id) >
        ROW('$(( 1 + $1 / MEMBERS ))'::pg_catalog.text::bigint, '$(( 1 + $1 % MEMBERS ))'::pg_catalog.text::bigint)"
    psql_bench -At -c "SET max_parallel_workers_per_gather = 0" \
        -c "EXPLAIN $CHUNK_SELECT $where ORDER BY r.audience_id, r.member_id"
}
# JIT is used (and compiled again for every chunk) when the cost passes jit_above_cost.
plan_line() { echo "$(head -n 1 <<<"$1")$(grep -q '^JIT:' <<<"$1" && echo "; JIT")"; }
PLAN_FIRST=$(plan_line "$(chunk_plan 0)")
PLAN_HALF=$(plan_line "$(chunk_plan $(( ROWS / 2 )))")
PLAN_TAIL=$(plan_line "$(chunk_plan $(( ROWS / 100 * 95 )))")
say "the chunk query's plan: first chunk: $PLAN_FIRST"
say "  halfway: $PLAN_HALF"
say "  95% through: $PLAN_TAIL"

# --- COPY: the speed limit of reading the table. ---------------------------------
# Seconds a statement takes (psql \timing).
timed_s() {
    psql_bench -At -c '\timing on' -c "$1" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' |
        awk '{ printf "%.3f", $1 / 1000 }'
}
# For the record beside it: the same rows as JSON (row_to_json), i.e. reading
# plus rendering each row as a JSON object, still without Kafka.
COPY_S='' JSON_S=''
for ((i = 1; i <= COPY_RUNS; i++)); do
    COPY_S+="$(timed_s "COPY engage.audience_members TO '/dev/null'") "
    JSON_S+="$(timed_s "COPY (SELECT row_to_json(r) FROM ONLY engage.audience_members AS r) TO '/dev/null'") "
    say "COPY run $i: $(awk '{ print $NF }' <<<"$COPY_S") s; as JSON: $(awk '{ print $NF }' <<<"$JSON_S") s"
done
COPY_MED=$(median "$COPY_S")
JSON_MED=$(median "$JSON_S")
TABLE_ROWS=$(sql1 "SELECT count(*) FROM engage.audience_members")
COPY_RATE=$(awk -v n="$TABLE_ROWS" -v s="$COPY_MED" 'BEGIN { printf "%.0f", n / s }')
JSON_RATE=$(awk -v n="$TABLE_ROWS" -v s="$JSON_MED" 'BEGIN { printf "%.0f", n / s }')

# --- pgbench. -------------------------------------------------------------------
cat >"$DIR/pgbench.sql" <<SQL
\set audience random(1, $AUDIENCES)
\set member random(1, $MEMBERS)
BEGIN;
INSERT INTO engage.members (name, email, contact)
VALUES ('pgbench', 'pgbench@example.com', '+1 555 0000000') RETURNING member_id AS new_member \gset
INSERT INTO engage.audience_members (audience_id, member_id, email, contact)
VALUES (:audience, :new_member, 'pgbench@example.com', '+1 555 0000000');
UPDATE engage.campaign_audience SET opened = true, opened_at = now()
 WHERE campaign_id = 1 AND member_id = :member;
END;
SQL
chmod 644 "$DIR/pgbench.sql"

# Runs pgbench in SEGMENT-second runs logging every transaction into directory
# $1, $2 segments (0: until $DIR/stop-pgbench exists); writes $1/bounds.json
# (epoch seconds from the first segment's start to the last one's end).
pgbench_loop() {
    local dir=$1 max=$2 i=0 t0
    mkdir -p "$dir"
    t0=$(date +%s.%N)
    while [ ! -e "$DIR/stop-pgbench" ] && { ((max == 0)) || ((i < max)); }; do
        "$PGBIN/pgbench" -h "$DIR" -p "$PORT" -U postgres -n -c "$CLIENTS" -j "$CLIENTS" -M prepared \
            -T "$SEGMENT" -l --log-prefix="$dir/log$i" -f "$DIR/pgbench.sql" bench >"$dir/out$i.txt" 2>&1 ||
            { cat "$dir/out$i.txt" >&2; return 1; }
        i=$((i + 1))
    done
    printf '{"start": %s, "end": %s, "segments": %d}\n' "$t0" "$(date +%s.%N)" "$i" >"$dir/bounds.json"
}

SEGMENTS=$(( (PGBENCH_SECONDS + SEGMENT - 1) / SEGMENT ))
say "pgbench alone (shipper off, no slot): $CLIENTS clients, $SEGMENTS x $SEGMENT s"
psql_bench -c "CHECKPOINT"
pgbench_loop "$DIR/pgb-alone" "$SEGMENTS"
ALONE_JSON=$(py pgbench "$DIR/pgb-alone" "" "")
say "  alone: $ALONE_JSON"

# --- Initial snapshot. --------------------------------------------------------------
CAPTURED=$(sql1 "SELECT string_agg('$PREFIX.' || c.relname, ' ' ORDER BY c.relname)
                 FROM engage_internal.captured_tables() AS t JOIN pg_class AS c ON c.oid = t")
# shellcheck disable=SC2086  # one topic per word
py make-topics 3 $CAPTURED
CAPTURED_ROWS=$(sql1 "SELECT sum(n) FROM (SELECT (xpath('/row/n/text()',
                          query_to_xml(format('SELECT count(*) AS n FROM %s', t), false, true, '')))[1]::text::bigint
                      FROM engage_internal.captured_tables() AS t) AS x(n)")
# Runs a snapshot ($1: initial or requested; $2 its chunk size; $3 a tag) with
# pgbench alongside unless $4 is 0; sets SNAP_JSON and DURING_JSON.
snapshot_run() {
    local how=$1 chunk=$2 tag=$3 with_pgbench=${4:-1} after am_start am_end
    after=$(sql1 "SELECT coalesce(max(id), 0) FROM engage.snapshots")
    psql_bench -c "CHECKPOINT"
    if ((with_pgbench)); then
        rm -f "$DIR/stop-pgbench"
        pgbench_loop "$DIR/pgb-$tag" 0 &
        PGBENCH_LOOP_PID=$!
        sleep 2                 # pgbench connected and going
    fi
    if [ "$how" = initial ] && ((PERF_SECONDS > 0)) && command -v perf >/dev/null; then
        ( sleep 3
          pid=$(sql1 "SELECT pid FROM engage.shipper")
          perf record -F 999 -g -p "$pid" -o "$DIR/perf.data" -- sleep "$PERF_SECONDS" \
              >"$DIR/perf-record.log" 2>&1 ) &
        PERF_PID=$!
    fi
    SNAP_JSON=$(py snap "$how" "$after" $((600 + ROWS / 1000)) "$chunk")
    if [ -n "$PERF_PID" ]; then wait "$PERF_PID" || true; PERF_PID=; fi
    DURING_JSON='{"tps": null, "max_ms": null}'
    ((with_pgbench)) || return 0
    touch "$DIR/stop-pgbench"
    wait "$PGBENCH_LOOP_PID"
    PGBENCH_LOOP_PID=
    # audience_members' own snapshot window.
    read -r am_start am_end < <("$VENV/bin/python" -c '
import json, sys
s = [x for x in json.loads(sys.argv[1])["snapshots"] if x["table"] == "engage.audience_members"][0]
print(s["started"], s["finished"])' "$SNAP_JSON")
    DURING_JSON=$(py pgbench "$DIR/pgb-$tag" "$am_start" "$am_end")
}

# Rows/s of audience_members' snapshot in $1 (a snap JSON); also its rows, seconds
# and chunks, and the shipper's main-thread CPU per row of all its snapshots (us).
am_rate() {
    "$VENV/bin/python" -c '
import json, sys
j = json.loads(sys.argv[1])
s = [x for x in j["snapshots"] if x["table"] == "engage.audience_members"][0]
sec = s["finished"] - s["started"]
rows = sum(x["rows"] for x in j["snapshots"])
print(round(s["rows"] / sec), s["rows"], round(sec, 2), s["chunks"],
      round(1e6 * j["shipper_main_thread_cpu_s"] / rows, 2))' "$1"
}

# Restarts the shipper (a new process and session).
shipper_restart() {
    engage_set engage.enabled off
    wait_for "the shipper to stop" 60 \
        "SELECT state = 'stopped' AND pid IS NULL AND NOT EXISTS (SELECT FROM pg_stat_activity
              WHERE backend_type = 'pg_engage shipper') FROM engage.shipper"
    engage_set engage.enabled on
    wait_for "the shipper to run" 60 "SELECT state = 'running' FROM engage.shipper"
}

say "initial snapshot: engage.snapshot_chunk_rows $CHUNK_ROWS; pgbench alongside"
snapshot_run initial "$CHUNK_ROWS" initial
INITIAL_JSON=$SNAP_JSON INITIAL_DURING=$DURING_JSON
read -r SNAP_RATE SNAP_ROWS SNAP_SECONDS SNAP_CHUNKS SNAP_US <<<"$(am_rate "$INITIAL_JSON")"
say "  snapshot: $(commas "$SNAP_RATE") rows/s ($(commas "$SNAP_ROWS") rows in $SNAP_SECONDS s, $SNAP_CHUNKS chunks);" \
    "all snapshots done after $(jget "$INITIAL_JSON" done_s) s, confirmed after $(jget "$INITIAL_JSON" confirmed_s) s"
say "  pgbench during: $INITIAL_DURING"
if [ -f "$DIR/perf.data" ]; then
    perf report -i "$DIR/perf.data" --no-children -g none --sort dso,symbol --percent-limit 0.7 --stdio 2>/dev/null |
        grep -E '^ +[0-9]' | head -n 45 >"$DIR/perf.txt" || true
fi
KAFKA_AM=$(py count "$PREFIX.audience_members")

# --- Streaming only (no snapshot). ------------------------------------------------
say "pgbench with the shipper streaming, no snapshot: $SEGMENTS x $SEGMENT s"
psql_bench -c "CHECKPOINT"
rm -f "$DIR/stop-pgbench"
pgbench_loop "$DIR/pgb-streaming" "$SEGMENTS"
STREAMING_JSON=$(py pgbench "$DIR/pgb-streaming" "" "")
say "  streaming: $STREAMING_JSON"

# --- Chunk sizes: on-demand snapshots of audience_members. ------------------------
declare -A CMP_RATES CMP_HWM CMP_TPS CMP_US
CMP_ORDER=()
for ((r = 1; r <= COMPARE_ROUNDS && ${#COMPARE_CHUNKS} > 0; r++)); do
    read -r -a order <<<"$COMPARE_CHUNKS"
    if ((r % 2 == 0)); then
        for ((i = 0, j = ${#order[@]} - 1; i < j; i++, j--)); do
            t=${order[i]} order[i]=${order[j]} order[j]=$t
        done
    fi
    for c in "${order[@]}"; do
        [ -n "${CMP_RATES[$c]+x}" ] || CMP_ORDER+=("$c")
        engage_set engage.snapshot_chunk_rows "$c"
        shipper_restart
        say "on-demand snapshot of audience_members, chunk $c rows (round $r)" \
            "$( ((COMPARE_PGBENCH)) && echo "with" || echo "without") pgbench"
        snapshot_run requested "$c" "cmp-$r-$c" "$COMPARE_PGBENCH"
        read -r rate rows sec chunks us <<<"$(am_rate "$SNAP_JSON")"
        hwm=$(jget "$SNAP_JSON" private_kb)
        tps=$(jget "$DURING_JSON" tps)
        CMP_RATES[$c]+="$rate "
        CMP_HWM[$c]+="$hwm "
        CMP_TPS[$c]+="$tps "
        CMP_US[$c]+="$us "
        say "  chunk $c: $(commas "$rate") rows/s ($rows rows, $sec s, $chunks chunks); private RSS peak $((hwm / 1024)) MiB (VmHWM $(( $(jget "$SNAP_JSON" vm_hwm_kb) / 1024 )) MiB);" \
            "pgbench ${tps:-none} tps; shipper CPU $(jget "$SNAP_JSON" shipper_cpu_s) s" \
            "(main thread $(jget "$SNAP_JSON" shipper_main_thread_cpu_s) s, $us us/row), broker $(jget "$SNAP_JSON" broker_cpu_s) s;" \
            "machine busy $(jget "$SNAP_JSON" machine_busy_pct)%"
    done
done

# --- Report. --------------------------------------------------------------------
mib() { awk -v k="$1" 'BEGIN { printf "%.0f", k / 1024 }'; }
verdict() { if [ "$1" = 1 ]; then echo PASS; else echo FAIL; fi; }
RATIO=$(awk -v s="$SNAP_RATE" -v c="$COPY_RATE" 'BEGIN { printf "%.2f", s / c }')
HWM_KB=$(jget "$INITIAL_JSON" vm_hwm_kb)
PRIVATE_KB=$(jget "$INITIAL_JSON" private_kb)
ALONE_TPS=$(jget "$ALONE_JSON" tps)
DURING_TPS=$(jget "$INITIAL_DURING" tps)
STREAMING_TPS=$(jget "$STREAMING_JSON" tps)
TPS_RATIO=$(awk -v d="$DURING_TPS" -v a="$ALONE_TPS" 'BEGIN { printf "%.2f", d / a }')
TPS_RATIO_STREAM=$(awk -v d="$DURING_TPS" -v a="$STREAMING_TPS" 'BEGIN { printf "%.2f", d / a }')
LOCKS=$(jget "$INITIAL_JSON" shipper_locks)
BLOCKED_BY_SHIPPER=$(jget "$INITIAL_JSON" blocked_by_shipper_samples)
SHIPPER_PID=$(jget "$INITIAL_JSON" pid)
# Lock waits longer than deadlock_timeout, from the log: all, and those on a lock the shipper held.
LOCK_WAITS=$(grep -c 'still waiting for' "$DIR/server.log" || true)
LOCK_WAITS_SHIPPER=$(grep -A2 'still waiting for' "$DIR/server.log" |
    grep -Ec "(holding the lock|Processes holding the lock): ([0-9, ]*, )?$SHIPPER_PID([,.]|$)" || true)
ONLY_ACCESS_SHARE=$("$VENV/bin/python" -c '
import json, sys
locks = json.loads(sys.argv[1])
print(int(all(set(m) <= {"AccessShareLock"} for r, m in locks.items() if not r.startswith("engage_internal"))))' "$LOCKS")
V_RATIO=$(verdict "$(awk -v r="$RATIO" -v m="$MIN_COPY_RATIO" 'BEGIN { print (r >= m) }')")
V_HWM=$(verdict "$(awk -v k="$PRIVATE_KB" -v m="$MAX_HWM_MIB" 'BEGIN { print (k / 1024 <= m) }')")
V_LOCK=$(verdict "$(( ONLY_ACCESS_SHARE == 1 && BLOCKED_BY_SHIPPER == 0 && LOCK_WAITS_SHIPPER == 0 ))")
V_COUNT=$(verdict "$(( KAFKA_AM >= SNAP_ROWS && SNAP_ROWS >= ROWS ))")

echo
echo "Initial snapshot of $(commas "$ROWS") audience_members rows ($FILL_ORDER order; table $TABLE_MB MiB," \
     "indexes $INDEX_MB MiB; $(commas "$CAPTURED_ROWS") rows in all captured tables) to Kafka on" \
     "127.0.0.1:$KAFKA_PORT; engage.snapshot_chunk_rows $CHUNK_ROWS; pgbench $CLIENTS clients alongside"
echo "$("$PGBIN/postgres" --version); $(nproc) CPUs; $(free -g | awk '/^Mem:/ { print $2 }') GiB RAM; Linux $(uname -r)"
echo
echo "| metric | result | target | verdict |"
echo "|---|---:|---|---|"
echo "| COPY engage.audience_members TO '/dev/null' | $(commas "$COPY_RATE") rows/s (median $COPY_MED s of $(commas "$TABLE_ROWS") rows; runs ${COPY_S% }) | | |"
echo "| snapshot of audience_members (started_at to finished_at) | $(commas "$SNAP_RATE") rows/s ($(commas "$SNAP_ROWS") rows in $SNAP_SECONDS s, $SNAP_CHUNKS chunks) | | |"
echo "| snapshot rate / COPY rate | ${RATIO}x | >= ${MIN_COPY_RATIO}x | $V_RATIO |"
echo "| for the record: COPY (SELECT row_to_json(r) ...) TO '/dev/null' | $(commas "$JSON_RATE") rows/s (median $JSON_MED s; runs ${JSON_S% }); snapshot / it: $(awk -v s="$SNAP_RATE" -v c="$JSON_RATE" 'BEGIN { printf "%.2fx", s / c }') | | |"
echo "| enable to every snapshot done / to the slot confirmed past the end | $(jget "$INITIAL_JSON" done_s) s / $(jget "$INITIAL_JSON" confirmed_s) s | | |"
echo "| messages in $PREFIX.audience_members (watermarks) | $(commas "$KAFKA_AM") | >= rows read | $V_COUNT |"
echo "| shipper memory, peak VmHWM (/proc; counts the shared buffers it read: RssShmem peak $(mib "$(jget "$INITIAL_JSON" rss_shmem_kb)") MiB) | $(mib "$HWM_KB") MiB | for the record | |"
echo "| shipper memory, peak of its own (VmRSS - RssShmem; RssAnon peak $(mib "$(jget "$INITIAL_JSON" rss_anon_kb)") MiB) | $(mib "$PRIVATE_KB") MiB | <= $MAX_HWM_MIB MiB | $V_HWM |"
echo "| CPU during the snapshots: shipper (main thread; per row read) / broker; whole machine busy | $(jget "$INITIAL_JSON" shipper_cpu_s) s ($(jget "$INITIAL_JSON" shipper_main_thread_cpu_s) s; $SNAP_US us) / $(jget "$INITIAL_JSON" broker_cpu_s) s; $(jget "$INITIAL_JSON" machine_busy_pct)% | | |"
echo "| pgbench alone (no slot): tps, latency avg / p99 / max | $ALONE_TPS; $(jget "$ALONE_JSON" avg_ms) / $(jget "$ALONE_JSON" p99_ms) / $(jget "$ALONE_JSON" max_ms) ms | | |"
echo "| pgbench during the snapshot: tps, latency avg / p99 / max | $DURING_TPS; $(jget "$INITIAL_DURING" avg_ms) / $(jget "$INITIAL_DURING" p99_ms) / $(jget "$INITIAL_DURING" max_ms) ms ($(jget "$INITIAL_DURING" count) transactions) | | |"
echo "| pgbench, shipper streaming without snapshot: tps, latency avg / p99 / max | $STREAMING_TPS; $(jget "$STREAMING_JSON" avg_ms) / $(jget "$STREAMING_JSON" p99_ms) / $(jget "$STREAMING_JSON" max_ms) ms | | |"
echo "| TPS during the snapshot / alone (/ streaming only) | ${TPS_RATIO}x (${TPS_RATIO_STREAM}x) | for the record | |"
echo "| shipper's locks on engage.* (pg_locks, $(jget "$INITIAL_JSON" samples) samples) | $LOCKS | ACCESS SHARE only | |"
echo "| writers blocked by the shipper (samples; lock waits > $LOCK_LOG_MS ms on its locks, log) | $BLOCKED_BY_SHIPPER; $LOCK_WAITS_SHIPPER (all lock waits logged: $LOCK_WAITS) | 0 | $V_LOCK |"
for c in "${CMP_ORDER[@]}"; do
    echo "| on-demand snapshot, chunk $c rows$( ((COMPARE_PGBENCH)) && echo ", pgbench alongside" || echo ", no pgbench"): rows/s (median), own RSS peak, main-thread CPU per row | $(commas "$(median "${CMP_RATES[$c]}")") (runs ${CMP_RATES[$c]% }); $(mib "$(median "${CMP_HWM[$c]}")") MiB; $(median "${CMP_US[$c]}") us | | |"
done
echo
echo "Shipper wait events (samples, every 0.1 s): $(jget "$INITIAL_JSON" shipper_waits)"
echo "Snapshots: $(jget "$INITIAL_JSON" snapshots)"
echo "Chunk query plan (the shipper's cursor, planned for all the rows left), first chunk: $PLAN_FIRST"
echo "  halfway: $PLAN_HALF; 95% through: $PLAN_TAIL"
echo "Fill: $FILL_S s; audience_id correlation $CORRELATION"
if [ -s "$DIR/perf.txt" ]; then
    echo "perf, shipper process, $PERF_SECONDS s of the snapshot (self %, dso, symbol):"
    cat "$DIR/perf.txt"
fi
echo "pg_engage lines in the server log (count, message):"
grep -E 'pg_engage|ERROR|WARNING|FATAL|PANIC' "$DIR/server.log" | sed -E 's/^[0-9-]+ [0-9:.]+ [A-Z]+ \[[0-9]+\] //' |
    sed -E 's/[0-9]+/N/g' | sort | uniq -c | sort -rn | head -n 20 || true
[ "$V_RATIO$V_HWM$V_LOCK$V_COUNT" = PASSPASSPASSPASS ] || exit 3
exit 0
}
