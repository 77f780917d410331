"""Topic names and refusals: nothing a role without rights does can stop shipping (issue 8, section 2).

The module captures every table (engage.tables = '*').  The role mallory has no grants but owns
its schema, where it creates tables whose names make no plain Kafka topic, or collide with
another topic.  Every record of its tables carries a marker that must never show in the server
log nor in the status: error texts carry an event's id, topic and reason only.
"""
import hashlib
import json
import re
import time

import psycopg

from support import lsn_int, wait_until

CLUSTER_CONF = ["engage.tables = '*'"]
DEAD_LETTER_TOPIC = "engage-dead_letter"  # the default engage.dead_letter_topic
MARKER = "PII-MARKER-7f3a"  # in every value mallory writes
PLAIN = re.compile(r"^[A-Za-z0-9_-]+$")


def table_topic(prefix, schema, table):
    """The topic of a table (README, "Topic names"), written again from its description."""
    if PLAIN.match(schema) and PLAIN.match(table):
        topic = f"{prefix}.{table}" if schema == "engage" else f"{prefix}.{schema}.{table}"
        if len(topic) <= 249:
            return topic
    s, t = (re.sub(rb"[^A-Za-z0-9_-]", b"_", n.encode()).decode() for n in (schema, table))
    room = 249 - len(prefix) - 3 - 16
    s_keep = min(len(s), max(room // 2, room - len(t)))
    t_keep = min(len(t), room - s_keep)
    digest = hashlib.sha256(schema.encode() + b"\0" + table.encode()).hexdigest()[:16]
    return f"{prefix}.{s[:s_keep]}.{t[:t_keep]}.{digest}"


def ident(name):
    """name as a quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def mallory(cluster):
    """The role mallory (no grants, owns schema mallory), created once; returns a connection as it."""
    cluster.query("""DO $$ BEGIN
                       IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'mallory') THEN
                         CREATE ROLE mallory LOGIN;
                         CREATE SCHEMA mallory AUTHORIZATION mallory;
                       END IF;
                     END $$""")
    return psycopg.connect(host="127.0.0.1", port=cluster.port, user="mallory", dbname="postgres",
                           autocommit=True, connect_timeout=5)


def mallory_table(conn, table, rows=1):
    """As mallory: creates mallory.<table> and inserts rows carrying the marker."""
    conn.execute(f"CREATE TABLE mallory.{ident(table)} (id int PRIMARY KEY, secret text)")
    conn.execute(f"INSERT INTO mallory.{ident(table)} SELECT g, %s || g FROM generate_series(1, %s) g",
                 (MARKER, rows))


def add_member(cluster, name):
    """Inserts an engage member; returns the WAL insert position after it."""
    with cluster.connect() as conn:
        conn.execute("INSERT INTO engage.members (name) VALUES (%s)", (name,))
        return lsn_int(conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()[0])


def read_if_any(broker, topic):
    """Every message of topic; none when it does not exist."""
    return broker.read([topic]) if topic in broker.admin().list_topics(timeout=20).topics else []


def members(broker, prefix):
    """Names of the members inserted, as in the prefix's topic."""
    return {e.record["new"]["name"] for e in read_if_any(broker, f"{prefix}.members")
            if e.record["op"] == "insert"}


def dead_letters(broker, topic):
    """The dead letters of events meant for topic."""
    return [e for e in read_if_any(broker, DEAD_LETTER_TOPIC) if e.headers.get("engage.topic") == topic]


def assert_no_payload(cluster, offset):
    """The log written since offset and the status hold no marker of mallory's values."""
    assert MARKER not in cluster.log_since(offset), "a record's value reached the server log"
    assert MARKER not in json.dumps(cluster.status(), default=str), "a record's value reached the status"


def test_hostile_names_get_their_own_topics(cluster, broker, prefix):
    """"Bad Name", quotes, non-ASCII, dots, a 250+ character topic: each table gets its deterministic
    topic (under the stop policy, nothing refused) and engage rows keep flowing."""
    long_prefix = prefix + "-" + "p" * (180 - len(prefix) - 1)
    cluster.use_prefix(long_prefix)
    offset = cluster.log_size()
    names = ["Bad Name", 'say "hi"', "it's", "ünïcödé", "dot.ted", "t" * 63, "Plain_Table-1"]
    add_member(cluster, "before")
    with mallory(cluster) as conn:
        for name in names:
            mallory_table(conn, name, rows=2)
    add_member(cluster, "after")
    cluster.wait_shipped()
    assert cluster.status()["state"] == "running"

    topics = {name: table_topic(long_prefix, "mallory", name) for name in names}
    assert len(topics[names[5]]) == 249 and topics[names[5]] != f"{long_prefix}.mallory.{names[5]}"
    assert topics["Plain_Table-1"] == f"{long_prefix}.mallory.Plain_Table-1"
    existing = set(broker.topics(long_prefix))
    for name, topic in topics.items():
        assert topic in existing, f"no topic {topic} for mallory.{name}: {sorted(existing)}"
        events = broker.read([topic])
        assert {e.record["table"] for e in events} == {f"mallory.{name}"}
        assert [e.record["change"] for e in events if e.record["op"] == "schema"] == ["create"]
        assert sorted(e.record["new"]["id"] for e in events if e.record["op"] != "schema") == [1, 2]
    assert {"before", "after"} <= members(broker, long_prefix)
    assert_no_payload(cluster, offset)


def test_application_events_apart_from_rows(cluster, broker, prefix):
    """engage.emit('members') goes to <prefix>-app.members, never to the row topic <prefix>.members."""
    with cluster.connect() as conn:
        conn.execute("SELECT engage.emit('members', 'k', '{\"n\": 1}')")
        conn.execute("INSERT INTO engage.members (name) VALUES ('row')")
    cluster.wait_shipped()
    rows = broker.read([f"{prefix}.members"])
    apps = broker.read([f"{prefix}-app.members"])
    assert {e.record["op"] for e in rows} == {"insert"}
    assert [(e.record["op"], e.record["topic"], e.key) for e in apps] == [("message", "members", b"k")]


def test_collision_dead_letter(cluster, broker, prefix):
    """Under dead_letter, mallory.t whose topic collides with engage.mallory_t's ("." against "_"):
    its events go to the dead-letter topic with Kafka's reason; engage rows keep flowing."""
    cluster.restart_session(poison_policy="dead_letter")
    try:
        cluster.query("CREATE TABLE engage.mallory_t (id int PRIMARY KEY)")
        cluster.query("INSERT INTO engage.mallory_t VALUES (1)")
        cluster.wait_shipped()
        offset = cluster.log_size()
        colliding = f"{prefix}.mallory.t"
        started = time.monotonic()
        with mallory(cluster) as conn:
            mallory_table(conn, "t", rows=3)
        add_member(cluster, "after collision")
        cluster.wait_shipped(timeout=90)
        print(f"\ncolliding events dead-lettered and confirmed within {time.monotonic() - started:.2f}s")
        letters = dead_letters(broker, colliding)
        # the table's schema record (its CREATE TABLE) goes where its rows go
        assert [e.record["op"] for e in letters].count("schema") == 1, letters
        letters = [e for e in letters if e.record["op"] != "schema"]
        assert len(letters) == 3, letters
        assert cluster.status()["state"] == "running"
        reason = letters[0].headers["engage.reason"]
        assert f"collides with existing topic: {prefix}.mallory_t" in reason, reason
        assert sorted(e.record["new"]["id"] for e in letters) == [1, 2, 3]
        assert {e.record["new"]["secret"] for e in letters} == {f"{MARKER}{i}" for i in (1, 2, 3)}
        assert all(e.headers["engage.id"] == e.record["id"] for e in letters)
        assert colliding not in broker.topics(prefix)
        assert "after collision" in members(broker, prefix)
        assert_no_payload(cluster, offset)
    finally:
        cluster.reload(poison_policy=None)


def test_collision_stop_names_cause_and_holds(cluster, broker, prefix):
    """Under stop, the collision stops the shipper with Kafka's reason and the event id, holding the
    position; once the colliding topic is gone and the configuration reloaded, everything arrives."""
    cluster.query("CREATE TABLE engage.mallory_u (id int PRIMARY KEY)")
    cluster.query("INSERT INTO engage.mallory_u VALUES (1)")
    cluster.wait_shipped()
    offset = cluster.log_size()
    colliding, existing = f"{prefix}.mallory.u", f"{prefix}.mallory_u"
    with mallory(cluster) as conn:
        mallory_table(conn, "u")
        between = lsn_int(conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()[0])
    add_member(cluster, "after stop")

    wait_until(lambda: cluster.status()["state"] == "stopped on error", 60, "state 'stopped on error'")
    error = cluster.status()["last_error"]
    assert re.search(rf'Kafka refused event [0-9A-F]+/[0-9A-F]+:1 for topic "{re.escape(colliding)}": '
                     rf"Kafka will not create the topic: .*collides with existing topic: {re.escape(existing)}",
                     error), error
    assert "Unknown topic" not in error
    time.sleep(3)
    assert cluster.confirmed_flush() < between, "the position passed the refused event"
    assert_no_payload(cluster, offset)

    admin = broker.admin()  # must outlive the future
    admin.delete_topics([existing], operation_timeout=30)[existing].result(timeout=30)
    wait_until(lambda: existing not in broker.topics(prefix), 30, f"{existing} to be deleted")
    cluster.query("SELECT pg_reload_conf()")
    cluster.wait_running()
    cluster.wait_shipped()
    assert [e.record["new"]["secret"] for e in broker.read([colliding])
            if e.record["op"] != "schema"] == [f"{MARKER}1"]
    assert "after stop" in members(broker, prefix)


def test_dead_letter_topic_in_row_namespace_refused(cluster, broker, prefix):
    """A dead-letter topic among the row topics of the prefix: stopped on error naming the setting."""
    offset = cluster.log_size()
    cluster.reload(poison_policy="dead_letter", dead_letter_topic=f"{prefix}_dead_letter")
    try:
        wait_until(lambda: cluster.status()["state"] == "stopped on error", 30, "state 'stopped on error'")
        error = cluster.status()["last_error"]
        assert f'engage.dead_letter_topic "{prefix}_dead_letter" cannot be used' in error, error
        assert "namespace of row topics" in error
        assert "pg_engage shipper: engage.dead_letter_topic" in cluster.log_since(offset)
    finally:
        cluster.reload(poison_policy=None, dead_letter_topic=None)
    cluster.wait_running()
    add_member(cluster, "dead letters fixed")
    cluster.wait_shipped()
    assert "dead letters fixed" in members(broker, prefix)
