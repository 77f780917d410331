"""The loader's view of the raw landing: list object keys under a root, open one as lines.

`LandingSource` adapts the lander's reader API (pipeline/lander/landing.py: local directories
and S3 alike). `local_path` lets an engine read a local object in place instead of copying it.
"""
from __future__ import annotations

import os
from typing import Iterator, Protocol

from pipeline.lander import landing


class Source(Protocol):
    """What the loader needs from a landing."""

    url: str

    def keys(self) -> list[str]:
        """Return every landed object key (pipeline/LANDING.md names only), in key order."""

    def read(self, key: str) -> bytes:
        """Return the stored (gzip) bytes of an object."""

    def lines(self, key: str) -> Iterator[str]:
        """Yield the JSON lines of an object."""

    def local_path(self, key: str) -> str | None:
        """Return the object's file path when it is a local file, else None."""


class LandingSource:
    """A landing root (file:///dir, a directory path, or s3://bucket[/prefix])."""

    def __init__(self, url: str, s3_endpoint: str | None = None):
        """Open the landing at url (S3 credentials from the usual AWS variables)."""
        self.target = landing.open_target(url, s3_endpoint=s3_endpoint)
        self.url = self.target.url

    def keys(self) -> list[str]:
        """List the landed objects' keys."""
        return [o.key for o in landing.list_objects(self.target)]

    def read(self, key: str) -> bytes:
        """Return the object's gzip bytes."""
        return self.target.read(key)

    def lines(self, key: str) -> Iterator[str]:
        """Yield the object's lines."""
        return landing.iter_lines(self.target, key)

    def local_path(self, key: str) -> str | None:
        """Return the file path for a local landing, None for S3."""
        uri = self.target.uri(key)
        return uri if os.path.isabs(uri) else None


def parse_key(key: str) -> dict:
    """Return topic, dt, hour, partition and start_offset of a landed object's key."""
    name = landing.parse_key(key)
    if name is None:
        raise ValueError(f"not a landing object key: {key!r}")
    return {"topic": name.topic, "dt": name.dt, "hour": name.hour,
            "partition": name.partition, "start_offset": name.start_offset}
