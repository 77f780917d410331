/*
 * status.c
 *		The shipper's status in shared memory, and engage.shipper_status().
 */
#include "engage.h"

#include "access/htup_details.h"
#include "access/xlog.h"
#include "access/xlogrecovery.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/ipc.h"
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

/* Records the shipper's pid and start time (pid 0: not running). */
void
engage_status_set_pid(int pid)
{
	SpinLockAcquire(&status->mutex);
	status->pid = pid;
	status->started_at = pid ? GetCurrentTimestamp() : 0;
	SpinLockRelease(&status->mutex);
}

/* Records the last error and its time. */
void
engage_status_set_error(const char *error)
{
	SpinLockAcquire(&status->mutex);
	strlcpy(status->last_error, error, sizeof(status->last_error));
	status->last_error_at = GetCurrentTimestamp();
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

/* Records the slot the shipper's session uses. */
void
engage_status_set_slot(const char *slot_name)
{
	SpinLockAcquire(&status->mutex);
	strlcpy(status->slot_name, slot_name, NAMEDATALEN);
	SpinLockRelease(&status->mutex);
}

/* Records whether the producer reaches a broker. */
void
engage_status_broker(bool up)
{
	SpinLockAcquire(&status->mutex);
	status->broker_up = up;
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
	}
	return "unknown";
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

/* SQL: engage.shipper_status(), one row describing the shipper. */
Datum
engage_shipper_status(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	EngageStatus snap;
	Datum		values[12];
	bool		nulls[12] = {0};
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

	values[0] = CStringGetTextDatum(state_name(snap.state));
	values[1] = Int32GetDatum(snap.pid);
	nulls[1] = snap.pid == 0;
	values[2] = TimestampTzGetDatum(snap.started_at);
	nulls[2] = snap.started_at == 0;
	values[3] = LSNGetDatum(snap.confirmed_lsn);
	nulls[3] = snap.confirmed_lsn == InvalidXLogRecPtr;
	values[4] = Int64GetDatum(snap.confirmed_lsn ? (int64) (current - snap.confirmed_lsn) : 0);
	nulls[4] = snap.confirmed_lsn == InvalidXLogRecPtr;
	values[5] = Int64GetDatum(snap.events_shipped);
	values[6] = Int64GetDatum(snap.bytes_shipped);
	values[7] = Int64GetDatum(snap.in_flight);
	values[8] = BoolGetDatum(snap.broker_up);
	values[9] = CStringGetTextDatum(snap.last_error);
	nulls[9] = snap.last_error[0] == '\0';
	values[10] = TimestampTzGetDatum(snap.last_error_at);
	nulls[10] = snap.last_error_at == 0;
	values[11] = CStringGetTextDatum(snap.slot_name);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
