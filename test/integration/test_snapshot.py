"""Snapshots (issue 9, section 1): the rows that existed before the slot, and any table on demand,
shipped as "read" records while the stream goes on; a consumer that applies snapshot and stream
ends with exactly the database's state, also through crashes in the middle of a snapshot.
"""
import os
import random
import signal
import threading
import time

import psycopg
import pytest

from support import Workload, check_stream, id_order, wait_until
from test_rebuild import RandomWorkload

# Small chunks and a throttle: the snapshot runs long enough for writes to hit the chunk being read.
CONF = ["engage.enabled = off", "engage.snapshot_chunk_rows = 200",
        "logical_decoding_work_mem = '64kB'"]


# The product's tables (the tests add others with their own checks).
PRODUCT_TABLES = ["engage.users", "engage.templates", "engage.audiences", "engage.members",
                  "engage.audience_members", "engage.campaigns", "engage.campaign_audience",
                  "engage.campaign_rates_hourly"]


class Churn(threading.Thread):
    """Updates and deletes random existing members and memberships until stopped (hits rows inside
    and outside the chunk being read)."""

    def __init__(self, cluster, seed):
        super().__init__(daemon=True)
        self.cluster, self.rng, self.stop_event, self.done, self.failure = \
            cluster, random.Random(seed), threading.Event(), 0, None

    def run(self):
        try:
            with self.cluster.connect() as conn:
                lo, hi = conn.execute("SELECT min(member_id), max(member_id) FROM engage.members").fetchone()
                while not self.stop_event.is_set():
                    with conn.transaction():
                        for _ in range(self.rng.randint(1, 5)):
                            m = self.rng.randint(lo, hi)
                            kind = self.rng.random()
                            if kind < 0.6:
                                conn.execute("UPDATE engage.members SET name = name || '~' WHERE member_id = %s", (m,))
                            elif kind < 0.8:
                                conn.execute("DELETE FROM engage.members WHERE member_id = %s", (m,))
                            else:
                                conn.execute("UPDATE engage.audience_members SET email = %s WHERE member_id = %s",
                                             (f"churn{self.done}@x.org", m))
                    self.done += 1
                    time.sleep(0.002)
        except Exception as exc:  # noqa: BLE001 - reported by stop()
            self.failure = exc

    def stop(self):
        self.stop_event.set()
        self.join(60)
        assert self.failure is None, f"churn failed: {self.failure!r}"
        return self.done


def snapshots(cluster):
    """The rows of engage.snapshots as dicts."""
    with cluster.connect() as conn:
        cur = conn.execute("SELECT * FROM engage.snapshots ORDER BY id")
        cols = [c.name for c in cur.description]
        return [dict(zip(cols, r)) for r in cur.fetchall()]


def wait_snapshots_done(cluster, timeout=240):
    """Waits until no snapshot is open; returns them all."""
    return wait_until(lambda: (s := snapshots(cluster)) and all(r["state"] not in ("pending", "running")
                                                               for r in s) and s,
                      timeout, "the snapshots to end", interval=0.5)


def read_records(events):
    return [e for e in events if e.record["op"] == "read"]


@pytest.fixture(scope="module")
def populated(make_cluster):
    """A cluster whose engage tables were filled before the shipper ever ran (no slot yet)."""
    c = make_cluster("snapshot", *CONF, wait_slot=False)
    with c.connect() as conn:
        RandomWorkload(conn, 909).run(steps=200)
        conn.execute("ANALYZE")
    assert not c.query("SELECT 1 FROM pg_replication_slots")
    return c


def test_initial_snapshot_with_concurrent_writes(populated, broker):
    """The first start snapshots every captured table while writes go on; the rebuild equals the
    database, and the progress view shows each table done."""
    cluster = populated
    rows_before = cluster.one("SELECT count(*) FROM engage.members")
    workload, churn = Workload(cluster, "snap", seed=7), Churn(cluster, 8)
    workload.start()
    churn.start()
    cluster.reload(enabled="on")
    wait_until(lambda: snapshots(cluster), 60, "the initial snapshot requests")
    done = wait_snapshots_done(cluster)
    churn_done = churn.stop()
    workload.stop()
    cluster.wait_shipped(timeout=180)
    events = cluster_events(broker, cluster)
    result = check_stream(events, cluster, cluster.prefix)
    reads = read_records(events)
    members = [r for r in done if r["table_name"] == "engage.members"][0]
    assert members["state"] == "done" and members["reason"] == "initial", done
    assert members["rows_read"] >= rows_before - churn_done * 5, members
    assert members["chunks"] >= rows_before // 200, members
    assert {r["table_name"] for r in done} >= {"engage.members", "engage.audience_members", "engage.templates"}
    assert all(r["state"] == "done" and r["percent"] == 100 for r in done), done
    tables = {e.record["table"] for e in reads}
    assert {"engage.members", "engage.audience_members", "engage.users"} <= tables, tables
    # Read records are ordinary row records with op read: id, key, topic as an insert would have.
    for e in reads[:50]:
        assert e.record["pk"] and e.record["new"] and "old" not in e.record
    print(f"initial snapshot: {len(reads)} read records of {rows_before} members and more, "
          f"{churn_done} churn transactions, {result['events']} events")


