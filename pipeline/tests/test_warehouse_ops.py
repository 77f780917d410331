"""Semantics of the staging and current-state models on made-up records, three cycles apart.

Each case is a few records of one key, some landed in a later cycle than newer ones (late
objects): deletes are never undone by older events, the newest version wins by numeric
(commit LSN, position) order, snapshot `read` rows order like inserts, unchanged TOAST values
are carried, JSON null differs from SQL NULL, a TRUNCATE removes older rows (late ones too),
`schema` and `gap` records are staged (gaps warn), duplicates are staged once. A delivery gap
removes the rows a table had before it once a snapshot of the table begun after it is done, and
nothing otherwise. Columns added by DDL become typed columns once their schema record is staged.
"""
from __future__ import annotations

import json
from argparse import Namespace

import pytest

from warehouse_fixtures import LandingWriter, SourceCluster, new_base_dir, query, warehouse_config

from pipeline.cycle import run_cycle

PG_PORT = 55761
TS = "2026-06-06T18:00:00.000000Z"


def rec(id_: str, op: str, table: str = "members", **members) -> str:
    """Return a record value in the shape of README.md "Event records"."""
    lsn = id_.split(":")[0]
    body = {"v": 1, "id": id_, "lsn": lsn, "xid": 1, "ts": TS, "op": op, "table": f"engage.{table}"}
    body.update(members)
    return json.dumps(body, separators=(",", ":"))


def member(id_, op, member_id, name, contact="c", toast=None, **extra):
    """A members record (insert/update/read: full row; toast: columns left out as unchanged)."""
    row = {"member_id": member_id, "name": name, "email": f"m{member_id}@x.com",
           "contact": contact, "created_at": TS, **extra}
    if op == "delete":
        return rec(id_, op, pk={"member_id": member_id}, old={"member_id": member_id})
    if toast:
        for c in toast:
            row.pop(c)
        return rec(id_, op, pk={"member_id": member_id}, new=row, unchanged_toast=toast)
    return rec(id_, op, pk={"member_id": member_id}, new=row)


def gap(to_lsn: str, from_lsn: str) -> str:
    """Return a shipper's gap record (control topic, no table; README.md "A lost slot")."""
    return json.dumps({"v": 1, "id": f"{to_lsn}:0", "op": "gap", "from_lsn": from_lsn,
                       "to_lsn": to_lsn, "slot": "engage_shipper", "reason": "the slot was dropped"},
                      separators=(",", ":"))


def snap(id_: str, table: str, snapshot_id: int, state: str) -> str:
    """Return a snapshot record (control topic) framing a snapshot's read records of table."""
    return rec(id_, "snapshot", table,
               snapshot={"id": snapshot_id, "reason": "slot loss", "state": state})


def row(id_: str, op: str, table: str, key: str, key_value: int, **cols) -> str:
    """A record of one row of a single-key table (delete: the old key only)."""
    pk = {key: key_value}
    if op == "delete":
        return rec(id_, op, table, pk=pk, old=pk)
    return rec(id_, op, table, pk=pk, new={**pk, **cols, "created_at": TS})


def user(id_, op, user_id, username):
    """A users record."""
    return row(id_, op, "users", "user_id", user_id, username=username, department="d",
               contact=None)


def template(id_, op, template_id, name):
    """A templates record."""
    return row(id_, op, "templates", "template_id", template_id, name=name, type="email")


def audience(id_, op, audience_id, name):
    """An audiences record."""
    return row(id_, op, "audiences", "audience_id", audience_id, name=name, segment_types=None,
               location_type=None)


def am(id_, op, audience_id, member_id):
    """An audience_members record."""
    pk = {"audience_id": audience_id, "member_id": member_id}
    return rec(id_, op, "audience_members", pk=pk,
               new={**pk, "email": "a@x.com", "contact": None, "added_at": TS})


FIRST = [
    member("0/100:1", "insert", 1, "one"),
    member("0/100:2", "insert", 2, "two"),
    member("0/50:1", "read", 3, "three", contact="big toasted value"),
    member("F/0:1", "insert", 6, "old"),
    member("0/1000:9", "insert", 7, "nine"),
    am("0/100:3", "insert", 1, 1),
    rec("0/120:1", "insert", "audiences", pk={"audience_id": 1}, json_null=["segment_types"],
        new={"audience_id": 1, "name": "a", "segment_types": None, "location_type": None, "created_at": TS}),
    rec("0/120:2", "insert", "audiences", pk={"audience_id": 2},
        new={"audience_id": 2, "name": "b", "segment_types": None, "location_type": None, "created_at": TS}),
]
SECOND = [
    member("0/300:1", "delete", 1, None),
    member("0/400:1", "update", 2, "two v2"),
    member("0/500:1", "update", 3, "three v2", toast=["contact"]),
    member("0/600:1", "update", 3, "three v3", toast=["contact"]),
    member("10/0:1", "update", 6, "new"),
    member("0/1000:10", "update", 7, "ten"),
    rec("0/700:1", "truncate", "audience_members", cascade=False, restart_identity=False),
    am("0/800:1", "insert", 1, 2),
    rec("0/900:1", "schema", columns=[{"name": "nickname", "type": "text"}]),
    member("0/901:1", "insert", 8, "eight", nickname="Ate"),
    gap("0/950", "0/940"),
]
LATE = [
    member("0/200:1", "update", 1, "one resurrected?"),
    member("0/150:1", "update", 2, "two stale"),
    am("0/650:1", "insert", 1, 3),
]


