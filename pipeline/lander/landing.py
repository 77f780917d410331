"""Reading the raw landing: object names, listing and lines, for local directories and S3.

This is the reader side of pipeline/LANDING.md, shared by the lander, the warehouse loader and
the replay tool:

    from pipeline.lander.landing import open_target, list_objects, iter_lines, iter_records

    target = open_target("s3://bucket/prefix", s3_endpoint="http://127.0.0.1:19580")
    for obj in list_objects(target, topic="engage.campaigns"):   # key order
        for record in iter_records(target, obj.key):             # dicts, one per Kafka message
            value = record_value(record)                         # the exact value bytes (or None)

`open_target` takes `file:///dir`, a plain directory path or `s3://bucket[/prefix]`; S3
credentials come from the usual AWS environment variables (see targets.py).
"""
from __future__ import annotations

import base64
import gzip
import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterator

from .targets import ObjectInfo, Target, open_target

__all__ = [
    "ObjectInfo", "ObjectName", "Target", "open_target", "object_key", "parse_key", "list_objects",
    "iter_lines", "iter_records", "record_value", "RAW_PREFIX",
]

RAW_PREFIX = "raw/"
SUFFIX = ".jsonl.gz"
HOUR_MS = 3_600_000
_KEY_RE = re.compile(
    r"^raw/topic=(?P<topic>[^/]+)/dt=(?P<dt>\d{4}-\d{2}-\d{2})/hour=(?P<hour>\d{2})/"
    r"(?P<name>[^/]+)-(?P<partition>\d+)-(?P<offset>\d{20})\.jsonl\.gz$")


@dataclass(frozen=True)
class ObjectName:
    """The parts of a landed object's key."""

    topic: str
    dt: str
    hour: int
    partition: int
    start_offset: int


def object_key(topic: str, partition: int, start_offset: int, hour_index: int) -> str:
    """Return the key of the object starting at start_offset, for a record-time hour (ms // 3600000)."""
    when = datetime.fromtimestamp(hour_index * 3600, tz=timezone.utc)
    return (f"{RAW_PREFIX}topic={topic}/dt={when:%Y-%m-%d}/hour={when:%H}/"
            f"{topic}-{partition}-{start_offset:020d}{SUFFIX}")


def parse_key(key: str) -> ObjectName | None:
    """Return the parts of a landed object's key, or None if key is not one."""
    m = _KEY_RE.match(key)
    if not m or m["name"] != m["topic"]:
        return None
    return ObjectName(m["topic"], m["dt"], int(m["hour"]), int(m["partition"]), int(m["offset"]))


def list_objects(target: Target, topic: str | None = None) -> list[ObjectInfo]:
    """Return the landed objects (of one topic, or all), in key order; other files are skipped."""
    prefix = f"{RAW_PREFIX}topic={topic}/" if topic else RAW_PREFIX
    return [o for o in target.list(prefix) if parse_key(o.key)]


def iter_lines(target: Target, key: str) -> Iterator[str]:
    """Yield the JSON lines of one object (decompressed, without the newline).

    Lines end with "\n" only: U+2028 and other Unicode line breaks can stand unescaped inside JSON
    strings, so never split with str.splitlines().
    """
    text = gzip.decompress(target.read(key)).decode("utf-8")
    yield from text.rstrip("\n").split("\n") if text else ()


def iter_records(target: Target, key: str) -> Iterator[dict]:
    """Yield the lines of one object parsed as dicts (the value member stays a string)."""
    for line in iter_lines(target, key):
        yield json.loads(line)


def record_value(record: dict) -> bytes | None:
    """Return a record's Kafka message value as the exact bytes, None for a tombstone."""
    if "value_base64" in record:
        return base64.b64decode(record["value_base64"])
    value = record["value"]
    return None if value is None else value.encode("utf-8")
