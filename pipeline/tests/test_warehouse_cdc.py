"""Full CDC test without Kafka: source workload → decoded records → landing → cycles → warehouse.

A source cluster with pg_engage runs a workload in two phases (inserts, updates with unchanged
TOAST, key changes, deletes, cascades, a TRUNCATE, engagement moving first touches between
hours, an emitted message). The records decoded from a logical slot with engage_decoder are
landed as pipeline/LANDING.md objects, with redelivered duplicates, a dead letter and late
objects of older events held back until after newer ones are loaded. After three cycles the
current-state models equal the source tables row for row, and the presentation models equal
engage.campaign_rates() and engage.campaign_rates_hourly (dbt reconciliation tests). Then the
reconciliation is shown to fail when the source moves on, and a replay from the landing alone
gives identical tables. Runs on DuckDB and on PostgreSQL (database `wh_cdc` in the source cluster).
"""
from __future__ import annotations

import json
from argparse import Namespace
from datetime import datetime, timezone

import pytest

from warehouse_fixtures import (LandingWriter, SourceCluster, columns, landing_line,
                                new_base_dir, query, warehouse_config)

from pipeline.cycle import run_cycle
from pipeline.replay import replay
from pipeline.warehouse.dbtrun import run_dbt
from pipeline.warehouse.reconcile import export

SOURCE_PORT = 55760
TABLES = {"users": "user_id", "templates": "template_id", "audiences": "audience_id",
          "members": "member_id", "audience_members": "audience_id, member_id",
          "campaigns": "campaign_id", "campaign_audience": "campaign_id, member_id"}
VERIFY_VARS = "{reconcile_source: true, relationship_severity: error}"

PHASE1 = """
INSERT INTO engage.users (username, department) VALUES ('john', 'finance'), ('mary', 'marketing');
INSERT INTO engage.templates (name, type) VALUES ('flowers', 'lots of flowers'), ('minimal', 'minimalist');
INSERT INTO engage.audiences (name, segment_types, location_type)
    VALUES ('finance bros', '{young,finance}', 'nyc'), ('nobody', '{}', NULL);
INSERT INTO engage.members (name, email)
    SELECT 'm' || g, CASE WHEN g % 7 = 0 THEN ' M' || g || '@X.com ' ELSE 'm' || g || '@x.com' END
    FROM generate_series(1, 60) AS g;
UPDATE engage.members SET contact = (SELECT string_agg(md5(g::text), '') FROM generate_series(1, 400) AS g)
    WHERE member_id = 3;
INSERT INTO engage.audience_members (audience_id, member_id, email)
    SELECT 1, member_id, email FROM engage.members;
INSERT INTO engage.campaigns (template_id, user_id, audience_id, name, send_at)
    VALUES (1, 1, 1, 'spring', '2026-06-06 18:00+00'), (2, 2, 1, 'summer', NULL), (1, 2, 2, 'void', NULL);
SELECT engage.build_campaign_audience(1, 40);
SELECT engage.build_campaign_audience(2);
SELECT engage.record_engagement(1, ca.member_id, (ARRAY['open', 'click', 'conversion'])[1 + ca.member_id % 3],
                                timestamptz '2026-06-06 18:00+00' + (ca.member_id % 5) * interval '37 minutes')
    FROM engage.campaign_audience AS ca WHERE ca.campaign_id = 1 AND ca.member_id % 2 = 0;
SELECT engage.record_engagement(2, ca.member_id, 'click', timestamptz '2026-06-07 09:00+00')
    FROM engage.campaign_audience AS ca WHERE ca.campaign_id = 2 AND ca.member_id % 3 = 0;
"""

