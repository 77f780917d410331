"""Helpers of the lander tests: run a lander (in process or as a process) and check landings."""
from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

from pipeline.lander.landing import iter_records, list_objects, open_target, parse_key
from pipeline.lander.service import Lander, LanderConfig, Stats

ROOT = Path(__file__).resolve().parents[2]
HOUR_MS = 3_600_000
BASE_TS = 1_767_261_600_000  # 2026-01-01T10:00:00Z: in the past, so the broker accepts it


def land_once(bootstrap: str, topic: str, target: str, s3_endpoint: str | None = None,
              group: str | None = None, **kw) -> Stats:
    """Run a --once lander in this process on one topic; return its Stats."""
    cfg = LanderConfig(bootstrap=bootstrap, target=target, s3_endpoint=s3_endpoint,
                       topics_regex=f"^{topic.replace('.', '[.]')}$",
                       group=group or f"g-{secrets.token_hex(4)}", once=True,
                       assign_timeout_s=30, **kw)
    return Lander(cfg).run()


def land_process(bootstrap: str, topic: str, target: str, group: str, *extra: str,
                 s3_endpoint: str | None = None, env: dict | None = None,
                 timeout: float = 60) -> subprocess.CompletedProcess:
    """Run `python -m pipeline.lander --once` as a child process; return the finished process."""
    cmd = [sys.executable, "-m", "pipeline.lander", "--bootstrap", bootstrap, "--once",
           "--topics-regex", f"^{topic.replace('.', '[.]')}$", "--group", group,
           "--target", target, *extra]
    if s3_endpoint:
        cmd += ["--s3-endpoint", s3_endpoint]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def summary(proc: subprocess.CompletedProcess) -> dict:
    """Return the JSON summary line a lander process printed."""
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def landed(target: str, s3_endpoint: str | None = None, topic: str | None = None) -> dict:
    """Return {key: [records]} of every landed object under target (in key order)."""
    t = open_target(target, s3_endpoint)
    return {o.key: list(iter_records(t, o.key)) for o in list_objects(t, topic)}


def check_exactly_once(objects: dict, offsets_by_partition: dict[int, list[int]]) -> None:
    """Assert every expected offset lands exactly once, objects do not overlap, names match."""
    seen: dict[int, list[int]] = {}
    spans: dict[int, list[tuple[int, int]]] = {}
    for key, recs in objects.items():
        name = parse_key(key)
        assert name is not None, key
        offs = [r["offset"] for r in recs]
        assert offs == sorted(offs) and offs[0] == name.start_offset, key
        assert {r["partition"] for r in recs} == {name.partition}, key
        assert {r["timestamp"] // HOUR_MS for r in recs} == {_hour_index(name)}, key
        seen.setdefault(name.partition, []).extend(offs)
        spans.setdefault(name.partition, []).append((offs[0], offs[-1]))
    for p, expected in offsets_by_partition.items():
        assert sorted(seen.get(p, [])) == expected, f"partition {p}: landed offsets differ"
        ordered = sorted(spans[p])
        for (_, end), (start, _) in zip(ordered, ordered[1:]):
            assert start > end, f"partition {p}: overlapping objects {ordered}"


def _hour_index(name) -> int:
    """Return the record-time hour index (ms // HOUR_MS) of a parsed key's dt/hour."""
    from datetime import datetime, timezone
    when = datetime.strptime(f"{name.dt} {name.hour:02d}", "%Y-%m-%d %H").replace(tzinfo=timezone.utc)
    return int(when.timestamp()) // 3600
