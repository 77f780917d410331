#!/usr/bin/env bash
# Decoding speed and output size of engage_decoder next to test_decoding,
# wal2json (format 1 and 2), pgoutput (protocol 1) and decoderbufs, on one
# WAL stream that every plugin decodes in turn.
#
# Workload (written once, after one slot per plugin was created):
#   BENCH_ROWS inserts into engage.audience_members in 1,000-row transactions,
#   then BENCH_UPDATES single-row updates of engage.campaign_audience in
#   100-row transactions.
# Each plugin decodes it through the SQL interface with
#   SELECT count(*), sum(octet_length(data)) FROM pg_logical_slot_peek[_binary]_changes(...)
# (peek: the slot does not move, so every run decodes the same WAL), timed in
# the server with clock_timestamp().  One untimed round first checks the
# change counts and splits data rows from framing rows; then BENCH_RUNS timed
# rounds, the plugins in a rotated order each round, and the median is kept.
#
# Usage (as root, from anywhere):  bench/decode.sh
# Quick smoke run:                 BENCH_ROWS=100000 BENCH_UPDATES=20000 BENCH_RUNS=1 bench/decode.sh
# Other knobs: BENCH_PORT (55490), BENCH_MEMBERS (100000), BENCH_NO_BUILD=1 or
# NO_BUILD=1 (use the installed build), BENCH_KEEP=1 or KEEP=1 (leave the
# cluster running, e.g. for profiling; stop it yourself).
#
# Exit status: 0 when every target is met, 3 when one is missed, 1 on error.
set -euo pipefail

