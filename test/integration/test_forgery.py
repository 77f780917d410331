"""Forged application events: a role with no grants cannot ship an event, halt the shipper or
replace a row, whatever it writes with the engage prefix; genuine events keep flowing."""
import json
import uuid

import psycopg
import pytest

from support import wait_until

ROLE = "mallory"


@pytest.fixture(scope="module")
def mallory(cluster):
    """A login role with no grants at all (PUBLIC's defaults only)."""
    cluster.query(f"DROP ROLE IF EXISTS {ROLE}")
    cluster.query(f"CREATE ROLE {ROLE} LOGIN")
    return ROLE


def attempts(marker):
    """What a role without rights can write with the engage prefix: (transactional, content, rollback)."""
    return [
        # An event into a row topic under a real row's key (would replace the row when compacted).
        (True, json.dumps({"topic": "users", "key": '{"user_id": 1}', "payload": {"m": marker}}), False),
        # Non-transactional, from a transaction that rolls back.
        (False, json.dumps({"topic": "users", "key": "k", "payload": {"m": marker}}), True),
        (True, f"not json {marker}", False),
        (True, json.dumps({"topic": "a b", "m": marker}), False),
        # Shaped like what emit() writes, with a made-up authenticator.
        (True, "0" * 64 + json.dumps({"topic": "t", "key": "k", "payload": {"m": marker}}), False),
    ]


def forge(cluster, role, marker):
    """Writes every attempt as role; returns how many were written."""
    with psycopg.connect(host="127.0.0.1", port=cluster.port, user=role, dbname="postgres") as conn:
        for transactional, content, rollback in attempts(marker):
            with conn.transaction(force_rollback=rollback):
                conn.execute("SELECT pg_logical_emit_message(%s, 'engage', %s)", (transactional, content))
    return len(attempts(marker))


def all_topics(broker, prefix):
    """Every topic of the prefix, whatever follows it."""
    return sorted(t for t in broker.admin().list_topics(timeout=20).topics if t.startswith(prefix))


def genuine_traffic(cluster, tag):
    """A committed row and event, written by the superuser (the genuine application)."""
    with cluster.connect() as conn:
        conn.execute("INSERT INTO engage.users (username) VALUES (%s)", (f"user-{tag}",))
        conn.execute("SELECT engage.emit('genuine', %s, %s)", (tag, json.dumps({"tag": tag})))


def test_role_without_grants_cannot_emit(cluster, mallory):
    """engage.emit() itself is not executable by a role that was not granted it."""
    with psycopg.connect(host="127.0.0.1", port=cluster.port, user=mallory, dbname="postgres") as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT engage.emit('genuine', 'k', '{}')")


def test_engage_writer_emits_genuine_events(cluster, broker, prefix):
    """A login role that is only a member of engage_writer emits events that ship as events (the key
    file, the authenticator and the topic registration need no rights of its own)."""
    cluster.query("DROP ROLE IF EXISTS app_backend")
    cluster.query("CREATE ROLE app_backend LOGIN IN ROLE engage_writer")
    with psycopg.connect(host="127.0.0.1", port=cluster.port, user="app_backend", dbname="postgres",
                         autocommit=True) as conn:
        conn.execute("SELECT engage.emit('writer.fresh_topic', 'w1', '{\"by\": \"writer\"}')")
        with pytest.raises(psycopg.errors.DuplicateObject):
            conn.execute("SELECT engage.emit('writer_fresh_topic', 'w2', '{}')")
    cluster.wait_shipped()
    events = [e for e in broker.read(all_topics(broker, prefix)) if e.record.get("op") == "message"]
    assert [(e.record["topic"], e.record["key"], e.record["payload"]) for e in events] == \
        [("writer.fresh_topic", "w1", {"by": "writer"})], events
    assert cluster.status()["state"] == "running"


