"""Events Kafka refuses for good: policy stop holds the position, policy dead_letter moves on."""
import json
import random
import re
import string
import time

from support import lsn_int, wait_until

DEAD_LETTER_TOPIC = "engage-dead_letter"  # the default engage.dead_letter_topic


def blob(n, seed):
    """Incompressible text of n characters."""
    rng = random.Random(seed)
    return "".join(rng.choices(string.ascii_letters + string.digits, k=n))


def member_names(broker, prefix):
    """Names of the members inserted according to the prefix's topics."""
    return {e.record["new"]["name"] for e in broker.read_prefix(prefix)
            if e.topic == f"{prefix}.members" and e.record["op"] == "insert"}


def emit_poison(cluster, payload):
    """Emits payload to topic 'big', then inserts member 'after'; returns the LSN between them."""
    with cluster.connect() as conn:
        conn.execute("SELECT engage.emit('big', 'poison', %s)", (json.dumps(payload),))
        between = lsn_int(conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()[0])
        conn.execute("INSERT INTO engage.members (name) VALUES ('after')")
    return between


def assert_held(cluster, between, seconds=5):
    """For seconds, the slot's confirmed position stays before the poison event's end."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        confirmed = cluster.confirmed_flush()
        assert confirmed < between, f"confirmed {confirmed:X} passed the refused event (before {between:X})"
        time.sleep(0.5)


def test_refused_event_stop_then_dead_letter(cluster, broker, prefix):
    """Broker refuses an event (topic max.message.bytes): stopped on error and held; dead_letter: goes on."""
    big_topic = f"{prefix}-app.big"
    broker.create_topic(big_topic, 1, {"max.message.bytes": "2000"})
    cluster.query("INSERT INTO engage.members (name) VALUES ('before')")
    cluster.wait_shipped()
    offset = cluster.log_size()
    payload = {"blob": blob(8000, prefix)}
    between = emit_poison(cluster, payload)

    wait_until(lambda: cluster.status()["state"] == "stopped on error", 30, "state 'stopped on error'")
    error = cluster.status()["last_error"]
    assert big_topic in error and "too large" in error.lower(), error
    log = cluster.log_since(offset)
    assert re.search(rf'pg_engage shipper: Kafka refused event [0-9A-F/]+:[0-9]+ for topic "{re.escape(big_topic)}"', log)
    assert payload["blob"][:40] not in log + error, "the event's value reached the log or the status"
    pid = cluster.status()["pid"]
    assert_held(cluster, between)
    s = cluster.status()
    assert (s["state"], s["pid"]) == ("stopped on error", pid), s
    assert broker.read([big_topic]) == []

    cluster.reload(poison_policy="dead_letter")
    try:
        wait_until(lambda: cluster.confirmed_flush() > between, 60, "the stream to go on past the event")
        cluster.wait_shipped(timeout=60)
        assert cluster.status()["state"] == "running"
        letters = [e for e in broker.read([DEAD_LETTER_TOPIC]) if e.headers.get("engage.topic") == big_topic]
        assert letters, "the refused event is not in the dead-letter topic"
        assert len({e.id for e in letters}) == 1
        rec = letters[0].record
        assert (rec["op"], rec["topic"], rec["key"], rec["payload"]) == ("message", "big", "poison", payload)
        assert letters[0].key == b"poison"
        assert letters[0].headers["engage.id"] == rec["id"]
        assert "too large" in letters[0].headers["engage.reason"].lower()
        assert "after" in member_names(broker, prefix)
        cluster.query("INSERT INTO engage.members (name) VALUES ('later')")
        cluster.wait_shipped()
        assert {"before", "after", "later"} <= member_names(broker, prefix)
        assert broker.read([big_topic]) == []
    finally:
        cluster.reload(poison_policy=None)


def dead_letters_for(broker, dead_letter_topic, topic):
    """The dead letters of events meant for topic."""
    return [e for e in broker.read([dead_letter_topic]) if e.headers.get("engage.topic") == topic]


def test_event_over_client_limit_dead_letter(cluster, broker, prefix):
    """Under dead_letter, a row over librdkafka's message.max.bytes goes to the dead-letter topic as
    its record without values (key, oversized_bytes), with the reason; the stream goes on.
    (engage.emit() refuses such an event up front.)"""
    cluster.restart_session(poison_policy="dead_letter")
    try:
        offset = cluster.log_size()
        huge = blob(1_100_000, "huge-dead-letter")
        with cluster.connect() as conn:
            conn.execute("INSERT INTO engage.members (name, contact) VALUES ('huge-dl', %s)", (huge,))
            between = lsn_int(conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()[0])
            conn.execute("INSERT INTO engage.members (name) VALUES ('after')")
        wait_until(lambda: cluster.confirmed_flush() > between, 60, "the stream to go on past the event")
        cluster.wait_shipped()
        assert cluster.status()["state"] == "running"
        letters = [e for e in broker.read([DEAD_LETTER_TOPIC])
                   if e.headers.get("engage.table") == "engage.members" and e.record.get("oversized_bytes")]
        assert len({e.headers["engage.id"] for e in letters}) == 1, letters
        rec = letters[0].record
        assert rec["op"] == "insert" and "new" not in rec and rec["oversized_bytes"] >= 1_100_000, rec
        assert letters[0].key == json.dumps(rec["pk"], separators=(",", ":")).encode()
        reason = letters[0].headers["engage.reason"]
        assert "too large" in reason and "max_record_bytes" in reason, reason
        assert "after" in member_names(broker, prefix)
        assert huge[:40] not in cluster.log_since(offset)
    finally:
        cluster.reload(poison_policy=None)


def test_dead_letter_too_large_for_dead_letter_topic(cluster, broker, prefix):
    """The dead-letter topic refuses a dead letter as too large: it goes again without its value."""
    big_topic, dead_letter_topic = f"{prefix}-app.big", f"{prefix}-dlq"
    broker.create_topic(big_topic, 1, {"max.message.bytes": "2000"})
    broker.create_topic(dead_letter_topic, 1, {"max.message.bytes": "3000"})
    cluster.restart_session(poison_policy="dead_letter", dead_letter_topic=dead_letter_topic)
    try:
        between = emit_poison(cluster, {"blob": blob(8000, prefix)})
        wait_until(lambda: cluster.confirmed_flush() > between, 60, "the stream to go on past the event")
        cluster.wait_shipped()
        letters = dead_letters_for(broker, dead_letter_topic, big_topic)
        assert len(letters) == 1 and letters[0].value is None, letters
        reason = letters[0].headers["engage.reason"]
        assert "too large" in reason.lower() and "refused it too" in reason, reason
        assert "after" in member_names(broker, prefix)
    finally:
        cluster.reload(poison_policy=None, dead_letter_topic=None)


def test_event_over_client_limit_stops(cluster, broker, prefix):
    """A row event over librdkafka's message.max.bytes (1 MB): stopped on error, position held.
    (engage.emit() refuses such an event up front; a row cannot be refused when it is written.)"""
    cluster.wait_running()
    cluster.query("INSERT INTO engage.members (name) VALUES ('before')")
    cluster.wait_shipped()
    with cluster.connect() as conn:
        conn.execute("INSERT INTO engage.members (name, contact) VALUES ('huge', %s)",
                     (blob(1_100_000, "huge"),))
        between = lsn_int(conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()[0])
        conn.execute("INSERT INTO engage.members (name) VALUES ('after')")
    wait_until(lambda: cluster.status()["state"] == "stopped on error", 30, "state 'stopped on error'")
    error = cluster.status()["last_error"]
    assert "engage.members" in error and "too large" in error.lower(), error
    assert "max_record_bytes" in error, error
    assert_held(cluster, between)