@pytest.fixture(scope="module")
def pg():
    """A PostgreSQL cluster hosting the warehouse database of the postgres case."""
    src = SourceCluster(new_base_dir("engage-wh-ops-") / "pg", PG_PORT)
    yield src
    src.stop()


def cycle(landing, cfg, work, audit=False) -> dict:
    """Run load + transform; fail the test on a dbt error."""
    args = Namespace(steps=["load", "transform"], landing=str(landing), s3_endpoint=None,
                     lock_file=str(work / "cycle.lock"), wait=True, lock_timeout=60,
                     full_refresh=False, audit=audit, vars=None, dbt_work_dir=str(work / "dbt"))
    report = run_cycle(args, cfg)
    assert report["dbt_ok"], report["dbt_failures"]
    return report


@pytest.mark.parametrize("kind", ["duckdb", "postgres"])
def test_state_semantics(kind, pg, tmp_path):
    """Late, duplicate, truncated, TOASTed and snapshot records end in the right state."""
    cfg = warehouse_config(kind, tmp_path, pg, "wh_ops")
    landing = tmp_path / "landing"
    w = LandingWriter(landing, partitions=1)
    w.write(FIRST + FIRST[:2])                      # duplicates in the same cycle
    cycle(landing, cfg, tmp_path)
    w.write(SECOND)
    r2 = cycle(landing, cfg, tmp_path)
    assert r2["dbt_warnings"] == 1                   # the gap
    w.write(LATE + SECOND[:1])                       # late older events, and a redelivery
    r3 = cycle(landing, cfg, tmp_path, audit=True)
    assert r3["duplicates_dropped"] == 1 and r3["events_staged"] == len(LATE)
    s = cfg.schema

    members = dict(query(cfg, f"SELECT member_id, name FROM {s}.cur_members"))
    assert members == {2: "two v2", 3: "three v3", 6: "new", 7: "ten", 8: "eight"}
    assert query(cfg, f"SELECT contact FROM {s}.cur_members WHERE member_id = 3") == [("big toasted value",)]
    tomb = query(cfg, f"SELECT _deleted, _op FROM {s}.state_members WHERE member_id = 1")
    assert tomb == [(True, "delete")]
    row8 = query(cfg, f"SELECT _row FROM {s}.cur_members WHERE member_id = 8")[0][0]
    assert json.loads(row8)["nickname"] == "Ate"     # a column no model names yet
    assert query(cfg, f"SELECT audience_id, member_id FROM {s}.cur_audience_members") == [(1, 2)]
    nulls = query(cfg, f"SELECT audience_id, segment_types FROM {s}.cur_audiences ORDER BY 1")
    assert nulls == [(1, "null"), (2, None)]         # JSON null vs SQL NULL
    assert query(cfg, f"SELECT count(*) FROM {s}.stg_schema_changes")[0][0] == 1
    assert query(cfg, f"SELECT count(*) FROM {s}.stg_gaps")[0][0] == 1
    n = len(FIRST) + len(SECOND) + len(LATE)
    assert query(cfg, f"SELECT count(*) FROM {s}.stg_events")[0][0] == n


