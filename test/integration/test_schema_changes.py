"""Schema changes in stream order, through the shipper into Kafka (issue 9, section 3).

DDL statements interleaved with writes while the shipper runs: each gives its schema record on the
table's topic before any row of the new shape, every row carries the fingerprint of the latest schema
record of its table, a rename is announced on the old topic too, and a consumer that follows the
schema records rebuilds the table as the database has it.  A role without rights can neither skip a
schema record nor forge one.
"""
import json

import psycopg

from support import check_duplicates, check_envelopes, db_tables, id_order, pk_text, wait_until

STATEMENTS = [
    "CREATE TABLE engage.ddl_it (id int PRIMARY KEY, a text)",
    "INSERT INTO engage.ddl_it SELECT g, 'a' || g FROM generate_series(1, 50) g",
    "ALTER TABLE engage.ddl_it ADD COLUMN b int",
    "INSERT INTO engage.ddl_it SELECT g, 'a' || g, g FROM generate_series(51, 100) g",
    "ALTER TABLE engage.ddl_it RENAME COLUMN a TO a2",
    "UPDATE engage.ddl_it SET a2 = 'upd' || id WHERE id % 7 = 0",
    "ALTER TABLE engage.ddl_it ALTER COLUMN b TYPE bigint",
    "UPDATE engage.ddl_it SET b = 3000000000 + id WHERE id % 5 = 0",
    "UPDATE engage.ddl_it SET b = 0 WHERE b IS NULL",
    "ALTER TABLE engage.ddl_it ALTER COLUMN b SET NOT NULL",
    "DELETE FROM engage.ddl_it WHERE id % 9 = 0",
    "ALTER TABLE engage.ddl_it DROP COLUMN a2",
    "INSERT INTO engage.ddl_it SELECT g, g FROM generate_series(101, 120) g",
    "ALTER TABLE engage.ddl_it RENAME TO ddl_it2",
    "INSERT INTO engage.ddl_it2 SELECT g, g FROM generate_series(121, 130) g",
    "UPDATE engage.ddl_it2 SET b = -b WHERE id % 4 = 0",
    "BEGIN; INSERT INTO engage.ddl_it2 VALUES (131, 1); ALTER TABLE engage.ddl_it2 ADD COLUMN c text;"
    " INSERT INTO engage.ddl_it2 VALUES (132, 2, 'c'); COMMIT",
]


def follow(events):
    """Replays the records in stream order (deduped by id), following the schema records.

    Returns the rebuilt tables by their latest names and the problems seen: a row whose fingerprint
    is not the latest one announced for its table, a row of a table never announced.
    """
    tables, announced, problems, seen = {}, {}, [], set()
    for e in sorted(events, key=lambda e: id_order(e.id)):
        if e.id in seen:
            continue
        seen.add(e.id)
        rec = e.record
        if rec["op"] == "schema":
            if rec.get("old_table"):
                tables[rec["table"]] = tables.pop(rec["old_table"], {})
                announced.pop(rec["old_table"], None)
            if rec["change"] == "drop":
                tables.pop(rec["table"], None)
            elif "schema" in rec:
                announced[rec["table"]] = rec["schema"]
                keep = {c["name"] for c in rec["columns"]}
                for row in tables.setdefault(rec["table"], {}).values():
                    for col in [c for c in row if c not in keep]:
                        del row[col]
                    for col in keep - set(row):
                        row[col] = None  # a column added without a default
            continue
        if announced.get(rec["table"]) != rec["schema"]:
            problems.append(f"{e.id} {rec['op']} of {rec['table']} under {rec['schema']}, "
                            f"announced {announced.get(rec['table'])}")
        rows = tables.setdefault(rec["table"], {})
        key = pk_text(rec["pk"])
        if rec["op"] in ("insert", "update"):
            rows[key] = dict(rec["new"])
        elif rec["op"] == "delete":
            rows.pop(key, None)
    return tables, problems


