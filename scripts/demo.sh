#!/usr/bin/env bash
# The main job, end to end: a throwaway PostgreSQL with the pg_engage shipper
# and a local Kafka broker; John sends the "flowers" campaign to the 100 finance
# bros in NYC, some open, click and convert, and every change arrives in Kafka.
# Then one pipeline cycle (pipeline/README.md) lands the topics into a local
# directory and builds a DuckDB warehouse, and John's campaign_performance row
# is printed. Usage: scripts/demo.sh        (KEEP=1 leaves the servers and files)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PORT=${DEMO_PG_PORT:-55440}
KAFKA_PORT=${DEMO_KAFKA_PORT:-19092}
WORK=$(mktemp -d /tmp/pg_engage_demo.XXXXXX)
chmod 755 "$WORK"
BROKER=127.0.0.1:$KAFKA_PORT

# Stops the servers unless KEEP=1.
cleanup() {
    if [ -n "${KEEP:-}" ]; then
        say "servers kept: psql -h $WORK -p $PORT -U postgres engage; broker $BROKER"
        return
    fi
    cluster_stop "$WORK/pg"
    "$ROOT/scripts/kafka.sh" stop "$WORK/kafka" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# psql on the demo database.
sql() { cluster_psql "$WORK/pg" "$PORT" engage "$@"; }

# Starts Kafka and PostgreSQL with the shipper pointed at it.
start_servers() {
    "$ROOT/scripts/kafka.sh" fetch >/dev/null
    "$ROOT/scripts/kafka.sh" start "$WORK/kafka" "$KAFKA_PORT" >/dev/null
    cluster_init "$WORK/pg" "$PORT" "shared_preload_libraries = 'pg_engage'" \
        "engage.database = 'engage'" "engage.brokers = '$BROKER'"
    cluster_start "$WORK/pg"
    cluster_psql "$WORK/pg" "$PORT" postgres -c "CREATE DATABASE engage"
    sql -c "CREATE EXTENSION pg_engage"
    # The shipper sends what commits after its slot exists: wait for it.
    wait_until "the shipper to start" "SELECT state = 'running' FROM engage.shipper"
}

# Polls a boolean query until it is true, for up to 60 seconds.
wait_until() {
    local what=$1 query=$2 deadline=$((SECONDS + 60))
    until [ "$(sql -Atc "$query")" = t ]; do
        [ $SECONDS -lt $deadline ] || { sql -xc "TABLE engage.shipper"; die "timed out waiting for $what"; }
        sleep 0.2
    done
}

# Waits until the shipper has confirmed everything written so far.
wait_for_shipper() {
    wait_until "the shipper to catch up" "SELECT state = 'running' AND in_flight = 0 AND
        confirmed_lsn >= pg_current_wal_flush_lsn() FROM engage.shipper"
}

# The example from the design notes.
play_campaign() {
    sql <<'SQL'
INSERT INTO engage.users (user_id, username, department, contact)
VALUES (1233456, 'john', 'Sales', 'john@engage.example');
INSERT INTO engage.templates (template_id, name, type) VALUES (1, 'Spring bouquet', 'flowers');
INSERT INTO engage.audiences (audience_id, name, segment_types, location_type)
VALUES (5, 'finance bros in NYC', '{finance,young}', 'cities');
-- 110 members; 10 of them share an email with another member (case and spaces differ).
INSERT INTO engage.members (member_id, name, email)
SELECT g, 'member ' || g,
       CASE WHEN g > 100 THEN '  Bro' || (g - 100) || '@Finance.example ' ELSE 'bro' || g || '@finance.example' END
FROM generate_series(1, 110) g;
INSERT INTO engage.audience_members (audience_id, member_id, email)
SELECT 5, member_id, email FROM engage.members;
INSERT INTO engage.campaigns (campaign_id, template_id, user_id, audience_id, name, send_at)
VALUES (1, 1, 1233456, 5, 'Governor''s Ball', '2026-06-06 18:00+00');
SQL
    say "building the audience (deduped on email)"
    sql -c "SELECT * FROM engage.build_campaign_audience(1, 100)"
    sql <<'SQL'
BEGIN;
UPDATE engage.campaigns SET sent = true WHERE campaign_id = 1;
SELECT engage.emit('campaign.sent', '1',
    jsonb_build_object('campaign_id', 1, 'audience', (SELECT count(*) FROM engage.campaign_audience WHERE campaign_id = 1)));
COMMIT;
-- A write that rolls back sends nothing.
BEGIN;
SELECT engage.emit('campaign.sent', 'rolled-back', '{"never": "published"}');
ROLLBACK;
SELECT count(*) AS engagements FROM (
    SELECT engage.record_engagement(1, member_id, kind, '2026-06-06 18:05+00'::timestamptz + member_id * interval '1 minute')
    FROM engage.campaign_audience,
         LATERAL (VALUES ('open'), ('click'), ('conversion')) k(kind)
    WHERE campaign_id = 1
      AND ((kind = 'open' AND member_id % 2 = 0) OR (kind = 'click' AND member_id % 5 = 0)
           OR (kind = 'conversion' AND member_id % 20 = 0))) t;
SQL
}

# Shows what arrived in Kafka, the shipper status and the campaign's rates.
show_results() {
    say "events per topic in Kafka ($BROKER)"
    for topic in $(kcat -b "$BROKER" -L 2>/dev/null | sed -n 's/^ *topic "\(engage[.-][^"]*\)".*/\1/p' | sort); do
        printf '  %-28s %s\n' "$topic" "$(kcat -b "$BROKER" -C -t "$topic" -e -q -f '%k\n' 2>/dev/null | wc -l)"
    done
    say "the application event and a few row events, as consumers see them"
    kcat -b "$BROKER" -C -t engage-app.campaign.sent -e -q -f 'key=%k headers=%h\n  %s\n' 2>/dev/null
    kcat -b "$BROKER" -C -t engage.campaigns -e -q -f 'key=%k\n  %s\n' 2>/dev/null | tail -n 2
    kcat -b "$BROKER" -C -t engage.campaign_audience -e -q -f 'key=%k\n  %s\n' -c 2 2>/dev/null
    say "shipper status"
    sql -xc "SELECT state, confirmed_lsn, lag_bytes, events_shipped, bytes_shipped, in_flight, broker_reachable FROM engage.shipper"
    say "campaign rates"
    sql -xc "SELECT * FROM engage.campaign_rates(1)"
}

# One hourly cycle of the pipeline: Kafka -> landing directory -> DuckDB warehouse (dbt).
run_pipeline() {
    pipeline_env
    say "one pipeline cycle: land the topics in $WORK/landing, load and dbt build into $WORK/warehouse.duckdb"
    (cd "$ROOT" && ENGAGE_WH_TYPE=duckdb ENGAGE_WH_PATH="$WORK/warehouse.duckdb" \
        "$PYTHON" -m pipeline.cycle --bootstrap "$BROKER" --landing "$WORK/landing" \
            --lock-file "$WORK/cycle.lock" --dbt-work-dir "$WORK/dbt") ||
        die "the pipeline cycle failed"
    say "landed objects (raw/topic=<topic>/dt=<day>/hour=<hour>/<topic>-<partition>-<first offset>.jsonl.gz)"
    (cd "$WORK/landing" && find raw -name '*.jsonl.gz' | sort | sed -n '1,4p;5s/.*/  .../p' | sed 's/^raw/  raw/')
    say "campaign_performance of John's campaign in the warehouse (same rates as engage.campaign_rates(1) above)"
    "$PYTHON" - "$WORK/warehouse.duckdb" <<'PY'
import sys
import duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
cur = con.execute("select * exclude (_batch) from engage_wh.campaign_performance where campaign_id = 1")
names, row = [d[0] for d in cur.description], cur.fetchone()
width = max(map(len, names))
for name, value in zip(names, row):
    print(f"  {name:<{width}}  {value}")
PY
}

main() {
    ensure_packages
    build_install
    start_servers
    play_campaign
    wait_for_shipper
    show_results
    run_pipeline
}

main "$@"
