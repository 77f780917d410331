"""An independent consumer rebuilds the engage tables from Kafka after a randomized workload."""
import json
import random
import string

import psycopg
import pytest

from support import RB_MARK, check_duplicates, check_envelopes, check_key_order, compare_tables, \
    db_tables, rebuild

# Small, so that the big transactions spill to disk while decoded.
CLUSTER_CONF = ["logical_decoding_work_mem = '64kB'"]
SEED = 20261125
BIG_ROWS = 20000


def big_text(rng, n=None):
    """Incompressible text longer than the TOAST threshold."""
    return "".join(rng.choices(string.ascii_letters + string.digits, k=n or rng.randint(2500, 6000)))


class RandomWorkload:
    """A seeded mix of committed and rolled-back work on the engage tables and engage.emit."""

    def __init__(self, conn, seed):
        self.conn, self.rng = conn, random.Random(seed)
        self.members, self.audiences, self.pairs = [], [], []
        self.messages = {}  # key -> payload of committed messages
        self.n = 0

    def emit(self, key, payload):
        """engage.emit to topic app.events."""
        self.conn.execute("SELECT engage.emit('app.events', %s, %s)", (key, json.dumps(payload)))

    def new_members(self, count, marker=""):
        """Inserts members, some with a TOASTed contact; returns their ids."""
        rng, ids = self.rng, []
        for _ in range(count):
            self.n += 1
            contact = big_text(rng) if rng.random() < 0.35 else f"short {self.n}"
            ids.append(self.conn.execute(
                "INSERT INTO engage.members (name, email, contact) VALUES (%s, %s, %s) RETURNING member_id",
                (f"{marker}m{self.n}", f"m{self.n}@example.org", contact)).fetchone()[0])
        return ids

    def setup(self):
        """Users, templates and audiences the other steps refer to."""
        with self.conn.transaction():
            for i in range(5):
                self.conn.execute("INSERT INTO engage.users (username, department, contact) VALUES (%s, %s, %s)",
                                  (f"user{i}", "sales", big_text(self.rng) if i % 2 else None))
                self.conn.execute("INSERT INTO engage.templates (name, type) VALUES (%s, 'html')", (f"t{i}",))
            for i in range(4):
                self.audiences.append(self.conn.execute(
                    "INSERT INTO engage.audiences (name, segment_types, location_type) VALUES (%s, %s, %s)"
                    " RETURNING audience_id", (f"a{i}", ["vip", f"seg{i}"], None)).fetchone()[0])
            self.members += self.new_members(30)

    def step(self):
        """One random committed transaction (with rolled-back savepoints) or one rolled-back one."""
        rng, conn = self.rng, self.conn
        kind = rng.choices(["insert", "update_name", "update_contact", "update_many", "delete", "pairs",
                            "emit", "rollback", "savepoints", "same_row"],
                           [14, 14, 8, 3, 6, 10, 8, 8, 8, 5])[0]
        if kind == "rollback":
            self.rolled_back()
            return
        with conn.transaction():
            if kind == "insert":
                self.members += self.new_members(rng.randint(1, 8))
            elif kind == "update_name":  # leaves a TOASTed contact unchanged
                for m in rng.sample(self.members, min(3, len(self.members))):
                    conn.execute("UPDATE engage.members SET name = name || '+' WHERE member_id = %s", (m,))
            elif kind == "update_contact":
                m = rng.choice(self.members)
                value = rng.choice([big_text(rng), "small", None])
                conn.execute("UPDATE engage.members SET contact = %s WHERE member_id = %s", (value, m))
            elif kind == "update_many":
                conn.execute("UPDATE engage.members SET email = email || '.x' WHERE member_id %% 97 = %s",
                             (rng.randrange(97),))
            elif kind == "delete":
                m = self.members.pop(rng.randrange(len(self.members)))
                conn.execute("DELETE FROM engage.members WHERE member_id = %s", (m,))
                self.pairs = [p for p in self.pairs if p[1] != m]
            elif kind == "pairs":
                self.change_pairs()
            elif kind == "emit":
                for _ in range(rng.randint(1, 3)):
                    self.n += 1
                    key, payload = f"k{self.n}", {"n": self.n, "text": big_text(rng, 50)}
                    self.emit(key, payload)
                    self.messages[key] = payload
            elif kind == "savepoints":
                self.savepoints()
            elif kind == "same_row":  # insert, update twice and maybe delete in one transaction
                (m,) = self.new_members(1)
                conn.execute("UPDATE engage.members SET name = 'twice' WHERE member_id = %s", (m,))
                conn.execute("UPDATE engage.members SET contact = %s WHERE member_id = %s", (big_text(rng), m))
                if rng.random() < 0.5:
                    conn.execute("DELETE FROM engage.members WHERE member_id = %s", (m,))
                else:
                    self.members.append(m)

    def change_pairs(self):
        """Adds, updates and removes audience memberships (composite key)."""
        rng, conn = self.rng, self.conn
        for _ in range(rng.randint(1, 4)):
            pair = (rng.choice(self.audiences), rng.choice(self.members))
            if pair in self.pairs:
                continue
            conn.execute("INSERT INTO engage.audience_members (audience_id, member_id, email, contact)"
                         " VALUES (%s, %s, %s, %s)", (*pair, "p@example.org",
                                                      big_text(rng) if rng.random() < 0.3 else None))
            self.pairs.append(pair)
        if self.pairs:
            conn.execute("UPDATE engage.audience_members SET email = %s WHERE audience_id = %s AND member_id = %s",
                         (f"e{rng.random()}@example.org", *rng.choice(self.pairs)))
        if len(self.pairs) > 10 and rng.random() < 0.5:
            pair = self.pairs.pop(rng.randrange(len(self.pairs)))
            conn.execute("DELETE FROM engage.audience_members WHERE audience_id = %s AND member_id = %s", pair)

    def marked_work(self):
        """Writes that carry RB_MARK (only ever run in work that is rolled back)."""
        conn, rng = self.conn, self.rng
        self.new_members(rng.randint(1, 3), marker=RB_MARK)
        m = rng.choice(self.members)
        conn.execute("UPDATE engage.members SET name = %s, contact = %s WHERE member_id = %s",
                     (RB_MARK, RB_MARK + big_text(rng), m))
        conn.execute("UPDATE engage.users SET department = %s WHERE user_id IN "
                     "(SELECT user_id FROM engage.users LIMIT 1)", (RB_MARK,))
        conn.execute("DELETE FROM engage.members WHERE member_id = %s", (rng.choice(self.members),))
        self.emit(RB_MARK, {"marker": RB_MARK})

    def rolled_back(self):
        """A whole transaction rolled back."""
        with self.conn.transaction() as tx:
            self.marked_work()
            raise psycopg.Rollback(tx)

    def savepoints(self):
        """Committed work around rolled-back and released (nested) savepoints."""
        conn = self.conn
        self.members += self.new_members(1)
        with conn.transaction():  # SAVEPOINT ... ROLLBACK TO
            self.marked_work()
            raise psycopg.Rollback()
        with conn.transaction():  # SAVEPOINT ... RELEASE: kept
            self.members += self.new_members(1)
            self.n += 1
            self.emit(f"k{self.n}", {"n": self.n, "in": "released savepoint"})
            self.messages[f"k{self.n}"] = {"n": self.n, "in": "released savepoint"}
            with conn.transaction():  # nested, rolled back
                self.marked_work()
                raise psycopg.Rollback()
            conn.execute("UPDATE engage.members SET name = name || '-sp' WHERE member_id = %s",
                         (self.rng.choice(self.members),))

    def big_transaction(self):
        """About 20k rows in one transaction (spills to disk), with an update of some of them."""
        with self.conn.transaction():
            ids = [r[0] for r in self.conn.execute(
                "INSERT INTO engage.members (name, email) SELECT 'big' || g, 'big' || g || '@example.org'"
                " FROM generate_series(1, %s) g RETURNING member_id", (BIG_ROWS,))]
            self.conn.execute("UPDATE engage.members SET name = name || '*' WHERE member_id = ANY(%s)",
                              (ids[::10],))
            self.emit("big", {"rows": BIG_ROWS})
            self.messages["big"] = {"rows": BIG_ROWS}
        self.members += ids[:50]

    def big_rollback(self):
        """A big transaction rolled back."""
        with self.conn.transaction() as tx:
            self.conn.execute("INSERT INTO engage.members (name) SELECT %s || g FROM generate_series(1, 5000) g",
                              (RB_MARK,))
            self.emit(RB_MARK, {"marker": RB_MARK, "big": True})
            raise psycopg.Rollback(tx)

    def run(self, steps=400):
        """The whole workload."""
        self.setup()
        for i in range(steps):
            if i == steps // 4:
                self.big_transaction()
            if i == steps // 2:
                self.big_rollback()
            self.step()


