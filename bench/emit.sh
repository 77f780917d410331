#!/usr/bin/env bash
# What the authenticator costs: engage.emit() (event checked, topic looked up
# in the registry, HMAC-SHA-256, logical message) against the bare
# pg_logical_emit_message() of the same event, and the decoding of both (the
# decoder verifies emit()'s authenticator; the bare message is quarantined).
# Alternating runs; prints every run, the medians and the ratios.
# Usage (as root): bench/emit.sh    (NO_BUILD=1: use the installed build; results in BENCHMARKS.md)
# Knobs: BENCH_EVENTS (100000), BENCH_RUNS (5), BENCH_PORT (55494).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
EVENTS=${BENCH_EVENTS:-100000}
RUNS=${BENCH_RUNS:-5}
PORT=${BENCH_PORT:-55494}
DIR=$(mktemp -d /tmp/engage-emit-bench.XXXXXX)
chmod 755 "$DIR"
trap 'cluster_stop "$DIR" immediate; rm -rf "$DIR"' EXIT

[ "${NO_BUILD:-0}" = 1 ] || build_install
cluster_init "$DIR" "$PORT" "shared_buffers = 256MB" "max_wal_size = 4GB" "autovacuum = off"
cluster_start "$DIR"
q() { cluster_psql "$DIR" "$PORT" postgres -At "$@"; }
q -c "CREATE EXTENSION pg_engage" -c "SELECT engage.emit('bench.event', 'k', '{}')" >/dev/null

# Milliseconds of one statement, timed by the server.
ms() { q -c "\\timing on" -c "$1" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tail -1; }
median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
payload="jsonb_build_object('campaign_id', i, 'audience', 100, 'name', 'launch ' || i)"
emit_sql="SELECT count(engage.emit('bench.event', i::text, $payload)) FROM generate_series(1, $EVENTS) AS i"
bare_sql="SELECT count(pg_logical_emit_message(true, 'engage',
    json_build_object('topic', 'bench.event', 'key', i::text, 'payload', $payload)::text))
  FROM generate_series(1, $EVENTS) AS i"
decode_sql() { echo "SELECT count(*) FROM pg_logical_slot_peek_changes('$1', NULL, NULL)"; }

for r in $(seq "$RUNS"); do
    for kind in emit bare; do
        q -c "SELECT pg_create_logical_replication_slot('s_$kind', 'engage_decoder')" >/dev/null
        [ $kind = emit ] && write=$(ms "$emit_sql") || write=$(ms "$bare_sql")
        decode=$(ms "$(decode_sql "s_$kind")")
        q -c "SELECT pg_drop_replication_slot('s_$kind')" >/dev/null
        echo "$kind $write $decode" | tee -a "$DIR/runs"
    done
done
for kind in emit bare; do
    w=$(awk -v k=$kind '$1 == k {print $2}' "$DIR/runs" | median)
    d=$(awk -v k=$kind '$1 == k {print $3}' "$DIR/runs" | median)
    echo "median $kind: write $w ms, decode $d ms for $EVENTS events" | tee -a "$DIR/medians"
done
awk '/median emit/ {ew=$4; ed=$7} /median bare/ {bw=$4; bd=$7}
     END {printf "emit/bare: write %.2fx, decode %.2fx\n", ew/bw, ed/bd}' "$DIR/medians"
