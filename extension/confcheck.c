/*
 * confcheck.c
 *		Refuses to ship with a configuration the operator did not write.
 *
 * When an engage.* line of the configuration files cannot be applied (a
 * value its check refuses, a misspelt name), PostgreSQL only warns: at start
 * it goes on with the default, at a reload with the previous value.  Either
 * way the shipper would send events to other topics, or without the SASL
 * settings, than the operator wrote.  So every session starts by asking
 * pg_show_all_file_settings() (the configuration files as they are now,
 * validated) whether an engage.* line failed; if one did, the shipper does
 * not run until it is fixed and the configuration reloaded.  The message
 * names the setting, file and line, never the value (it may be a secret).
 */
#include "engage.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/snapmgr.h"

/* The first engage.* line of the configuration files that failed, if any. */
static const char *const failed_line_query =
	"SELECT f.name, f.sourcefile, f.sourceline, f.error "
	"FROM pg_catalog.pg_show_all_file_settings() AS f "
	"WHERE f.error IS NOT NULL AND pg_catalog.starts_with(f.name, 'engage.') "
	"ORDER BY f.seqno LIMIT 1";

/* Describes the failed line of the query's only row, in the caller's context. */
static char *
describe_failed_line(MemoryContext cxt)
{
	HeapTuple	row = SPI_tuptable->vals[0];
	TupleDesc	desc = SPI_tuptable->tupdesc;
	char	   *name = SPI_getvalue(row, desc, 1);
	char	   *file = SPI_getvalue(row, desc, 2);
	char	   *line = SPI_getvalue(row, desc, 3);
	char	   *error = SPI_getvalue(row, desc, 4);

	return MemoryContextStrdup(cxt, psprintf(
		"setting %s in \"%s\" line %s could not be applied (%s); the shipper does not run "
		"with a configuration other than the one written: fix it (the server log says why "
		"it was refused), then reload",
		name, file ? file : "?", line ? line : "?", error));
}

/*
 * NULL when every engage.* line of the configuration files applies, else a
 * description of the first one that does not (allocated in the caller's
 * memory context).  Runs its own transaction.
 */
char *
engage_config_problem(void)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	char	   *problem = NULL;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (SPI_execute(failed_line_query, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read pg_show_all_file_settings()");
	if (SPI_processed > 0)
		problem = describe_failed_line(cxt);
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	CurrentResourceOwner = owner;
	MemoryContextSwitchTo(cxt);
	return problem;
}
