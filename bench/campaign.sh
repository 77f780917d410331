#!/usr/bin/env bash
# Benchmark of the campaign SQL API (issue #4) on a generated dataset:
# 10,000,000 audience_members rows in 100 audiences, about 20% duplicate
# emails written with other case and whitespace, about 1% invalid emails.
#
# Runs in its own throwaway cluster (port 55481 unless BENCH_PORT is set),
# prints the median of several runs of each measurement next to its target.
#
#   bench/campaign.sh            build, install, generate, measure
#   NO_BUILD=1 bench/campaign.sh use the installed extension as it is
#   KEEP=1 bench/campaign.sh     leave the cluster running afterwards
#
# Exit status: 0 when every target is met, 3 when one is missed, 1 on error.
set -euo pipefail

source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../scripts/lib.sh"

PORT=${BENCH_PORT:-55481}
ROWS=${BENCH_ROWS:-10000000}          # audience_members rows (and members)
AUDIENCES=100
BIG=${BENCH_BIG:-1270000}             # rows of audience 1: ~1,000,000 deduped emails
RUNS=${BENCH_RUNS:-5}                 # runs of the quick measurements
HEAVY_RUNS=${BENCH_HEAVY_RUNS:-3}     # runs of the full build
ROLLUP_RUNS=${BENCH_ROLLUP_RUNS:-2}   # runs of the loaded rollup, per history size
LOAD=${BENCH_LOAD:-1000000}          # engagement updates per measured rollup

DIR=$(mktemp -d /tmp/engage-campaign-bench.XXXXXX)
cleanup() {
    if [ "${KEEP:-0}" = 1 ]; then
        say "cluster kept running in $DIR (port $PORT); stop it with: runuser -u postgres -- $PGBIN/pg_ctl -D $DIR/data stop"
    else
        cluster_stop "$DIR" immediate
        rm -rf "$DIR"
    fi
}
trap cleanup EXIT

q() { cluster_psql "$DIR" "$PORT" bench "$@"; }

# Wall time in ms of the statements in $1 (psql \timing: server round trip
# including commit, without connection setup), after the setup SQL in $2.
timed() {
    local sql=$1 setup=${2:-}
    q -At <<EOF | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | awk '{s += $1} END {printf "%.3f\n", s}'
$setup
\timing on
$sql
\timing off
EOF
}