# A slot lost from 0/180 to 0/500 (gap id 0/500:0). Before it: members 1-4, audiences 1-2, users
# 1-2, templates 1-2, with an initial snapshot of templates (done before the gap: heals nothing).
# During it (never shipped): members 2, audiences 2, users 2 and templates 2 were deleted.
BEFORE_GAP = [
    snap("0/90:1", "templates", 1, "started"),
    template("0/90:2", "read", 1, "t1"),
    template("0/90:3", "read", 2, "t2"),
    snap("0/90:4", "templates", 1, "done"),
    *(member(f"0/100:{i}", "insert", i, f"m{i}") for i in (1, 2, 3, 4)),
    *(audience(f"0/110:{i}", "insert", i, f"a{i}") for i in (1, 2)),
    snap("0/120:1", "users", 2, "started"),        # users' snapshot, open when the slot is lost
    user("0/120:2", "read", 1, "u1"),
    user("0/120:3", "read", 2, "u2"),
]
# After the gap, one cycle: the slot-loss snapshot of members reads 1 and 3 (member 4 was
# updated meanwhile, so its read was dropped; member 5 was inserted after its chunk); that of
# audiences has started; users' open snapshot goes on from its last chunk and ends.
AFTER_GAP = [
    gap("0/500", "0/180"),
    member("0/505:1", "update", 4, "m4 after the gap"),
    snap("0/510:1", "members", 7, "started"),
    member("0/510:2", "read", 1, "m1 read"),
    member("0/510:3", "read", 3, "m3 read"),
    member("0/520:1", "insert", 5, "m5"),
    snap("0/530:1", "audiences", 8, "started"),
    audience("0/530:2", "read", 1, "a1 read"),
    snap("0/540:1", "users", 2, "done"),
]
MEMBERS_DONE = [snap("0/550:1", "members", 7, "done")]
# Late objects of events older than the gap: they bring nothing back, overwrite no read.
LATE_OLD = [member("0/150:1", "update", 2, "m2 late"), member("0/160:1", "update", 3, "m3 late")]
# Every other table's snapshot, begun after the gap, ends: every table is healed.
ALL_DONE = [
    snap("0/560:1", "audiences", 8, "done"),
    *(x for i, t in enumerate(["users", "templates", "audience_members", "campaigns",
                                "campaign_audience"])
      for x in (snap(f"0/57{i}:1", t, 10 + i, "started"), snap(f"0/57{i}:2", t, 10 + i, "done"))),
]


def live(cfg, table: str, key: str) -> dict:
    """Return {key: name column} of the live rows of cur_<table>."""
    name = "username" if table == "users" else "name"
    return dict(query(cfg, f"SELECT {key}, {name} FROM {cfg.schema}.cur_{table} ORDER BY 1"))


@pytest.mark.parametrize("kind", ["duckdb", "postgres"])
def test_gap_healed_by_done_snapshot(kind, pg, tmp_path):
    """A gap acts on a table as a TRUNCATE at the gap once a snapshot of the table begun after it
    is done, in the cycle that stages its `done` record; never for other tables."""
    cfg = warehouse_config(kind, tmp_path, pg, "wh_gap")
    landing = tmp_path / "landing"
    w = LandingWriter(landing, partitions=1)
    s = cfg.schema
    w.write(BEFORE_GAP)
    cycle(landing, cfg, tmp_path)
    w.write(AFTER_GAP)
    r = cycle(landing, cfg, tmp_path)
    assert r["dbt_warnings"] == 1                   # the gap, healed for no table yet
    # members' snapshot is not done: nothing is removed yet, anywhere
    assert live(cfg, "members", "member_id") == {
        1: "m1 read", 2: "m2", 3: "m3 read", 4: "m4 after the gap", 5: "m5"}
    assert live(cfg, "audiences", "audience_id") == {1: "a1 read", 2: "a2"}
    assert live(cfg, "users", "user_id") == {1: "u1", 2: "u2"}
    assert live(cfg, "templates", "template_id") == {1: "t1", 2: "t2"}

    w.write(MEMBERS_DONE)
    r = cycle(landing, cfg, tmp_path)
    assert r["dbt_warnings"] == 1 and r["rows_changed_by_table"]["members"] == 1
    # member 2, neither read nor written since the gap, is gone; the others stay
    assert live(cfg, "members", "member_id") == {
        1: "m1 read", 3: "m3 read", 4: "m4 after the gap", 5: "m5"}
    done_batch = query(cfg, f"SELECT _batch FROM {s}.stg_events WHERE event_id = '0/550:1'")[0][0]
    assert query(cfg, f"SELECT _deleted, _op, _event_id, _batch FROM {s}.state_members "
                      "WHERE member_id = 2") == [(True, "gap", "0/100:2", done_batch)]
    # audiences' snapshot is not done; users' began before the gap; templates' ended before it
    assert live(cfg, "audiences", "audience_id") == {1: "a1 read", 2: "a2"}
    assert live(cfg, "users", "user_id") == {1: "u1", 2: "u2"}
    assert live(cfg, "templates", "template_id") == {1: "t1", 2: "t2"}

    w.write(LATE_OLD)
    cycle(landing, cfg, tmp_path, audit=True)
    assert live(cfg, "members", "member_id") == {
        1: "m1 read", 3: "m3 read", 4: "m4 after the gap", 5: "m5"}
    assert query(cfg, f"SELECT _deleted, _op FROM {s}.state_members WHERE member_id = 2") == [
        (True, "gap")]

    w.write(ALL_DONE)
    r = cycle(landing, cfg, tmp_path, audit=True)
    assert r["dbt_warnings"] == 0                   # healed for every table
    assert live(cfg, "audiences", "audience_id") == {1: "a1 read"}
    assert live(cfg, "users", "user_id") == {}       # the snapshot read nothing after the gap
    assert live(cfg, "templates", "template_id") == {}
    assert live(cfg, "members", "member_id") == {
        1: "m1 read", 3: "m3 read", 4: "m4 after the gap", 5: "m5"}


