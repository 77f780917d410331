"""Semantics of the staging and current-state models on made-up records, three cycles apart.

Each case is a few records of one key, some landed in a later cycle than newer ones (late
objects): deletes are never undone by older events, the newest version wins by numeric
(commit LSN, position) order, snapshot `read` rows order like inserts, unchanged TOAST values
are carried, JSON null differs from SQL NULL, a TRUNCATE removes older rows (late ones too),
`schema` and `gap` records are staged (gaps warn), duplicates are staged once.
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
    rec("0/950:1", "gap", table=None),
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
