"""Run the dbt project against the configured warehouse, in a child process.

A child process (`python -m dbt.cli.main`) rather than dbtRunner in this process: dbt-duckdb keeps
its DuckDB handle for the life of the process, and the loader and the cycle's report open the
same file. The outcome comes from dbt's run_results.json.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .config import WarehouseConfig

PROJECT_DIR = Path(__file__).resolve().parent / "dbt"


@dataclass
class DbtResult:
    """The outcome of one dbt invocation."""

    ok: bool
    returncode: int
    statuses: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    output: str = ""


def run_dbt(cfg: WarehouseConfig, args: list[str], work_dir: str | os.PathLike | None = None,
            quiet: bool = True) -> DbtResult:
    """Run `dbt <args>` for cfg's warehouse; target and logs go to work_dir (default dbt/target)."""
    work = Path(work_dir) if work_dir else PROJECT_DIR / "target"
    work.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "dbt.cli.main", *args,
           "--project-dir", str(PROJECT_DIR), "--profiles-dir", str(PROJECT_DIR),
           "--target-path", str(work / "target"), "--log-path", str(work / "logs")]
    env = {**os.environ, **cfg.to_env(), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    result = _read_results(work / "target" / "run_results.json", proc.returncode)
    result.output = proc.stdout + proc.stderr
    if not quiet or not result.ok:
        sys.stderr.write(result.output[-8000:])
    return result


def _read_results(path: Path, returncode: int) -> DbtResult:
    """Summarize run_results.json (missing: dbt failed before running anything)."""
    result = DbtResult(ok=returncode == 0, returncode=returncode)
    if not path.exists():
        return result
    data = json.loads(path.read_text())
    result.seconds = round(data.get("elapsed_time", 0.0), 3)
    for r in data.get("results", []):
        status = r.get("status", "unknown")
        result.statuses[status] = result.statuses.get(status, 0) + 1
        name = r.get("unique_id", "?")
        if status in ("error", "fail", "runtime error"):
            result.failures.append(f"{name}: {r.get('message')}")
        elif status == "warn":
            result.warnings.append(f"{name}: {r.get('message')}")
    return result
