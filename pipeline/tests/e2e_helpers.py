"""Helpers of the end-to-end test (test_e2e.py): a source cluster whose shipper ships to the test
broker, a concurrent workload that survives a crash restart, reading Kafka back, running the lander.

    src = ShipperSource(base_dir, port, bootstrap, prefix)   # pg_engage preloaded, extension made
    wl = Workload(src, seed=1); wl.start(); ...; wl.stop()    # small transactions, reconnects
    msgs = read_topics(bootstrap, prefix)                     # every message of the prefix's topics
    proc = run_lander(bootstrap, target, endpoint, group, regex, env={...})
"""
from __future__ import annotations

import json
import os
import random
import secrets
import shlex
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import psycopg

from warehouse_fixtures import ROOT, SourceCluster, _lib

SOURCE_PORTS = range(55800, 55850)   # this test's clusters (other suites use other ranges)


def wait_until(fn, timeout: float, what: str, interval: float = 0.2):
    """Poll fn until it returns something truthy (returned); fail after timeout seconds.
    Connection errors count as not yet (the server may be restarting after a crash)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            value = fn()
            if value:
                return value
        except psycopg.OperationalError as exc:
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}"
                                 + (f" (last error: {last})" if last else ""))
        time.sleep(interval)


def free_port() -> int:
    """Return the first port of SOURCE_PORTS no socket uses.

    Binding (not connecting) is the check: these ports are in Linux's ephemeral range, so a client
    connection elsewhere may hold one as its local port, and the server could not listen there."""
    for port in SOURCE_PORTS:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 55800-55849")


def lsn_int(lsn: str) -> int:
    """Return an LSN 'X/Y' as an integer."""
    hi, lo = lsn.split("/")
    return (int(hi, 16) << 32) + int(lo, 16)


class ShipperSource(SourceCluster):
    """A throwaway PostgreSQL with pg_engage preloaded, its shipper pointed at a Kafka broker.

    The extension is created once the shipper's slot exists, so its own rows are in the stream
    (as test/integration/conftest.py make_cluster does). Reuses SourceCluster's sql/dsn/stop."""

    def __init__(self, base: Path, port: int, bootstrap: str, prefix: str):
        """initdb, start, wait for the shipper's slot, CREATE EXTENSION, wait until it runs."""
        self.dir, self.port, self.prefix = Path(base), port, prefix
        conf = ["shared_preload_libraries = 'pg_engage'", f"engage.brokers = '{bootstrap}'",
                f"engage.topic_prefix = '{prefix}'", "engage.database = 'postgres'",
                "log_line_prefix = '%m [%p] %b '"]
        _lib(f"cluster_init {shlex.quote(str(self.dir))} {port} "
             + " ".join(shlex.quote(c) for c in conf) + f" && cluster_start {shlex.quote(str(self.dir))}")
        wait_until(lambda: self.sql("SELECT 1 FROM pg_replication_slots WHERE slot_name = "
                                    "'engage_shipper'"), 60, "the shipper's slot")
        self.sql("CREATE EXTENSION pg_engage")
        self.wait_running()

    def status(self) -> dict:
        """engage.shipper as a dict."""
        import psycopg
        with psycopg.connect(self.dsn(), autocommit=True, connect_timeout=5) as con:
            cur = con.execute("SELECT *, confirmed_lsn::text AS confirmed FROM engage.shipper")
            return dict(zip([d.name for d in cur.description], cur.fetchone()))

    def wait_running(self, timeout: float = 90) -> dict:
        """Wait until the shipper runs; return its status."""
        return wait_until(lambda: (s := self.status())["state"] == "running" and s["pid"] and s,
                          timeout, "the shipper to run")

    def wait_shipped(self, timeout: float = 120) -> None:
        """Wait until the shipper's slot confirmed the current WAL flush position."""
        target = lsn_int(self.sql("SELECT pg_current_wal_flush_lsn()::text")[0][0])

        def confirmed():
            rows = self.sql("SELECT confirmed_flush_lsn::text FROM pg_replication_slots "
                            "WHERE slot_name = 'engage_shipper'")
            return rows and rows[0][0] and lsn_int(rows[0][0]) >= target
        wait_until(confirmed, timeout, "the shipper to confirm everything written")

    def log(self) -> str:
        """The server log."""
        path = self.dir / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""


