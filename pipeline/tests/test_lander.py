"""The lander against a real Kafka broker: line format, naming, rolling, read_committed, crash-rerun.

Targets are a local directory and an s3proxy bucket (parametrized where both matter).
"""
from __future__ import annotations

import gzip
import json
import re
import secrets
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from conftest import Msg
from lander_helpers import (BASE_TS, HOUR_MS, check_exactly_once, land_once, land_process, landed,
                            summary)
from pipeline.lander.landing import open_target, record_value
from pipeline.lander.service import Lander, LanderConfig, LanderError, consumer_config
from pipeline.lander.writer import CRASH_ENV

MEMBER_ORDER = ["topic", "partition", "offset", "timestamp", "timestamp_type", "key", "headers",
                "ingested_at", "value"]


@pytest.fixture(params=["local", "s3"])
def target(request, tmp_path):
    """Return (target URL, s3 endpoint or None) for a fresh local directory or S3 bucket."""
    if request.param == "local":
        return str(tmp_path / "landing"), None
    endpoint = request.getfixturevalue("s3_endpoint")
    return f"s3://{request.getfixturevalue('new_bucket')()}/lake", endpoint


def test_lines_keep_exact_bytes(kafka_bootstrap, new_topic, produce, target):
    """Values land byte for byte (digits, unicode, escapes, non-UTF-8, tombstone), with metadata."""
    url, endpoint = target
    topic = new_topic()
    values = [
        b'{"v":1,"amount":1234567890123456789012345678901234567890.0000000001,"f":1e400}',
        '{"name":"Zoë 😀 \u2028 \\"q\\" \\\\ tab\\t"}'.encode(),
        b'not json at all: "quotes" \\ and a \x01 control char\nand a newline',
        b"\xff\xfe\x00binary",
        None,
        b"",
    ]
    headers = [("engage.id", b"0/1A2B3C4:2"), ("engage.op", b"update"),
               ("engage.table", b"engage.campaigns"), ("engage.lsn", b"0/1A2B300")]
    msgs = [Msg(v, key=b'{"campaign_id":7}', headers=headers, timestamp=BASE_TS + i)
            for i, v in enumerate(values)]
    msgs += [Msg(b"k", key=None, timestamp=BASE_TS + 10),
             Msg(b"k2", key=b"\xc3\x28", headers=[("n", None), ("bin", b"\xff")],
                 timestamp=BASE_TS + 11),
             Msg(b"h", key=b"", headers=[("d", b"1"), ("d", b"2")], timestamp=BASE_TS + 12)]
    produce(topic, msgs)
    before = time.time()
    stats = land_once(kafka_bootstrap, topic, url, s3_endpoint=endpoint)
    assert (stats.objects, stats.records) == (1, len(msgs))
    [(key, recs)] = landed(url, endpoint).items()
    assert key == f"raw/topic={topic}/dt=2026-01-01/hour=10/{topic}-0-{0:020d}.jsonl.gz"
    assert [record_value(r) for r in recs] == [m.value for m in msgs]
    assert [r["offset"] for r in recs] == list(range(len(msgs)))
    assert all(r["topic"] == topic and r["partition"] == 0 for r in recs)
    assert [r["timestamp"] for r in recs] == [m.timestamp for m in msgs]
    assert {r["timestamp_type"] for r in recs} == {"create"}
    assert recs[0]["key"] == '{"campaign_id":7}' and recs[6]["key"] is None
    assert recs[7]["key_base64"] == "wyg=" and "key" not in recs[7]
    assert recs[0]["headers"] == {k: v.decode() for k, v in headers}
    assert recs[6]["headers"] == {}
    assert recs[7]["headers"] == {"n": None} and recs[7]["headers_base64"] == {"bin": "/w=="}
    assert recs[3]["value_base64"] == "//4AYmluYXJ5" and "value" not in recs[3]
    assert recs[4]["value"] is None
    for r in recs:
        ingested = time.mktime(time.strptime(r["ingested_at"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", r["ingested_at"])
        assert before - 2 <= ingested <= time.time() + 1
    raw = gzip.decompress(open_target(url, endpoint).read(key)).decode()
    assert raw.endswith("\n") and raw.count("\n") == len(msgs)
    assert "1234567890123456789012345678901234567890.0000000001" in raw.splitlines()[0]
    assert list(json.loads(raw.splitlines()[0])) == MEMBER_ORDER
    assert '"key":"","headers":{"d":"1","d":"2"}' in raw.split("\n")[8]
    assert recs[8]["headers"] == {"d": "2"}



def test_objects_by_record_hour_and_count(kafka_bootstrap, new_topic, produce, tmp_path):
    """Objects split at record-time hour boundaries and at max_records, named by start offset."""
    topic = new_topic(partitions=2)
    # partition 0: 12 records in hour 10, then 3 in hour 11; partition 1: 2 records in hour 11
    msgs = [Msg(b"a%d" % i, timestamp=BASE_TS + i * 1000) for i in range(12)]
    msgs += [Msg(b"b%d" % i, timestamp=BASE_TS + HOUR_MS + i) for i in range(3)]
    msgs += [Msg(b"c%d" % i, timestamp=BASE_TS + HOUR_MS + i, partition=1) for i in range(2)]
    produce(topic, msgs)
    url = str(tmp_path / "landing")
    stats = land_once(kafka_bootstrap, topic, url, max_records=5)
    objects = landed(url)
    base = f"raw/topic={topic}/dt=2026-01-01"
    assert {k: len(v) for k, v in objects.items()} == {
        f"{base}/hour=10/{topic}-0-{0:020d}.jsonl.gz": 5,
        f"{base}/hour=10/{topic}-0-{5:020d}.jsonl.gz": 5,
        f"{base}/hour=10/{topic}-0-{10:020d}.jsonl.gz": 2,
        f"{base}/hour=11/{topic}-0-{12:020d}.jsonl.gz": 3,
        f"{base}/hour=11/{topic}-1-{0:020d}.jsonl.gz": 2,
    }
    assert (stats.objects, stats.records, stats.partitions) == (5, 17, 2)
    check_exactly_once(objects, {0: list(range(15)), 1: [0, 1]})


def test_next_run_continues_after_committed_offset(kafka_bootstrap, new_topic, produce, tmp_path):
    """A second --once run lands only what arrived since, starting a new object there."""
    topic = new_topic()
    url, group = str(tmp_path / "landing"), f"g-{topic}"
    produce(topic, [Msg(b"x", timestamp=BASE_TS + i) for i in range(3)])
    assert land_once(kafka_bootstrap, topic, url, group=group).records == 3
    assert land_once(kafka_bootstrap, topic, url, group=group).records == 0
    produce(topic, [Msg(b"y", timestamp=BASE_TS + i) for i in range(2)])
    assert land_once(kafka_bootstrap, topic, url, group=group).records == 2
    objects = landed(url)
    assert [k[-25:] for k in objects] == [f"-{0:020d}.jsonl.gz"[-25:], f"-{3:020d}.jsonl.gz"[-25:]]
    check_exactly_once(objects, {0: list(range(5))})


def test_aborted_transactions_never_land(kafka_bootstrap, new_topic, tmp_path):
    """read_committed: an aborted transaction's messages are skipped, committed ones land."""
    topic = new_topic()
    p = Producer({"bootstrap.servers": kafka_bootstrap, "transactional.id": f"tx-{topic}"})
    p.init_transactions(30)
    for label, commit in (("a", True), ("b", False), ("c", True), ("d", False)):
        p.begin_transaction()
        for i in range(3):
            p.produce(topic, f"{label}{i}".encode(), partition=0, timestamp=BASE_TS + i)
        p.flush(30)
        (p.commit_transaction if commit else p.abort_transaction)(30)
    url = str(tmp_path / "landing")
    stats = land_once(kafka_bootstrap, topic, url)
    [recs] = landed(url).values()
    assert [r["value"] for r in recs] == ["a0", "a1", "a2", "c0", "c1", "c2"]
    assert stats.records == 6
    # offsets: a0-a2 0-2, marker 3, b0-b2 4-6, marker 7, c0-c2 8-10, marker 11, d 12-14, marker 15
    assert [r["offset"] for r in recs] == [0, 1, 2, 8, 9, 10]


# The broker's smallest allowed session timeout: a rerun waits this long for the killed member.
FAST_SESSION = ("--consumer-property", "session.timeout.ms=6000")


@pytest.mark.parametrize("target,rerun_max", [("local", 10), ("local", 4), ("s3", 15)],
                         indirect=["target"])
def test_crash_between_upload_and_commit(kafka_bootstrap, new_topic, produce, target, rerun_max):
    """Killed after an upload, before its commit: the rerun leaves no gap and no overlap.

    The rerun uses the same, a larger and a smaller max_records than the crashed run.
    """
    url, endpoint = target
    topic = new_topic(partitions=2)
    group = f"g-{topic}"
    produce(topic, [Msg(b"m%d" % i, timestamp=BASE_TS + i, partition=i % 2) for i in range(50)])
    crashed = land_process(kafka_bootstrap, topic, url, group, "--max-records", "10", *FAST_SESSION,
                           s3_endpoint=endpoint, env={CRASH_ENV: "2"})
    assert crashed.returncode == 99, crashed.stderr
    assert len(landed(url, endpoint)) == 2
    produce(topic, [Msg(b"n%d" % i, timestamp=BASE_TS + 100 + i, partition=i % 2) for i in range(6)])
    t0 = time.monotonic()
    proc = land_process(kafka_bootstrap, topic, url, group, "--max-records", str(rerun_max),
                        s3_endpoint=endpoint)
    rerun = summary(proc)
    assert time.monotonic() - t0 < 20, "the restarted lander waited too long for its partitions"
    assert rerun["existing_objects"] >= 1, f"{rerun}\ncrashed run:\n{crashed.stderr}\nrerun:\n{proc.stderr}"
    check_exactly_once(landed(url, endpoint), {0: list(range(28)), 1: list(range(28))})
    assert summary(land_process(kafka_bootstrap, topic, url, group, s3_endpoint=endpoint))[
        "records"] == 0


def test_crash_rerun_reproduces_object_boundaries(kafka_bootstrap, new_topic, produce, tmp_path):
    """With the same data and settings, a crash and rerun gives the same objects as a clean run."""
    topic = new_topic()
    produce(topic, [Msg(b"m%d" % i, timestamp=BASE_TS + i * 60_000) for i in range(95)])
    clean, crashed = str(tmp_path / "clean"), str(tmp_path / "crashed")
    summary(land_process(kafka_bootstrap, topic, clean, f"g-1-{topic}", "--max-records", "20"))
    assert land_process(kafka_bootstrap, topic, crashed, f"g-2-{topic}", "--max-records", "20",
                        *FAST_SESSION, env={CRASH_ENV: "3"}).returncode == 99
    summary(land_process(kafka_bootstrap, topic, crashed, f"g-2-{topic}", "--max-records", "20"))
    assert list(landed(clean)) == list(landed(crashed))
    check_exactly_once(landed(crashed), {0: list(range(95))})


def test_no_matching_topic_is_a_quick_noop(kafka_bootstrap, tmp_path):
    """--once with no topic matching the regex exits at once with nothing landed."""
    t0 = time.monotonic()
    stats = land_once(kafka_bootstrap, "engage.no_such_topic_here", str(tmp_path / "landing"))
    assert stats.objects == 0 and time.monotonic() - t0 < 10


def test_guarantee_properties_cannot_be_overridden():
    """The consumer properties the guarantees rest on are refused as overrides."""
    cfg = LanderConfig("127.0.0.1:1", "/tmp/x", consumer_properties={"isolation.level": "x"})
    with pytest.raises(LanderError, match="isolation.level"):
        consumer_config(cfg)
    conf = consumer_config(LanderConfig("127.0.0.1:1", "/tmp/x", group="g"))
    assert conf["isolation.level"] == "read_committed" and conf["enable.auto.commit"] is False
    assert "group.instance.id" not in conf


def test_topic_created_later_is_landed_by_the_same_group(kafka_bootstrap, new_topic, produce,
                                                         tmp_path):
    """A topic matching the regex that appears between two runs of one group gets landed."""
    family = f"engage.family_{secrets.token_hex(3)}"
    first, second = f"{family}.first", f"{family}.later"
    url, group = str(tmp_path / "landing"), f"g-{family}"
    new_topic(partitions=2, name=first)
    produce(first, [Msg(b"a", timestamp=BASE_TS)])
    cfg = dict(bootstrap=kafka_bootstrap, target=url, topics_regex=f"^{family}[.].*", group=group,
               once=True)
    assert Lander(LanderConfig(**cfg)).run().records == 1
    new_topic(partitions=2, name=second)
    produce(second, [Msg(b"b", timestamp=BASE_TS)])
    assert Lander(LanderConfig(**cfg)).run().records == 1
    assert {k.split("/")[1] for k in landed(url)} == {f"topic={first}", f"topic={second}"}


def test_offsets_committed_only_for_landed_records(kafka_bootstrap, new_topic, produce, tmp_path):
    """After a run the group's committed offset is just past the last landed record."""
    topic = new_topic()
    group = f"g-{topic}"
    produce(topic, [Msg(b"x", timestamp=BASE_TS + i) for i in range(7)])
    land_once(kafka_bootstrap, topic, str(tmp_path / "landing"), group=group)
    c = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group})
    try:
        [tp] = c.committed([TopicPartition(topic, 0)], timeout=10)
    finally:
        c.close()
    assert tp.offset == 7
