"""Where landed objects live: a local directory or an S3-compatible bucket, behind one interface.

Both targets write objects once: `put_once` never replaces an existing object (locally a temp file
hard-linked to its final name, which fails if the name exists; on S3 a conditional put with
`If-None-Match: *`, refused with 412 if the key exists). S3 objects carry their offsets in user
metadata (`x-amz-meta-start-offset`, `-end-offset`, `-records`). S3 credentials and region come from
boto3's usual chain (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION / AWS_DEFAULT_REGION,
default us-east-1); a custom endpoint (s3proxy, MinIO-likes) is addressed path-style.
"""
from __future__ import annotations

import gzip
import json
import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse


class TargetError(Exception):
    """A target could not be opened or used (bad URL, missing bucket, refused request)."""


@dataclass(frozen=True)
class ObjectInfo:
    """One stored object: key relative to the target root, size in bytes, last modification time."""

    key: str
    size: int
    modified: datetime


class Target(Protocol):
    """The operations the lander and the readers need from a store."""

    url: str

    def put_once(self, key: str, data: bytes, start: int, end: int, records: int) -> bool:
        """Create key with data unless it exists; True if created, False if it already existed."""

    def end_offset(self, key: str) -> int:
        """Return the last Kafka offset held by the existing object key."""

    def list(self, prefix: str) -> list[ObjectInfo]:
        """Return the objects whose key starts with prefix, in key order."""

    def read(self, key: str) -> bytes:
        """Return the bytes of object key."""

    def uri(self, key: str) -> str:
        """Return a path or s3:// URI of object key for other readers (DuckDB, fsspec)."""


def last_offset(gz_data: bytes) -> int:
    """Return the offset member of the last line of a landed object's bytes."""
    text = gzip.decompress(gz_data).decode("utf-8").rstrip("\n")
    return int(json.loads(text[text.rfind("\n") + 1:])["offset"])


class LocalTarget:
    """Objects as files under a root directory (key = relative path)."""

    def __init__(self, root: str | os.PathLike):
        """Use root (created if missing) as the target's root directory."""
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.url = self.root.as_uri()

    def put_once(self, key: str, data: bytes, start: int, end: int, records: int) -> bool:
        """Write a temp file, fsync it and hard-link it to the final name (fails if taken)."""
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            with open(tmp, "xb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
            _fsync_dir(path.parent)
            return True
        finally:
            tmp.unlink(missing_ok=True)

    def end_offset(self, key: str) -> int:
        """Read the existing object's last line."""
        return last_offset(self.read(key))

    def list(self, prefix: str) -> list[ObjectInfo]:
        """Walk the directory under prefix; temp files (leading dot) are not objects."""
        base = self.root / prefix.rsplit("/", 1)[0] if "/" in prefix else self.root
        out = []
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                if name.startswith("."):
                    continue
                full = Path(dirpath) / name
                key = full.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    st = full.stat()
                    out.append(ObjectInfo(key, st.st_size,
                                          datetime.fromtimestamp(st.st_mtime, tz=timezone.utc)))
        return sorted(out, key=lambda o: o.key)

    def read(self, key: str) -> bytes:
        """Return the file's bytes."""
        return (self.root / key).read_bytes()

    def uri(self, key: str) -> str:
        """Return the file's absolute path."""
        return str(self.root / key)


def _fsync_dir(path: Path) -> None:
    """Make a directory entry durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class S3Target:
    """Objects in an S3 bucket under an optional key prefix, through boto3."""

    def __init__(self, bucket: str, prefix: str = "", endpoint: str | None = None, client=None):
        """Connect to bucket (on endpoint if given, path-style) with boto3's credential chain."""
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.url = f"s3://{bucket}/{self.prefix}"
        self.client = client or make_s3_client(endpoint)

    def put_once(self, key: str, data: bytes, start: int, end: int, records: int) -> bool:
        """Conditional put (If-None-Match: *); a 412 means the key exists."""
        from botocore.exceptions import ClientError
        try:
            self.client.put_object(
                Bucket=self.bucket, Key=self.prefix + key, Body=data, IfNoneMatch="*",
                ContentType="application/gzip",
                Metadata={"start-offset": str(start), "end-offset": str(end), "records": str(records)})
        except ClientError as e:
            if e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 412:
                return False
            raise TargetError(f"put of {self.url}{key} failed: {e}") from e
        return True

    def end_offset(self, key: str) -> int:
        """Read end-offset from the object's metadata, else its last line."""
        head = self.client.head_object(Bucket=self.bucket, Key=self.prefix + key)
        meta = head.get("Metadata", {})
        if "end-offset" in meta:
            return int(meta["end-offset"])
        return last_offset(self.read(key))

    def list(self, prefix: str) -> list[ObjectInfo]:
        """List the bucket under prefix (paginated)."""
        from botocore.exceptions import ClientError
        out = []
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix + prefix)
        try:
            for page in pages:
                for o in page.get("Contents", []):
                    out.append(ObjectInfo(o["Key"][len(self.prefix):], o["Size"], o["LastModified"]))
        except ClientError as e:
            raise TargetError(f"listing {self.url}{prefix} failed: {e}") from e
        return sorted(out, key=lambda o: o.key)

    def read(self, key: str) -> bytes:
        """Get the object's bytes."""
        return self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)["Body"].read()

    def uri(self, key: str) -> str:
        """Return s3://bucket/prefix/key."""
        return f"s3://{self.bucket}/{self.prefix}{key}"

    def create_bucket(self) -> None:
        """Create the bucket if it does not exist (tests, first runs)."""
        from botocore.exceptions import ClientError
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError:
            self.client.create_bucket(Bucket=self.bucket)


def make_s3_client(endpoint: str | None = None):
    """Return a boto3 S3 client for endpoint (None: AWS), path-style on custom endpoints."""
    import boto3
    from botocore.config import Config
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    config = Config(retries={"max_attempts": 5, "mode": "standard"},
                    s3={"addressing_style": "path"} if endpoint else {})
    return boto3.session.Session().client("s3", endpoint_url=endpoint, region_name=region,
                                           config=config)


def open_target(url: str, s3_endpoint: str | None = None) -> Target:
    """Open file:///dir, a plain directory path, or s3://bucket[/prefix]."""
    parsed = urlparse(url)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise TargetError(f"no bucket in {url!r} (expected s3://bucket[/prefix])")
        return S3Target(parsed.netloc, parsed.path, endpoint=s3_endpoint)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise TargetError(f"file URL with a host: {url!r} (expected file:///absolute/dir)")
        return LocalTarget(parsed.path)
    if parsed.scheme == "":
        return LocalTarget(url)
    raise TargetError(f"unsupported target {url!r} (expected file:///dir, a path or s3://bucket/prefix)")
