"""Airflow DAG `engage_hourly`: the pipeline's hourly cycle as three tasks, land → load → transform.

Each task runs one step of `python -m pipeline.cycle` in the pipeline's own environment (not
Airflow's): ENGAGE_REPO is the pg_engage checkout, ENGAGE_PYTHON the pipeline venv's python,
ENGAGE_LANDING the landing URL, ENGAGE_KAFKA_BOOTSTRAP the brokers (without it the DAG has no land
task: the landing is filled by a running lander service instead), and the ENGAGE_WH_* variables
say where the warehouse is (pipeline/warehouse/config.py). Every step takes the cycle's lock,
so a manual run or a cron cycle at the same time waits instead of interleaving; every step is
idempotent, so Airflow's retries are safe. Install Airflow from requirements.txt beside this file.
"""
from __future__ import annotations

import os
import shlex
from datetime import datetime, timedelta

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG

REPO = os.environ.get("ENGAGE_REPO", "/opt/pg_engage")
PYTHON = os.environ.get("ENGAGE_PYTHON", "python3")
LANDING = os.environ.get("ENGAGE_LANDING", "/var/lib/engage/landing")
BOOTSTRAP = os.environ.get("ENGAGE_KAFKA_BOOTSTRAP", "")


def cycle_command(step: str) -> str:
    """Return the shell command running one step of the cycle."""
    args = [PYTHON, "-m", "pipeline.cycle", "--landing", LANDING, "--steps", step,
            "--lock-timeout", "3000"]
    if step == "land":
        args += ["--bootstrap", BOOTSTRAP]
    return f"cd {shlex.quote(REPO)} && " + " ".join(shlex.quote(a) for a in args)


with DAG(
    dag_id="engage_hourly",
    description="pg_engage: land Kafka → load raw → dbt build (staging, current state, presentation)",
    schedule="@hourly",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
    tags=["pg_engage"],
) as dag:
    load = BashOperator(task_id="load", bash_command=cycle_command("load"))
    transform = BashOperator(task_id="transform", bash_command=cycle_command("transform"))
    if BOOTSTRAP:
        BashOperator(task_id="land", bash_command=cycle_command("land")) >> load
    load >> transform
