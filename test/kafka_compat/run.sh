#!/usr/bin/env bash
# Build compat, start a throw-away Kafka broker (scripts/kafka.sh) on a non-default port,
# run compat against it and stop the broker on exit. Exits with compat's status.
# Environment: COMPAT_PORT (default 19292), COMPAT_N (messages per check, default 1000),
# KAFKA_VERSION / KAFKA_JARS (passed on to scripts/kafka.sh), KEEP_KAFKA_DIR=1 keeps the logs.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
KAFKA_SH="$HERE/../../scripts/kafka.sh"
PORT="${COMPAT_PORT:-19292}"
WORK=""

# Stop the broker and remove the temp dir (kept, with logs shown, when compat failed).
cleanup() {
  local rc=$?
  [[ -n "$WORK" ]] || exit "$rc"
  "$KAFKA_SH" stop "$WORK/broker" || true
  if [[ $rc -ne 0 || "${KEEP_KAFKA_DIR:-0}" == 1 ]]; then
    echo "# broker dir kept: $WORK/broker (server.log, kafka.log)" >&2
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}

# Build compat into the temp dir (keeps the source tree clean).
build() { make -s -C "$HERE" OUT="$WORK/compat" "$WORK/compat" >&2; }

# Start the broker and run compat against it.
main() {
  local bootstrap t0
  WORK="$(mktemp -d /tmp/kafka_compat.XXXXXX)"
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  build
  "$KAFKA_SH" fetch
  t0=$(date +%s%3N)
  bootstrap="$("$KAFKA_SH" start "$WORK/broker" "$PORT")"
  echo "# broker $bootstrap ready in $(($(date +%s%3N) - t0)) ms"
  "$WORK/compat" "$bootstrap" "${COMPAT_N:-1000}"
}

main "$@"
