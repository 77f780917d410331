#!/usr/bin/env bash
# pg_dump and restore of a database with pg_engage, in the three usual ways:
# plain format through psql, pg_restore, and pg_restore --single-transaction.
# Each restore must succeed without an error and give the source's data, its
# campaign_rates_hourly and campaign_rates; the next rollup must count nothing
# twice; activity after the restore must roll up as it does in the source; the
# extension's objects and privileges must be the source's.
#
# The restores go into another cluster whose transaction ids are far below the
# source's (pg_resetwal moves the source's ahead), as when a dump is restored
# on a new server; the roles come from pg_dumpall --globals-only, restored
# after the first restore (which must create them itself) and before the
# others.
# Usage: test/dump/run.sh   (pg_engage installed)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"

SRC_PORT=${DUMP_PORT:-55446}
DST_PORT=${DUMP_TARGET_PORT:-$((SRC_PORT + 1))}
HERE=$ROOT/test/dump
DIR=$(mktemp -d /tmp/pg_engage_dump.XXXXXX)
chmod 755 "$DIR"
SRC=$DIR/source
DST=$DIR/target
trap 'cluster_stop "$SRC" immediate; cluster_stop "$DST" immediate; rm -rf "$DIR"' EXIT
fail() { echo "dump test: FAIL: $*" >&2; exit 1; }

src() { cluster_psql "$SRC" "$SRC_PORT" "$@"; }
dst() { cluster_psql "$DST" "$DST_PORT" "$@"; }
# The state that must be equal everywhere (check.sql) of database $2 in $1 (src or dst).
state() { "$1" "$2" -At -f "$HERE/check.sql"; }
rollup() { "$1" "$2" -At -c "SELECT * FROM engage.rollup_rates()"; }

# Fails unless database $1 of the target holds what the source holds.
same_as_source() {
    local db=$1 when=$2
    diff -u <(state src engage) <(state dst "$db") >"$DIR/$db.diff" ||
        { head -n 40 "$DIR/$db.diff"; fail "$db differs from the source $when (- source, + $db)"; }
}

# Fails unless the rollups left the hourly rates as computed from scratch.
from_scratch() {
    local where=$1 db=$2
    state "$where" "$db" | grep -qx 'hourly rows not as computed from scratch: 0' ||
        fail "$db ($where): campaign_rates_hourly differs from a computation from scratch"
}

cluster_init "$SRC" "$SRC_PORT"
# Transaction ids of the source far above the target's: an id carried over
# from the source would mean nothing in the target.
as_pg "$PGBIN/pg_resetwal" -x 3145728 "$SRC/data" >/dev/null
cluster_init "$DST" "$DST_PORT"
cluster_start "$SRC"
cluster_start "$DST"

src postgres -c "CREATE DATABASE engage"
src engage -c "CREATE EXTENSION pg_engage" -f "$HERE/data.sql" >/dev/null
# A table of the application's own, renamed: the restore creates it under its
# last name, and the schema-change triggers register it.
src engage -c "CREATE SCHEMA app" -c "CREATE TABLE app.orders (id int PRIMARY KEY, note varchar(20))" \
    -c "ALTER TABLE app.orders RENAME TO orders2"
# A login role of the backend (a global, carried by pg_dumpall), and a grant
# made after CREATE EXTENSION (carried by pg_dump): rollups delegated.
src engage -c "CREATE ROLE engage_app LOGIN IN ROLE engage_writer" \
    -c "GRANT EXECUTE ON FUNCTION engage.rollup_rates() TO engage_writer"
pending=$(src engage -At -c "SELECT count(*) FROM engage_internal.rollup_journal")
[ "$pending" -gt 0 ] || fail "the source has no pending journal entries to dump"

"$PGBIN/pg_dump" -h "$SRC" -p "$SRC_PORT" -U postgres -Fp -f "$DIR/engage.sql" engage
"$PGBIN/pg_dump" -h "$SRC" -p "$SRC_PORT" -U postgres -Fc -f "$DIR/engage.dump" engage
"$PGBIN/pg_dumpall" -h "$SRC" -p "$SRC_PORT" -U postgres --globals-only -f "$DIR/globals.sql"

