#!/usr/bin/env bash
# Decode speed of this engage_decoder against a released one, on the same WAL,
# alternating runs: did a change slow the decode down?
#
# Builds the release's plugin from git (default 0.1.0's commit 7f81dc8),
# installs it beside the current one as engage_decoder_release, writes the
# bench/workload.sh workload once into two slots and decodes each with
# pg_logical_slot_peek_changes BENCH_RUNS times, rotating.  Prints every run and
# the medians.  Removes the copy it installed.
# Usage (as root): bench/decode_vs_release.sh    (NO_BUILD=1: use the installed build; results in BENCHMARKS.md)
# Knobs: BENCH_RELEASE (commit, 7f81dc8), BENCH_ROWS (500000), BENCH_UPDATES (100000),
# BENCH_RUNS (5), BENCH_PORT (55493).
set -euo pipefail
{
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/workload.sh"
RELEASE=${BENCH_RELEASE:-7f81dc8}
RUNS=${BENCH_RUNS:-5}
PORT=${BENCH_PORT:-55493}
LIBDIR=$("$PGBIN/pg_config" --pkglibdir)
DIR=$(mktemp -d /tmp/engage-decode-ab.XXXXXX)
chmod 755 "$DIR"
cleanup() { cluster_stop "$DIR" immediate; rm -rf "$DIR" "$LIBDIR/engage_decoder_release.so"; }
trap cleanup EXIT

[ "${NO_BUILD:-0}" = 1 ] || build_install
mkdir "$DIR/src"
git -C "$ROOT" archive "$RELEASE" plugin | tar -x -C "$DIR/src"
make -C "$DIR/src/plugin" -s PG_CONFIG="$PGBIN/pg_config" >/dev/null
cp "$DIR/src/plugin/engage_decoder.so" "$LIBDIR/engage_decoder_release.so"

cluster_init "$DIR" "$PORT" "shared_buffers = 512MB" "max_wal_size = 8GB" "autovacuum = off" \
    "output_plugin_libraries = 'engage_decoder, engage_decoder_release'"
cluster_start "$DIR"
cluster_psql "$DIR" "$PORT" postgres -c "CREATE DATABASE bench"
q() { cluster_psql "$DIR" "$PORT" bench -At "$@"; }
workload_sizes "${BENCH_ROWS:-500000}" "${BENCH_UPDATES:-100000}" 100000
workload_setup_sql | cluster_psql "$DIR" "$PORT" bench >/dev/null
q -c "SELECT pg_create_logical_replication_slot('current', 'engage_decoder')" \
  -c "SELECT pg_create_logical_replication_slot('release', 'engage_decoder_release')" >/dev/null
workload_changes_sql | PGOPTIONS='-c synchronous_commit=off' cluster_psql "$DIR" "$PORT" bench >/dev/null

declare -A MS
for ((r = 1; r <= RUNS; r++)); do
    for s in current release; do
        t=$(q -c '\timing on' -c "SELECT count(*) FROM pg_logical_slot_peek_changes('$s', NULL, NULL)" |
            sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p')
        MS[$s]+="$t "
        printf '  run %d %-8s %9.1f ms\n' "$r" "$s" "$t"
    done
done
median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
echo "median decode: current $(median "${MS[current]}") ms, release $RELEASE $(median "${MS[release]}") ms"
}
