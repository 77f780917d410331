"""End to end, the real chain with faults (issue 11, section 4):

    source PostgreSQL (pg_engage preloaded) ─shipper─▶ Kafka ─lander --once─▶ s3proxy bucket
        ─cycle (load + dbt build)─▶ DuckDB and PostgreSQL warehouses

The workload is the CDC test's (test_warehouse_cdc.PHASE1: inserts, a TOASTed members.contact of
12,800 characters, audiences built with engage.build_campaign_audience, engagement through
engage.record_engagement), then small concurrent transactions (engagement, inserts, updates,
deletes, engage.rollup_rates()) during which the shipper is killed with SIGKILL, then PHASE2 below
(an update of the TOASTed row's other column: unchanged_toast; deletes, a cascade, a key change, a
TRUNCATE, an emitted event, a new campaign). No engage column can hold NaN or Infinity: the only
float/numeric columns are the rates of engage.campaign_rates_hourly, generated from bigint
divisions (finite or NULL), so the workload has none to write.

Faults:
  (a) the shipper killed with kill -9 mid-workload: the server restarts, the new shipper resumes
      from the slot's persisted position, so Kafka holds duplicate engage.id headers (asserted);
  (b) the lander killed between an upload and its offset commit (PIPELINE_LANDER_CRASH_AFTER_UPLOADS),
      then rerun: every Kafka offset is in exactly one object (asserted);
  (c) a late file: every topic but campaign_audience is landed and a cycle runs (it stages the newest
      campaigns events: the cascade delete of campaign 3, the new campaign); then campaign_audience
      lands, holding events older than those already staged. The shipper stamps messages with its
      produce time, so the late objects' record-time hour is the same as (or, across an hour
      boundary, earlier than) the objects of the first cycle; what makes them late is that they are
      loaded after newer events were staged, as with a lander that fell behind on one topic.

Then, on both engines: cur_<table> equals engage.<table> row for row, raw_events holds every Kafka
message once, stg_events every event id once, and campaign_performance equals engage.campaign_rates()
(compared here, and by the dbt reconciliation tests with the audit tests on).
"""
from __future__ import annotations

import os
import secrets
import signal
from argparse import Namespace
from collections import Counter
from decimal import Decimal

import pytest

from e2e_helpers import (ShipperSource, Workload, duplicate_ids, free_port, lander_summary,
                         lsn_int, read_topics, run_lander, topic_regex, wait_until)
from test_warehouse_cdc import PHASE1, VERIFY_VARS, assert_state_equals_source
from warehouse_fixtures import new_base_dir, query, warehouse_config

from pipeline.cycle import run_cycle
from pipeline.lander.landing import iter_records, list_objects, open_target, parse_key
from pipeline.lander.writer import CRASH_ENV
from pipeline.warehouse.reconcile import export

LATE_TABLE = "campaign_audience"
FAST_SESSION = ("--consumer-property", "session.timeout.ms=6000")  # a rerun gets the partitions soon

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
UPDATE engage.campaign_audience SET member_id = (SELECT max(member_id) FROM engage.members)
    WHERE campaign_id = 2 AND member_id = 1;
TRUNCATE engage.audience_members;
INSERT INTO engage.audience_members (audience_id, member_id, email)
    SELECT 1, member_id, email FROM engage.members WHERE member_id <= 10;
SELECT engage.emit('campaign.sent', '1', '{"campaign_id": 1, "share": 1.000000000000000000001}');
INSERT INTO engage.campaigns (template_id, user_id, audience_id, name) VALUES (2, 1, 1, 'autumn');
SELECT engage.build_campaign_audience(campaign_id, 5) FROM engage.campaigns WHERE name = 'autumn';
SELECT engage.record_engagement(ca.campaign_id, ca.member_id, 'open', timestamptz '2026-06-08 08:00+00')
    FROM engage.campaign_audience AS ca JOIN engage.campaigns AS c USING (campaign_id)
    WHERE c.name = 'autumn';
