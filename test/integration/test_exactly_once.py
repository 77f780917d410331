"""Exactly once (issue 10): engage.delivery = exactly_once puts every PostgreSQL transaction in one
Kafka transaction, with the position it reaches in the progress topic; through kill -9 of the
shipper, immediate restarts of PostgreSQL and kill -9 of the broker, a read_committed consumer
sees every event exactly once, and never a part of a transaction.
"""
import json
import os
import random
import shutil
import string
import signal
import threading
import time
from collections import Counter

import psycopg
import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition

from support import Cluster, Workload, check_stream, port_free, run, wait_until

CLUSTER_CONF = ["engage.delivery = exactly_once"]


def committed_events(broker, prefix):
    """Every event a read_committed consumer reads from the prefix's topics (not the progress topic)."""
    return broker.read_prefix(prefix, isolation="read_committed")


def shipped_once_and_rebuilt(cluster, broker, prefix):
    """Waits until everything is shipped; every event id is in Kafka once (read_committed) and the
    rebuild equals the database."""
    cluster.wait_shipped()
    events = committed_events(broker, prefix)
    ids = Counter(e.id for e in events if not e.tombstone)
    assert max(ids.values()) == 1, [i for i, n in ids.items() if n > 1][:5]
    check_stream(events, cluster, prefix)


def shipped(cluster, n):
    return cluster.status()["events_shipped"] >= n


def test_progress_topic_and_no_duplicates(cluster, broker, fresh_prefix):
    """The progress topic says how far Kafka has the stream; a restart sends nothing twice."""
    prefix = fresh_prefix
    cluster.query("INSERT INTO engage.members (name) SELECT 'eo ' || g FROM generate_series(1, 50) g")
    cluster.wait_shipped()
    progress = broker.read([f"{prefix}-progress"], isolation="read_committed")
    assert progress and progress[-1].key == b"engage_shipper", progress
    # A new shipper (killed: its slot was confirmed at most a second ago) reads the progress topic.
    pid = cluster.status()["pid"]
    offset = cluster.log_size()
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: "Kafka has the transactions up to" in cluster.log_since(offset), 90,
               "the new session to read the progress topic")
    cluster.wait_running()
    cluster.query("INSERT INTO engage.members (name) VALUES ('eo after')")
    shipped_once_and_rebuilt(cluster, broker, prefix)



