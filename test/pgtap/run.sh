#!/usr/bin/env bash
# Run the pgTAP suites in test/pgtap with pg_prove against database $1.
#
#   PGHOST=... PGPORT=... PGUSER=... test/pgtap/run.sh DATABASE
#
# The database must already have CREATE EXTENSION pgtap and pg_engage.
# concurrency.sql and privileges.sql open extra sessions with dblink (contrib;
# they create the extension if missing and drop it again) through the server's
# socket directory and port, as the current user, so that user must be able to
# log in without a password (trust, peer) and be a superuser for dblink.
# privileges.sql creates roles in a transaction it rolls back.  The
# schedule_rollups tests use pg_cron when the server preloads it for this
# database (cron.database_name) and skip those checks otherwise.
# Exit status: non-zero when any test fails.
set -euo pipefail

db=${1:?usage: test/pgtap/run.sh DATABASE}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

shopt -s nullglob
suites=("$here"/*.sql)
[ ${#suites[@]} -gt 0 ] || { echo "run.sh: no pgTAP suites in $here" >&2; exit 1; }

pg_prove --dbname "$db" --ext .sql "${suites[@]}"