PHASE2 = """
UPDATE engage.members SET name = 'renamed' WHERE member_id = 3;
UPDATE engage.templates SET name = 'flowers v2' WHERE template_id = 1;
SELECT engage.record_engagement(1, ca.member_id, 'open', timestamptz '2026-06-06 15:10+00')
    FROM engage.campaign_audience AS ca WHERE ca.campaign_id = 1 AND ca.member_id % 4 = 0;
SELECT engage.record_engagement(2, ca.member_id, 'conversion', timestamptz '2026-06-07 11:30+00')
    FROM engage.campaign_audience AS ca WHERE ca.campaign_id = 2 AND ca.member_id % 5 = 0;
DELETE FROM engage.campaign_audience WHERE campaign_id = 1 AND member_id IN (2, 4, 5);
DELETE FROM engage.campaigns WHERE campaign_id = 3;
INSERT INTO engage.members (name, email) VALUES ('late joiner', 'late@x.com');
UPDATE engage.campaign_audience SET member_id = 61 WHERE campaign_id = 2 AND member_id = 1;
TRUNCATE engage.audience_members;
INSERT INTO engage.audience_members (audience_id, member_id, email)
    SELECT 1, member_id, email FROM engage.members WHERE member_id <= 10;
SELECT engage.emit('campaign.sent', '1', '{"campaign_id": 1, "share": 1.000000000000000000001}');
INSERT INTO engage.campaigns (template_id, user_id, audience_id, name) VALUES (2, 1, 1, 'autumn');
SELECT engage.build_campaign_audience(4, 5);
SELECT engage.record_engagement(4, ca.member_id, 'open', timestamptz '2026-06-08 08:00+00')
    FROM engage.campaign_audience AS ca WHERE ca.campaign_id = 4;
"""


@pytest.fixture(scope="module")
def source():
    """The source cluster (also hosts the PostgreSQL warehouse's database)."""
    src = SourceCluster(new_base_dir("engage-wh-src-") / "pg", SOURCE_PORT)
    yield src
    src.stop()


def dead_letter_line(offset: int) -> str:
    """A dead-letter message: a made-up update that must never reach the current state."""
    value = ('{"v":1,"id":"FFFF/0:1","lsn":"FFFF/0","xid":1,"ts":"2026-06-06T18:00:00.000000Z",'
             '"op":"update","table":"engage.campaigns","pk":{"campaign_id":1},'
             '"new":{"campaign_id":1,"template_id":1,"user_id":1,"audience_id":1,"name":"POISON"}}')
    headers = {"engage.id": "FFFF/0:1", "engage.op": "update", "engage.table": "engage.campaigns",
               "engage.reason": "Broker: Message size too large", "engage.topic": "engage.campaigns"}
    return landing_line("engage-dead_letter", 0, offset, 1780768800000, '{"campaign_id":1}',
                        headers, value)


def cycle(landing, cfg, work, vars_yaml=None, audit=False) -> dict:
    """Run load + transform once; fail the test on a dbt error."""
    args = Namespace(steps=["load", "transform"], landing=str(landing), s3_endpoint=None,
                     lock_file=str(work / "cycle.lock"), wait=True, lock_timeout=60,
                     full_refresh=False, audit=audit, vars=vars_yaml, dbt_work_dir=str(work / "dbt"))
    report = run_cycle(args, cfg)
    assert report["dbt_ok"], report["dbt_failures"]
    return report


def normalize(value):
    """Make source and warehouse values comparable (timestamps in UTC, JSON arrays as lists)."""
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc) if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, str) and value.startswith("["):
        return json.loads(value)
    return value


def table_rows(rows):
    """Normalize every value of rows."""
    return [tuple(normalize(v) for v in r) for r in rows]


def assert_state_equals_source(src, cfg):
    """Every cur_<table> equals engage.<table> row for row (all source columns)."""
    for table, key in TABLES.items():
        cols = [r[0] for r in src.sql(f"""SELECT column_name FROM information_schema.columns
            WHERE table_schema = 'engage' AND table_name = '{table}' ORDER BY ordinal_position""")]
        want = table_rows(src.sql(f"SELECT {', '.join(cols)} FROM engage.{table} ORDER BY {key}"))
        got = table_rows(query(cfg, f"SELECT {', '.join(cols)} FROM {cfg.schema}.cur_{table} ORDER BY {key}"))
        assert got == want, f"cur_{table} differs from engage.{table}"