# Plain format through psql, stopping at the first error, into a cluster
# without the roles yet.
dst postgres -c "CREATE DATABASE r_plain"
dst r_plain -f "$DIR/engage.sql" >"$DIR/r_plain.log" 2>&1 ||
    { tail -n 20 "$DIR/r_plain.log"; fail "plain restore through psql failed"; }
# The roles and memberships (CREATE ROLE of roles that exist fails, as it does
# for the bootstrap superuser: that is how pg_dumpall's output is meant).
"$PGBIN/psql" -h "$DST" -p "$DST_PORT" -U postgres -d postgres -X -q -f "$DIR/globals.sql" >/dev/null 2>&1
dst postgres -c "CREATE DATABASE r_custom" -c "CREATE DATABASE r_single"
"$PGBIN/pg_restore" -h "$DST" -p "$DST_PORT" -U postgres -d r_custom --exit-on-error "$DIR/engage.dump" \
    2>"$DIR/r_custom.log" || { tail -n 20 "$DIR/r_custom.log"; fail "pg_restore failed"; }
"$PGBIN/pg_restore" -h "$DST" -p "$DST_PORT" -U postgres -d r_single --single-transaction "$DIR/engage.dump" \
    2>"$DIR/r_single.log" || { tail -n 20 "$DIR/r_single.log"; fail "pg_restore --single-transaction failed"; }
restored=(r_plain r_custom r_single)
registry="SELECT nspname, relname, root::regclass, fingerprint FROM engage_internal.relation_names ORDER BY 1, 2"

[ "$(dst postgres -At -c "SELECT pg_has_role('engage_app', 'engage_writer', 'USAGE')")" = t ] ||
    fail "the globals did not carry engage_app's membership in engage_writer"

for db in "${restored[@]}"; do
    same_as_source "$db" "right after the restore"
    diff -u <(src engage -At -f "$ROOT/test/upgrade/describe.sql") \
            <(dst "$db" -At -f "$ROOT/test/upgrade/describe.sql") >"$DIR/$db.objects.diff" ||
        { head -n 40 "$DIR/$db.objects.diff"; fail "$db: the extension's objects or privileges differ from the source's"; }
    # The schema-change triggers' registry is not dumped (OIDs): the restore's
    # CREATE EXTENSION and CREATE TABLE statements fill it with the same tables.
    diff -u <(src engage -At -c "$registry") <(dst "$db" -At -c "$registry") >"$DIR/$db.registry.diff" ||
        { head -n 40 "$DIR/$db.registry.diff"; fail "$db: the table-name registry differs from the source's"; }
    [ "$(dst "$db" -At -c "SELECT has_function_privilege('engage_writer', 'engage.rollup_rates()', 'EXECUTE')")" = t ] ||
        fail "$db: a grant made after CREATE EXTENSION was not restored"
done

# The next rollup: pending changes counted once, nothing restored counted again.
rollup src engage >/dev/null
from_scratch src engage
for db in "${restored[@]}"; do
    rollup dst "$db" >/dev/null
    same_as_source "$db" "after a rollup"
    from_scratch dst "$db"
done

# Activity after the restore is rolled up as in the source.
src engage -f "$HERE/more.sql" >/dev/null
rollup src engage >/dev/null
from_scratch src engage
for db in "${restored[@]}"; do
    dst "$db" -f "$HERE/more.sql" >/dev/null
    rollup dst "$db" >/dev/null
    same_as_source "$db" "after more activity and a rollup"
    from_scratch dst "$db"
    [ "$(rollup dst "$db")" = "0|0|0" ] || fail "$db: a second rollup in a row found work"
    [ "$(dst "$db" -At -c "SELECT count(*) FROM engage_internal.rollup_journal")" = 0 ] ||
        fail "$db: journal entries are left after the rollups"
done
echo "dump test: plain, pg_restore and pg_restore --single-transaction give the source's data and rates; the next rollups count everything once"
