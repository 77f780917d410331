/*
 * status.c
 *		The shipper's status in shared memory, and engage.shipper_status().
 */
#include "engage.h"

#include "access/htup_details.h"
#include "access/xlog.h"
#include "access/xlog_internal.h"
#include "access/xlogrecovery.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "replication/slot.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/pg_lsn.h"
#include "utils/timestamp.h"

static EngageStatus *status = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* Asks for the shared memory of the status (from the shmem request hook). */
void
engage_status_request(void)
{
	RequestAddinShmemSpace(MAXALIGN(sizeof(EngageStatus)));
}

/* Creates or attaches the status in shared memory. */
static void
status_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	status = ShmemInitStruct("pg_engage status", sizeof(EngageStatus), &found);
	if (!found)
	{
		memset(status, 0, sizeof(EngageStatus));
		SpinLockInit(&status->mutex);
		status->state = SHIPPER_STOPPED;
		status->broker_state = -1;
	}
	LWLockRelease(AddinShmemInitLock);
}

/* Installs the shared memory startup hook (from _PG_init). */
void
engage_status_startup(void)
{
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = status_shmem_startup;
}

/* Sets the shipper's state. */
void
engage_status_set_state(EngageShipperState state)
{
	SpinLockAcquire(&status->mutex);
	status->state = state;
	SpinLockRelease(&status->mutex);
}

/* Records the shipper's pid, start time and latch (pid 0: not running). */
void
engage_status_set_pid(int pid)
{
	SpinLockAcquire(&status->mutex);
	status->pid = pid;
	status->started_at = pid ? GetCurrentTimestamp() : 0;
	status->shipper_latch = pid ? MyLatch : NULL;
	SpinLockRelease(&status->mutex);
}

/*
 * Wakes the shipper (from a committing backend): its WAL is flushed, so
 * there may be events to ship now rather than at the next poll.  Read
 * without the lock, on every commit: a pointer is read whole, and a stale one
 * still points at a latch in shared memory (the worst is a spurious wakeup).
 */
void
engage_status_wake_shipper(void)
{
	struct Latch *latch;

	if (status == NULL)
		return;
	latch = ((volatile EngageStatus *) status)->shipper_latch;
	if (latch != NULL)
		SetLatch(latch);
}

/* Clears the pid when the worker exits, however it exits (before_shmem_exit). */
void
engage_status_clear_pid(int code, Datum arg)
{
	if (status == NULL)
		return;
	SpinLockAcquire(&status->mutex);
	if (status->pid == MyProcPid)
	{
		status->pid = 0;
		status->started_at = 0;
		status->shipper_latch = NULL;
		status->in_flight = 0;
		status->broker_state = -1;
	}
	SpinLockRelease(&status->mutex);
}

/* Records the current trouble and its time. */
void
engage_status_set_error(const char *error)
{
	SpinLockAcquire(&status->mutex);
	strlcpy(status->last_error, error, sizeof(status->last_error));
	status->last_error_at = GetCurrentTimestamp();
	status->error_resolved_at = 0;
	SpinLockRelease(&status->mutex);
}

/* Marks the last error as resolved (the trouble is over), once. */
void
engage_status_resolved(void)
{
	SpinLockAcquire(&status->mutex);
	if (status->last_error[0] != '\0' && status->error_resolved_at == 0)
		status->error_resolved_at = GetCurrentTimestamp();
	SpinLockRelease(&status->mutex);
}

/* Adds shipped events and bytes, and sets the number in flight. */
void
engage_status_shipped(int64 events, int64 bytes, int64 in_flight)
{
	SpinLockAcquire(&status->mutex);
	status->events_shipped += events;
	status->bytes_shipped += bytes;
	status->in_flight = in_flight;
	SpinLockRelease(&status->mutex);
}

/* Records the position confirmed to the slot. */
void
engage_status_confirmed(XLogRecPtr lsn)
{
	SpinLockAcquire(&status->mutex);
	status->confirmed_lsn = lsn;
	SpinLockRelease(&status->mutex);
}

/* Records a new session on slot_name: nothing in flight, broker not known yet. */
void
engage_status_session(const char *slot_name)
{
	SpinLockAcquire(&status->mutex);
	strlcpy(status->slot_name, slot_name, NAMEDATALEN);
	status->sessions++;
	status->in_flight = 0;
	status->broker_state = -1;
	SpinLockRelease(&status->mutex);
}

