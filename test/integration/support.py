"""Helpers of the pg_engage integration suite: broker, clusters, reading and checking the stream."""
import json
import os
import random
import re
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from decimal import Decimal
from functools import cached_property
from pathlib import Path

import psycopg
from confluent_kafka import Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = Path(__file__).resolve().parents[2]


def wait_until(fn, timeout, what, interval=0.2, ignore=(psycopg.OperationalError,)):
    """Polls fn until it returns something truthy (returned); fails after timeout seconds."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            value = fn()
            if value:
                return value
        except ignore as exc:  # e.g. the server is restarting
            last_exc = exc
        if time.monotonic() > deadline:
            extra = f" (last error: {last_exc})" if last_exc else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{extra}")
        time.sleep(interval)


def lsn_int(lsn):
    """Converts an LSN 'X/Y' to an integer."""
    hi, lo = lsn.split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def id_order(event_id):
    """Sort key of an event id '<commit lsn>:<position>'."""
    lsn, pos = event_id.rsplit(":", 1)
    return (lsn_int(lsn), int(pos))


def port_free(port):
    """True when nothing listens on 127.0.0.1:port."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def run(cmd, timeout=180, **kw):
    """Runs cmd, failing with its output when it fails."""
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


# --------------------------------------------------------------------------- Kafka

@dataclass
class Event:
    """One Kafka message of the stream, with its record parsed."""
    topic: str
    partition: int
    offset: int
    key: bytes
    headers: dict
    value: bytes

    @cached_property
    def record(self):
        """The JSON record (numbers with a fraction as Decimal); None for a tombstone."""
        return None if self.value is None else json.loads(self.value, parse_float=Decimal)

    @property
    def tombstone(self):
        """A null-value message (engage.tombstones): it has no record."""
        return self.value is None

    @property
    def id(self):
        """The event id from the record; a tombstone's from its engage.id header."""
        return self.headers.get("engage.id") if self.value is None else self.record["id"]


class Kafka:
    """Kafka as its clients see it, reached through a bootstrap list: admin, topics, reading.

    Broker (one broker) and BrokerCluster (several) add running it with scripts/kafka.sh.
    """

    replication = 1  # replication factor of the topics create_topic makes

    def __init__(self, bootstrap):
        self.bootstrap = bootstrap  # "host:port[,host:port...]"

    def admin(self):
        """A Kafka admin client."""
        return AdminClient({"bootstrap.servers": self.bootstrap})

    def create_topic(self, name, partitions=1, config=None):
        """Creates a topic with the given topic config."""
        admin = self.admin()  # must outlive the futures
        futures = admin.create_topics([NewTopic(name, partitions, self.replication, config=config or {})],
                                      operation_timeout=30)
        for f in futures.values():
            f.result(timeout=30)

    def topics(self, prefix):
        """Names of the topics of a prefix: row topics '<prefix>.*', application topics '<prefix>-app.*'
        and the control topic '<prefix>-control' (gap and snapshot records)."""
        md = self.admin().list_topics(timeout=20)
        return sorted(t for t in md.topics
                      if t.startswith((prefix + ".", prefix + "-app.")) or t == prefix + "-control")

    def _consumer(self, isolation, **conf):
        """A consumer (assign, never commit) with isolation.level isolation and more conf."""
        return Consumer({"bootstrap.servers": self.bootstrap, "group.id": "pg-engage-it",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "isolation.level": isolation, **conf})

    def ends(self, topics):
        """{(topic, partition): (low, high)} of the non-empty partitions of topics.

        high is the high watermark: past every message written so far, committed or not (what a
        read_committed consumer is told is the last stable offset, short of open transactions).
        """
        consumer = self._consumer("read_uncommitted")
        try:
            md = consumer.list_topics(timeout=20)
            ends = {}
            for t in topics:
                for p in md.topics[t].partitions:
                    low, high = consumer.get_watermark_offsets(TopicPartition(t, p), timeout=20)
                    if high > low:
                        ends[(t, p)] = (low, high)
            return ends
        finally:
            consumer.close()

    def read(self, topics, timeout=90, isolation="read_committed"):
        """Every message of topics (all partitions, from the beginning, assign not subscribe), up
        to the ends (high watermarks) the partitions had when called.

        isolation is the consumer's isolation.level: read_committed (librdkafka's default) skips
        aborted transactions and waits until the transactions open at the call have ended;
        read_uncommitted reads every message.  Commit and abort markers take offsets but are never
        delivered: a partition is read once the consumer reports its end (partition EOF) there.
        """
        ends = self.ends(topics)
        events = []
        if not ends:
            return events
        consumer = self._consumer(isolation, **{"enable.partition.eof": True})
        try:
            consumer.assign([TopicPartition(t, p, low) for (t, p), (low, _) in ends.items()])
            pending = set(ends)
            deadline = time.monotonic() + timeout
            while pending:
                if time.monotonic() > deadline:
                    raise AssertionError(f"could not read {pending} to the end within {timeout}s")
                for m in consumer.consume(num_messages=5000, timeout=1):
                    key = (m.topic(), m.partition())
                    end = ends[key][1]
                    if m.error() and m.error().code() == KafkaError._PARTITION_EOF:
                        if m.offset() >= end:
                            pending.discard(key)
                        continue
                    if m.error():
                        raise AssertionError(f"consumer error: {m.error()}")
                    if m.offset() >= end:
                        continue
                    events.append(Event(m.topic(), m.partition(), m.offset(), m.key(),
                                        {k: v.decode() for k, v in (m.headers() or [])}, m.value()))
                    if m.offset() == end - 1:
                        pending.discard(key)
            events.sort(key=lambda e: (e.topic, e.partition, e.offset))
            return events
        finally:
            consumer.close()

    def read_prefix(self, prefix, timeout=90, isolation="read_committed"):
        """Every message of the topics of a topic prefix."""
        return self.read(self.topics(prefix), timeout, isolation)