class Workload(threading.Thread):
    """Small transactions on the engage tables until stopped, reconnecting across a crash restart:
    engagement through engage.record_engagement, member inserts (with audience rows), member
    updates, audience row deletes and engage.rollup_rates(). Which transactions committed does not
    matter: the test compares the warehouse with whatever the source holds in the end."""

    KINDS = ("open", "click", "conversion")

    def __init__(self, src: ShipperSource, seed: int, pause: float = 0.002):
        """Prepare (start() runs it)."""
        super().__init__(daemon=True)
        self.src, self.rng, self.pause = src, random.Random(seed), pause
        self.stop_event = threading.Event()
        self.commits = self.errors = 0
        self.failure: BaseException | None = None

    def run(self) -> None:
        """Run transactions until stopped; connection losses are expected (the crash)."""
        while not self.stop_event.is_set():
            try:
                with psycopg.connect(self.src.dsn(), autocommit=True, connect_timeout=5) as con:
                    while not self.stop_event.is_set():
                        with con.transaction():
                            self._one(con)
                        self.commits += 1
                        time.sleep(self.pause)
            except (psycopg.OperationalError, psycopg.errors.AdminShutdown,
                    psycopg.errors.CrashShutdown):
                self.errors += 1
                time.sleep(0.2)
            except BaseException as exc:  # noqa: BLE001 - reported by stop()
                self.failure = exc
                return

    def _one(self, con) -> None:
        """One transaction's statements."""
        r, n = self.rng.random(), self.commits
        if r < 0.4:
            kind = self.rng.choice(self.KINDS)
            hours = self.rng.randrange(0, 20)
            con.execute(
                "SELECT engage.record_engagement(campaign_id, member_id, %s,"
                " timestamptz '2026-06-06 17:00+00' + %s * interval '1 hour' + interval '7 minutes')"
                " FROM engage.campaign_audience WHERE campaign_id = %s"
                " ORDER BY member_id OFFSET %s LIMIT 1",
                (kind, hours, self.rng.choice((1, 2)), self.rng.randrange(0, 40)))
        elif r < 0.65:
            con.execute(
                "WITH m AS (INSERT INTO engage.members (name, email) VALUES (%s, %s)"
                " RETURNING member_id, email)"
                " INSERT INTO engage.audience_members (audience_id, member_id, email)"
                " SELECT 1, member_id, email FROM m",
                (f"wl {n}", f"WL{n}@x.org" if n % 3 else f" wl{n}@X.org "))
        elif r < 0.88:
            con.execute("UPDATE engage.members SET email = %s, name = name || '+'"
                        " WHERE member_id = (SELECT member_id FROM engage.members"
                        " ORDER BY member_id OFFSET %s LIMIT 1)",
                        (f"u{n}@y.org", self.rng.randrange(0, 60)))
        elif r < 0.97:
            con.execute("DELETE FROM engage.audience_members WHERE (audience_id, member_id) ="
                        " (SELECT audience_id, member_id FROM engage.audience_members"
                        " ORDER BY member_id DESC OFFSET %s LIMIT 1)", (self.rng.randrange(0, 5),))
        else:
            con.execute("SELECT engage.rollup_rates()")

    def stop(self) -> int:
        """Stop the workload; return the number of commits."""
        self.stop_event.set()
        self.join(60)
        assert not self.is_alive(), "the workload did not stop"
        assert self.failure is None, f"the workload failed: {self.failure!r}"
        return self.commits


def read_topics(bootstrap: str, prefix: str, timeout: float = 60) -> list[dict]:
    """Return every message of the topics <prefix>.* and <prefix>-app.* (read_committed), in partition order:
    dicts with topic, partition, offset, headers (name -> str), value (bytes)."""
    from confluent_kafka import Consumer, KafkaError, TopicPartition
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"e2e-read-{secrets.token_hex(4)}",
                         "enable.auto.commit": False, "isolation.level": "read_committed",
                         "enable.partition.eof": True, "auto.offset.reset": "earliest"})
    try:
        md = consumer.list_topics(timeout=10)
        parts = [TopicPartition(t, p, 0) for t, meta in md.topics.items()
                 if t.startswith((prefix + ".", prefix + "-app.")) for p in meta.partitions]
        consumer.assign(parts)
        pending = {(tp.topic, tp.partition) for tp in parts}
        out, deadline = [], time.monotonic() + timeout
        while pending:
            assert time.monotonic() < deadline, f"reading Kafka: no end of {sorted(pending)}"
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    pending.discard((msg.topic(), msg.partition()))
                    continue
                raise RuntimeError(msg.error())
            out.append({"topic": msg.topic(), "partition": msg.partition(), "offset": msg.offset(),
                        "headers": {k: (v.decode() if v is not None else None)
                                    for k, v in (msg.headers() or [])},
                        "value": msg.value()})
        return out
    finally:
        consumer.close()


def duplicate_ids(messages: list[dict]) -> dict[str, int]:
    """Return the engage.id headers that occur more than once, with their counts."""
    counts = Counter(m["headers"].get("engage.id") for m in messages)
    return {k: n for k, n in counts.items() if n > 1}


def run_lander(bootstrap: str, target: str, endpoint: str, group: str, regex: str,
               *extra: str, env: dict | None = None, timeout: float = 120):
    """Run `python -m pipeline.lander --once` on the topics matching regex; return the process."""
    cmd = [sys.executable, "-m", "pipeline.lander", "--bootstrap", bootstrap, "--once",
           "--target", target, "--s3-endpoint", endpoint, "--group", group,
           "--topics-regex", regex, "--assign-timeout", "30", *extra]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def lander_summary(proc) -> dict:
    """The JSON summary a successful lander run printed."""
    assert proc.returncode == 0, f"lander failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def topic_regex(topics) -> str:
    """A librdkafka topic regex matching exactly these topics."""
    return "^(" + "|".join(t.replace(".", "[.]") for t in sorted(topics)) + ")$"