def cluster_events(broker, cluster):
    return broker.read_prefix(cluster.prefix)


def test_read_records_have_the_shape_of_inserts(populated, broker):
    """Every type, NaN and infinities, TOAST, arrays, JSON: a read record's values are exactly
    those of the insert that wrote the row (the plugin writes both)."""
    cluster = populated
    cluster.query("""
        CREATE TABLE engage.kinds (
            id bigint PRIMARY KEY, n numeric, f float8, r real, t text, b bytea, j jsonb, js json,
            a int[], ta text[], ts timestamptz, tn timestamp, d date, iv interval, bo boolean,
            u uuid, big text, v varchar(10), c char(3), ip inet)""")
    cluster.query("""
        INSERT INTO engage.kinds
        SELECT g, CASE g % 4 WHEN 0 THEN 'NaN' WHEN 1 THEN 'Infinity' WHEN 2 THEN '-Infinity'
                              ELSE 12345678901234567890.123456789 END,
               CASE g % 3 WHEN 0 THEN 'NaN'::float8 WHEN 1 THEN '-Infinity' ELSE 0.1 END, 1.5,
               'line' || chr(10) || 'tab' || chr(9) || '"q"', '\\x00ff'::bytea, '{"a": [1, null]}',
               '{"b": 1}', ARRAY[1, NULL, 3], ARRAY['x', NULL], '2026-11-29 12:00:00.123456+02',
               '2026-11-29 12:00:00', '2026-11-29', '1 day 2 hours', g % 2 = 0,
               gen_random_uuid(), CASE WHEN g % 5 = 0 THEN repeat(md5(g::text), 400) END, 'v', 'c',
               '10.0.0.1/8'
        FROM generate_series(1, 300) g""")
    cluster.wait_shipped()
    ids = cluster.query("SELECT * FROM engage.snapshot(ARRAY['engage.kinds'::regclass])")
    assert len(ids) == 1 and ids[0][1] == "engage.kinds"
    done = wait_snapshots_done(cluster)
    assert [r for r in done if r["id"] == ids[0][0]][0]["rows_read"] == 300
    cluster.wait_shipped()
    events = [e for e in broker.read([f"{cluster.prefix}.kinds"])]
    inserts = {e.key: e.record for e in events if e.record["op"] == "insert"}
    reads = {e.key: e.record for e in events if e.record["op"] == "read"}
    assert len(inserts) == 300 and set(reads) == set(inserts)
    for key, rec in reads.items():
        ins = inserts[key]
        assert rec["new"] == ins["new"] and rec["pk"] == ins["pk"] and rec["table"] == ins["table"], key
        assert id_order(rec["id"]) > id_order(ins["id"]), (rec["id"], ins["id"])
    assert {r["new"]["n"] for r in reads.values()} >= {"NaN", "Infinity", "-Infinity"}


def test_snapshot_of_a_newly_captured_table(populated, broker):
    """A table added to engage.tables later is snapshotted on demand while it is written."""
    cluster = populated
    cluster.query("CREATE SCHEMA extra; CREATE TABLE extra.items (k1 int, k2 text, v text, PRIMARY KEY (k1, k2))")
    cluster.query("INSERT INTO extra.items SELECT g % 100, 'k' || g, 'v' || g FROM generate_series(1, 3000) g")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="not captured"):
        cluster.query("SELECT engage.snapshot(ARRAY['extra.items'::regclass])")
    cluster.restart_session(tables="engage.*,extra.*")
    stop = threading.Event()

    def write():
        rng = random.Random(3)
        with cluster.connect() as conn:
            while not stop.is_set():
                g = rng.randint(1, 3000)
                op = rng.random()
                if op < 0.5:
                    conn.execute("UPDATE extra.items SET v = v || '+' WHERE k1 = %s AND k2 = %s", (g % 100, f"k{g}"))
                elif op < 0.7:
                    conn.execute("DELETE FROM extra.items WHERE k1 = %s AND k2 = %s", (g % 100, f"k{g}"))
                else:
                    conn.execute("INSERT INTO extra.items VALUES (%s, %s, 'new') ON CONFLICT (k1, k2) DO UPDATE "
                                 "SET v = 'again'", (g % 100, f"k{g}"))
                time.sleep(0.001)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    (sid,), = cluster.query("SELECT snapshot_id FROM engage.snapshot(ARRAY['extra.items'::regclass])")
    snap = [r for r in wait_snapshots_done(cluster) if r["id"] == sid][0]
    assert snap["state"] == "done" and snap["rows_read"] >= 2000, snap
    stop.set()
    writer.join(30)
    cluster.wait_shipped()
    events = broker.read([f"{cluster.prefix}.extra.items"])
    rows = {}
    seen = set()
    for e in sorted(events, key=lambda e: (e.partition, e.offset)):
        if e.id in seen:
            continue
        seen.add(e.id)
        rec = e.record
        key = (rec["pk"]["k1"], rec["pk"]["k2"])
        if rec["op"] in ("insert", "update", "read"):
            rows[key] = rec["new"]["v"]
        elif rec["op"] == "delete":
            rows.pop(key, None)
    db = {(k1, k2): v for k1, k2, v in cluster.query("SELECT k1, k2, v FROM extra.items")}
    assert rows == db
    assert sum(1 for e in events if e.record["op"] == "read") > 1000


