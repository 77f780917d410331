"""One Kafka message as one line of pipeline/LANDING.md, built without parsing the value.

The hot path of the lander: `encode` runs once per message, so it builds the line with string
formatting and the C JSON string escaper, and leaves the ingest time as a placeholder (a NUL
character, which JSON escaping never emits) that `finish` fills for a whole object at once.
"""
from __future__ import annotations

import base64
from json.encoder import encode_basestring as _quote  # the C escaper, keeps non-ASCII as is

INGEST_PLACEHOLDER = "\x00"
_TS_TYPES = {1: '"create"', 2: '"log_append"'}


class LandingError(Exception):
    """A message that cannot be landed as the contract says (e.g. without a timestamp)."""


def line_prefix(topic: str, partition: int) -> str:
    """Return the constant start of every line of one partition."""
    return f'{{"topic":{_quote(topic)},"partition":{partition},"offset":'


def encode(prefix: str, msg) -> tuple[int, int, str]:
    """Return (offset, timestamp ms, line without newline) for a confluent_kafka Message."""
    ts_type, ts = msg.timestamp()
    offset, hdrs = msg.offset(), msg.headers()
    try:  # the common case inline: UTF-8 key and value, UTF-8 header values
        return offset, ts, (
            f'{prefix}{offset},"timestamp":{ts},"timestamp_type":{_TS_TYPES[ts_type]},'
            f'"key":{_quote(msg.key().decode())},"headers":{{'
            f'{",".join([_quote(n) + ":" + _quote(v.decode()) for n, v in hdrs]) if hdrs else ""}}},'
            f'"ingested_at":"{INGEST_PLACEHOLDER}","value":{_quote(msg.value().decode())}}}')
    except (AttributeError, UnicodeDecodeError, KeyError):
        return offset, ts, _encode_slow(prefix, msg, offset, ts_type, ts, hdrs)


def _encode_slow(prefix: str, msg, offset: int, ts_type: int, ts: int, hdrs: list | None) -> str:
    """Return the line of a message with a null or non-UTF-8 part (or no timestamp: an error)."""
    if ts_type not in _TS_TYPES:
        raise LandingError(f"{msg.topic()}[{msg.partition()}]@{offset} has no timestamp")
    return (f'{prefix}{offset},"timestamp":{ts},"timestamp_type":{_TS_TYPES[ts_type]},'
            f'{_key_member(msg.key())},"headers":{_headers(hdrs) if hdrs else "{}"},'
            f'"ingested_at":"{INGEST_PLACEHOLDER}",{_value_member(msg.value())}}}')


def _key_member(key: bytes | None) -> str:
    """Return the key member: "key":<string or null>, or "key_base64" when not UTF-8."""
    if key is None:
        return '"key":null'
    try:
        return f'"key":{_quote(key.decode("utf-8"))}'
    except UnicodeDecodeError:
        return f'"key_base64":"{base64.b64encode(key).decode("ascii")}"'


def _value_member(value: bytes | None) -> str:
    """Return the value member: "value":<exact text or null>, or "value_base64" when not UTF-8."""
    if value is None:
        return '"value":null'
    try:
        return f'"value":{_quote(value.decode("utf-8"))}'
    except UnicodeDecodeError:
        return f'"value_base64":"{base64.b64encode(value).decode("ascii")}"'


def _headers(hdrs: list) -> str:
    """Return the headers object (null values kept); values not UTF-8 go to headers_base64."""
    plain, raw = [], []
    for name, value in hdrs:
        if value is None:
            plain.append(_quote(name) + ":null")
            continue
        try:
            plain.append(_quote(name) + ":" + _quote(value.decode("utf-8")))
        except UnicodeDecodeError:
            raw.append(_quote(name) + ':"' + base64.b64encode(value).decode("ascii") + '"')
    out = "{" + ",".join(plain) + "}"
    if raw:
        out += ',"headers_base64":{' + ",".join(raw) + "}"
    return out


def finish(lines: list[str], ingested_at: str) -> bytes:
    """Join lines into an object's UTF-8 text (newline-terminated) with the ingest time filled in."""
    return ("\n".join(lines) + "\n").replace(INGEST_PLACEHOLDER, ingested_at).encode("utf-8")