@pytest.fixture(scope="module")
def stream(cluster, broker):
    """Runs the workload, waits until the slot confirmed it all, reads every topic of the prefix."""
    with cluster.connect() as conn:
        workload = RandomWorkload(conn, SEED)
        workload.run()
    cluster.wait_shipped(timeout=180)
    events = broker.read_prefix(cluster.prefix)
    return workload, events


def test_rebuild_matches_database(stream, cluster):
    """Rebuilt tables (pk apply, unchanged TOAST kept, deduped by id) equal every engage table."""
    workload, events = stream
    rebuilt, messages = rebuild(events)
    assert len(rebuilt.get("engage.members", {})) > BIG_ROWS, "the workload's rows are not in Kafka"
    compare_tables(rebuilt, db_tables(cluster))
    got = {m["key"]: m["payload"] for m in messages.values()}
    assert got == workload.messages, "committed engage.emit messages differ from Kafka"


def test_toast_values_and_unchanged_toast(stream):
    """TOASTed values travel whole, and updates that leave them alone say so in unchanged_toast."""
    _, events = stream
    records = [e.record for e in events if e.topic.endswith(".members")]
    assert any(len((r.get("new") or {}).get("contact") or "") > 2000 for r in records)
    unchanged = [r for r in records if r["op"] == "update" and "contact" in (r.get("unchanged_toast") or [])]
    assert unchanged, "no update left a TOASTed contact unchanged: the workload does not test it"
    assert all("contact" not in r["new"] for r in unchanged)


def test_nothing_from_rolled_back_work(stream):
    """No event of a rolled-back transaction or savepoint reaches Kafka."""
    _, events = stream
    leaked = [f"{e.topic}@{e.offset}: {e.value[:120]!r}" for e in events if RB_MARK.encode() in e.value]
    assert not leaked, f"{len(leaked)} events of rolled-back work: {leaked[:3]}"
    assert not [e for e in events if e.key == RB_MARK.encode()]


def test_per_key_order_in_every_partition(stream):
    """For each key, ids in its partition increase by (commit lsn, position); no duplicates here."""
    _, events = stream
    assert check_key_order(events) > 1000
    assert check_duplicates(events) == 0, "duplicates without any failure"
    partitions = {(e.topic, e.partition) for e in events if e.topic.endswith(".members")}
    assert len(partitions) > 1, "members all in one partition: order across keys not exercised"


def test_topics_keys_and_headers(stream, cluster):
    """Each message's topic, key and engage.* headers agree with its record."""
    _, events = stream
    check_envelopes(events, cluster.prefix)
    ops = {e.record["op"] for e in events}
    assert {"insert", "update", "delete", "message"} <= ops
