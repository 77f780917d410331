#!/usr/bin/env bash
# Runs `airflow dags test engage_hourly` against a throwaway DuckDB warehouse and a small landing.
# Creates Airflow's own venv (${AIRFLOW_VENV:-~/.cache/pg_engage/airflow-venv}) from requirements.txt
# and constraints.txt when missing (~1 min), and uses the pipeline venv's python
# (${PIPELINE_VENV:-~/.cache/pg_engage/pipeline-venv}) for the tasks. About 25 s once installed.
# Usage: pipeline/airflow/dags_test.sh LANDING_DIR   (a landing with a few objects)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
landing=${1:?usage: $0 LANDING_DIR}
venv=${AIRFLOW_VENV:-$HOME/.cache/pg_engage/airflow-venv}
# (Re)built when missing or when its pins changed.
if [ ! -x "$venv/bin/airflow" ] || ! cat "$here/requirements.txt" "$here/constraints.txt" | cmp -s - "$venv/pins.txt"; then
    python3 -m venv --clear "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$here/requirements.txt" -c "$here/constraints.txt"
    cat "$here/requirements.txt" "$here/constraints.txt" >"$venv/pins.txt"
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export AIRFLOW_HOME=$work/airflow AIRFLOW__CORE__DAGS_FOLDER=$here AIRFLOW__CORE__LOAD_EXAMPLES=False
export ENGAGE_REPO=$repo ENGAGE_LANDING=$landing ENGAGE_WH_TYPE=duckdb ENGAGE_WH_PATH=$work/wh.duckdb
export ENGAGE_PYTHON=${PIPELINE_PYTHON:-${PIPELINE_VENV:-$HOME/.cache/pg_engage/pipeline-venv}/bin/python}
unset ENGAGE_KAFKA_BOOTSTRAP
"$venv/bin/airflow" db migrate >"$work/migrate.log" 2>&1 || { cat "$work/migrate.log"; exit 1; }
"$venv/bin/airflow" dags test engage_hourly >"$work/dags_test.log" 2>&1 || { tail -50 "$work/dags_test.log"; exit 1; }
grep -q "state=success" "$work/dags_test.log" || { tail -50 "$work/dags_test.log"; exit 1; }
grep -E "objects loaded|events staged" "$work/dags_test.log" | sed 's/ *\[airflow.*//'
echo "airflow dags test engage_hourly: success"
