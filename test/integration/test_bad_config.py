"""Bad configuration is visible in engage.shipper and the log, and never makes a crash loop."""
import json
import re
import time

import psycopg
import pytest

from support import wait_until, worker_exits

BAD_BROKER = "127.0.0.1:1"
OBSERVE_S = 10


def shows_broker_down(cluster):
    """True when engage.shipper shows the broker unreachable."""
    s = cluster.status()
    return s["state"] == "waiting for broker" or s["broker_reachable"] is False


def observe_stable(cluster, pid, seconds=OBSERVE_S, **expect):
    """Polls for seconds: the shipper keeps pid (None: no shipper runs) and the expected status."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert cluster.shipper_pids() == ([pid] if pid else []), "the shipper was restarted"
        s = cluster.status()
        for name, value in expect.items():
            assert s[name] == value, f"{name} is {s[name]!r}, not {value!r}: {s}"
        time.sleep(0.5)


def shipped_member(broker, prefix, name):
    """True when an insert of a member called name is in Kafka."""
    return any(e.record["op"] == "insert" and e.record["new"]["name"] == name
               for e in broker.read_prefix(prefix))


def test_wrong_broker_with_events_pending(cluster, broker, prefix):
    """Wrong engage.brokers: 'waiting for broker', same pid, no worker exits; fixed: the event arrives."""
    offset = cluster.log_size()
    cluster.restart_session(running=False, brokers=BAD_BROKER)
    pid = cluster.status()["pid"]
    cluster.query("INSERT INTO engage.members (name) VALUES ('while the broker was wrong')")
    wait_until(lambda: shows_broker_down(cluster), 30, "engage.shipper to show the broker down")
    observe_stable(cluster, pid, state="waiting for broker", broker_reachable=False)
    log = cluster.log_since(offset)
    assert not worker_exits(log), worker_exits(log)
    assert re.search(r"pg_engage: kafka: .*127\.0\.0\.1:1", log), "librdkafka's connect errors are not logged"
    cluster.restart_session(brokers=broker.bootstrap)
    cluster.wait_shipped()
    assert shipped_member(broker, prefix, "while the broker was wrong")


def test_wrong_broker_idle(cluster, broker, prefix):
    """Wrong engage.brokers and nothing to send: engage.shipper still shows the broker unreachable."""
    cluster.restart_session(running=False, brokers=BAD_BROKER)
    try:
        pid = cluster.status()["pid"]
        wait_until(lambda: shows_broker_down(cluster), 20,
                   f"engage.shipper to show {BAD_BROKER} unreachable (status: {cluster.status()})")
        observe_stable(cluster, pid, seconds=3)
    finally:
        cluster.restart_session(brokers=broker.bootstrap)


def conf_without_properties(cluster):
    """Removes the engage.kafka_properties lines this module added to postgresql.conf."""
    path = cluster.dir / "data/postgresql.conf"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(l for l in lines if not l.startswith("engage.kafka_properties")))


def reload_file(cluster, line):
    """Appends line to postgresql.conf and reloads; returns the log offset before the reload."""
    cluster.append_conf(line)
    offset = cluster.log_size()
    cluster.query("SELECT pg_reload_conf()")
    return offset


def held_then_shipped(cluster, broker, prefix, name, fix):
    """While a bad engage.<name> line stands: 'stopped on error' naming it, a new row is held (not
    confirmed, not shipped anywhere); after fix() and a reload the row arrives under the prefix."""
    s = wait_until(lambda: (s := cluster.status())["state"] == "stopped on error"
                   and f"engage.{name} in" in (s["last_error"] or "") and s, 30,
                   f"'stopped on error' naming engage.{name}")
    assert "postgresql.conf" in s["last_error"], s
    row = f"while engage.{name} was bad"
    cluster.query("INSERT INTO engage.members (name) VALUES (%s)", (row,))
    target = cluster.flush_lsn()
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        assert cluster.confirmed_flush() < target, "the shipper confirmed WAL with a bad setting"
        time.sleep(0.3)
    fix()
    cluster.query("SELECT pg_reload_conf()")
    cluster.wait_running()
    cluster.wait_shipped(timeout=60)
    assert shipped_member(broker, prefix, row)
    return s


@pytest.mark.parametrize("bad, message", [
    ("linger.ms=5;no.such.property=1", 'No such configuration property: "no.such.property"'),
    ("linger.ms=often", 'Invalid value for configuration property'),
    ("acks=0", 'Kafka property "acks" is set by pg_engage'),
    ("enable.idempotence=false", 'Kafka property "enable.idempotence" is set by pg_engage'),
], ids=["unknown-property", "bad-number", "conflicts-with-idempotence", "turns-off-idempotence"])
def test_bad_kafka_properties_refused(cluster, broker, prefix, bad, message):
    """A bad engage.kafka_properties in postgresql.conf: refused at reload with the reason (logged),
    and the shipper stops rather than ship with the old value; fixed: it goes on, nothing lost."""
    good = "linger.ms=5"
    try:
        offset = reload_file(cluster, f"engage.kafka_properties = '{good}'")
        wait_until(lambda: "pg_engage shipper: streaming slot" in cluster.log_since(offset), 30,
                   "the shipper to take the good properties")
        assert cluster.one("SHOW engage.kafka_properties") == good
        cluster.wait_running()

        offset = reload_file(cluster, f"engage.kafka_properties = '{bad}'")
        refused = 'invalid value for parameter "engage.kafka_properties"'
        wait_until(lambda: refused in cluster.log_since(offset), 10, f"the log to say: {refused}")
        assert message in cluster.log_since(offset)
        assert cluster.one("SHOW engage.kafka_properties") == good
        s = held_then_shipped(cluster, broker, prefix, "kafka_properties",
                              lambda: conf_without_properties(cluster))
        assert bad not in s["last_error"], "the status shows a setting's value"
        assert not worker_exits(cluster.log_since(offset))
    finally:
        conf_without_properties(cluster)
        cluster.query("SELECT pg_reload_conf()")
        wait_until(lambda: cluster.one("SHOW engage.kafka_properties") == "", 10, "the properties reset")
        cluster.wait_running()


def test_bad_setting_at_server_start(make_cluster, broker, request):
    """A bad engage.* line when the server starts: PostgreSQL runs on the default, the shipper does
    not (nothing goes to the default topics); fixed and reloaded: everything arrives."""
    c = make_cluster("bad_at_start", request=request)
    c.wait_running()
    c.query("INSERT INTO engage.members (name) VALUES ('before')")
    c.wait_shipped()
    c.stop()
    path = c.dir / "data/postgresql.conf"
    original = path.read_text()
    c.append_conf("engage.topic_prefix = 'bad prefix'")
    c.start()
    assert c.one("SHOW engage.topic_prefix") == "engage"  # PostgreSQL fell back to the default
    held_then_shipped(c, broker, c.prefix, "topic_prefix", lambda: path.write_text(original))
    assert not [t for t in broker.admin().list_topics(timeout=20).topics if t.startswith("engage.")], \
        "events went to the default topics"
    assert not worker_exits(c.log())


def test_misspelt_setting_stops_the_shipper(cluster, broker, prefix):
    """A misspelt engage.* name is an operator's setting that does not apply: stopped on error."""
    path = cluster.dir / "data/postgresql.conf"
    original = path.read_text()
    try:
        reload_file(cluster, "engage.tabels = 'engage.*'")
        held_then_shipped(cluster, broker, prefix, "tabels", lambda: path.write_text(original))
    finally:
        path.write_text(original)
        cluster.query("SELECT pg_reload_conf()")
        cluster.wait_running()


