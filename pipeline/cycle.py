"""One hourly cycle of the pipeline: land what is new → load it → `dbt build`. Idempotent.

    python -m pipeline.cycle --landing ./landing --bootstrap kafka:9092     # all steps
    python -m pipeline.cycle --landing ./landing --no-land                   # load + transform only
    python -m pipeline.cycle --landing ./landing --steps load                # one step (Airflow)

The warehouse comes from the ENGAGE_WH_* variables (pipeline/warehouse/config.py). A cycle holds
an exclusive lock (fcntl.flock on --lock-file, by default one per warehouse under the temp dir):
a second cycle waits for it (up to --lock-timeout seconds) or, with --no-wait, exits with status
75 at once. Safe after any crash: the lander commits offsets after its objects exist, the loader
loads each object once (one transaction per batch, manifest of keys), and dbt's incremental
models pick up from their own watermarks, so running again converges.

Prints what the cycle did: objects landed, objects loaded, events staged, duplicates dropped,
rows changed in the current state, and the lag (--json: one JSON object). Exit status: 0, 1 when
a step failed (dbt errors included), 75 when the lock is held and --no-wait was given.
"""
from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.warehouse import loader, report  # noqa: E402
from pipeline.warehouse.config import WarehouseConfig  # noqa: E402
from pipeline.warehouse.dbtrun import run_dbt  # noqa: E402
from pipeline.warehouse.engines import open_warehouse  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
STEPS = ("land", "load", "transform")
EXIT_LOCKED = 75


class LockHeld(Exception):
    """Another cycle holds the lock."""