/* Records whether the producer reaches a broker: 1, 0, or -1 (not known). */
void
engage_status_broker(int state)
{
	SpinLockAcquire(&status->mutex);
	status->broker_state = state;
	SpinLockRelease(&status->mutex);
}

/* The text of a state. */
static const char *
state_name(EngageShipperState state)
{
	switch (state)
	{
		case SHIPPER_STOPPED:
			return "stopped";
		case SHIPPER_STARTING:
			return "starting";
		case SHIPPER_RUNNING:
			return "running";
		case SHIPPER_WAITING_FOR_BROKER:
			return "waiting for broker";
		case SHIPPER_STOPPED_ON_ERROR:
			return "stopped on error";
		case SHIPPER_WAITING_FOR_DATABASE:
			return "waiting for database";
		case SHIPPER_AUTH_FAILED:
			return "authentication failed";
		case SHIPPER_SLOT_LOST:
			return "slot lost";
	}
	return "unknown";
}

/* Counts a quarantined message (see engage_decoder's message.c). */
void
engage_status_quarantined(void)
{
	TimestampTz now = GetCurrentTimestamp();

	SpinLockAcquire(&status->mutex);
	status->quarantined++;
	status->last_quarantined_at = now;
	SpinLockRelease(&status->mutex);
}

/* Counts an announced gap: events between from and to could not be shipped. */
void
engage_status_gap(XLogRecPtr from, XLogRecPtr to)
{
	SpinLockAcquire(&status->mutex);
	status->slot_losses++;
	status->last_gap_from = from;
	status->last_gap_to = to;
	SpinLockRelease(&status->mutex);
}

PG_FUNCTION_INFO_V1(engage_shipper_status);

/*
 * The confirmed position of the named slot as PostgreSQL has it (the truth
 * even while the shipper is stopped), or fallback when there is no such slot.
 */
static XLogRecPtr
slot_confirmed(const char *name, XLogRecPtr fallback)
{
	ReplicationSlot *slot;
	XLogRecPtr	result = fallback;

	if (name[0] == '\0')
		return fallback;
	LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
	slot = SearchNamedReplicationSlot(name, false);
	if (slot != NULL)
	{
		SpinLockAcquire(&slot->mutex);
		result = slot->data.confirmed_flush;
		SpinLockRelease(&slot->mutex);
	}
	LWLockRelease(ReplicationSlotControlLock);
	return result;
}

/*
 * The WAL the named slot retains (from its restart position to current) and,
 * under max_slot_wal_keep_size, how much more WAL can be written before
 * PostgreSQL invalidates it, as pg_replication_slots.safe_wal_size computes
 * it (-1: no limit).  False when there is no such slot or it lost its WAL.
 */
bool
engage_slot_wal_margin(const char *name, XLogRecPtr current, int64 *retained, int64 *safe)
{
	ReplicationSlot *slot;
	XLogRecPtr	restart = InvalidXLogRecPtr;
	XLogSegNo	segno;
	XLogRecPtr	fail;
	uint64		keep;

	LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
	slot = name[0] != '\0' ? SearchNamedReplicationSlot(name, false) : NULL;
	if (slot != NULL)
	{
		SpinLockAcquire(&slot->mutex);
		restart = slot->data.restart_lsn;
		SpinLockRelease(&slot->mutex);
	}
	LWLockRelease(ReplicationSlotControlLock);
	if (restart == InvalidXLogRecPtr)
		return false;
	*retained = current > restart ? (int64) (current - restart) : 0;
	*safe = -1;
	if (max_slot_wal_keep_size_mb < 0)
		return true;
	XLByteToSeg(restart, segno, wal_segment_size);
	keep = Max(XLogMBVarToSegs(max_slot_wal_keep_size_mb, wal_segment_size),
			   XLogMBVarToSegs(wal_keep_size_mb, wal_segment_size));
	XLogSegNoOffsetToRecPtr(segno + keep + 1, 0, wal_segment_size, fail);
	*safe = (int64) fail - (int64) current;
	return true;
}

/* One column of engage.shipper_status(). */
typedef struct StatusColumn
{
	const char *name;
	Datum		value;
	bool		isnull;
} StatusColumn;