def test_missing_database(make_cluster, broker, request):
    """engage.database missing: 'waiting for database' naming it, no worker; created: the shipper runs."""
    c = make_cluster("missing_db", "engage.database = 'nosuchdb'", wait_slot=False, request=request)
    wait_until(lambda: c.status()["state"] == "waiting for database", 30, "state 'waiting for database'")
    assert "nosuchdb" in c.status()["last_error"]
    observe_stable(c, None, state="waiting for database")
    log = c.log()
    assert log.count('database "nosuchdb" (engage.database) does not exist') == 1
    assert not worker_exits(log), worker_exits(log)
    assert not c.query("SELECT 1 FROM pg_replication_slots")

    c.query("CREATE DATABASE nosuchdb")
    c.query("CREATE EXTENSION pg_engage", dbname="nosuchdb")
    s = c.wait_running(timeout=60)
    assert c.one("SELECT datname FROM pg_stat_activity WHERE pid = %s", (s["pid"],)) == "nosuchdb"
    wait_until(lambda: c.confirmed_flush(), 30, "the shipper's slot")
    c.query("INSERT INTO engage.members (name) VALUES ('in nosuchdb')", dbname="nosuchdb")
    c.wait_shipped()
    # (the initial snapshot of the new slot may read the row too: a read record, not counted)
    names = [json.loads(e.value)["new"]["name"] for e in broker.read_prefix(c.prefix)
             if e.topic == f"{c.prefix}.members" and json.loads(e.value)["op"] == "insert"]
    assert names == ["in nosuchdb"]
    assert not worker_exits(c.log())


