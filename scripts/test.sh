#!/usr/bin/env bash
# Runs every test of pg_engage on throwaway servers of its own: pg_regress,
# pgTAP, the update from the previous release, dump and restore, the
# librdkafka/Kafka compatibility check, the integration tests of the shipper
# against a real Kafka broker, and the pipeline's (lander, warehouse, cycle,
# Airflow DAG).
# Installs what it needs first.
# Usage: scripts/test.sh [regress|pgtap|upgrade|dump|compat|integration|pipeline ...]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

WORK=$(mktemp -d /tmp/pg_engage_test.XXXXXX)
chmod 755 "$WORK"
PGTAP_PORT=${PGTAP_PORT:-55432}
passed=0
failed=0
failed_names=()

# Stops what the tests started and removes the work directory.
cleanup() {
    cluster_stop "$WORK/pgtap" immediate
    [ -n "${KEEP_TEST_DIR:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT

# Runs one suite, counting it as passed or failed.
suite() {
    local name=$1; shift
    say "suite $name"
    if "$@"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        failed_names+=("$name")
    fi
}

# pg_regress on its own temporary instance, as the postgres user.
run_regress() {
    local tree="$WORK/regress"
    rsync -a --exclude .git --exclude tmp_check --exclude results "$ROOT/" "$tree/"
    chown -R postgres: "$tree"
    if ! as_pg make -C "$tree" -s installcheck PG_CONFIG="$PGBIN/pg_config"; then
        [ -f "$tree/regression.diffs" ] && head -n 200 "$tree/regression.diffs"
        return 1
    fi
}

# pgTAP suites on a cluster with pg_cron preloaded, and pg_engage with its
# shipper off (engage.shipper answers; nothing is shipped).
run_pgtap() {
    local dir="$WORK/pgtap"
    cluster_init "$dir" "$PGTAP_PORT" "shared_preload_libraries = 'pg_cron, pg_engage'" \
        "engage.enabled = off" "engage.database = 'engage_test'" \
        "cron.database_name = 'engage_test'" "max_worker_processes = 16"
    cluster_start "$dir"
    cluster_psql "$dir" "$PGTAP_PORT" postgres -c "CREATE DATABASE engage_test"
    cluster_psql "$dir" "$PGTAP_PORT" engage_test \
        -c "CREATE EXTENSION pgtap" -c "CREATE EXTENSION pg_engage"
    PGHOST=$dir PGPORT=$PGTAP_PORT PGUSER=postgres "$ROOT/test/pgtap/run.sh" engage_test
}

# Python environment of the integration tests, pinned by test/requirements.txt.
python_env() {
    local venv="${PG_ENGAGE_VENV:-$HOME/.cache/pg_engage/venv}"
    if [ ! -x "$venv/bin/pytest" ] || ! cmp -s "$ROOT/test/requirements.txt" "$venv/requirements.txt"; then
        say "preparing the Python environment in $venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install -q --disable-pip-version-check -r "$ROOT/test/requirements.txt"
        cp "$ROOT/test/requirements.txt" "$venv/requirements.txt"
    fi
    PYTHON="$venv/bin/python"
}

# The shipper against a real Kafka broker (the tests start their own servers).
run_integration() {
    python_env
    "$ROOT/scripts/kafka.sh" fetch >/dev/null
    PG_ENGAGE_WORK="$WORK/integration" "$PYTHON" -m pytest -q -p no:cacheprovider \
        "$ROOT/test/integration"
}

main() {
    local suites=("$@")
    [ ${#suites[@]} -gt 0 ] || suites=(regress pgtap upgrade dump compat integration pipeline)
    ensure_packages
    build_install
    for s in "${suites[@]}"; do
        case $s in
            regress) suite regress run_regress ;;
            pgtap) suite pgtap run_pgtap ;;
            upgrade) suite upgrade bash -c "for v in 0.1.0 0.2.0 0.3.0; do UPGRADE_FROM=\$v \"$ROOT/test/upgrade/run.sh\" || exit 1; done" ;;
            dump) suite dump "$ROOT/test/dump/run.sh" ;;
            compat) suite kafka-compat "$ROOT/test/kafka_compat/run.sh" ;;
            integration) suite integration run_integration ;;
            pipeline) suite pipeline env PIPELINE_NO_BUILD=1 PIPELINE_AIRFLOW_TEST=1 "$ROOT/pipeline/test.sh" ;;
            *) die "unknown suite $s" ;;
        esac
    done
    [ $failed -eq 0 ] || say "failed suites: ${failed_names[*]}"
    echo "suites: $passed passed, $failed failed"
    [ $failed -eq 0 ]
}

main "$@"