SELECT engage.rollup_rates();
"""


@pytest.fixture
def source(kafka_bootstrap):
    """The source cluster; its shipper ships to topics e2e<random>.<table>."""
    src = ShipperSource(new_base_dir("engage-wh-e2e-") / "pg", free_port(), kafka_bootstrap,
                        f"e2e{secrets.token_hex(4)}")
    yield src
    src.stop()


def kill_shipper_under_load(src: ShipperSource, seed: int) -> None:
    """Run the workload, SIGKILL the shipper in the middle, let both go on after the restart."""
    wl = Workload(src, seed=seed)
    shipped = src.status()["events_shipped"]
    wl.start()
    try:
        wait_until(lambda: wl.failure or src.status()["events_shipped"] >= shipped + 300, 60,
                   "events to flow")
        # Best moment: events sent but not yet confirmed (they come again after the restart).
        pid = wait_until(lambda: (s := src.status())["in_flight"] > 0 and s["pid"], 10,
                         "events in flight")
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: f"(PID {pid}) was terminated by signal 9" in src.log(), 30,
                   "the postmaster to see the killed shipper")
        wait_until(lambda: (s := src.status())["state"] == "running" and s["pid"] not in (None, pid),
                   90, "a new shipper")
        commits = wl.commits
        wait_until(lambda: wl.failure or wl.commits >= commits + 150, 60, "the workload to go on")
    finally:
        wl.stop()
    assert wl.errors > 0, "the crash did not even disturb the workload"


def cycle(cfg, target: str, endpoint: str, work, audit: bool = False, vars_yaml=None) -> dict:
    """Run load + transform once on cfg (as `python -m pipeline.cycle --no-land`); dbt must pass."""
    args = Namespace(steps=["load", "transform"], landing=target, s3_endpoint=endpoint,
                     lock_file=str(work / f"{cfg.type}.lock"), wait=True, lock_timeout=60,
                     full_refresh=False, audit=audit, vars=vars_yaml,
                     dbt_work_dir=str(work / f"dbt-{cfg.type}"))
    report = run_cycle(args, cfg)
    assert report["dbt_ok"], (cfg.type, report["dbt_failures"])
    return report


def landed_offsets(target: str, endpoint: str) -> tuple[Counter, list[str]]:
    """Return (Counter of (topic, partition, offset) over all landed lines, object keys)."""
    t = open_target(target, endpoint)
    seen, keys = Counter(), []
    for obj in list_objects(t):
        keys.append(obj.key)
        for rec in iter_records(t, obj.key):
            seen[(rec["topic"], rec["partition"], rec["offset"])] += 1
    return seen, keys


def assert_landed_exactly_once(target, endpoint, messages) -> list[str]:
    """Every Kafka message of `messages` is in exactly one landed line, and nothing else is."""
    seen, keys = landed_offsets(target, endpoint)
    assert [k for k, n in seen.items() if n > 1] == [], "offsets landed twice"
    want = {(m["topic"], m["partition"], m["offset"]) for m in messages}
    assert set(seen) == want, (f"{len(want - set(seen))} Kafka messages not landed, "
                               f"{len(set(seen) - want)} landed that are not in Kafka")
    return keys


def assert_rates_equal_source(src, cfg) -> None:
    """campaign_performance's counts and rates equal engage.campaign_rates() of every campaign."""
    want = src.sql("""SELECT c.campaign_id, r.audience_size, r.opens, r.clicks, r.conversions,
                             r.open_rate, r.click_rate, r.click_to_open_rate, r.conversion_rate
                      FROM engage.campaigns AS c, engage.campaign_rates(c.campaign_id) AS r
                      ORDER BY 1""")
    got = query(cfg, f"""SELECT campaign_id, audience_size, opens, clicks, conversions, open_rate,
                                click_rate, click_to_open_rate, conversion_rate
                         FROM {cfg.schema}.campaign_performance ORDER BY 1""")
    assert [r[:5] for r in got] == [r[:5] for r in want], "campaign_performance counts differ"
    for g, w in zip(got, want):
        for gv, wv in zip(g[5:], w[5:]):
            if cfg.type == "postgres" or gv is None or wv is None:
                assert gv == wv, (cfg.type, g, w)
            else:      # DuckDB divides in double precision
                assert abs(Decimal(str(gv)) - wv) <= Decimal("1e-12"), (cfg.type, g, w)


