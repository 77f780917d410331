#!/usr/bin/env bash
# Runs the pipeline's tests (lander, warehouse, cycle): pytest pipeline/tests [PYTEST ARGS...].
# Installs the Debian packages it needs, creates or refreshes the venv at
# ${PIPELINE_VENV:-~/.cache/pg_engage/pipeline-venv} from pipeline/requirements.txt (only when that
# file changed), fetches the Kafka and s3proxy jars, then runs pytest. The tests start their own
# broker (port 19492) and s3proxy (port 19580) when they need them. Exits non-zero on failure.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

# Debian packages the pipeline's tests need (lib.sh's ensure_packages installs missing ones).
ENGAGE_PACKAGES=(maven openjdk-17-jre-headless python3-venv)

# Create or refresh the venv when pipeline/requirements.txt differs from the copy installed in it.
pipeline_env() {
    local venv="${PIPELINE_VENV:-$HOME/.cache/pg_engage/pipeline-venv}"
    local req="$ROOT/pipeline/requirements.txt"
    if [ ! -x "$venv/bin/pytest" ] || ! cmp -s "$req" "$venv/requirements.txt"; then
        say "preparing the pipeline's Python environment in $venv"
        python3 -m venv --clear "$venv"
        "$venv/bin/pip" install -q --disable-pip-version-check -r "$req"
        cp "$req" "$venv/requirements.txt"
    fi
    PYTHON="$venv/bin/python"
}

main() {
    ensure_packages
    pipeline_env
    "$ROOT/scripts/kafka.sh" fetch >/dev/null
    "$ROOT/scripts/s3proxy.sh" fetch >/dev/null
    cd "$ROOT"
    "$PYTHON" -m pytest -q -p no:cacheprovider pipeline/tests "$@"
}

main "$@"
