/*
 * snapshotreq.c
 *		Snapshot requests and their progress, in engage_internal.snapshots
 *		(extension/sql/55_snapshots.sql), as the shipper reads and writes
 *		them; and the SQL-callable rule of which tables are captured.
 *
 * The functions that take no transaction of their own run in the caller's,
 * with SPI connected (snapshot.c).
 */
#include "engage.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

PG_FUNCTION_INFO_V1(engage_table_is_captured);

/* SQL: is schema.table selected by engage.tables? */
Datum
engage_table_is_captured(PG_FUNCTION_ARGS)
{
	static char *parsed_value = NULL;
	static EngageTableList list;
	const char *hint;

	/* engage.tables was checked when set: it parses. */
	if (parsed_value == NULL || strcmp(parsed_value, engage_tables) != 0)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		if (engage_parse_table_list(engage_tables, &list, &hint) != NULL)
			elog(ERROR, "engage.tables does not parse");
		parsed_value = pstrdup(engage_tables);
		MemoryContextSwitchTo(old);
	}
	PG_RETURN_BOOL(engage_table_list_matches(&list, text_to_cstring(PG_GETARG_TEXT_PP(0)),
											 text_to_cstring(PG_GETARG_TEXT_PP(1))));
}

/* Runs query (with SPI connected) and returns SPI's result code. */
static int
run(const char *query, int nargs, Oid *types, Datum *values, bool read_only)
{
	return SPI_execute_with_args(query, nargs, types, values, NULL, read_only, 0);
}