def snapshot(cfg) -> dict:
    """Return the current-state and presentation tables (without the _batch bookkeeping)."""
    out = {}
    for name in [f"cur_{t}" for t in TABLES] + ["campaign_performance", "campaign_engagement_hourly"]:
        cols = [c for c in columns(cfg, f"{cfg.schema}.{name}") if c != "_batch"]
        out[name] = query(cfg, f"SELECT {', '.join(cols)} FROM {cfg.schema}.{name} "
                               f"ORDER BY {', '.join(str(i + 1) for i in range(len(cols)))}")
    return out


@pytest.mark.parametrize("kind", ["duckdb", "postgres"])
def test_cdc_end_to_end(kind, source, tmp_path):
    """Cycles build a warehouse equal to the source; reconciliation can fail; replay is identical."""
    src = source
    src.sql("SELECT pg_logical_slot_get_changes('wh_test', NULL, NULL)")   # start from here
    src.sql("TRUNCATE engage.campaigns, engage.users, engage.templates, engage.audiences, "
            "engage.members, engage.audience_members, engage.campaign_audience RESTART IDENTITY CASCADE")
    src.sql("DELETE FROM engage.campaign_rates_hourly")
    src.sql("SELECT pg_logical_slot_get_changes('wh_test', NULL, NULL)")
    cfg = warehouse_config(kind, tmp_path, src, "wh_cdc")
    landing = tmp_path / "landing"
    writer = LandingWriter(landing)

    src.sql(PHASE1)
    phase1 = src.decode()
    writer.write(phase1, max_records=25,
                 hold=lambda k: "topic=engage.campaign_audience/" in k and "-0-" in k)
    late = writer.held
    assert late, "the workload must give campaign_audience objects to hold back"
    r1 = cycle(landing, cfg, tmp_path)
    assert r1["events_staged"] > 0 and r1["duplicates_dropped"] == 0

    src.sql(PHASE2)
    phase2 = src.decode()
    writer.write(phase2, max_records=25)
    writer.write(phase2[: len(phase2) // 2], max_records=25)        # the shipper redelivers
    writer.write_lines("engage-dead_letter", 0, [dead_letter_line(0)])
    r2 = cycle(landing, cfg, tmp_path)
    assert r2["duplicates_dropped"] == len(phase2) // 2

    for key, lines in late:                                         # late objects, older events
        writer.put(key, lines)
    export(src.dsn(), cfg)
    r3 = cycle(landing, cfg, tmp_path, vars_yaml=VERIFY_VARS, audit=True)
    assert r3["objects_loaded"] == len(late)
    assert r3["dbt_statuses"].get("warn", 0) == 1                   # the dead letter
    assert_state_equals_source(src, cfg)
    staged = query(cfg, f"SELECT count(*), count(DISTINCT event_id) FROM {cfg.schema}.stg_events")[0]
    assert staged == (len(phase1) + len(phase2), len(phase1) + len(phase2))
    assert query(cfg, f"SELECT count(*) FROM {cfg.schema}.stg_dead_letters")[0][0] == 1
    message = query(cfg, f"SELECT record FROM {cfg.schema}.stg_messages")[0][0]
    assert '"share": 1.000000000000000000001' in message             # exact digits kept

    # The reconciliation tests fail when the warehouse and the source disagree.
    src.sql("SELECT engage.record_engagement(1, min(member_id), 'conversion', '2026-06-06 20:00+00') "
            "FROM engage.campaign_audience WHERE campaign_id = 1 AND NOT converted")
    export(src.dsn(), cfg)
    res = run_dbt(cfg, ["test", "--select", "reconcile_campaign_rates reconcile_hourly_rates",
                        "--vars", VERIFY_VARS], work_dir=tmp_path / "dbt")
    assert not res.ok and len(res.failures) == 2, res.failures
    src.decode()

    # Replay from the landing alone gives the same tables.
    before = snapshot(cfg)
    rep = replay(str(landing), cfg, dbt_work_dir=str(tmp_path / "dbt"), vars_yaml=VERIFY_VARS.replace(
        "reconcile_source: true", "reconcile_source: false"))
    assert rep["dbt_ok"], rep["dbt_failures"]
    assert snapshot(cfg) == before