#define STATUS_COLUMNS 21

/* Fills the columns of the status row from a snapshot of the status. */
static void
status_columns(StatusColumn *cols, EngageStatus *snap, XLogRecPtr current)
{
	XLogRecPtr	confirmed = snap->confirmed_lsn;
	int64		retained = 0;
	int64		safe = -1;
	bool		has_slot = engage_slot_wal_margin(snap->slot_name, current, &retained, &safe);
	StatusColumn c[STATUS_COLUMNS] = {
		{"state", CStringGetTextDatum(state_name(snap->state)), false},
		{"pid", Int32GetDatum(snap->pid), snap->pid == 0},
		{"started_at", TimestampTzGetDatum(snap->started_at), snap->started_at == 0},
		{"confirmed_lsn", LSNGetDatum(confirmed), confirmed == InvalidXLogRecPtr},
		{"lag_bytes", Int64GetDatum((int64) (current - confirmed)), confirmed == InvalidXLogRecPtr},
		{"events_shipped", Int64GetDatum(snap->events_shipped), false},
		{"bytes_shipped", Int64GetDatum(snap->bytes_shipped), false},
		{"in_flight", Int64GetDatum(snap->in_flight), false},
		{"broker_reachable", BoolGetDatum(snap->broker_state == 1), snap->broker_state < 0},
		{"last_error", CStringGetTextDatum(snap->last_error), snap->last_error[0] == '\0'},
		{"last_error_at", TimestampTzGetDatum(snap->last_error_at), snap->last_error_at == 0},
		{"error_resolved_at", TimestampTzGetDatum(snap->error_resolved_at), snap->error_resolved_at == 0},
		{"slot_name", CStringGetTextDatum(snap->slot_name), false},
		{"sessions", Int64GetDatum(snap->sessions), false},
		{"quarantined", Int64GetDatum(snap->quarantined), false},
		{"last_quarantined_at", TimestampTzGetDatum(snap->last_quarantined_at),
		snap->last_quarantined_at == 0},
		{"slot_losses", Int64GetDatum(snap->slot_losses), false},
		{"last_gap_from", LSNGetDatum(snap->last_gap_from), snap->last_gap_from == InvalidXLogRecPtr},
		{"last_gap_to", LSNGetDatum(snap->last_gap_to), snap->last_gap_to == InvalidXLogRecPtr},
		{"retained_bytes", Int64GetDatum(retained), !has_slot},
		{"safe_wal_size", Int64GetDatum(safe), !has_slot || safe == -1},
	};

	memcpy(cols, c, sizeof(c));
}

/*
 * SQL: engage.shipper_status(), one row describing the shipper.  Columns are
 * filled by name, so that the SQL definition of an older release (before
 * ALTER EXTENSION UPDATE) still gets right values from this library.
 */
Datum
engage_shipper_status(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	EngageStatus snap;
	StatusColumn cols[STATUS_COLUMNS];
	Datum	   *values;
	bool	   *nulls;
	XLogRecPtr	current;

	if (status == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the pg_engage shipper is not loaded"),
				 errhint("Add pg_engage to shared_preload_libraries and restart the server.")));
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	SpinLockAcquire(&status->mutex);
	snap = *status;
	SpinLockRelease(&status->mutex);
	if (snap.slot_name[0] == '\0')
		strlcpy(snap.slot_name, engage_slot_name, NAMEDATALEN);
	snap.confirmed_lsn = slot_confirmed(snap.slot_name, snap.confirmed_lsn);
	current = RecoveryInProgress() ? GetXLogReplayRecPtr(NULL) : GetXLogInsertRecPtr();
	status_columns(cols, &snap, current);
	values = palloc(sizeof(Datum) * tupdesc->natts);
	nulls = palloc(sizeof(bool) * tupdesc->natts);
	for (int i = 0; i < tupdesc->natts; i++)
	{
		const char *name = NameStr(TupleDescAttr(tupdesc, i)->attname);

		nulls[i] = true;
		for (int c = 0; c < STATUS_COLUMNS; c++)
			if (strcmp(name, cols[c].name) == 0)
			{
				values[i] = cols[c].value;
				nulls[i] = cols[c].isnull;
			}
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