# The whole script is one group, read before it runs: editing the file during a
# run cannot change what that run executes.
{
# shellcheck source=SCRIPTDIR/../scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
# shellcheck source=SCRIPTDIR/workload.sh
source "$(dirname "${BASH_SOURCE[0]}")/workload.sh"

ROWS=${BENCH_ROWS:-1000000}
UPDATES=${BENCH_UPDATES:-200000}
RUNS=${BENCH_RUNS:-5}
PORT=${BENCH_PORT:-55490}
MEMBERS=${BENCH_MEMBERS:-100000}
CHANGES=$((ROWS + UPDATES))

for v in ROWS UPDATES RUNS PORT MEMBERS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "BENCH_$v must be a positive integer (got '${!v}')"
done

# Only what this bench needs (lib.sh's list also has Kafka tools and pgTAP).
# shellcheck disable=SC2034  # read by ensure_packages
ENGAGE_PACKAGES=(postgresql-15 postgresql-server-dev-15 postgresql-15-wal2json
    postgresql-15-decoderbufs librdkafka-dev build-essential pkg-config)
ensure_packages
[ "${BENCH_NO_BUILD:-${NO_BUILD:-0}}" = 1 ] || build_install

DIR=$(mktemp -d /tmp/engage-bench.XXXXXX)
# shellcheck disable=SC2317  # run by the trap
cleanup() {
    if [ "${BENCH_KEEP:-${KEEP:-0}}" = 1 ]; then
        say "cluster left running: $PGBIN/psql -h $DIR -p $PORT -U postgres bench"
        say "stop it with: runuser -u postgres -- $PGBIN/pg_ctl -D $DIR/data stop; rm -rf $DIR"
        return
    fi
    cluster_stop "$DIR" immediate
    rm -rf "$DIR"
}
trap cleanup EXIT

# psql on the bench database; decoderbufs' INFO line at every startup is dropped.
psql_bench() {
    cluster_psql "$DIR" "$PORT" bench "$@" 2> >(grep -v '^INFO:  Exiting startup callback' >&2)
}

say "cluster in $DIR, port $PORT"
# lib.sh's server_has_plugin_list pipes into grep -q: under pipefail the
# writer's SIGPIPE would make it false, and the plugin list would be left out.
set +o pipefail
cluster_init "$DIR" "$PORT" \
    "shared_buffers = 512MB" \
    "max_wal_size = 16GB" \
    "min_wal_size = 1GB" \
    "checkpoint_timeout = 1h" \
    "synchronous_commit = off" \
    "autovacuum = off" \
    "work_mem = 1GB" \
    "client_min_messages = warning"
set -o pipefail
cluster_start "$DIR"
cluster_psql "$DIR" "$PORT" postgres -c "CREATE DATABASE bench"

# --- Parent rows, publication, timing function: all before the slots. ---------
workload_sizes "$ROWS" "$UPDATES" "$MEMBERS"
say "setup: $MEMBERS members, $AUDIENCES audiences, $CAMPAIGNS campaigns x $MEMBERS audience rows"
{ workload_setup_sql; cat <<SQL; } | psql_bench

CREATE PUBLICATION bench_pub FOR TABLES IN SCHEMA engage;

CREATE SCHEMA bench;
-- Runs query (one row: two bigints) and times it inside the server.
CREATE FUNCTION bench.timed(query text, OUT n bigint, OUT bytes bigint, OUT ms float8)
LANGUAGE plpgsql AS \$\$
DECLARE
    t0 timestamptz := clock_timestamp();
BEGIN
    EXECUTE query INTO n, bytes;
    ms := 1000 * extract(epoch FROM clock_timestamp() - t0);
END
\$\$;
SQL

# --- One slot per plugin, then the workload. -----------------------------------
# name|slot|output plugin|peek function suffix|extra peek arguments
PLUGINS=(
    "engage_decoder|b_engage|engage_decoder|changes|"
    "test_decoding|b_test|test_decoding|changes|, 'skip-empty-xacts', '1'"
    "wal2json format 1|b_w2j1|wal2json|changes|, 'format-version', '1'"
    "wal2json format 2|b_w2j2|wal2json|changes|, 'format-version', '2'"
    "pgoutput proto 1|b_pgout|pgoutput|binary_changes|, 'proto_version', '1', 'publication_names', 'bench_pub'"
    "decoderbufs|b_dbufs|decoderbufs|binary_changes|"
)
NP=${#PLUGINS[@]}
for p in "${PLUGINS[@]}"; do
    IFS='|' read -r _ slot plugin _ _ <<<"$p"
    psql_bench -At -c "SELECT pg_create_logical_replication_slot('$slot', '$plugin')" >/dev/null
done
START_LSN=$(psql_bench -At -c "SELECT min(restart_lsn) FROM pg_replication_slots")

say "workload: $ROWS inserts ($INSERT_BATCH per transaction), $UPDATES updates ($UPDATE_BATCH per transaction)"
load_start=$(date +%s)
workload_changes_sql | psql_bench
END_LSN=$(psql_bench -At -c "SELECT pg_current_wal_insert_lsn()")
WAL_MB=$(psql_bench -At -c "SELECT round(pg_wal_lsn_diff('$END_LSN', '$START_LSN') / 1048576.0)")
psql_bench -c "CHECKPOINT"
say "workload written in $(( $(date +%s) - load_start )) s: $WAL_MB MiB of WAL ($START_LSN .. $END_LSN)"

# The peek call of plugin entry $1.
peek_from() {
    local slot func args
    IFS='|' read -r _ slot _ func args <<<"$1"
    echo "pg_logical_slot_peek_$func('$slot', '$END_LSN', NULL$args)"
}

# --- Untimed check round: change counts, data rows versus framing rows. --------
# Each query returns: rows, bytes, data rows (row changes), bytes of the data rows.
# Framing rows are BEGIN/COMMIT lines (test_decoding), {"action":"B"/"C"}
# (wal2json 2), B/C/R messages (pgoutput: data rows are I/U/D), and the
# BEGIN/COMMIT RowMessages of decoderbufs (xid, commit time and op only, under
# 32 bytes; change messages are over 100).  wal2json 1 writes one row per
# transaction, so its changes are counted as "kind" members and its data bytes
# cannot be split from the framing.
check_query() {
    local name=$1 from
    from=$(peek_from "$2")
    case $name in
        engage_decoder)
            echo "SELECT count(*), sum(octet_length(data)), count(*), sum(octet_length(data)) FROM $from" ;;
        test_decoding)
            echo "SELECT count(*), sum(octet_length(data)),
                    count(*) FILTER (WHERE data LIKE 'table %'),
                    coalesce(sum(octet_length(data)) FILTER (WHERE data LIKE 'table %'), 0) FROM $from" ;;
        "wal2json format 1")
            echo "SELECT count(*), sum(octet_length(data)),
                    sum((octet_length(data) - octet_length(replace(data, '\"kind\":', ''))) / 7), NULL FROM $from" ;;
        "wal2json format 2")
            echo "SELECT count(*), sum(octet_length(data)),
                    count(*) FILTER (WHERE data NOT IN ('{\"action\":\"B\"}', '{\"action\":\"C\"}')),
                    coalesce(sum(octet_length(data))
                             FILTER (WHERE data NOT IN ('{\"action\":\"B\"}', '{\"action\":\"C\"}')), 0) FROM $from" ;;
        "pgoutput proto 1")
            echo "SELECT count(*), sum(octet_length(data)),
                    count(*) FILTER (WHERE get_byte(data, 0) IN (73, 85, 68)),
                    coalesce(sum(octet_length(data)) FILTER (WHERE get_byte(data, 0) IN (73, 85, 68)), 0) FROM $from" ;;
        decoderbufs)
            echo "SELECT count(*), sum(octet_length(data)),
                    count(*) FILTER (WHERE octet_length(data) >= 32),
                    coalesce(sum(octet_length(data)) FILTER (WHERE octet_length(data) >= 32), 0) FROM $from" ;;
    esac
}