def test_ddl_between_writes_in_stream_order(cluster, broker, prefix):
    """Schema records precede the rows of each new shape; following them rebuilds the table."""
    with cluster.connect() as conn:
        conn.autocommit = True
        for sql in STATEMENTS:
            conn.execute(sql)
    cluster.wait_shipped()
    old_topic, new_topic = f"{prefix}.ddl_it", f"{prefix}.ddl_it2"
    wait_until(lambda: {old_topic, new_topic} <= set(broker.topics(prefix)), 60, "both topics")
    events = broker.read([old_topic, new_topic])
    check_envelopes(events, prefix)
    check_duplicates(events)

    schema = [e for e in events if e.record["op"] == "schema"]
    on_old = [e.record["change"] for e in schema if e.topic == old_topic]
    on_new = [e.record["change"] for e in schema if e.topic == new_topic]
    assert on_old == ["create", "alter", "alter", "alter", "alter", "alter", "rename"], on_old
    assert on_new == ["rename", "alter"], on_new
    rename = [e for e in schema if e.record["change"] == "rename"]
    assert len({e.id for e in rename}) == 1 and len({e.value for e in rename}) == 1, \
        "one rename record, the same on both topics"
    assert {json.loads(e.key) for e in rename} == {"engage.ddl_it", "engage.ddl_it2"}
    assert rename[0].record["old_table"] == "engage.ddl_it" and rename[0].record["captured"] is True

    # In stream order (the ids), every row after the schema record it was written under: Kafka
    # orders a topic's partitions only one by one, which is what the fingerprint is for.
    tables, problems = follow(events)
    assert not problems, problems
    db = db_tables(cluster)
    assert tables.get("engage.ddl_it2") == db["engage.ddl_it2"], "the rebuild differs from the database"
    assert "engage.ddl_it" not in tables


def test_rename_out_of_the_captured_set_and_drop(cluster, broker, prefix):
    """A table leaving the captured set is announced on its topic; a drop too."""
    with cluster.connect() as conn:
        conn.autocommit = True
        conn.execute("CREATE SCHEMA IF NOT EXISTS elsewhere")
        conn.execute("CREATE TABLE engage.leaving (id int PRIMARY KEY)")
        conn.execute("INSERT INTO engage.leaving VALUES (1)")
        conn.execute("ALTER TABLE engage.leaving SET SCHEMA elsewhere")
        conn.execute("INSERT INTO elsewhere.leaving VALUES (2)")
        conn.execute("CREATE TABLE engage.dropped (id int PRIMARY KEY)")
        conn.execute("INSERT INTO engage.dropped VALUES (1)")
        conn.execute("DROP TABLE engage.dropped")
    cluster.wait_shipped()
    by_id = lambda events: sorted(events, key=lambda e: id_order(e.id))  # noqa: E731 (stream order)
    leaving = by_id(broker.read([f"{prefix}.leaving"]))
    assert [(e.record["op"], e.record.get("change"), e.record.get("captured")) for e in leaving] == \
        [("schema", "create", True), ("insert", None, None), ("schema", "set_schema", False)]
    assert leaving[-1].record["table"] == "elsewhere.leaving"
    dropped = by_id(broker.read([f"{prefix}.dropped"]))
    assert [(e.record["op"], e.record.get("change")) for e in dropped] == \
        [("schema", "create"), ("insert", None), ("schema", "drop")]
    assert "columns" not in dropped[-1].record and dropped[-1].record["captured"] is False


def test_a_role_without_rights_cannot_skip_or_forge(cluster, broker, prefix):
    """Its DDL on its own captured table is announced; its forged schema messages are quarantined."""
    cluster.query("""DO $$ BEGIN
                       IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ddl_nobody') THEN
                         CREATE ROLE ddl_nobody LOGIN;
                       END IF;
                     END $$""")
    cluster.query("GRANT USAGE, CREATE ON SCHEMA engage TO ddl_nobody")
    before = cluster.status()["quarantined"]
    with psycopg.connect(host="127.0.0.1", port=cluster.port, user="ddl_nobody", dbname="postgres",
                         autocommit=True, connect_timeout=5) as conn:
        conn.execute("CREATE TABLE engage.nobodys (id int PRIMARY KEY)")
        conn.execute("INSERT INTO engage.nobodys VALUES (1)")
        conn.execute("ALTER TABLE engage.nobodys ADD COLUMN x text")
        conn.execute("INSERT INTO engage.nobodys VALUES (2, 'x')")
        conn.execute("SELECT pg_logical_emit_message(true, 'engage.schema', %s)",
                     ("0" * 64 + '{"relid":1,"nspname":"engage","relname":"nobodys","gone":true}\n'
                      '{"table":"engage.nobodys","change":"drop"}',))
    cluster.query("REVOKE CREATE ON SCHEMA engage FROM ddl_nobody")
    cluster.wait_shipped()
    events = sorted(broker.read([f"{prefix}.nobodys"]), key=lambda e: id_order(e.id))
    assert [(e.record["op"], e.record.get("change")) for e in events] == \
        [("schema", "create"), ("insert", None), ("schema", "alter"), ("insert", None)]
    wait_until(lambda: cluster.status()["quarantined"] == before + 1, 30, "the forgery quarantined")