median() { sort -n | awk '{v[NR] = $1} END {if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

RESULTS=()
FAILED=0
# record NAME TARGET_MS VALUES...: keep the median and whether it meets the target.
record() {
    local name=$1 target=$2; shift 2
    local med verdict
    med=$(printf '%s\n' "$@" | median)
    verdict=$(awk -v m="$med" -v t="$target" 'BEGIN {print (m <= t) ? "pass" : "FAIL"}')
    [ "$verdict" = pass ] || FAILED=1
    RESULTS+=("$(printf '%-58s | %12s | %10s | %-4s | %s' "$name" "$med" "$target" "$verdict" "$*")")
    say "$name: median $med ms (target $target ms): $verdict [runs: $*]"
}

[ "${NO_BUILD:-0}" = 1 ] || build_install

say "cluster in $DIR on port $PORT"
cluster_init "$DIR" "$PORT" \
    "shared_buffers = 4GB" \
    "work_mem = 64MB" \
    "maintenance_work_mem = 1GB" \
    "max_parallel_maintenance_workers = 2" \
    "max_wal_size = 16GB" \
    "checkpoint_timeout = 30min" \
    "effective_cache_size = 12GB" \
    "random_page_cost = 1.1"
cluster_start "$DIR"
cluster_psql "$DIR" "$PORT" postgres -c "CREATE DATABASE bench"

T0=$(date +%s)
say "generating $ROWS members and audience_members rows in $AUDIENCES audiences"
q <<EOF
CREATE EXTENSION pg_engage;
INSERT INTO engage.users (username) VALUES ('bench');
INSERT INTO engage.templates (name, type) VALUES ('bench', 'html');
INSERT INTO engage.audiences (audience_id, name)
SELECT a, 'audience ' || a FROM generate_series(1, $AUDIENCES) AS a;

-- Email of generated member g: every 5th repeats one of the 3 members before
-- it in other case/whitespace; every 97th is missing or malformed.
CREATE FUNCTION bench_base(p bigint) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN 'user' || p || '@mail' || (p % 50) || '.example.com';

CREATE FUNCTION bench_email(g bigint) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE
    WHEN g % 97 = 0 THEN (ARRAY[NULL, 'no-at-sign.example.com', 'two@@example.com', '   ',
                               'spaces in@example.com', 'user@localhost'])[1 + (g / 97) % 6]
    WHEN g % 5 = 0 THEN CASE (g / 5) % 4
        WHEN 0 THEN upper(bench_base(g - 1 - (g / 5) % 3))
        WHEN 1 THEN '  ' || bench_base(g - 1 - (g / 5) % 3) || ' '
        WHEN 2 THEN E'\t' || initcap(bench_base(g - 1 - (g / 5) % 3)) || E'\n'
        ELSE ' ' || upper(bench_base(g - 1 - (g / 5) % 3)) END
    WHEN g % 3 = 0 THEN initcap(bench_base(g))
    ELSE bench_base(g)
END;

-- Audience 1 holds the first $BIG members, the others share the rest.
CREATE FUNCTION bench_audience(g bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN g <= $BIG THEN 1
            ELSE 2 + (g - $BIG - 1) / ceil(($ROWS - $BIG) / ($AUDIENCES - 1)::numeric)::bigint END;

-- Bulk load: secondary indexes are built afterwards, and the foreign keys of
-- audience_members are not checked row by row (the generator is consistent).
SELECT string_agg(pg_get_indexdef(i.indexrelid), E';\n') || ';' AS index_defs
FROM pg_index AS i
WHERE i.indrelid IN ('engage.members'::regclass, 'engage.audience_members'::regclass)
  AND NOT i.indisprimary \gset
DROP INDEX engage.members_email_idx, engage.audience_members_dedupe_idx,
           engage.audience_members_member_idx;
\o $DIR/index_defs.sql
\qecho :index_defs
\o
EOF
# The two tables load in parallel.
q -c "INSERT INTO engage.members (member_id, email)
      SELECT g, bench_email(g) FROM generate_series(1, $ROWS) AS g" &
MEMBERS_PID=$!
q -c "ALTER TABLE engage.audience_members DISABLE TRIGGER ALL" \
  -c "INSERT INTO engage.audience_members (audience_id, member_id, email)
      SELECT bench_audience(g), g, bench_email(g) FROM generate_series(1, $ROWS) AS g" \
  -c "ALTER TABLE engage.audience_members ENABLE TRIGGER ALL"
wait $MEMBERS_PID
say "building indexes"
q -f "$DIR/index_defs.sql"
q -c "SELECT setval(pg_get_serial_sequence('engage.members', 'member_id'), $ROWS)" >/dev/null
q -c "VACUUM (ANALYZE) engage.members, engage.audience_members"
LOAD_S=$(( $(date +%s) - T0 ))
say "dataset ready in ${LOAD_S}s"

q -At -F ' ' <<'EOF' | while read -r a n dup inv distinct; do say "audience $a: $n rows, $distinct distinct valid emails, $dup duplicate rows, $inv invalid"; done
SELECT coalesce(audience_id::text, 'all'), sum(n), sum(n) - sum(inv) - count(*) FILTER (WHERE e IS NOT NULL),
       sum(inv), count(*) FILTER (WHERE e IS NOT NULL)
FROM (SELECT audience_id, engage.normalize_email(email) AS e, count(*) AS n,
             count(*) FILTER (WHERE engage.normalize_email(email) IS NULL) AS inv
      FROM engage.audience_members GROUP BY 1, 2) AS s
GROUP BY GROUPING SETS ((audience_id), ()) HAVING audience_id IS NULL OR audience_id <= 2
ORDER BY audience_id NULLS LAST;
EOF

# A new, unsent campaign on audience \$1; prints its id.
q <<'EOF'
CREATE FUNCTION bench_campaign(audience bigint) RETURNS bigint
LANGUAGE sql VOLATILE AS $$
    INSERT INTO engage.campaigns (template_id, user_id, audience_id, name)
    VALUES (1, 1, audience, 'bench ' || audience) RETURNING campaign_id
$$;
EOF

q -At -c "SELECT * FROM engage.rollup_rates()" >/dev/null     # nothing pending

# ---------------------------------------------------------------- measurements

say "pick 100 deduped members for a new campaign ($RUNS runs, audience 1 and others)"
vals=()
for i in $(seq 1 "$RUNS"); do
    a=$(( i % 2 == 1 ? 1 : (i * 23) % (AUDIENCES - 1) + 2 ))
    vals+=("$(timed 'SELECT * FROM engage.build_campaign_audience(:c, 100);' "SELECT bench_campaign($a) AS c \\gset")")
done
record "pick 100 deduped members (10M-row table)" 20 "${vals[@]}"

say "build a full campaign audience from audience 1 ($HEAVY_RUNS runs)"
FULL=()
vals=()
for i in $(seq 1 "$HEAVY_RUNS"); do
    c=$(q -At -c "SELECT bench_campaign(1)")
    FULL+=("$c")
    vals+=("$(timed "SELECT * FROM engage.build_campaign_audience($c);")")
done
ADDED=$(q -At -c "SELECT count(*) FROM engage.campaign_audience WHERE campaign_id = ${FULL[0]}")
record "build a full campaign audience ($ADDED members)" 10000 "${vals[@]}"

# Fresh full campaigns for the engagement loads (one per measured rollup, the
# ones just built first); then what autovacuum would do.
while [ ${#FULL[@]} -lt $((2 * ROLLUP_RUNS)) ]; do
    c=$(q -At -c "SELECT bench_campaign(1)")
    q -c "SELECT * FROM engage.build_campaign_audience($c)" >/dev/null
    FULL+=("$c")
done
q -c "VACUUM (ANALYZE) engage.campaign_audience, engage_internal.rollup_journal"
q -At -c "SELECT * FROM engage.rollup_rates()" >/dev/null
# From here on vacuum runs only where the script says so, not in the middle of
# a measurement: campaign_audience before each load; the journal never, so its
# consumed entries stay as dead tuples, history the rollup must not pay for.
q -c "ALTER TABLE engage.campaign_audience SET (autovacuum_enabled = off)" \
  -c "ALTER TABLE engage_internal.rollup_journal SET (autovacuum_enabled = off)"

say "rollup with nothing new ($RUNS runs)"
vals=()
for i in $(seq 1 "$RUNS"); do
    vals+=("$(timed 'SELECT * FROM engage.rollup_rates();')")
done
record "rollup with nothing new" 10 "${vals[@]}"

# $LOAD record_engagement calls, one per member of campaign $1 (60% opens, 30%
# clicks, 10% conversions over 72 hours), from two sessions at once; committed.
engagement_load() {
    local c=$1 half pids=()
    for half in 0 1; do
        q -c "SELECT count(*) FROM (
                  SELECT engage.record_engagement($c, s.member_id,
                             (ARRAY['open', 'open', 'open', 'open', 'open', 'open',
                                    'click', 'click', 'click', 'conversion'])[1 + s.member_id * 7 % 10],
                             timestamptz '2024-06-01 00:00+00' + (s.member_id * 7919 % 4320) * interval '1 minute')
                  FROM (SELECT member_id FROM engage.campaign_audience
                        WHERE campaign_id = $c ORDER BY member_id LIMIT $LOAD) AS s
                  WHERE s.member_id % 2 = $half) AS x" >/dev/null &
        pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p"; done
}

# History as the rollup could see it: engaged members, hourly rows, journal
# entries consumed so far (dead until vacuumed).
CONSUMED=0
history_size() {
    q -At -F ' ' -c "SELECT (SELECT count(*) FROM engage.campaign_audience WHERE opened),
                            (SELECT count(*) FROM engage.campaign_rates_hourly),
                            pg_size_pretty(pg_total_relation_size('engage_internal.rollup_journal'))"
}

# Load campaign $1, then time the rollup; prints "ms entries".
measured_rollup() {
    local c=$1 out ms rows
    q -c "VACUUM engage.campaign_audience"
    engagement_load "$c"
    out=$(q -At <<EOF
\timing on
SELECT processed_entries FROM engage.rollup_rates();
EOF
)
    rows=$(echo "$out" | head -n 1)
    ms=$(echo "$out" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p')
    echo "$ms $rows"
}

LEVELS=()
rollup_level() {
    local label=$1; shift
    local h vals=() c r before=$CONSUMED
    h=$(history_size)
    say "rollup after $LOAD engagement updates, history $label: $h (engaged members, hourly rows, journal size)"
    for c in "$@"; do
        r=$(measured_rollup "$c")
        say "  campaign $c: ${r% *} ms for ${r#* } journal entries"
        vals+=("${r% *}")
        CONSUMED=$((CONSUMED + ${r#* }))
    done
    record "rollup after $LOAD engagement updates, $label history" 5000 "${vals[@]}"
    read -r eng hours jsize <<<"$h"
    LEVELS+=("$(printf '%-7s | %12s | %8s | %16s | %s' "$label" "$eng" "$hours" "$before" "$(printf '%s\n' "${vals[@]}" | median)")")
}

rollup_level small "${FULL[@]:0:$ROLLUP_RUNS}"

say "growing the history: every touch of the loaded campaigns moves 30 days back"
pids=()
for c in "${FULL[@]:0:$ROLLUP_RUNS}"; do
    q -c "UPDATE engage.campaign_audience
          SET opened_at = opened_at - interval '30 days', clicked_at = clicked_at - interval '30 days',
              converted_at = converted_at - interval '30 days'
          WHERE campaign_id = $c AND opened" >/dev/null &
    pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
n=$(q -At -c "SELECT processed_entries FROM engage.rollup_rates()")
CONSUMED=$((CONSUMED + n))
say "  $n journal entries rolled up"
rollup_level large "${FULL[@]:$ROLLUP_RUNS:$ROLLUP_RUNS}"

# ---------------------------------------------------------------- report

REPORT=$(
    echo "Campaign SQL API benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "machine: $(nproc) CPUs ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n 1)), $(free -g | awk '/^Mem:/ {print $2}') GB RAM, load average $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "server: $(q -At -c 'SELECT version()' | cut -d, -f1); shared_buffers 4GB, work_mem 64MB, wal_level logical"
    echo "dataset: $ROWS audience_members rows in $AUDIENCES audiences (audience 1: $BIG rows), generated and indexed in ${LOAD_S}s"
    echo
    printf '%-58s | %12s | %10s | %-4s | %s\n' "measurement" "median ms" "target ms" "ok" "runs (ms)"
    printf '%s\n' "${RESULTS[@]}"
    echo
    printf '%-7s | %12s | %8s | %16s | %s\n' "history" "engaged rows" "hourly" "journal consumed" "rollup ms (median)"
    printf '%s\n' "${LEVELS[@]}"
)
echo "$REPORT"
mkdir -p "$ROOT/bench/out"
echo "$REPORT" > "$ROOT/bench/out/campaign-$(date -u +%Y%m%d-%H%M%S).txt"
[ "$FAILED" = 0 ] || exit 3