def test_crash_in_the_middle_of_a_snapshot(populated, broker):
    """kill -9 of the shipper and an immediate restart of PostgreSQL while a snapshot runs: it resumes
    at the chunk where it stopped and the rebuild still equals the database."""
    cluster = populated
    cluster.reload(snapshot_rows_per_second="4000")
    workload = Workload(cluster, "snapcrash", seed=11)
    workload.start()
    (sid,), = cluster.query("SELECT snapshot_id FROM engage.snapshot(ARRAY['engage.members'::regclass])")
    row = lambda: [r for r in snapshots(cluster) if r["id"] == sid][0]  # noqa: E731
    wait_until(lambda: row()["rows_read"] > 1000, 60, "the snapshot to make progress")
    os.kill(cluster.shipper_pids()[0], signal.SIGKILL)
    wait_until(lambda: row()["rows_read"] > 4000 and cluster.shipper_pids(), 90, "the snapshot to go on")
    cluster.stop("immediate")
    cluster.start()
    resumed = row()
    assert resumed["state"] == "running" and 0 < resumed["rows_read"], resumed
    final = wait_until(lambda: (r := row())["state"] == "done" and r, 240, "the snapshot to finish", interval=0.5)
    workload.stop()
    cluster.reload(snapshot_rows_per_second=None)
    cluster.wait_shipped(timeout=180)
    assert final["rows_read"] >= cluster.one("SELECT count(*) FROM engage.members") * 0.5
    log = cluster.log()
    assert f"snapshot {sid} of engage.members resumes" in log
    check_stream(cluster_events(broker, cluster), cluster, cluster.prefix, tables=PRODUCT_TABLES)


def test_keyless_tables_are_refused(populated):
    """A table without a key cannot be snapshotted consistently: refused with a clear error."""
    cluster = populated
    cluster.query("CREATE TABLE engage.nokey (a int, b text)")
    try:
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="no primary key"):
            cluster.query("SELECT engage.snapshot(ARRAY['engage.nokey'::regclass])")
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="no primary key"):
            cluster.query("SELECT engage.snapshot()")
    finally:
        cluster.query("DROP TABLE engage.nokey")


def test_forged_watermark_is_quarantined(populated, broker):
    """A role without rights writing an engage.watermark message gets a quarantine record, not a
    snapshot's rows."""
    cluster = populated
    cluster.query("CREATE ROLE wm_mallory LOGIN")
    before = cluster.status()["quarantined"]
    with psycopg.connect(host="127.0.0.1", port=cluster.port, user="wm_mallory", dbname="postgres",
                         autocommit=True) as conn:
        conn.execute("SELECT pg_logical_emit_message(true, 'engage.watermark', %s)",
                     ("0" * 64 + '{"snapshot":1,"chunk":1,"nonce":"0000000000000000","rows":1}',))
    wait_until(lambda: cluster.status()["quarantined"] > before, 30, "the forged watermark to be quarantined")
    assert "a watermark not written by the pg_engage shipper" in cluster.log()


def test_snapshot_of_a_hostile_name(populated, broker):
    """A table whose schema, name and key columns need quoting, with columns named like the
    query's row alias ("r", "r_"): every row is read, under the table's escaped topic."""
    cluster = populated
    cluster.reload(enabled="on")  # already on when the module's first test ran
    cluster.wait_running()
    cluster.query('CREATE TABLE engage."odd ""name"" r" ("k y" text, "r" int, "r_" text, PRIMARY KEY ("k y", "r"))')
    cluster.query('INSERT INTO engage."odd ""name"" r" SELECT \'k\' || g, g, \'x\' FROM generate_series(1, 700) g')
    (sid,), = cluster.query("""SELECT snapshot_id FROM engage.snapshot(ARRAY['engage."odd ""name"" r"'::regclass])""")
    snap = [r for r in wait_snapshots_done(cluster) if r["id"] == sid][0]
    assert snap["state"] == "done" and snap["rows_read"] == 700, snap
    cluster.wait_shipped()
    topic = [t for t in broker.topics(cluster.prefix) if ".odd__name__r." in t]
    assert len(topic) == 1, broker.topics(cluster.prefix)
    reads = {e.key for e in broker.read(topic) if not e.tombstone and e.record["op"] == "read"}
    assert len(reads) == 700
