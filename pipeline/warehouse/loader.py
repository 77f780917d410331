"""Load the landing objects the warehouse has not loaded yet (each object exactly once).

    python -m pipeline.warehouse.loader --landing ./landing      # warehouse from ENGAGE_WH_*

New objects are those whose key is not in the manifest (raw_objects), whatever their hour: an
object landed late for an old hour is loaded by the next run. Objects are loaded in batches of
at most --batch-objects, each batch in one transaction.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass

from .config import WarehouseConfig
from .engines import open_warehouse
from .source import LandingSource, Source


@dataclass
class LoadReport:
    """What one loader run did."""

    objects_seen: int = 0
    objects_loaded: int = 0
    lines_loaded: int = 0
    seconds: float = 0.0


def load_new(source: Source, wh, batch_objects: int = 500) -> LoadReport:
    """Load every object of source missing from wh's manifest; return what was done."""
    start = time.monotonic()
    wh.ensure_raw()
    keys = source.keys()
    done = wh.loaded_keys()
    new = [k for k in keys if k not in done]
    report = LoadReport(objects_seen=len(keys))
    for i in range(0, len(new), batch_objects):
        batch = new[i:i + batch_objects]
        report.lines_loaded += wh.load(source, batch)
        report.objects_loaded += len(batch)
    report.seconds = round(time.monotonic() - start, 3)
    return report


def run(landing: str, cfg: WarehouseConfig, s3_endpoint: str | None = None,
        batch_objects: int = 500) -> LoadReport:
    """Open the landing and the warehouse, load what is new, close."""
    wh = open_warehouse(cfg)
    try:
        return load_new(LandingSource(landing, s3_endpoint), wh, batch_objects)
    finally:
        wh.close()


def main(argv: list[str] | None = None) -> int:
    """Command line: print the load report as one JSON line."""
    p = argparse.ArgumentParser(prog="python -m pipeline.warehouse.loader", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--landing", required=True, help="file:///dir, a directory or s3://bucket/prefix")
    p.add_argument("--s3-endpoint", help="S3 endpoint URL (S3-compatible servers)")
    p.add_argument("--batch-objects", type=int, default=500, help="objects per transaction")
    args = p.parse_args(argv)
    report = run(args.landing, WarehouseConfig.from_env(), args.s3_endpoint, args.batch_objects)
    print(json.dumps(asdict(report)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
