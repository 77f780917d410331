"""Rebuild the warehouse from the raw landing alone ("the intern deleted data").

    python -m pipeline.replay --landing ./landing --yes      # warehouse from ENGAGE_WH_*

Drops the warehouse's raw schema (engage_raw) and the models' schema, loads every landing object
again, and runs `dbt build --full-refresh` with the audit tests. The landing holds every Kafka
message with its replay metadata, so the result equals the warehouse that the hourly cycles
built (tests/test_warehouse_replay.py checks it). Takes the cycle lock, so no cycle runs meanwhile.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.cycle import EXIT_LOCKED, LockHeld, cycle_lock, default_lock_file  # noqa: E402
from pipeline.warehouse import loader  # noqa: E402
from pipeline.warehouse.config import WarehouseConfig  # noqa: E402
from pipeline.warehouse.dbtrun import run_dbt  # noqa: E402
from pipeline.warehouse.engines import open_warehouse  # noqa: E402


def drop_warehouse(cfg: WarehouseConfig) -> None:
    """Drop the raw and model schemas."""
    wh = open_warehouse(cfg)
    try:
        wh.drop_all()
    finally:
        wh.close()


def replay(landing: str, cfg: WarehouseConfig, s3_endpoint: str | None = None,
           dbt_work_dir: str | None = None, vars_yaml: str | None = None) -> dict:
    """Drop, reload everything, rebuild; return a report."""
    start = time.monotonic()
    drop_warehouse(cfg)
    loaded = loader.run(landing, cfg, s3_endpoint)
    args = ["build", "--full-refresh"] + (["--vars", vars_yaml] if vars_yaml else [])
    res = run_dbt(cfg, args, work_dir=dbt_work_dir)
    return {"warehouse": cfg.describe(), "objects_loaded": loaded.objects_loaded,
            "lines_loaded": loaded.lines_loaded, "dbt_ok": res.ok, "dbt_statuses": res.statuses,
            "dbt_failures": res.failures, "seconds": round(time.monotonic() - start, 3)}


def main(argv: list[str] | None = None) -> int:
    """Command line."""
    p = argparse.ArgumentParser(prog="python -m pipeline.replay", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--landing", required=True, help="file:///dir, a directory or s3://bucket/prefix")
    p.add_argument("--s3-endpoint", help="S3 endpoint URL (S3-compatible servers)")
    p.add_argument("--yes", action="store_true", help="really drop the warehouse first")
    p.add_argument("--lock-file", help="the cycle's lock file (default: one per warehouse)")
    p.add_argument("--dbt-work-dir", help="where dbt writes target/ and logs/")
    p.add_argument("--vars", help="dbt --vars (YAML)")
    args = p.parse_args(argv)
    cfg = WarehouseConfig.from_env()
    if not args.yes:
        p.error(f"this drops the warehouse at {cfg.describe()} and rebuilds it: add --yes")
    try:
        with cycle_lock(args.lock_file or default_lock_file(cfg), True, 3600.0):
            report = replay(args.landing, cfg, args.s3_endpoint, args.dbt_work_dir, args.vars)
    except LockHeld as e:
        print(f"replay not run: {e}", file=sys.stderr)
        return EXIT_LOCKED
    print(json.dumps(report))
    return 0 if report["dbt_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