/* Is engage_internal.snapshots there (pg_engage 0.4.0 or later installed)? */
bool
snapshot_table_exists(void)
{
	bool		isnull;

	if (run("SELECT pg_catalog.to_regclass('engage_internal.snapshots') IS NOT NULL",
			0, NULL, NULL, true) != SPI_OK_SELECT)
		elog(ERROR, "could not look for engage_internal.snapshots");
	return DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * Does a captured table hold any row?  Asked without pg_engage's SQL objects
 * (before CREATE EXTENSION), so the rule is applied here.
 */
bool
snapshot_captured_rows_exist(void)
{
	EngageTableList list;
	const char *hint;

	if (engage_parse_table_list(engage_tables, &list, &hint) != NULL)
		elog(ERROR, "engage.tables does not parse");
	if (run("SELECT n.nspname::text, c.relname::text, pg_catalog.quote_ident(n.nspname) || '.' || "
			"pg_catalog.quote_ident(c.relname) "
			"FROM pg_catalog.pg_class AS c JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace "
			"WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND c.relpersistence = 'p' "
			"AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast'",
			0, NULL, NULL, true) != SPI_OK_SELECT)
		elog(ERROR, "could not list the captured tables");
	{
		SPITupleTable *tables = SPI_tuptable;
		uint64		n = SPI_processed;

		for (uint64 i = 0; i < n; i++)
		{
			HeapTuple	row = tables->vals[i];

			if (!engage_table_list_matches(&list, SPI_getvalue(row, tables->tupdesc, 1),
										   SPI_getvalue(row, tables->tupdesc, 2)))
				continue;
			if (run(psprintf("SELECT FROM %s LIMIT 1", SPI_getvalue(row, tables->tupdesc, 3)),
					0, NULL, NULL, true) != SPI_OK_SELECT)
				elog(ERROR, "could not read a captured table");
			if (SPI_processed > 0)
				return true;
		}
	}
	return false;
}

/*
 * Requests snapshots of every captured table for reason, in a transaction
 * of its own.  With restart, open snapshots are cancelled first, so that
 * every table is read again from its start: after a slot loss the chunks an
 * open snapshot read before the gap may hold rows the gap changed.  Returns
 * NULL, or why it cannot: pg_engage is not installed while a captured table
 * has rows.
 */
char *
snapshot_request_all(const char *reason, bool restart)
{
	Datum		arg = CStringGetTextDatum(reason);
	Oid			type = TEXTOID;
	char	   *problem = NULL;
	MemoryContext cxt = CurrentMemoryContext;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (snapshot_table_exists())
	{
		if (restart && run("UPDATE engage_internal.snapshots SET state = 'cancelled', finished_at = now(), "
						   "error = 'the slot was lost while it was open: a new snapshot reads the table again' "
						   "WHERE state IN ('pending', 'running')", 0, NULL, NULL, false) != SPI_OK_UPDATE)
			elog(ERROR, "could not cancel the open snapshots");
		if (restart && SPI_processed > 0)
			ereport(LOG, (errmsg("pg_engage shipper: cancelled %llu open snapshots, to read their tables again from the start",
								 (unsigned long long) SPI_processed)));
		if (run("SELECT engage_internal.request_snapshots($1, NULL, false)", 1, &type, &arg,
				false) != SPI_OK_SELECT)
			elog(ERROR, "could not request snapshots");
		ereport(LOG, (errmsg("pg_engage shipper: requested a snapshot (%s) of %llu captured tables",
							 reason, (unsigned long long) SPI_processed)));
	}
	else if (snapshot_captured_rows_exist())
		problem = MemoryContextStrdup(TopMemoryContext,
									  psprintf("a %s snapshot of the captured tables needs pg_engage 0.4.0 or later "
											   "in database \"%s\" (CREATE EXTENSION pg_engage, or ALTER EXTENSION "
											   "pg_engage UPDATE), or engage.snapshot_mode = never",
											   reason, engage_database));
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
	MemoryContextSwitchTo(cxt);
	return problem;
}

/*
 * Reads the oldest open snapshot request into req; false when there is none
 * (or pg_engage's table is not there).
 */
bool
snapshot_next_request(SnapshotRequest *req, MemoryContext cxt)
{
	bool		isnull;
	Datum		key;
	HeapTuple	row;

	if (!snapshot_table_exists())
		return false;
	if (run("SELECT id, relid, last_key, table_name, reason FROM engage_internal.snapshots "
			"WHERE state IN ('pending', 'running') ORDER BY id LIMIT 1",
			0, NULL, NULL, true) != SPI_OK_SELECT)
		elog(ERROR, "could not read the snapshot requests");
	if (SPI_processed == 0)
		return false;
	row = SPI_tuptable->vals[0];
	memset(req, 0, sizeof(*req));
	req->id = DatumGetInt64(SPI_getbinval(row, SPI_tuptable->tupdesc, 1, &isnull));
	req->relid = DatumGetObjectId(SPI_getbinval(row, SPI_tuptable->tupdesc, 2, &isnull));
	req->table = MemoryContextStrdup(cxt, SPI_getvalue(row, SPI_tuptable->tupdesc, 4));
	req->reason = MemoryContextStrdup(cxt, SPI_getvalue(row, SPI_tuptable->tupdesc, 5));
	key = SPI_getbinval(row, SPI_tuptable->tupdesc, 3, &isnull);
	if (!isnull)
	{
		Datum	   *elems;
		int			n;
		MemoryContext old = MemoryContextSwitchTo(cxt);

		deconstruct_array(DatumGetArrayTypeP(key), TEXTOID, -1, false, TYPALIGN_INT,
						  &elems, NULL, &n);
		req->last_key = palloc(sizeof(char *) * n);
		for (int i = 0; i < n; i++)
			req->last_key[i] = TextDatumGetCString(elems[i]);
		req->nkeys = n;
		MemoryContextSwitchTo(old);
	}
	return true;
}

/* The state of snapshot request id ("pending", ...), or NULL when it is gone. */
char *
snapshot_request_state(int64 id)
{
	Datum		arg = Int64GetDatum(id);
	Oid			type = INT8OID;

	if (run("SELECT state FROM engage_internal.snapshots WHERE id = $1", 1, &type, &arg,
			true) != SPI_OK_SELECT)
		elog(ERROR, "could not read a snapshot request");
	if (SPI_processed == 0)
		return NULL;
	return SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
}

/* Marks request id running, from now unless it had started before. */
void
snapshot_mark_running(int64 id)
{
	Datum		arg = Int64GetDatum(id);
	Oid			type = INT8OID;

	if (run("UPDATE engage_internal.snapshots SET state = 'running', "
			"started_at = COALESCE(started_at, pg_catalog.now()) WHERE id = $1 AND state = 'pending'",
			1, &type, &arg, false) != SPI_OK_UPDATE)
		elog(ERROR, "could not update a snapshot request");
}

/*
 * Records that Kafka acknowledged rows more rows of request id up to the
 * key last_key (nkeys texts) in one more chunk; with done, that the table's
 * end was reached.
 */
void
snapshot_record_progress(int64 id, char **last_key, int nkeys, int64 rows, bool done)
{
	Datum		args[4] = {Int64GetDatum(id), (Datum) 0, Int64GetDatum(rows), BoolGetDatum(done)};
	Oid			types[4] = {INT8OID, TEXTARRAYOID, INT8OID, BOOLOID};
	char		nulls[4] = "    ";

	/* A chunk without rows keeps the last key ($2 NULL). */
	if (last_key == NULL)
		nulls[1] = 'n';
	else
	{
		Datum	   *elems = palloc(sizeof(Datum) * nkeys);

		for (int i = 0; i < nkeys; i++)
			elems[i] = CStringGetTextDatum(last_key[i]);
		args[1] = PointerGetDatum(construct_array(elems, nkeys, TEXTOID, -1, false, TYPALIGN_INT));
	}
	if (SPI_execute_with_args("UPDATE engage_internal.snapshots SET last_key = COALESCE($2, last_key), "
							  "rows_read = rows_read + $3, chunks = chunks + 1, "
							  "state = CASE WHEN $4 THEN 'done' ELSE state END, "
							  "finished_at = CASE WHEN $4 THEN pg_catalog.now() END "
							  "WHERE id = $1 AND state = 'running'",
							  4, types, args, nulls, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not record the progress of a snapshot");
}

/* Marks request id failed for the reason error. */
void
snapshot_record_failure(int64 id, const char *error)
{
	Datum		args[2] = {Int64GetDatum(id), CStringGetTextDatum(error)};
	Oid			types[2] = {INT8OID, TEXTOID};

	if (run("UPDATE engage_internal.snapshots SET state = 'failed', error = $2, "
			"finished_at = pg_catalog.now() WHERE id = $1 AND state IN ('pending', 'running')",
			2, types, args, false) != SPI_OK_UPDATE)
		elog(ERROR, "could not record the failure of a snapshot");
}