def test_e2e_shipper_kafka_lander_s3_warehouse(source, kafka_bootstrap, s3_endpoint, new_bucket,
                                               tmp_path):
    """The real chain with a shipper SIGKILL, a lander crash and a late topic: zero rows differ."""
    src, prefix = source, source.prefix

    # Workload, with the shipper killed in the middle (fault a).
    src.sql(PHASE1)
    src.sql("SELECT engage.rollup_rates()")
    for attempt in range(3):
        kill_shipper_under_load(src, seed=attempt)
        src.wait_shipped()
        if duplicate_ids(read_topics(kafka_bootstrap, prefix)):
            break
    src.sql(PHASE2)
    src.wait_shipped()
    messages = read_topics(kafka_bootstrap, prefix)
    dups = duplicate_ids(messages)
    assert dups, "the killed shipper redelivered nothing: Kafka holds no duplicate engage.id"
    by_id = {}
    for m in messages:
        assert by_id.setdefault(m["headers"]["engage.id"], m["value"]) == m["value"], \
            "two messages with one engage.id differ"
    values = [m["value"].decode() for m in messages]
    assert any('"unchanged_toast":["contact"]' in v for v in values), "no unchanged TOAST update"
    assert any('"op":"truncate"' in v for v in values), "no TRUNCATE record"
    topics = {m["topic"] for m in messages}
    late_topic = f"{prefix}.{LATE_TABLE}"
    assert late_topic in topics and f"{prefix}.campaigns" in topics, topics

    # Land every topic but the late one; the first lander dies after an upload (fault b).
    bucket = new_bucket()
    target, group = f"s3://{bucket}/e2e", f"e2e-lander-{prefix}"
    early = topic_regex(topics - {late_topic})
    crashed = run_lander(kafka_bootstrap, target, s3_endpoint, group, early, "--max-records", "40",
                         *FAST_SESSION, env={CRASH_ENV: "2"})
    assert crashed.returncode == 99, crashed.stderr[-3000:]
    rerun = lander_summary(run_lander(kafka_bootstrap, target, s3_endpoint, group, early,
                                      "--max-records", "40"))
    assert rerun["existing_objects"] >= 1, rerun
    early_messages = [m for m in messages if m["topic"] != late_topic]
    early_keys = assert_landed_exactly_once(target, s3_endpoint, early_messages)

    engines = [warehouse_config("duckdb", tmp_path, src, "wh_e2e"),
               warehouse_config("postgres", tmp_path, src, "wh_e2e")]
    reports = {cfg.type: [cycle(cfg, target, s3_endpoint, tmp_path)] for cfg in engines}

    # The late topic lands after that cycle (fault c), then the last cycle with the audit tests
    # and the reconciliation against the source's own rates.
    late = lander_summary(run_lander(kafka_bootstrap, target, s3_endpoint, group,
                                     f"^{prefix}[.].*", "--max-records", "40"))
    assert late["objects"] >= 2 and late["records"] == sum(m["topic"] == late_topic for m in messages)
    keys = assert_landed_exactly_once(target, s3_endpoint, messages)
    late_keys = sorted(set(keys) - set(early_keys))
    hour = lambda k: (parse_key(k).dt, parse_key(k).hour)  # noqa: E731
    assert min(map(hour, late_keys)) <= max(map(hour, early_keys)), "late objects of a later hour"
    staged_max = max(lsn_int(m["headers"]["engage.lsn"]) for m in early_messages
                     if m["headers"].get("engage.lsn"))
    assert min(lsn_int(m["headers"]["engage.lsn"]) for m in messages if m["topic"] == late_topic) \
        < staged_max, "the late topic holds no event older than those already staged"

    n_ids = len({m["headers"]["engage.id"] for m in messages})
    for cfg in engines:
        export(src.dsn(), cfg)
        reports[cfg.type].append(cycle(cfg, target, s3_endpoint, tmp_path, audit=True,
                                       vars_yaml=VERIFY_VARS))
        assert reports[cfg.type][-1]["objects_loaded"] == len(late_keys)
        assert_state_equals_source(src, cfg)
        assert_rates_equal_source(src, cfg)
        s = cfg.schema
        assert query(cfg, "SELECT count(*) FROM engage_raw.raw_events")[0][0] == len(messages)
        assert query(cfg, f"SELECT count(*), count(DISTINCT event_id) FROM {s}.stg_events")[0] \
            == (n_ids, n_ids)
        assert sum(r["duplicates_dropped"] for r in reports[cfg.type]) == len(messages) - n_ids
        assert query(cfg, f"SELECT count(*) FROM {s}.campaign_performance")[0][0] \
            == src.sql("SELECT count(*) FROM engage.campaigns")[0][0]
    print(f"e2e: {len(messages)} Kafka messages, {len(dups)} ids delivered more than once, "
          f"{len(keys)} objects ({len(late_keys)} late), lander rerun {rerun}, "
          f"cycles {[(t, [r['seconds'] for r in rs]) for t, rs in reports.items()]}")
