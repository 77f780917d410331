/*
 * launcher.c
 *		Starts the shipper, and starts it again when it stops, with backoff.
 *
 * The launcher connects to no database.  It starts the shipper only once
 * engage.database exists, so a missing database is a visible status, not a
 * worker that fails and restarts in a loop.  Terminated while the server runs
 * (pg_terminate_backend), it exits with status 1 so that the postmaster starts
 * it again; on a server shutdown it exits with 0.
 */
#include "engage.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "utils/snapmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/fd.h"
#include "utils/guc.h"
#include "utils/pidfile.h"
#include "utils/timestamp.h"

PGDLLEXPORT void engage_launcher_main(Datum arg);

/* Runs the shipper this long without stopping to count as healthy. */
#define HEALTHY_RUN_MS 60000
#define MAX_BACKOFF_MS 60000

/* Registers the launcher with the postmaster (from _PG_init). */
void
engage_register_launcher(void)
{
	BackgroundWorker worker = {0};

	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 1;
	strlcpy(worker.bgw_library_name, "pg_engage", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "engage_launcher_main", BGW_MAXLEN);
	strlcpy(worker.bgw_name, "pg_engage launcher", BGW_MAXLEN);
	strlcpy(worker.bgw_type, "pg_engage launcher", BGW_MAXLEN);
	RegisterBackgroundWorker(&worker);
}

/*
 * Does the database named engage.database exist?  Without a database of its
 * own the launcher can only scan pg_database itself, as autovacuum does.
 */
static bool
database_exists(void)
{
	bool		exists = false;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;

	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while (!exists && (tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
		exists = strcmp(NameStr(((Form_pg_database) GETSTRUCT(tup))->datname),
						engage_database) == 0;
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	return exists;
}

/* Starts the shipper as a dynamic worker; NULL if no slot was free. */
static BackgroundWorkerHandle *
start_shipper(void)
{
	BackgroundWorker worker = {0};
	BackgroundWorkerHandle *handle = NULL;

	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	worker.bgw_notify_pid = MyProcPid;
	strlcpy(worker.bgw_library_name, "pg_engage", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "engage_shipper_main", BGW_MAXLEN);
	strlcpy(worker.bgw_name, "pg_engage shipper", BGW_MAXLEN);
	strlcpy(worker.bgw_type, "pg_engage shipper", BGW_MAXLEN);
	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
		return NULL;
	return handle;
}

/* True while the shipper behind handle runs. */
static bool
shipper_running(BackgroundWorkerHandle *handle)
{
	pid_t		pid;

	return handle != NULL && GetBackgroundWorkerPid(handle, &pid) != BGWH_STOPPED;
}

/* Stops the shipper and waits for it. */
static void
stop_shipper(BackgroundWorkerHandle *handle)
{
	if (handle == NULL)
		return;
	TerminateBackgroundWorker(handle);
	(void) WaitForBackgroundWorkerShutdown(handle);
}

/* Tries to start the shipper; returns its handle or NULL (status explains). */
static BackgroundWorkerHandle *
try_start(void)
{
	static bool reported_missing = false;
	BackgroundWorkerHandle *handle;

	if (!database_exists())
	{
		char		msg[NAMEDATALEN + 64];

		snprintf(msg, sizeof(msg), "database \"%s\" (engage.database) does not exist",
				 engage_database);
		engage_status_set_state(SHIPPER_WAITING_FOR_DATABASE);
		engage_status_set_error(msg);
		/* Said once, not at every check. */
		if (!reported_missing)
			ereport(LOG, (errmsg("pg_engage launcher: %s", msg),
						  errhint("Create the database or change engage.database and reload.")));
		reported_missing = true;
		return NULL;
	}
	reported_missing = false;
	handle = start_shipper();
	if (handle == NULL)
		engage_status_set_error("no background worker slot is free for the shipper (max_worker_processes)");
	return handle;
}

/*
 * Is the server shutting down?  The postmaster writes "stopping" into the
 * status line of postmaster.pid before it signals its children, which tells a
 * shutdown from a pg_terminate_backend().
 */
static bool
server_is_stopping(void)
{
	FILE	   *file = AllocateFile("postmaster.pid", "r");
	char		line[MAXPGPATH];
	bool		stopping = false;

	if (file == NULL)
		return false;
	for (int n = 1; fgets(line, sizeof(line), file) != NULL; n++)
		if (n == LOCK_FILE_LINE_PM_STATUS)
			stopping = strncmp(line, PM_STATUS_STOPPING, strlen(PM_STATUS_STOPPING)) == 0;
	FreeFile(file);
	return stopping;
}

/* Entry point of the launcher worker. */
void
engage_launcher_main(Datum arg)
{
	BackgroundWorkerHandle *handle = NULL;
	TimestampTz started = 0;
	TimestampTz next_start = 0;
	int			backoff_ms = 1000;
	char		database[NAMEDATALEN];

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	strlcpy(database, engage_database, sizeof(database));

	while (!ShutdownRequestPending)
	{
		TimestampTz now = GetCurrentTimestamp();

		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			if (!engage_enabled || strcmp(database, engage_database) != 0)
			{
				stop_shipper(handle);
				if (handle)
					pfree(handle);
				handle = NULL;
				next_start = 0;
				strlcpy(database, engage_database, sizeof(database));
			}
		}
		if (handle != NULL && !shipper_running(handle))
		{
			/* It stopped: start it again later, sooner if it had run well. */
			backoff_ms = TimestampDifferenceExceeds(started, now, HEALTHY_RUN_MS) ?
				1000 : Min(backoff_ms * 2, MAX_BACKOFF_MS);
			next_start = TimestampTzPlusMilliseconds(now, backoff_ms);
			pfree(handle);
			handle = NULL;
		}
		if (handle == NULL && engage_enabled && now >= next_start)
		{
			handle = try_start();
			started = now;
			if (handle == NULL)
				next_start = TimestampTzPlusMilliseconds(now, 5000);
		}
		if (!engage_enabled)
			engage_status_set_state(SHIPPER_STOPPED);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 1000, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	stop_shipper(handle);
	/* Terminated while the server runs: the postmaster starts it again. */
	proc_exit(server_is_stopping() ? 0 : 1);
}
