"""The hourly cycle's command: the lock, the step selection, the report, the Airflow DAG file."""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from warehouse_fixtures import LandingWriter

from pipeline.cycle import LockHeld, cycle_lock, format_report, parse_args

ROOT = Path(__file__).resolve().parents[2]
RECORD = ('{"v":1,"id":"0/10:1","lsn":"0/10","xid":1,"ts":"2026-06-06T18:00:00.000000Z","op":"insert",'
          '"table":"engage.users","pk":{"user_id":1},"new":{"user_id":1,"username":"john",'
          '"department":"finance","contact":null,"created_at":"2026-06-06T18:00:00.000000Z"}}')


def run_cycle_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """Run `python -m pipeline.cycle` on a DuckDB warehouse in tmp_path."""
    env = {**os.environ, "ENGAGE_WH_TYPE": "duckdb", "ENGAGE_WH_PATH": str(tmp_path / "wh.duckdb")}
    env.pop("ENGAGE_KAFKA_BOOTSTRAP", None)
    return subprocess.run([sys.executable, "-m", "pipeline.cycle", "--landing",
                           str(tmp_path / "landing"), "--lock-file", str(tmp_path / "lock"), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_second_cycle_exits_clearly_or_waits(tmp_path):
    """While a cycle holds the lock, --no-wait exits 75 at once; a waiting one runs after it."""
    LandingWriter(tmp_path / "landing").write([RECORD])
    with cycle_lock(str(tmp_path / "lock"), wait=False, timeout=0):
        res = run_cycle_cli(tmp_path, "--steps", "load", "--no-wait")
        assert res.returncode == 75, res.stderr
        assert f"another cycle holds {tmp_path / 'lock'} (pid {os.getpid()})" in res.stderr
        res = run_cycle_cli(tmp_path, "--steps", "load", "--lock-timeout", "1")
        assert res.returncode == 75
    res = run_cycle_cli(tmp_path, "--steps", "load", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["objects_loaded"] == 1
    res = run_cycle_cli(tmp_path, "--steps", "load", "--json")      # idempotent: nothing new
    assert json.loads(res.stdout)["objects_loaded"] == 0


def test_waiting_cycle_gets_the_lock_when_released(tmp_path):
    """A cycle waiting for the lock proceeds as soon as the holder lets go."""
    path = str(tmp_path / "lock")
    got = []

    def waiter():
        with cycle_lock(path, wait=True, timeout=30):
            got.append(time.monotonic())

    with cycle_lock(path, wait=False, timeout=0):
        t = threading.Thread(target=waiter)
        t.start()
        time.sleep(1.0)
        assert not got
        released = time.monotonic()
    t.join(10)
    assert got and got[0] >= released
    with pytest.raises(LockHeld):
        with cycle_lock(path, wait=False, timeout=0):
            with cycle_lock(path, wait=False, timeout=0):
                pass


def test_steps_and_land_without_kafka():
    """Without --bootstrap the default steps skip landing; asking for it explicitly is an error."""
    args = parse_args(["--landing", "x"])
    assert args.steps == ["load", "transform"]
    assert parse_args(["--landing", "x", "--bootstrap", "k:9092"]).steps == ["land", "load", "transform"]
    assert parse_args(["--landing", "x", "--bootstrap", "k:9092", "--no-land"]).steps == ["load", "transform"]
    with pytest.raises(SystemExit):
        parse_args(["--landing", "x", "--steps", "land"])


def test_report_names_every_figure():
    """The human report has landed, loaded, staged, duplicates, rows changed and lag."""
    text = format_report({
        "warehouse": "duckdb:/w", "steps": ["land", "load", "transform"], "seconds": 1.5,
        "objects_landed": 2, "records_landed": 10, "objects_loaded": 2, "lines_loaded": 10,
        "events_staged": 8, "duplicates_dropped": 2, "rows_changed": 5,
        "rows_changed_by_table": {"users": 5}, "lag_commit_seconds": 60.0,
        "lag_kafka_seconds": 59.0, "dbt_statuses": {"success": 21}, "dbt_seconds": 3.0,
        "dbt_failures": []})
    for word in ("objects landed", "objects loaded", "events staged", "duplicates dropped",
                 "rows changed", "lag"):
        assert word in text


def test_airflow_dag_file_parses_and_runs_the_cycle():
    """The DAG file is valid Python naming the cycle's steps (Airflow itself is not installed here;
    `airflow dags test engage_hourly` was run with pipeline/airflow/requirements.txt, see README)."""
    path = ROOT / "pipeline" / "airflow" / "engage_hourly.py"
    tree = ast.parse(path.read_text())
    text = path.read_text()
    assert ast.get_docstring(tree)
    assert '"pipeline.cycle"' in text and 'dag_id="engage_hourly"' in text
    for step in ("land", "load", "transform"):
        assert f'cycle_command("{step}")' in text
    pins = (ROOT / "pipeline" / "airflow" / "requirements.txt").read_text()
    assert "apache-airflow==3.3.2" in pins


@pytest.mark.skipif(os.environ.get("PIPELINE_AIRFLOW_TEST") != "1",
                    reason="set PIPELINE_AIRFLOW_TEST=1 to install Airflow and run `airflow dags test`")
def test_airflow_dags_test(tmp_path):
    """`airflow dags test engage_hourly` loads and transforms a landing (pipeline/airflow/dags_test.sh)."""
    LandingWriter(tmp_path / "landing").write([RECORD])
    env = {**os.environ, "PIPELINE_PYTHON": sys.executable}
    res = subprocess.run([str(ROOT / "pipeline" / "airflow" / "dags_test.sh"), str(tmp_path / "landing")],
                         env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "events staged       1" in res.stdout