say "check round (untimed): counting changes per plugin"
declare -A TOTAL_ROWS TOTAL_BYTES DATA_ROWS DATA_BYTES RUN_SECONDS
bad=0
for p in "${PLUGINS[@]}"; do
    name=${p%%|*}
    IFS='|' read -r rows bytes drows dbytes <<<"$(psql_bench -At -F'|' -c "$(check_query "$name" "$p")")"
    TOTAL_ROWS[$name]=$rows
    TOTAL_BYTES[$name]=$bytes
    DATA_ROWS[$name]=$drows
    DATA_BYTES[$name]=$dbytes
    printf '  %-18s %9s rows %12s bytes, %9s row changes\n' "$name" "$rows" "$bytes" "$drows" >&2
    if [ "$drows" != "$CHANGES" ]; then
        printf 'error: %s decoded %s row changes, expected %s\n' "$name" "$drows" "$CHANGES" >&2
        bad=1
    fi
done
[ $bad = 0 ] || die "change counts differ from the workload"

# Where engage_decoder's bytes go, per operation (one more untimed decode).
ENGAGE_FROM=$(peek_from "${PLUGINS[0]}")
W2J2_FROM=$(peek_from "${PLUGINS[3]}")
BREAKDOWN=$(psql_bench -P footer=off <<SQL
SELECT 'engage_decoder' AS plugin, op, count(*) AS records,
       round(avg(octet_length(data)), 1) AS "avg bytes",
       round(avg(position(',"table":' IN data) - 1), 1) AS "header (v,id,lsn,xid,ts,op)",
       round(avg(position(',"pk":' IN data) - position(',"table":' IN data)), 1) AS "table",
       round(avg(position(',"new":' IN data) - position(',"pk":' IN data)), 1) AS pk,
       round(avg(octet_length(data) - position(',"new":' IN data) + 1), 1) AS new
FROM (SELECT data, substring(data FROM '"op":"([a-z]+)"') AS op FROM $ENGAGE_FROM) r
GROUP BY op
UNION ALL
SELECT 'wal2json format 2', op, count(*), round(avg(octet_length(data)), 1), NULL, NULL, NULL, NULL
FROM (SELECT data, substring(data FROM '^\{"action":"([A-Z])"') AS op FROM $W2J2_FROM) r
WHERE op NOT IN ('B', 'C')
GROUP BY op
ORDER BY 1, 2;
SQL
)

# --- Timed rounds, plugins rotated each round. --------------------------------
for ((r = 0; r < RUNS; r++)); do
    for ((i = 0; i < NP; i++)); do
        p=${PLUGINS[$(( (r + i) % NP ))]}
        name=${p%%|*}
        IFS='|' read -r n bytes ms <<<"$(psql_bench -At -F'|' -c \
            "SELECT * FROM bench.timed(\$q\$SELECT count(*), sum(octet_length(data)) FROM $(peek_from "$p")\$q\$)")"
        [ "$n|$bytes" = "${TOTAL_ROWS[$name]}|${TOTAL_BYTES[$name]}" ] ||
            die "$name: run $((r + 1)) gave $n rows and $bytes bytes," \
                "the check round ${TOTAL_ROWS[$name]} and ${TOTAL_BYTES[$name]}"
        RUN_SECONDS[$name]+="$(awk -v ms="$ms" 'BEGIN { printf "%.3f ", ms / 1000 }')"
        printf '  round %d/%d  %-18s %8.3f s\n' $((r + 1)) "$RUNS" "$name" \
            "$(awk -v ms="$ms" 'BEGIN { print ms / 1000 }')" >&2
    done
done