def kafka_sh(*args, env=None):
    """Runs scripts/kafka.sh with args (and extra environment); returns its stdout."""
    return run([str(ROOT / "scripts/kafka.sh"), *args], timeout=240, env={**os.environ, **(env or {})})


class Broker(Kafka):
    """The single Kafka broker of the session, run by scripts/kafka.sh."""

    def __init__(self, directory, port, sasl_port=None):
        super().__init__(f"127.0.0.1:{port}")
        self.dir = Path(directory)
        self.port = port
        self.sasl_port = sasl_port  # SASL_PLAINTEXT, PLAIN, user engage / engage-secret

    def _kafka(self, *args):
        """Runs scripts/kafka.sh with args."""
        return kafka_sh(*args, env={"KAFKA_SASL_PORT": str(self.sasl_port)} if self.sasl_port else None)

    def start(self):
        """Starts (formats on first use) the broker and waits until it is ready."""
        self._kafka("start", str(self.dir), str(self.port))

    def stop(self):
        """Stops the broker cleanly (SIGTERM)."""
        self._kafka("stop", str(self.dir))

    def restart(self):
        """Starts the stopped broker again on its data."""
        self._kafka("restart", str(self.dir))

    def kill9(self):
        """SIGKILL of the broker (a crash)."""
        self._kafka("kill9", str(self.dir))

    def running(self):
        """True when the broker process runs."""
        return subprocess.run([str(ROOT / "scripts/kafka.sh"), "status", str(self.dir)],
                              capture_output=True).returncode == 0


class BrokerCluster(Kafka):
    """A KRaft cluster of size combined broker+controller nodes on loopback (scripts/kafka.sh
    cluster-*): node i (1-based, also its node.id) listens on port + i - 1, its controller on
    port + 1000 + i - 1.  Topics are replicated size times (at most 3), min.insync.replicas 2.
    """

    def __init__(self, directory, port, size=3):
        super().__init__(",".join(f"127.0.0.1:{port + i}" for i in range(size)))
        self.dir = Path(directory)
        self.port = port
        self.size = size
        self.replication = min(size, 3)
        self.start_seconds = None  # how long the last start took

    def start(self):
        """Formats (on first use) and starts every node; waits until the cluster replicates."""
        t0 = time.monotonic()
        out = kafka_sh("cluster-start", str(self.dir), str(self.port), str(self.size)).strip()
        self.start_seconds = time.monotonic() - t0
        assert out == self.bootstrap, f"kafka.sh cluster-start printed {out!r}, not {self.bootstrap!r}"

    def stop(self):
        """Stops every node (SIGTERM)."""
        kafka_sh("cluster-stop", str(self.dir))

    def kill9(self, i):
        """Kills node i with SIGKILL (a crash)."""
        kafka_sh("cluster-kill9", str(self.dir), str(i))

    def restart(self, i):
        """Starts node i again (stopping it first if it runs) and waits until the cluster is whole:
        every node in the metadata and a replicated write acknowledged by all."""
        kafka_sh("cluster-restart-broker", str(self.dir), str(i))

    def running(self, i):
        """True when the process of node i runs."""
        status = subprocess.run([str(ROOT / "scripts/kafka.sh"), "cluster-status", str(self.dir)],
                                capture_output=True, text=True).stdout
        return f"b{i} running " in status

    def live_brokers(self):
        """Ids of the brokers in the cluster's metadata (registered and not fenced)."""
        return set(self.admin().list_topics(timeout=20).brokers)

    def leaders(self, topics):
        """How many partitions of topics each broker leads ({broker id: count})."""
        md = self.admin().list_topics(timeout=20)
        counts = {}
        for t in topics:
            for p in md.topics[t].partitions.values():
                counts[p.leader] = counts.get(p.leader, 0) + 1
        return counts


