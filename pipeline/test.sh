#!/usr/bin/env bash
# Runs the pipeline's tests (lander, warehouse, cycle): pytest pipeline/tests [PYTEST ARGS...].
# Installs the Debian packages it needs, builds and installs pg_engage (the warehouse tests decode a
# source database with engage_decoder; PIPELINE_NO_BUILD=1 skips it), creates or refreshes the venv at
# ${PIPELINE_VENV:-~/.cache/pg_engage/pipeline-venv} from pipeline/requirements.txt (only when that
# file changed), fetches the Kafka and s3proxy jars, then runs pytest. The tests start their own
# broker (port 19492) and s3proxy (port 19580) when they need them. Exits non-zero on failure.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

main() {
    ensure_packages
    [ "${PIPELINE_NO_BUILD:-0}" = 1 ] || build_install
    pipeline_env
    "$ROOT/scripts/kafka.sh" fetch >/dev/null
    "$ROOT/scripts/s3proxy.sh" fetch >/dev/null
    cd "$ROOT"
    "$PYTHON" -m pytest -q -p no:cacheprovider pipeline/tests "$@"
}

main "$@"