# Median of the numbers in $1.
median() {
    tr ' ' '\n' <<<"$1" | grep . | sort -g |
        awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# --- Report. ------------------------------------------------------------------
E=engage_decoder
declare -A CPS BPC
for p in "${PLUGINS[@]}"; do
    name=${p%%|*}
    CPS[$name]=$(awk -v c="$CHANGES" -v s="$(median "${RUN_SECONDS[$name]}")" 'BEGIN { printf "%.0f", c / s }')
    BPC[$name]=$(awk -v b="${TOTAL_BYTES[$name]}" -v c="$CHANGES" 'BEGIN { printf "%.1f", b / c }')
done

echo
echo "Decoding $CHANGES row changes ($ROWS inserts in $INSERT_BATCH-row transactions, $UPDATES updates" \
     "in $UPDATE_BATCH-row transactions; $WAL_MB MiB of WAL), median of $RUNS, SQL interface (peek)"
echo "$("$PGBIN/postgres" --version); $(nproc) CPUs; $(free -g | awk '/^Mem:/ { print $2 }') GiB RAM; Linux $(uname -r)"
echo
echo "| plugin | changes/s (median) | bytes/change | data-row bytes/change | speed ratio vs engage_decoder | size ratio vs engage_decoder | runs (s) |"
echo "|---|---:|---:|---:|---:|---:|---|"
for p in "${PLUGINS[@]}"; do
    name=${p%%|*}
    drow=$(awk -v b="${DATA_BYTES[$name]}" -v n="${DATA_ROWS[$name]}" \
        'BEGIN { if (b == "") print "n/a"; else printf "%.1f", b / n }')
    awk -v name="$name" -v cps="${CPS[$name]}" -v bpc="${BPC[$name]}" -v drow="$drow" \
        -v ecps="${CPS[$E]}" -v ebpc="${BPC[$E]}" -v runs="${RUN_SECONDS[$name]% }" \
        'function commas(n,  s) { s = sprintf("%d", n)
                                  while (s ~ /[0-9][0-9][0-9][0-9]/) sub(/[0-9][0-9][0-9]($|,)/, ",&", s)
                                  return s }
         BEGIN { printf "| %s | %s | %s | %s | %.2f | %.2f | %s |\n",
                 name, commas(cps), bpc, drow, cps / ecps, bpc / ebpc, runs }'
done
echo
echo "bytes/change = all output bytes (framing rows and messages included) / $CHANGES row changes."
echo "data-row bytes/change = bytes of the rows that carry one row change / their number: without"
echo "test_decoding's BEGIN/COMMIT lines, wal2json 2's B/C rows, pgoutput's B/C/R messages (I/U only)"
echo "and decoderbufs' BEGIN/COMMIT messages; n/a for wal2json 1 (one row per transaction)."
echo "Ratios are plugin / engage_decoder (speed > 1: faster than engage_decoder; size > 1: bigger)."
echo
echo "Where engage_decoder's bytes go (average bytes per record, by part):"
echo "$BREAKDOWN"
echo

verdict() { if [ "$1" = 1 ]; then echo PASS; else echo FAIL; fi; }
s1=$(awk -v e="${CPS[$E]}" -v w="${CPS[wal2json format 2]}" 'BEGIN { print (e >= 1.5 * w) }')
s2=$(awk -v e="${CPS[$E]}" -v t="${CPS[test_decoding]}" 'BEGIN { print (e >= t) }')
s3=$(awk -v e="${BPC[$E]}" -v w="${BPC[wal2json format 2]}" 'BEGIN { print (e <= 0.6 * w) }')
awk -v e="${CPS[$E]}" -v w="${CPS[wal2json format 2]}" -v v="$(verdict "$s1")" \
    'BEGIN { printf "target: engage_decoder changes/s >= 1.5x wal2json format 2: %.2fx  %s\n", e / w, v }'
awk -v e="${CPS[$E]}" -v t="${CPS[test_decoding]}" -v v="$(verdict "$s2")" \
    'BEGIN { printf "target: engage_decoder changes/s >= test_decoding:          %.2fx  %s\n", e / t, v }'
awk -v e="${BPC[$E]}" -v w="${BPC[wal2json format 2]}" -v v="$(verdict "$s3")" \
    'BEGIN { printf "target: engage_decoder bytes/change <= 0.6x wal2json format 2: %.2fx  %s\n", e / w, v }'
[ "$s1$s2$s3" = 111 ] || exit 3
exit 0
}