def test_progress_found_behind_other_slots_records(cluster, broker, fresh_prefix):
    """The progress topic is created compacted with small segments; a new session finds the slot's
    record even when more than the 2,000 offsets it reads first belong to other slots."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import ConfigResource

    prefix = fresh_prefix
    topic = f"{prefix}-progress"
    cluster.query("INSERT INTO engage.members (name) SELECT 'tail ' || g FROM generate_series(1, 20) g")
    cluster.wait_shipped()
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    admin = broker.admin()  # kept: a client destroyed before its answer fails the future
    configs = admin.describe_configs([resource])[resource].result(30)
    assert configs["cleanup.policy"].value == "compact", configs["cleanup.policy"]
    assert configs["segment.bytes"].value == "16777216", configs["segment.bytes"]
    ours = [r for r in broker.read([topic]) if r.key == b"engage_shipper"]
    assert ours, "no progress record of the slot"
    end_lsn = json.loads(ours[-1].value)["end_lsn"]
    # Another slot's 2,500 records after ours (a plain producer: read_committed reads them too).
    cluster.reload(enabled="off")
    wait_until(lambda: not cluster.shipper_pids(), 60, "the shipper to exit")
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(2500):
        producer.produce(topic, key=b"other_slot", value=json.dumps({"v": 1, "slot": "other_slot",
                                                                    "end_lsn": f"0/{i:X}"}).encode())
    assert producer.flush(30) == 0
    offset = cluster.log_size()
    cluster.reload(enabled=None)
    wait_until(lambda: f"Kafka has the transactions up to {end_lsn} (topic {topic})" in cluster.log_since(offset),
               90, "the new session to find the slot's progress record behind the other slot's")
    cluster.query("INSERT INTO engage.members (name) VALUES ('tail after')")
    shipped_once_and_rebuilt(cluster, broker, prefix)

def test_faults_exactly_once(cluster, broker, fresh_prefix):
    """The seeded workload with faults in the middle: kill -9 of the shipper (twice), an immediate
    restart of PostgreSQL (twice), kill -9 of the broker (once).  After catch-up every event id is
    in Kafka exactly once (read_committed), and the rebuild equals the database."""
    prefix = fresh_prefix
    workload = Workload(cluster, "eo", seed=10)
    workload.start()
    try:
        for fault in ["shipper", "postgres", "broker", "shipper", "postgres"]:
            target = wait_until(lambda: cluster.status()["events_shipped"] + 200, 60, "the status")
            wait_until(lambda: shipped(cluster, target), 120, f"events to flow before the {fault} fault")
            if fault == "shipper":
                pid = cluster.status()["pid"]
                os.kill(pid, signal.SIGKILL)
                wait_until(lambda: f"(PID {pid}) was terminated by signal 9" in cluster.log(), 30,
                           "the postmaster to notice the killed shipper")
            elif fault == "postgres":
                cluster.stop("immediate")
                cluster.start()
            else:
                broker.kill9()
                time.sleep(1)
                broker.restart()
            cluster.wait_running(timeout=120)
    finally:
        workload.stop()
    cluster.wait_shipped(timeout=240)
    events = committed_events(broker, prefix)
    ids = Counter(e.id for e in events if not e.tombstone)
    dups = {i: n for i, n in ids.items() if n > 1}
    assert not dups, f"{len(dups)} event ids more than once, e.g. {list(dups.items())[:5]}"
    result = check_stream(events, cluster, prefix)
    assert result["duplicates"] == 0
    print(f"exactly once under faults: {result['events']} events, 0 duplicates, {workload.commits} commits")


class AtomicityWatcher(threading.Thread):
    """A read_committed consumer polling the prefix's row and app topics while the workload runs.
    Each time it has reached the end of every partition it records, per PostgreSQL transaction
    (the commit LSN of the event ids), how many events it has seen."""

    def __init__(self, broker, topics, isolation):
        super().__init__(daemon=True)
        self.broker, self.topics, self.isolation = broker, topics, isolation
        self.stop_event = threading.Event()
        self.snapshots = []  # Counter of events per commit LSN, at moments all partitions were at their end
        self.failure = None

    def run(self):
        consumer = Consumer({"bootstrap.servers": self.broker.bootstrap, "group.id": "pg-engage-atom",
                             "enable.auto.commit": False, "auto.offset.reset": "earliest",
                             "isolation.level": self.isolation, "enable.partition.eof": True})
        try:
            md = consumer.list_topics(timeout=20)
            parts = [TopicPartition(t, p, 0) for t in self.topics for p in md.topics[t].partitions]
            consumer.assign(parts)
            seen, at_end = Counter(), set()
            while not self.stop_event.is_set():
                for m in consumer.consume(num_messages=1000, timeout=0.2):
                    key = (m.topic(), m.partition())
                    if m.error():
                        if m.error().code() == KafkaError._PARTITION_EOF:
                            at_end.add(key)
                        continue
                    at_end.discard(key)
                    if m.value() is not None:
                        seen[dict(m.headers())["engage.id"].decode().split(":")[0]] += 1
                if len(at_end) == len(parts):
                    self.snapshots.append(Counter(seen))
        except Exception as exc:  # noqa: BLE001 - reported by the test
            self.failure = exc
        finally:
            consumer.close()


def partial_views(cluster, broker, prefix, isolation, seconds=20):
    """Runs the workload with a watcher; returns the moments at which the watcher saw a transaction
    only in part, compared with the complete stream afterwards."""
    cluster.query("INSERT INTO engage.templates (name, type) VALUES ('atom-warmup', 'x')")
    cluster.wait_shipped()
    topics = [t for t in broker.topics(prefix) if not t.endswith("-control")]
    watcher = AtomicityWatcher(broker, topics, isolation)
    workload = Workload(cluster, f"atom-{isolation}", seed=12, pause=0.001)
    watcher.start()
    workload.start()
    time.sleep(seconds)
    workload.stop()
    cluster.wait_shipped()
    time.sleep(2)
    watcher.stop_event.set()
    watcher.join(30)
    assert watcher.failure is None, watcher.failure
    final = Counter(e.id.split(":")[0] for e in broker.read(topics, isolation="read_committed")
                    if not e.tombstone)
    partial = [(lsn, n, final[lsn]) for snap in watcher.snapshots for lsn, n in snap.items() if n < final[lsn]]
    return partial, len(watcher.snapshots)


def test_transactions_are_never_seen_in_part(cluster, broker, fresh_prefix):
    """A read_committed consumer, each time it has caught up with every partition, holds every
    PostgreSQL transaction whole or not at all."""
    partial, moments = partial_views(cluster, broker, fresh_prefix, "read_committed")
    assert moments >= 5, f"the watcher caught up only {moments} times"
    assert not partial, f"{len(partial)} partial views, e.g. {partial[:5]}"


def start_copy(cluster, name):
    """Stops cluster, copies its data directory (slot and shipper record included) to a second
    server on another port, starts both; returns the copy (stopped by the test)."""
    cluster.stop("fast")
    copy_dir = cluster.dir.parent / name
    shutil.rmtree(copy_dir, ignore_errors=True)
    run(["cp", "-a", str(cluster.dir), str(copy_dir)])
    (copy_dir / "data" / "postmaster.pid").unlink(missing_ok=True)
    port = next(p for p in range(cluster.port + 50, cluster.port + 150) if port_free(p))
    copy = Cluster(copy_dir, port, [])
    copy.append_conf(f"port = {port}")
    copy.prefix = cluster.prefix
    cluster.start()
    copy.start()
    return copy


def test_fencing_second_shipper_on_the_same_slot(cluster, broker, fresh_prefix):
    """A second shipper of the same slot and prefix (a copy of the server) fences the first: the
    first stops, saying so, and does not fence the copy back; only the copy commits from then on."""
    cluster.query("INSERT INTO engage.members (name) VALUES ('before the copy')")
    cluster.wait_shipped()
    copy = start_copy(cluster, "eo_copy")
    try:
        cluster.wait_running()
        copy.wait_running()
        # The copy started last: its producer fenced the first's.  The first notices at its next commit.
        copy.query("INSERT INTO engage.members (name) VALUES ('on the copy')")
        copy.wait_shipped()
        cluster.query("INSERT INTO engage.members (name) VALUES ('on the fenced one')")
        status = wait_until(lambda: (s := cluster.status())["state"] == "stopped on error" and s, 120,
                            "the first shipper to stop, fenced")
        assert "fenced" in status["last_error"], status
        copy.query("INSERT INTO engage.members (name) VALUES ('on the copy again')")
        copy.wait_shipped()
        assert copy.status()["state"] == "running"
        names = {e.record["new"]["name"] for e in committed_events(broker, fresh_prefix)
                 if not e.tombstone and e.record.get("table") == "engage.members" and e.record.get("new")}
        assert {"on the copy", "on the copy again"} <= names and "on the fenced one" not in names, names
    finally:
        copy.stop("immediate")
        cluster.reload(poll_interval="12ms")  # the first goes on (a reload ends its wait)
        cluster.wait_running(timeout=180)  # fencing the copy's open transaction back can take a while
        cluster.reload(poll_interval=None)


def test_refused_event_aborts_then_goes_to_the_dead_letter_topic(cluster, broker, fresh_prefix):
    """Under dead_letter, an event the broker refuses (topic max.message.bytes) aborts its Kafka
    transaction; the transaction sent again carries it to the dead-letter topic, once, and commits:
    the rows around it are in Kafka exactly once."""
    prefix = fresh_prefix
    big_topic = f"{prefix}-app.big"
    broker.create_topic(big_topic, 1, {"max.message.bytes": "2000"})
    cluster.reload(poison_policy="dead_letter")
    try:
        cluster.wait_running()
        with cluster.connect() as conn:
            with conn.transaction():
                conn.execute("INSERT INTO engage.members (name) VALUES ('around the poison 1')")
                # incompressible: lz4 would shrink a repeated character under the topic's limit
                blob = "".join(random.Random(5).choices(string.ascii_letters, k=8000))
                conn.execute("SELECT engage.emit('big', 'poison', %s)", ('{"blob": "' + blob + '"}',))
                conn.execute("INSERT INTO engage.members (name) VALUES ('around the poison 2')")
        cluster.wait_shipped(timeout=120)
        letters = [e for e in broker.read(["engage-dead_letter"], isolation="read_committed")
                   if e.headers.get("engage.topic") == big_topic]
        assert len(letters) == 1, letters
        events = committed_events(broker, prefix)
        names = Counter(e.record["new"]["name"] for e in events
                        if not e.tombstone and e.record.get("table") == "engage.members" and e.record.get("new"))
        assert names["around the poison 1"] == 1 and names["around the poison 2"] == 1, names
        assert broker.read([big_topic], isolation="read_committed") == []
    finally:
        cluster.reload(poison_policy=None)


def test_snapshot_interrupted_in_exactly_once(cluster, broker, fresh_prefix):
    """A snapshot interrupted by kill -9 of the shipper and resumed: no event id twice (a chunk
    Kafka committed is never committed again under the same ids); rows of the chunk whose progress
    was not yet recorded may come again as read records under new ids, which a consumer applies
    as the same state: the rebuild equals the database."""
    prefix = fresh_prefix
    cluster.query("INSERT INTO engage.members (name) SELECT 'eo snap ' || g FROM generate_series(1, 6000) g")
    cluster.wait_shipped()
    cluster.reload(snapshot_rows_per_second="3000", snapshot_chunk_rows="500")
    try:
        (sid,), = cluster.query("SELECT snapshot_id FROM engage.snapshot(ARRAY['engage.members'::regclass])")
        progress = lambda: cluster.one("SELECT rows_read FROM engage.snapshots WHERE id = %s", (sid,))  # noqa: E731
        wait_until(lambda: progress() >= 1500, 60, "the snapshot to make progress")
        pid = cluster.status()["pid"]
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: f"(PID {pid}) was terminated by signal 9" in cluster.log(), 30, "the crash restart")
        wait_until(lambda: cluster.one("SELECT state FROM engage.snapshots WHERE id = %s", (sid,)) == "done",
                   120, "the snapshot to finish after the crash")
    finally:
        cluster.reload(snapshot_rows_per_second=None, snapshot_chunk_rows=None)
    cluster.wait_shipped()
    events = committed_events(broker, prefix)
    ids = Counter(e.id for e in events if not e.tombstone)
    assert max(ids.values()) == 1
    reads = Counter(e.key for e in events if not e.tombstone and e.record["op"] == "read")
    assert len(reads) >= 6000, len(reads)
    print(f"snapshot in exactly_once: {sum(reads.values())} read records for {len(reads)} rows "
          f"({sum(n - 1 for n in reads.values())} repeated after the crash)")
    check_stream(events, cluster, prefix)