def test_forgeries_are_quarantined_not_shipped(cluster, broker, prefix, mallory):
    """Stop policy: forged messages are counted and logged (id, reason), never shipped or fatal."""
    marker = f"FORGED-{uuid.uuid4().hex}"
    before = cluster.status()["quarantined"]
    offset = cluster.log_size()
    genuine_traffic(cluster, "g1")
    n = forge(cluster, mallory, marker)
    genuine_traffic(cluster, "g2")
    cluster.wait_shipped()

    status = cluster.status()
    assert status["state"] == "running", status
    assert status["quarantined"] == before + n, status
    assert status["last_quarantined_at"] is not None
    assert marker not in (status["last_error"] or "")
    log = cluster.log_since(offset)
    assert log.count("pg_engage shipper: quarantined message") == n, log
    assert marker not in log, "a forged payload reached the server log"

    events = broker.read(all_topics(broker, prefix))
    assert not [e for e in events if marker.encode() in e.value], "a forged message was shipped"
    messages = [e.record for e in events if e.record.get("op") == "message"]
    assert sorted(r["key"] for r in messages) == ["g1", "g2"], messages
    users = [e for e in events if e.record.get("table") == "engage.users"]
    assert {e.record["new"]["username"] for e in users} >= {"user-g1", "user-g2"}
    assert all(e.record["op"] != "message" for e in users)


def test_forgeries_go_to_the_dead_letter_topic(cluster, broker, prefix, mallory):
    """dead_letter policy: each forged message lands there with its reason; genuine ones flow."""
    dead_letter = f"{prefix}-forged-dl"
    marker = f"FORGED-{uuid.uuid4().hex}"
    cluster.restart_session(poison_policy="dead_letter", dead_letter_topic=dead_letter)
    try:
        genuine_traffic(cluster, "g3")
        n = forge(cluster, mallory, marker)
        genuine_traffic(cluster, "g4")
        cluster.wait_shipped()
        wait_until(lambda: dead_letter in all_topics(broker, prefix), 30, "the dead-letter topic")
        letters = [e for e in broker.read([dead_letter]) if marker.encode() in e.value]
        assert len(letters) == n, letters
        for e in letters:
            assert e.record["op"] == "quarantine"
            assert e.headers["engage.reason"] == e.record["reason"]
            assert e.headers["engage.id"] == e.record["id"]
        reasons = {e.record["reason"] for e in letters}
        assert any("non-transactional" in r for r in reasons), reasons
        assert any("not written by engage.emit()" in r for r in reasons), reasons
        others = [e for t in all_topics(broker, prefix) if t != dead_letter
                  for e in broker.read([t]) if marker.encode() in e.value]
        assert not others, "a forged message left the dead-letter topic"
        assert cluster.status()["state"] == "running"
    finally:
        cluster.restart_session(poison_policy=None, dead_letter_topic=None)


def test_huge_row_of_a_role_without_grants_cannot_halt(cluster, broker, prefix, mallory):
    """With every table captured, a role writing a row too large for Kafka into its own schema gets a
    record without values (the key, oversized_bytes) in the dead-letter topic; shipping goes on."""
    dead_letter = f"{prefix}-huge-dl"
    cluster.query(f"CREATE SCHEMA IF NOT EXISTS {mallory}_own AUTHORIZATION {mallory}")
    cluster.restart_session(tables="*", poison_policy="dead_letter", dead_letter_topic=dead_letter)
    try:
        genuine_traffic(cluster, "h1")
        with psycopg.connect(host="127.0.0.1", port=cluster.port, user=mallory, dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(f"CREATE TABLE {mallory}_own.big (id int PRIMARY KEY, body text)")
            conn.execute(f"INSERT INTO {mallory}_own.big SELECT 1, string_agg(md5(i::text), '') "
                         "FROM generate_series(1, 100000) AS i")  # 3.2 MB, incompressible enough
        genuine_traffic(cluster, "h2")
        cluster.wait_shipped()
        assert cluster.status()["state"] == "running", cluster.status()
        letters = [e for e in broker.read([dead_letter]) if e.record.get("table") == f"{mallory}_own.big"]
        assert len(letters) == 1, letters
        rec = letters[0].record
        assert rec["pk"] == {"id": 1} and rec["oversized_bytes"] >= 3_200_000 and "new" not in rec, rec
        assert "too large" in letters[0].headers["engage.reason"]
        keys = {e.record["key"] for e in broker.read(all_topics(broker, prefix))
                if e.record.get("op") == "message"}
        assert {"h1", "h2"} <= keys
    finally:
        cluster.restart_session(tables=None, poison_policy=None, dead_letter_topic=None)
        cluster.query(f"DROP SCHEMA {mallory}_own CASCADE")
