"""Targets and object names without Kafka: write-once puts (local and S3), naming, listing."""
from __future__ import annotations

import gzip

import pytest
from botocore.exceptions import ClientError

from pipeline.lander.landing import iter_lines, list_objects, object_key, open_target, parse_key
from pipeline.lander.targets import LocalTarget, S3Target, TargetError, make_s3_client


def _obj(first: int, last: int) -> bytes:
    """Return a gzip object holding lines with offsets first..last."""
    lines = "".join(f'{{"topic":"t","partition":0,"offset":{o}}}\n' for o in range(first, last + 1))
    return gzip.compress(lines.encode())


def test_object_key_round_trip():
    """Keys follow LANDING.md, carry no '+', and parse back (topics with dots and dashes too)."""
    hour = 1_767_261_600_000 // 3_600_000
    key = object_key("engage.a-b_c", 12, 345, hour)
    assert key == ("raw/topic=engage.a-b_c/dt=2026-01-01/hour=10/"
                   "engage.a-b_c-12-00000000000000000345.jsonl.gz")
    assert "+" not in key
    name = parse_key(key)
    assert (name.topic, name.dt, name.hour, name.partition, name.start_offset) == (
        "engage.a-b_c", "2026-01-01", 10, 12, 345)
    assert parse_key("raw/topic=x/dt=2026-01-01/hour=10/y-0-00000000000000000000.jsonl.gz") is None
    assert parse_key("raw/other.txt") is None


def test_local_put_once_never_replaces(tmp_path):
    """A second put of the same key is refused, leaves the first bytes and no temp file."""
    t = LocalTarget(tmp_path)
    key = object_key("engage.t", 0, 0, 0)
    assert t.put_once(key, _obj(0, 4), 0, 4, 5) is True
    assert t.put_once(key, _obj(0, 9), 0, 9, 10) is False
    assert t.end_offset(key) == 4
    assert [p.name for p in (tmp_path / key).parent.iterdir()] == [key.rsplit("/", 1)[1]]
    assert [o.key for o in list_objects(t)] == [key]
    assert len(list(iter_lines(t, key))) == 5


def test_s3_conditional_put_refused_for_existing_key(s3_endpoint, new_bucket):
    """s3proxy answers 412 to If-None-Match: * on an existing key; put_once reports it."""
    bucket = new_bucket()
    t = S3Target(bucket, "lake", endpoint=s3_endpoint)
    key = object_key("engage.t", 0, 0, 0)
    assert t.put_once(key, _obj(0, 4), 0, 4, 5) is True
    assert t.put_once(key, _obj(0, 9), 0, 9, 10) is False
    assert t.end_offset(key) == 4
    assert gzip.decompress(t.read(key)).count(b"\n") == 5
    with pytest.raises(ClientError) as e:
        make_s3_client(s3_endpoint).put_object(Bucket=bucket, Key=f"lake/{key}", Body=b"x",
                                               IfNoneMatch="*")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert [o.key for o in list_objects(t)] == [key]
    assert t.uri(key) == f"s3://{bucket}/lake/{key}"


def test_s3_end_offset_without_metadata_reads_last_line(s3_endpoint, new_bucket):
    """An object without end-offset metadata is read to find its last offset."""
    bucket = new_bucket()
    key = object_key("engage.t", 0, 3, 0)
    make_s3_client(s3_endpoint).put_object(Bucket=bucket, Key=key, Body=_obj(3, 8))
    assert S3Target(bucket, endpoint=s3_endpoint).end_offset(key) == 8


def test_open_target_urls(tmp_path):
    """file://, plain paths and s3:// open; other schemes are clear errors."""
    assert isinstance(open_target(f"file://{tmp_path}/a"), LocalTarget)
    assert isinstance(open_target(str(tmp_path / "b")), LocalTarget)
    with pytest.raises(TargetError, match="unsupported"):
        open_target("gs://bucket/x")
    with pytest.raises(TargetError, match="no bucket"):
        open_target("s3:///x")
