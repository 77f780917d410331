#!/usr/bin/env bash
# ALTER EXTENSION pg_engage UPDATE from the previous release, with data in it:
# the updated database must hold the same data and rates, work, and consist of
# exactly what a fresh install of the current release consists of.
# The previous release's install script is rebuilt from its commit in git
# history (releases below) and installed beside the current one.
# Usage: test/upgrade/run.sh   (pg_engage installed; a clone with history)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"

PORT=${UPGRADE_PORT:-55445}
HERE=$ROOT/test/upgrade
FROM=${UPGRADE_FROM:-0.1.0}
# The commit of each release.
declare -A RELEASES=([0.1.0]=7f81dc8 [0.2.0]=e3be130 [0.3.0]=44970dc)
TO=$(sed -n "s/^default_version = '\(.*\)'/\1/p" "$ROOT/pg_engage.control")
DIR=$(mktemp -d /tmp/pg_engage_upgrade.XXXXXX)
chmod 755 "$DIR"
trap 'cluster_stop "$DIR" immediate; rm -rf "$DIR"' EXIT
fail() { echo "upgrade test: FAIL: $*" >&2; exit 1; }

# Installs the install script of release $FROM, as its commit built it.
install_previous() {
    local commit=${RELEASES[$FROM]:-} parts
    [ -n "$commit" ] || fail "no commit known for release $FROM"
    git -C "$ROOT" cat-file -e "$commit^{commit}" 2>/dev/null ||
        fail "commit $commit of release $FROM is not in this clone (a shallow clone? fetch its history)"
    parts=$(git -C "$ROOT" ls-tree --name-only "$commit" extension/sql/ | sort)
    for p in $parts; do git -C "$ROOT" show "$commit:$p"; done \
        >"$("$PGBIN/pg_config" --sharedir)/extension/pg_engage--$FROM.sql"
}

install_previous
cluster_init "$DIR" "$PORT" "shared_preload_libraries = 'pg_engage'" "engage.enabled = off"
cluster_start "$DIR"
sql() { local db=$1; shift; cluster_psql "$DIR" "$PORT" "$db" -At "$@"; }

sql postgres -c "CREATE DATABASE upgraded" -c "CREATE DATABASE fresh"
sql upgraded -c "CREATE EXTENSION pg_engage VERSION '$FROM'" -f "$HERE/data.sql" >/dev/null
sql fresh -c "CREATE EXTENSION pg_engage" -f "$HERE/data.sql" >/dev/null

rates="SELECT campaign_id, hour, new_opens, new_clicks, new_conversions, cum_opens, cum_clicks,
              cum_conversions, audience_size FROM engage.campaign_rates_hourly ORDER BY 1, 2"
live="SELECT * FROM engage.campaign_rates(7)"
rows="SELECT (SELECT count(*) FROM engage.members), (SELECT count(*) FROM engage.campaign_audience),
             (SELECT count(*) FILTER (WHERE opened) FROM engage.campaign_audience)"
before=$(sql upgraded -c "$rates" -c "$live" -c "$rows")

sql upgraded -c "ALTER EXTENSION pg_engage UPDATE" >/dev/null
version=$(sql upgraded -c "SELECT extversion FROM pg_extension WHERE extname = 'pg_engage'")
[ "$version" = "$TO" ] || fail "version after the update is $version, not $TO"

after=$(sql upgraded -c "$rates" -c "$live" -c "$rows")
[ "$before" = "$after" ] || fail "data or rates changed by the update:
$(diff <(echo "$before") <(echo "$after"))"

# What is pending in the journal rolls up the same way in both databases.
sql upgraded -c "SELECT * FROM engage.rollup_rates()" >/dev/null
sql fresh -c "SELECT * FROM engage.rollup_rates()" >/dev/null
[ "$(sql upgraded -c "$rates" -c "$live")" = "$(sql fresh -c "$rates" -c "$live")" ] ||
    fail "rates after a rollup differ between the updated and a fresh database"

# It works: an event, the status view, a new campaign built.
sql upgraded -c "SELECT engage.emit('upgrade.check', 'k', '{}')" >/dev/null || fail "engage.emit failed"
sql upgraded -c "SELECT state, sessions FROM engage.shipper" >/dev/null || fail "engage.shipper failed"
# ... and through the roles the update created.
sql upgraded -c "SET ROLE engage_writer" -c "SELECT engage.record_engagement(7, 2, 'click', '2026-06-08 10:00+00')" \
    -c "SELECT engage.emit('upgrade.check', 'k', '{}')" >/dev/null || fail "engage_writer cannot use the API"
sql upgraded -c "SET ROLE engage_monitor" -c "SELECT state FROM engage.shipper" >/dev/null ||
    fail "engage_monitor cannot read engage.shipper"

# The schema-change triggers' registry (0.4.0) knows the same tables, with
# the same fingerprints, whether seeded by the update or filled by CREATE
# TABLE after a fresh install.
registry="SELECT nspname, relname, root::regclass, fingerprint FROM engage_internal.relation_names ORDER BY 1, 2"
if [ "$(sql fresh -c "$registry" | wc -l)" -gt 0 ]; then
    diff -u <(sql fresh -c "$registry") <(sql upgraded -c "$registry") >"$DIR/registry.diff" ||
        { head -n 40 "$DIR/registry.diff"; fail "the updated registry differs from a fresh install's (- fresh, + updated)"; }
fi

sql fresh -f "$HERE/describe.sql" >"$DIR/fresh.txt" || fail "could not describe the fresh install"
sql upgraded -f "$HERE/describe.sql" >"$DIR/upgraded.txt" || fail "could not describe the updated install"
grep -q '^function engage.emit' "$DIR/fresh.txt" || fail "the description lists no engage.emit"
if ! diff -u "$DIR/fresh.txt" "$DIR/upgraded.txt" >"$DIR/objects.diff"; then
    head -n 80 "$DIR/objects.diff"
    fail "the updated extension differs from a fresh install (diff above: - fresh, + updated)"
fi
echo "upgrade test: $FROM -> $TO with data: same data and rates, same objects as a fresh install"
