"""Turning a partition's buffered lines into write-once objects, in a background thread.

A `Chunk` is consecutive records of one partition in one record-time hour. `Writer.land` writes it
as one object named by its first offset; if that name already exists (a previous run uploaded it and
died before committing the offset), it asks the existing object where it ends, drops what that object
already holds and lands the rest as a new object starting right after it. So a rerun never writes an
overlapping object and never leaves a gap, whatever the previous run's object boundaries were. The
result of each chunk is the offset to commit (last landed offset + 1), which the consumer commits
only after the object exists.

gzip and the upload release the GIL, so the thread overlaps them with consuming.
"""
from __future__ import annotations

import bisect
import gzip
import logging
import os
import queue
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone

from .landing import object_key
from .records import finish
from .targets import Target

log = logging.getLogger("pipeline.lander")

# Test hook: after this many uploads the process dies (os._exit) before committing the offset.
CRASH_ENV = "PIPELINE_LANDER_CRASH_AFTER_UPLOADS"


@dataclass
class Chunk:
    """Consecutive records of one partition, all in one record-time hour."""

    topic: str
    partition: int
    hour: int
    offsets: list[int] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)


@dataclass
class Landed:
    """What landing a chunk did: offset to commit, objects created, objects found already there."""

    topic: str
    partition: int
    commit_offset: int
    created: list[str]
    existing: list[str]
    records: int
    bytes: int


class Writer:
    """Lands chunks in order on one thread; results are read back with `results()`."""

    def __init__(self, target: Target, compression_level: int = 3, threaded: bool = True):
        """Prepare to land on target; threaded=False lands synchronously in `submit`."""
        self.target = target
        self.level = compression_level
        self.landed_until: dict[tuple[str, int], int] = {}
        self.uploads = 0
        self.crash_after = int(os.environ.get(CRASH_ENV, "0") or 0)
        self._done: queue.Queue = queue.Queue()
        self._todo: queue.Queue | None = queue.Queue(maxsize=2) if threaded else None
        self._error: BaseException | None = None
        self._thread = None
        if threaded:
            self._thread = threading.Thread(target=self._run, name="lander-writer", daemon=True)
            self._thread.start()

    def submit(self, chunk: Chunk) -> None:
        """Queue a chunk (blocks while 2 are waiting); raises the writer thread's error, if any."""
        self._raise_error()
        if self._todo is None:
            self._done.put(self.land(chunk))
        else:
            self._todo.put(chunk)

    def results(self) -> list[Landed]:
        """Return the chunks landed since the last call, in landing order."""
        self._raise_error()
        out = []
        while True:
            try:
                out.append(self._done.get_nowait())
            except queue.Empty:
                return out

    def drain(self) -> list[Landed]:
        """Wait until every submitted chunk is landed and return the results."""
        if self._todo is not None:
            self._todo.join()
        return self.results()

    def forget(self, topic: str, partition: int) -> None:
        """Drop what is known about a partition (it was revoked)."""
        self.landed_until.pop((topic, partition), None)

    def close(self) -> None:
        """Stop the thread after the queued chunks."""
        if self._todo is not None and self._thread.is_alive():
            self._todo.put(None)
            self._thread.join()

    def _run(self) -> None:
        """Thread body: land chunks until None; keep the first error for the consumer to raise."""
        while True:
            chunk = self._todo.get()
            try:
                if chunk is None:
                    return
                if self._error is None:
                    self._done.put(self.land(chunk))
            except BaseException as e:  # noqa: BLE001 - handed to the consumer thread
                log.exception("landing failed")
                self._error = e
            finally:
                self._todo.task_done()

    def _raise_error(self) -> None:
        """Re-raise a failure of the writer thread in the caller."""
        if self._error is not None:
            raise self._error

    def land(self, chunk: Chunk) -> Landed:
        """Write chunk as objects (see the module docstring); return the offset to commit."""
        tp = (chunk.topic, chunk.partition)
        offsets, lines = chunk.offsets, chunk.lines
        result = Landed(chunk.topic, chunk.partition, offsets[-1] + 1, [], [], 0, 0)
        start = bisect.bisect_right(offsets, self.landed_until.get(tp, -1))
        while start < len(offsets):
            key = object_key(chunk.topic, chunk.partition, offsets[start], chunk.hour)
            data = gzip.compress(finish(lines[start:], _now()), self.level, mtime=0)
            if self.target.put_once(key, data, offsets[start], offsets[-1], len(offsets) - start):
                self._after_upload()
                self.landed_until[tp] = offsets[-1]
                result.created.append(key)
                result.records += len(offsets) - start
                result.bytes += len(data)
                break
            end = self.target.end_offset(key)
            log.warning("%s exists (ends at offset %d): a previous run landed it; continuing after it",
                        key, end)
            result.existing.append(key)
            self.landed_until[tp] = end
            start = bisect.bisect_right(offsets, end)
        result.commit_offset = max(offsets[-1], self.landed_until.get(tp, -1)) + 1
        return result

    def _after_upload(self) -> None:
        """Count an upload; die here if the crash test hook says so."""
        self.uploads += 1
        if self.crash_after and self.uploads >= self.crash_after:
            log.error("%s=%d: exiting after the upload, before the offset commit",
                      CRASH_ENV, self.crash_after)
            logging.shutdown()
            os._exit(99)


def _now() -> str:
    """Return the current UTC time in ISO 8601 with microseconds."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
