"""Run the dbt project against the configured warehouse, through dbt's Python API (dbtRunner).

In this process (a child process would pay dbt's ~4 s import on every call); dbt-duckdb closes
its handle at the end of each invocation, so the loader and the report can open the file
between invocations. The environment carries the ENGAGE_WH_* variables of the warehouse for
profiles.yml. The outcome comes from dbt's run_results.json, removed before each call so that a
run which fails early is never judged by an older file. One invocation at a time per process.
"""
from __future__ import annotations

import json
import os
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


def run_dbt(cfg: WarehouseConfig, args: list[str], work_dir: str | os.PathLike | None = None,
            quiet: bool = True) -> DbtResult:
    """Run `dbt <args>` for cfg's warehouse; target and logs go to work_dir (default dbt/target).
    quiet: only errors on stdout (dbt's --quiet); the full log is in work_dir/logs."""
    from dbt.cli.main import dbtRunner
    work = Path(work_dir) if work_dir else PROJECT_DIR / "target"
    results = work / "target" / "run_results.json"
    results.unlink(missing_ok=True)
    cli = [*args, "--project-dir", str(PROJECT_DIR), "--profiles-dir", str(PROJECT_DIR),
           "--target-path", str(work / "target"), "--log-path", str(work / "logs")]
    if quiet:
        cli.append("--quiet")
    env = {**cfg.to_env(), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        res = dbtRunner().invoke(cli)
    finally:
        _restore(saved)
    result = _read_results(results, 0 if res.success else 1)
    if res.exception is not None:
        result.ok = False
        result.failures.append(f"dbt: {res.exception}")
    return result


def _restore(saved: dict) -> None:
    """Put environment variables back as they were."""
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


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