@contextmanager
def cycle_lock(path: str, wait: bool, timeout: float):
    """Hold an exclusive flock on path for the block (waiting up to timeout if wait)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not wait or time.monotonic() >= deadline:
                    raise LockHeld(f"another cycle holds {path} (pid {_holder(path)})") from None
                time.sleep(0.5)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)


def _holder(path: str) -> str:
    """Return the pid written in the lock file by its holder."""
    try:
        return Path(path).read_text().strip() or "?"
    except OSError:
        return "?"


def default_lock_file(cfg: WarehouseConfig) -> str:
    """Return a lock file path unique to the warehouse."""
    digest = hashlib.sha1(cfg.describe().encode()).hexdigest()[:12]
    return os.path.join(tempfile.gettempdir(), f"engage-cycle-{digest}.lock")


def land(args) -> dict:
    """Run the lander once (`python -m pipeline.lander --once`); return its summary."""
    cmd = [sys.executable, "-m", "pipeline.lander", "--bootstrap", args.bootstrap,
           "--target", args.landing, "--once"]
    if args.s3_endpoint:
        cmd += ["--s3-endpoint", args.s3_endpoint]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"lander failed ({proc.returncode}): {proc.stderr[-2000:]}")
    lines = proc.stdout.strip().splitlines()
    return json.loads(lines[-1]) if lines else {}


def transform(cfg: WarehouseConfig, args) -> dict:
    """Run dbt build and measure what it did; return the report part."""
    wh = open_warehouse(cfg)
    try:
        mark = report.before(wh)
    finally:
        wh.close()
    dbt_args = ["build"] + (["--full-refresh"] if args.full_refresh else [])
    if not args.audit:
        dbt_args += ["--exclude", "tag:audit"]
    if args.vars:
        dbt_args += ["--vars", args.vars]
    res = run_dbt(cfg, dbt_args, work_dir=args.dbt_work_dir)
    wh = open_warehouse(cfg)
    try:
        measured = report.after(wh, mark)
    finally:
        wh.close()
    return {"dbt_ok": res.ok, "dbt_statuses": res.statuses, "dbt_failures": res.failures,
            "dbt_warnings": len(res.warnings), "dbt_seconds": res.seconds, **measured}


def run_cycle(args, cfg: WarehouseConfig) -> dict:
    """Run the selected steps under the lock; return the report."""
    out: dict = {"warehouse": cfg.describe(), "steps": args.steps}
    start = time.monotonic()
    with cycle_lock(args.lock_file or default_lock_file(cfg), args.wait, args.lock_timeout):
        if "land" in args.steps:
            summary = land(args)
            out["objects_landed"] = summary.get("objects", 0)
            out["records_landed"] = summary.get("records", 0)
        if "load" in args.steps:
            loaded = loader.run(args.landing, cfg, args.s3_endpoint)
            out["objects_loaded"], out["lines_loaded"] = loaded.objects_loaded, loaded.lines_loaded
        if "transform" in args.steps:
            out.update(transform(cfg, args))
    out["seconds"] = round(time.monotonic() - start, 3)
    return out


def format_report(r: dict) -> str:
    """Return the report as a few human-readable lines."""
    lines = [f"cycle on {r['warehouse']} ({', '.join(r['steps'])}) in {r['seconds']} s"]
    if "objects_landed" in r:
        lines.append(f"  objects landed      {r['objects_landed']} ({r['records_landed']} records)")
    if "objects_loaded" in r:
        lines.append(f"  objects loaded      {r['objects_loaded']} ({r['lines_loaded']} lines)")
    if "events_staged" in r:
        lines += [f"  events staged       {r['events_staged']}",
                  f"  duplicates dropped  {r['duplicates_dropped']}",
                  f"  rows changed        {r['rows_changed']} "
                  + " ".join(f"{t}={n}" for t, n in r["rows_changed_by_table"].items() if n),
                  f"  lag                 {r['lag_commit_seconds']} s since the newest commit, "
                  f"{r['lag_kafka_seconds']} s since the newest Kafka message",
                  f"  dbt                 {r['dbt_statuses']} in {r['dbt_seconds']} s"]
        lines += [f"  FAILED {f}" for f in r["dbt_failures"]]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    p = argparse.ArgumentParser(prog="python -m pipeline.cycle", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--landing", required=True, help="file:///dir, a directory or s3://bucket/prefix")
    p.add_argument("--s3-endpoint", help="S3 endpoint URL (S3-compatible servers)")
    p.add_argument("--bootstrap", default=os.environ.get("ENGAGE_KAFKA_BOOTSTRAP"),
                   help="Kafka bootstrap servers for the land step (env ENGAGE_KAFKA_BOOTSTRAP)")
    p.add_argument("--no-land", action="store_true", help="skip the land step (no Kafka)")
    p.add_argument("--steps", help="comma-separated subset of land,load,transform (default: all; "
                                    "land only with --bootstrap)")
    p.add_argument("--lock-file", help="lock file (default: one per warehouse in the temp dir)")
    p.add_argument("--no-wait", dest="wait", action="store_false",
                   help="exit with status 75 if another cycle holds the lock")
    p.add_argument("--lock-timeout", type=float, default=3600.0, help="seconds to wait for the lock")
    p.add_argument("--full-refresh", action="store_true", help="rebuild every model from staging")
    p.add_argument("--audit", action="store_true",
                   help="also run the tests tagged audit (they read the whole history)")
    p.add_argument("--vars", help="dbt --vars (YAML), e.g. 'reconcile_source: true'")
    p.add_argument("--dbt-work-dir", help="where dbt writes target/ and logs/ (default dbt/target)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    args = p.parse_args(argv)
    explicit = args.steps is not None
    args.steps = [s for s in (args.steps or ",".join(STEPS)).split(",") if s]
    if bad := [s for s in args.steps if s not in STEPS]:
        p.error(f"unknown steps: {bad}")
    if "land" in args.steps and (args.no_land or not args.bootstrap):
        if explicit and not args.no_land:
            p.error("the land step needs --bootstrap (or ENGAGE_KAFKA_BOOTSTRAP)")
        args.steps.remove("land")
    return args


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    args = parse_args(argv)
    try:
        r = run_cycle(args, WarehouseConfig.from_env())
    except LockHeld as e:
        print(f"cycle not run: {e}", file=sys.stderr)
        return EXIT_LOCKED
    print(json.dumps(r, default=str) if args.json else format_report(r))
    return 0 if r.get("dbt_ok", True) else 1


if __name__ == "__main__":
    sys.exit(main())