@pytest.mark.parametrize("name, bad, detail", [
    ("tables", "foo", '"foo" is not schema.table, schema.* or *'),
    ("tables", "engage", '"engage" is not schema.table, schema.* or *'),
    ("tables", "engage.*,", "the list of tables has an empty entry"),
    ("dead_letter_topic", "..", 'A Kafka topic name cannot be "." or ".."'),
    ("dead_letter_topic", "a/b", "A Kafka topic name has only the characters"),
], ids=["tables-no-dot", "tables-schema-only", "tables-empty-entry", "dead-letter-dotdot", "dead-letter-slash"])
def test_bad_setting_refused_at_load(cluster, broker, prefix, name, bad, detail):
    """A bad engage.tables or dead-letter topic: refused on reload with the reason; the shipper stops
    (it never ships with the old value instead of the one written) and goes on once it is fixed."""
    before = cluster.one(f"SHOW engage.{name}")
    path = cluster.dir / "data/postgresql.conf"
    original = path.read_text()
    try:
        offset = reload_file(cluster, f"engage.{name} = '{bad}'")
        refused = f'invalid value for parameter "engage.{name}"'
        wait_until(lambda: refused in cluster.log_since(offset), 10, f"the log to say: {refused}")
        assert detail in cluster.log_since(offset)
        assert cluster.one(f"SHOW engage.{name}") == before
        held_then_shipped(cluster, broker, prefix, name, lambda: path.write_text(original))
        assert not worker_exits(cluster.log_since(offset))
    finally:
        path.write_text(original)
        cluster.query("SELECT pg_reload_conf()")
        cluster.wait_running()


@pytest.mark.parametrize("bad, detail", [
    ("a b", "A Kafka topic name has only the characters"),
    ("p" * 201, "A topic prefix is at most 200 characters"),
    ("", "A Kafka topic name cannot be empty"),
], ids=["space", "too-long", "empty"])
def test_bad_topic_prefix_refused(cluster, broker, prefix, bad, detail):
    """ALTER SYSTEM SET engage.topic_prefix to a bad value fails with the reason; nothing changes."""
    with pytest.raises(psycopg.errors.InvalidParameterValue) as err:
        cluster.query(f"ALTER SYSTEM SET engage.topic_prefix = '{bad}'")
    assert detail in (err.value.diag.message_detail or ""), err.value.diag.message_detail
    assert cluster.one("SHOW engage.topic_prefix") == prefix