# --------------------------------------------------------------------------- PostgreSQL

class Cluster:
    """A throwaway PostgreSQL cluster made with scripts/lib.sh."""

    def __init__(self, directory, port, conf):
        self.dir = Path(directory)
        self.port = port
        self.conf = list(conf)
        self.logfile = self.dir / "server.log"
        self.prefix = None  # the engage.topic_prefix in effect
        self.module = None  # the test module using it

    def _lib(self, script):
        """Runs a scripts/lib.sh function."""
        return run(["bash", "-c", f"source '{ROOT}/scripts/lib.sh'; {script}"])

    def init(self):
        """initdb with the configuration lines."""
        args = " ".join("'" + line.replace("'", "'\\''") + "'" for line in self.conf)
        self._lib(f"cluster_init '{self.dir}' {self.port} {args}")

    def start(self):
        """Starts the server and waits until it accepts connections."""
        self._lib(f"cluster_start '{self.dir}'")

    def stop(self, mode="fast"):
        """Stops the server (mode fast or immediate)."""
        self._lib(f"cluster_stop '{self.dir}' {mode}")

    def append_conf(self, line):
        """Appends a line to postgresql.conf."""
        with open(self.dir / "data/postgresql.conf", "a") as f:
            f.write(line + "\n")

    def connect(self, dbname="postgres", **kw):
        """A new autocommit connection."""
        return psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname=dbname,
                               autocommit=True, connect_timeout=5, **kw)

    def query(self, sql, params=None, dbname="postgres"):
        """Rows of one statement on a fresh connection."""
        with self.connect(dbname) as conn:
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def one(self, sql, params=None, dbname="postgres"):
        """First column of the first row of a statement."""
        rows = self.query(sql, params, dbname)
        return rows[0][0] if rows else None

    def status(self, dbname="postgres"):
        """engage.shipper as a dict."""
        with self.connect(dbname) as conn:
            cur = conn.execute("SELECT *, confirmed_lsn::text AS confirmed FROM engage.shipper")
            return dict(zip([d.name for d in cur.description], cur.fetchone()))

    def shipper_pids(self):
        """Pids of the running 'pg_engage shipper' backends."""
        return [r[0] for r in self.query(
            "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_engage shipper'")]

    def confirmed_flush(self, slot="engage_shipper"):
        """The slot's confirmed_flush_lsn as an integer (0 when missing)."""
        v = self.one("SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s",
                     (slot,))
        return lsn_int(v) if v else 0

    def flush_lsn(self):
        """pg_current_wal_flush_lsn() as an integer."""
        return lsn_int(self.one("SELECT pg_current_wal_flush_lsn()::text"))

    def log(self):
        """The whole server log."""
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""

    def log_size(self):
        """Current size of the server log (an offset for log_since)."""
        return self.logfile.stat().st_size if self.logfile.exists() else 0

    def log_since(self, offset):
        """The server log written after offset."""
        with open(self.logfile, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")

    def reload(self, **settings):
        """ALTER SYSTEM SET each engage.<name> (None: RESET), then reload."""
        with self.connect() as conn:
            for name, value in settings.items():
                if value is None:
                    conn.execute(f"ALTER SYSTEM RESET engage.{name}")
                else:
                    conn.execute(f"ALTER SYSTEM SET engage.{name} = '{value}'")
            conn.execute("SELECT pg_reload_conf()")

    def wait_running(self, timeout=60):
        """Waits until the shipper is running; returns its status."""
        return wait_until(lambda: (s := self.status())["state"] == "running" and s["pid"] and s,
                          timeout, "the shipper to run")

    def wait_shipped(self, timeout=120, slot="engage_shipper"):
        """Waits until the slot confirmed the current WAL flush position."""
        target = self.flush_lsn()
        wait_until(lambda: self.confirmed_flush(slot) >= target, timeout,
                   f"confirmed_flush_lsn to reach {target:X} (status: {self._status_text()})")

    def _status_text(self):
        """The status for a failure message."""
        try:
            return str(self.status())
        except Exception as exc:  # noqa: BLE001 - only for a message
            return f"unavailable: {exc}"

    def restart_session(self, running=True, **settings):
        """Changes settings by reload and waits until the shipper streams with them (and runs)."""
        offset = self.log_size()
        self.reload(**settings)
        wait_until(lambda: "pg_engage shipper: streaming slot" in self.log_since(offset), 30,
                   f"a new shipper session after setting {settings}")
        if running:
            self.wait_running()

    def use_prefix(self, prefix):
        """Sends everything pending, then switches engage.topic_prefix."""
        self.wait_shipped()
        self.restart_session(topic_prefix=prefix)
        self.prefix = prefix

    def empty_tables(self):
        """Empties the tables the workloads write (before switching to a new prefix)."""
        self.query("TRUNCATE engage.members, engage.templates, engage.users, engage.audiences CASCADE")


def worker_exits(log):
    """Lines of the log saying a pg_engage worker exited or was killed."""
    return [l for l in log.splitlines()
            if re.search(r'background worker "pg_engage (shipper|launcher)" \(PID \d+\) (exited|was terminated)', l)]


# --------------------------------------------------------------------------- checks

def pk_text(pk):
    """Canonical text of a key object."""
    return json.dumps(pk, sort_keys=True, default=str)


def check_envelopes(events, prefix):
    """Topic, key and headers of every message agree with its record."""
    for e in events:
        if e.tombstone:
            continue  # no record to agree with: see check_tombstones
        rec = e.record
        where = f"{e.topic}[{e.partition}]@{e.offset}"
        assert e.headers.get("engage.id") == rec["id"], where
        assert e.headers.get("engage.op") == rec["op"], where
        assert e.headers.get("engage.lsn") == rec.get("lsn", rec.get("to_lsn")), where
        if rec["op"] in ("gap", "snapshot"):
            assert e.topic == f"{prefix}-control", where
        elif rec["op"] == "message":
            assert e.topic == f"{prefix}-app.{rec['topic']}", where
            assert e.key == (rec["key"].encode() if rec["key"] is not None else None), where
        elif rec["op"] == "schema":
            # on the table's topic, and on the old name's when a rename left it;
            # the key is the name of the topic's table as a JSON string
            assert e.headers.get("engage.table") == rec["table"], where
            name = json.loads(e.key)
            assert name in (rec["table"], rec.get("old_table")), where
            assert e.topic == f"{prefix}.{name.removeprefix('engage.')}", where
        else:
            assert e.headers.get("engage.table") == rec["table"], where
            assert e.topic == f"{prefix}.{rec['table'].removeprefix('engage.')}", where
            assert json.loads(e.key) == rec["pk"], where


# Tables whose keys come from identity columns: a key is inserted at most once.
IDENTITY_TABLES = ("engage.members", "engage.templates", "engage.users", "engage.audiences")


def check_duplicates(events):
    """Same event id means the same message; each insert (identity key) or message key has one id.

    Returns the number of duplicates.
    """
    seen, dups, change_ids = {}, 0, {}
    for e in events:
        first = seen.setdefault(e.id, e)
        if first is not e and e.record["op"] == "schema" and e.topic != first.topic:
            # a rename's schema record: one record, on the old topic and the new
            assert e.value == first.value, f"schema record {e.id} differs between {first.topic} and {e.topic}"
        elif first is not e:
            dups += 1
            assert (e.topic, e.key, e.value) == (first.topic, first.key, first.value), \
                f"event {e.id} differs between {first.topic}@{first.offset} and {e.topic}@{e.offset}"
        rec = e.record
        if rec is None:
            continue
        if rec["op"] == "message" or (rec["op"] == "insert" and rec["table"] in IDENTITY_TABLES):
            change = (rec["op"], rec.get("table") or rec.get("topic"), pk_text(rec.get("pk") or rec.get("key")))
            ids = change_ids.setdefault(change, set())
            ids.add(e.id)
            assert len(ids) == 1, f"one change under several event ids: {change} -> {sorted(ids)}"
    return dups


def check_key_order(events):
    """Per partition and key, event ids (first occurrences) increase by (commit lsn, position)."""
    last, seen, checked = {}, set(), 0
    for e in events:  # sorted by topic, partition, offset
        if e.tombstone or e.id in seen:
            continue  # a tombstone (its id has no position), or a replayed duplicate
        seen.add(e.id)
        k = (e.topic, e.partition, e.key)
        if k in last:
            assert id_order(e.id) > id_order(last[k]), \
                f"key {e.key!r} in {e.topic}[{e.partition}]: {e.id} after {last[k]} (offset {e.offset})"
            checked += 1
        last[k] = e.id
    return checked


UNKNOWN_TOAST = "<unchanged TOAST value of a row never seen>"


def rebuild(events):
    """Tables rebuilt from row events ({table: {pk text: row}}) and the committed messages.

    Events are applied once each, in id order (commit order, then position): a key change moves
    a row to another key, which may live in another partition.  Its insert takes the values it
    lists in unchanged_toast from the row its delete removed (old_pk).  Tombstones carry nothing.
    """
    tables, messages, seen, moved = {}, {}, set(), {}
    firsts = []
    snapshotted = {e.record["table"] for e in events if not e.tombstone and e.record["op"] == "read"}
    for e in events:
        if e.tombstone or e.id in seen:
            continue
        seen.add(e.id)
        firsts.append(e)
    for e in sorted(firsts, key=lambda e: id_order(e.id)):
        rec = e.record
        op = rec["op"]
        if op == "message":
            messages[e.id] = rec
            continue
        if op == "gap":  # events were lost: the re-snapshot and the stream after the gap rebuild it
            for rows in tables.values():
                rows.clear()
            continue
        if op == "snapshot":  # where a snapshot's read records start and end
            continue
        if op == "schema":
            continue  # test_schema_changes.py follows them
        rows = tables.setdefault(rec["table"], {})
        key = pk_text(rec["pk"])
        if op in ("insert", "read"):  # a read record (snapshot) is the row as it is then
            row = dict(rec["new"])
            prev = moved.pop((rec["table"], pk_text(rec["old_pk"])), None) if rec.get("key_changed") else None
            for col in rec.get("unchanged_toast") or []:
                row[col] = prev[col] if prev is not None and col in prev else UNKNOWN_TOAST
            rows[key] = row
        elif op == "update":
            old_key = pk_text(rec["old"]) if rec.get("old") and set(rec["old"]) == set(rec["pk"]) else key
            row = dict(rec["new"])
            prev = rows.pop(old_key, None)
            for col in rec.get("unchanged_toast") or []:
                # A row not seen yet (a snapshot that has not read it): its read record follows and
                # replaces the row; if none does, the comparison with the database shows the gap.
                row[col] = prev[col] if prev is not None and col in prev else UNKNOWN_TOAST
            rows[key] = row
        elif op == "delete":
            prev = rows.pop(key, None)
            # Under a snapshot, a row not read yet may be deleted: the stream starts after it.
            assert prev is not None or rec["table"] in snapshotted, \
                f"{e.id}: delete of a row never inserted: {key}"
            if rec.get("key_changed"):
                moved[(rec["table"], key)] = prev
        elif op == "truncate":
            rows.clear()
    return tables, messages


def rebuild_compacted(events):
    """Tables as a compacted topic keeps them ({table: {pk text: row}}): per topic and key the
    last message wins, and a null value (tombstone) removes the key.

    A key whose last message is a delete record (no tombstone after it) stays, with the delete
    record itself as its "row", so that it never equals a database row.
    """
    last = {}
    for e in events:  # per partition in offset order; one key is always in one partition
        last[(e.topic, e.key)] = e
    tables = {}
    for (topic, key), e in last.items():
        if e.tombstone:
            continue
        rec = e.record
        if rec["op"] == "message":
            continue
        row = rec["new"] if rec["op"] in ("insert", "update", "read") else {"lingering": rec["op"], "id": rec["id"]}
        tables.setdefault(rec["table"], {})[pk_text(json.loads(key))] = dict(row)
    return tables


def check_tombstones(events):
    """Each tombstone directly follows, in its partition, a delete record with its key; returns
    (delete records with a key, tombstones)."""
    by_place = {(e.topic, e.partition, e.offset): e for e in events}
    deletes = sum(1 for e in events if not e.tombstone and e.record["op"] == "delete"
                  and e.record["pk"] is not None)
    tombstones = [e for e in events if e.tombstone]
    for t in tombstones:
        where = f"{t.topic}[{t.partition}]@{t.offset}"
        before = by_place.get((t.topic, t.partition, t.offset - 1))
        assert before is not None and not before.tombstone, f"{where}: no record before the tombstone"
        rec = before.record
        assert rec["op"] == "delete" and rec["pk"] is not None, f"{where} follows a {rec['op']}"
        assert t.key == before.key and json.loads(t.key) == rec["pk"], where
        assert t.headers == {"engage.id": rec["id"] + ":tombstone", "engage.op": "tombstone",
                             "engage.table": rec["table"], "engage.lsn": rec["lsn"]}, (where, t.headers)
    return deletes, len(tombstones)


DB_ROWS_SQL = """
SELECT c.relname,
       array_agg(a.attname::text ORDER BY a.attnum),
       array_agg(format_type(a.atttypid, a.atttypmod) ORDER BY a.attnum),
       (SELECT array_agg(k.attname::text) FROM pg_index i
          JOIN pg_attribute k ON k.attrelid = i.indrelid AND k.attnum = ANY (i.indkey)
         WHERE i.indrelid = c.oid AND i.indisprimary)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
 WHERE n.nspname = 'engage' AND c.relkind IN ('r', 'p')
 GROUP BY c.oid, c.relname
"""


def _json_expr(col, typ):
    """SQL rendering a column the way engage_decoder writes it."""
    q = f'"{col}"'
    if typ == "timestamp with time zone":
        return f"""to_jsonb(to_char({q} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))"""
    if typ == "timestamp without time zone":
        return f"""to_jsonb(to_char({q}, 'YYYY-MM-DD"T"HH24:MI:SS.US'))"""
    if typ == "date":
        return f"to_jsonb({q}::text)"
    return f"to_jsonb({q})"


def db_tables(cluster, dbname="postgres"):
    """Every row of every engage table, as engage_decoder renders them ({table: {pk text: row}})."""
    tables = {}
    with cluster.connect(dbname) as conn:
        for rel, cols, types, pkcols in conn.execute(DB_ROWS_SQL).fetchall():
            obj = ", ".join(f"'{c}', {_json_expr(c, t)}" for c, t in zip(cols, types))
            rows = {}
            for (text,) in conn.execute(f"SELECT jsonb_build_object({obj})::text FROM engage.{rel}"):
                row = json.loads(text, parse_float=Decimal)
                rows[pk_text({k: row[k] for k in pkcols})] = row
            tables[f"engage.{rel}"] = rows
    return tables


def compare_tables(rebuilt, db):
    """Asserts the rebuilt tables equal the database, describing the differences."""
    problems = []
    for table in sorted(set(rebuilt) | set(db)):
        a, b = rebuilt.get(table, {}), db.get(table, {})
        missing = [k for k in b if k not in a]
        extra = [k for k in a if k not in b]
        differ = [k for k in b if k in a and a[k] != b[k]]
        if missing or extra or differ:
            sample = ""
            if differ:
                k = differ[0]
                cols = [c for c in b[k] if a[k].get(c) != b[k].get(c)]
                sample = f"; e.g. {k} columns {cols}: kafka={str({c: a[k].get(c) for c in cols})[:300]}" \
                         f" db={str({c: b[k].get(c) for c in cols})[:300]}"
            problems.append(f"{table}: {len(missing)} missing in Kafka {missing[:3]}, {len(extra)} only "
                            f"in Kafka {extra[:3]}, {len(differ)} differ{sample}")
    assert not problems, "rebuilt tables differ from the database:\n" + "\n".join(problems)


def check_stream(events, cluster, prefix, dbname="postgres", tables=None):
    """All stream checks: envelopes, duplicates, per-key order, rebuild equals the database.

    tables limits the comparison to those tables (default: every engage table).
    """
    check_envelopes(events, prefix)
    dups = check_duplicates(events)
    ordered = check_key_order(events)
    rebuilt, messages = rebuild(events)
    db = db_tables(cluster, dbname)
    if tables is not None:
        rebuilt = {t: rebuilt.get(t, {}) for t in tables}
        db = {t: db[t] for t in tables}
    compare_tables(rebuilt, db)
    return {"events": len(events), "duplicates": dups, "ordered_pairs": ordered, "messages": messages,
            "tables": rebuilt}


# --------------------------------------------------------------------------- workload

RB_MARK = "RBMARK"


class Workload(threading.Thread):
    """Commits small transactions until stopped, reconnecting across server restarts.

    Each transaction inserts members, updates hot members, sometimes deletes one, inserts a
    template named after it and emits a message keyed by that name: the message must be in
    Kafka exactly when the template is in the database.  Some work is rolled back (whole
    transactions and savepoints) and carries RB_MARK, which must never reach Kafka.
    """

    def __init__(self, cluster, tag, seed, pause=0.004):
        super().__init__(daemon=True)
        self.cluster, self.tag, self.rng, self.pause = cluster, tag, random.Random(seed), pause
        self.stop_event = threading.Event()
        self.commits = 0
        self.errors = 0
        self.committed = set()  # template names whose COMMIT returned
        self.failure = None

    def run(self):
        """Runs transactions until stopped; connection losses are expected."""
        n = 0
        members = []
        while not self.stop_event.is_set():
            try:
                with self.cluster.connect() as conn:
                    while not self.stop_event.is_set():
                        n += 1
                        name = f"{self.tag}-{n}"
                        if self._transaction(conn, name, members):
                            self.committed.add(name)
                            self.commits += 1
                        time.sleep(self.pause)
            except (psycopg.OperationalError, psycopg.errors.AdminShutdown, psycopg.Rollback):
                # A Rollback escapes its transaction block only when the rollback itself failed:
                # the connection was lost in a transaction the workload rolls back on purpose.
                self.errors += 1
                time.sleep(0.2)
            except Exception as exc:  # noqa: BLE001 - reported by stop()
                self.failure = exc
                return

    def _transaction(self, conn, name, members):
        """One unit of work; False when it rolled itself back on purpose."""
        rng = self.rng
        rollback_all = rng.random() < 0.08
        with conn.transaction() as tx:
            ids = [r[0] for r in conn.execute(
                "INSERT INTO engage.members (name, email) SELECT %s || '/' || g, %s || g || '@x.org'"
                " FROM generate_series(1, %s) g RETURNING member_id",
                (RB_MARK + name if rollback_all else name, name, rng.randint(1, 3))).fetchall()]
            hot = members[:20]
            for _ in range(rng.randint(0, 2)):
                if hot:
                    conn.execute("UPDATE engage.members SET email = %s WHERE member_id = %s",
                                 (f"{name}.{rng.random():.6f}@y.org", rng.choice(hot)))
            if len(members) > 40 and rng.random() < 0.2:
                victim = members.pop(rng.randrange(20, len(members)))
                conn.execute("DELETE FROM engage.members WHERE member_id = %s", (victim,))
            if rng.random() < 0.15:
                with conn.transaction():
                    conn.execute("INSERT INTO engage.members (name) VALUES (%s)", (RB_MARK + name,))
                    conn.execute("SELECT engage.emit('wl', %s, '{}')", (RB_MARK + name,))
                    if hot:
                        conn.execute("UPDATE engage.members SET name = %s WHERE member_id = %s",
                                     (RB_MARK, rng.choice(hot)))
                    raise psycopg.Rollback()
            conn.execute("INSERT INTO engage.templates (name, type) VALUES (%s, 'wl')", (name,))
            conn.execute("SELECT engage.emit('wl', %s, %s)", (name, json.dumps({"name": name})))
            if rollback_all:
                conn.execute("SELECT engage.emit('wl', %s, '{}')", (RB_MARK + name,))
                raise psycopg.Rollback(tx)
        if not rollback_all:
            members.extend(ids)
        return not rollback_all

    def stop(self):
        """Stops the workload and returns the number of commits."""
        self.stop_event.set()
        self.join(60)
        assert not self.is_alive(), "workload did not stop"
        assert self.failure is None, f"workload failed: {self.failure!r}"
        return self.commits