@pytest.mark.parametrize("kind", ["duckdb", "postgres"])
def test_gap_without_snapshot_removes_nothing(kind, pg, tmp_path):
    """Under engage.on_slot_loss = continue there is no snapshot: a gap removes no row, even
    with later cycles and a TRUNCATE of another table; it warns on every build."""
    cfg = warehouse_config(kind, tmp_path, pg, "wh_gap_continue")
    landing = tmp_path / "landing"
    w = LandingWriter(landing, partitions=1)
    w.write([member(f"0/100:{i}", "insert", i, f"m{i}") for i in (1, 2)]
            + [audience("0/110:1", "insert", 1, "a1")])
    cycle(landing, cfg, tmp_path)
    w.write([gap("0/500", "0/180"), member("0/510:1", "insert", 3, "m3"),
             rec("0/520:1", "truncate", "templates", cascade=False, restart_identity=False)])
    r = cycle(landing, cfg, tmp_path)
    assert live(cfg, "members", "member_id") == {1: "m1", 2: "m2", 3: "m3"}
    assert r["dbt_warnings"] == 1
    w.write([member("0/530:1", "update", 1, "m1 v2")])
    r = cycle(landing, cfg, tmp_path, audit=True)
    assert live(cfg, "members", "member_id") == {1: "m1 v2", 2: "m2", 3: "m3"}
    assert live(cfg, "audiences", "audience_id") == {1: "a1"}
    assert r["dbt_warnings"] == 1
    assert query(cfg, f"SELECT from_lsn, to_lsn, slot_name FROM {cfg.schema}.stg_gaps") == [
        ("0/180", "0/500", "engage_shipper")]


def members_schema(id_: str, *added: tuple[str, str]) -> str:
    """A schema record of engage.members (README.md "Schema records") with columns added."""
    cols = [("member_id", "bigint"), ("name", "text"), ("email", "text"), ("contact", "text"),
            ("created_at", "timestamp with time zone"), *added]
    return rec(id_, "schema", change="alter", key=["member_id"], schema="0123456789abcdef",
               captured=True, columns=[{"name": n, "type": t, "nullable": True} for n, t in cols])


@pytest.mark.parametrize("kind", ["duckdb", "postgres"])
def test_added_columns(kind, pg, tmp_path):
    """Columns added by DDL become typed columns of state_members and cur_members once their
    schema record is staged (in the same cycle as the rows): NULL in older versions, the values
    of the rows written (or read) after it; a column dropped later stays with its values."""
    cfg = warehouse_config(kind, tmp_path, pg, "wh_cols")
    landing = tmp_path / "landing"
    w = LandingWriter(landing, partitions=1)
    s = cfg.schema
    w.write([member("0/100:1", "insert", 1, "m1"), member("0/100:2", "insert", 2, "m2")])
    cycle(landing, cfg, tmp_path)                   # no schema record yet: the static columns

    w.write([members_schema("0/200:1", ("nickname", "text"), ("score", "bigint")),
             member("0/210:1", "insert", 3, "m3", nickname="Three", score=30),
             member("0/220:1", "update", 2, "m2 v2", nickname="Two", score=9007199254740993),
             member("0/230:1", "read", 4, "m4", nickname="Four", score=None)])
    cycle(landing, cfg, tmp_path)
    got = query(cfg, f"SELECT member_id, name, nickname, score FROM {s}.cur_members ORDER BY 1")
    assert got == [(1, "m1", None, None), (2, "m2 v2", "Two", 9007199254740993),
                   (3, "m3", "Three", 30), (4, "m4", "Four", None)]
    assert query(cfg, f"SELECT nickname, score FROM {s}.state_members WHERE member_id = 1") == [
        (None, None)]

    # later cycles: incremental as before, TOASTed values carried, a dropped column kept
    w.write([member("0/300:1", "update", 1, "m1 v2", score=10),
             member("0/310:1", "update", 3, "m3 v2", toast=["nickname"], nickname="x", score=31),
             members_schema("0/320:1", ("score", "bigint")),
             member("0/330:1", "insert", 5, "m5", score=50),
             member("0/340:1", "update", 4, "m4 v2", score=41)])
    cycle(landing, cfg, tmp_path, audit=True)
    got = query(cfg, f"SELECT member_id, name, nickname, score FROM {s}.cur_members ORDER BY 1")
    assert got == [(1, "m1 v2", None, 10), (2, "m2 v2", "Two", 9007199254740993),
                   (3, "m3 v2", "Three", 31), (4, "m4 v2", None, 41), (5, "m5", None, 50)]
