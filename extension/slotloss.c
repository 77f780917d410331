/*
 * slotloss.c
 *		The shipper's own record of where it was, kept outside the slot, and
 *		the detection of a lost slot.
 *
 * The record ($PGDATA/pg_engage/shipper.state) names the slot and a position
 * the shipper may confirm to it: the shipper writes the record before it
 * confirms, so a slot that continues the shipper's stream is never ahead of
 * the record.  A slot that is missing, invalidated, or ahead of the record
 * (dropped and created again, or advanced by someone else) lost the events
 * between the record and the slot's new start.
 */
#include "engage.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "access/xlog.h"
#include "access/xlog_internal.h"
#include "replication/slot.h"
#include "storage/fd.h"
#include "storage/lwlock.h"

#define RECORD_DIR "pg_engage"
#define RECORD_FILE RECORD_DIR "/shipper.state"
#define RECORD_TEMP RECORD_DIR "/shipper.state.tmp"

/*
 * The position recorded for slot, or InvalidXLogRecPtr when there is no
 * record, or one of another slot (which says nothing about this one).
 */
XLogRecPtr
shipper_record_read(const char *slot)
{
	FILE	   *f = AllocateFile(RECORD_FILE, "r");
	char		name[NAMEDATALEN + 1];
	uint32		hi;
	uint32		lo;
	int			n;

	if (f == NULL)
	{
		if (errno != ENOENT)
			ereport(ERROR, (errcode_for_file_access(),
							errmsg("could not read \"%s\": %m", RECORD_FILE)));
		return InvalidXLogRecPtr;
	}
	n = fscanf(f, "slot %63s\nconfirmed %X/%X\n", name, &hi, &lo);
	FreeFile(f);
	if (n != 3)
		ereport(ERROR, (errcode(ERRCODE_DATA_CORRUPTED),
						errmsg("the shipper's record \"%s\" is corrupt", RECORD_FILE),
						errhint("Remove the file to start a new record; a slot lost before is then not detected.")));
	return strcmp(name, slot) == 0 ? ((uint64) hi << 32) | lo : InvalidXLogRecPtr;
}

/* Writes the record of slot at lsn durably (written whole, then renamed). */
void
shipper_record_write(const char *slot, XLogRecPtr lsn)
{
	char	   *text = psprintf("slot %s\nconfirmed %X/%X\n", slot, LSN_FORMAT_ARGS(lsn));
	int			fd;

	if (MakePGDirectory(RECORD_DIR) < 0 && errno != EEXIST)
		ereport(ERROR, (errcode_for_file_access(),
						errmsg("could not create directory \"%s\": %m", RECORD_DIR)));
	fd = OpenTransientFile(RECORD_TEMP, O_WRONLY | O_CREAT | O_TRUNC | PG_BINARY);
	if (fd < 0)
		ereport(ERROR, (errcode_for_file_access(),
						errmsg("could not create \"%s\": %m", RECORD_TEMP)));
	errno = 0;
	if (write(fd, text, strlen(text)) != strlen(text) || pg_fsync(fd) != 0)
		ereport(ERROR, (errcode_for_file_access(),
						errmsg("could not write \"%s\": %m", RECORD_TEMP)));
	CloseTransientFile(fd);
	(void) durable_rename(RECORD_TEMP, RECORD_FILE, ERROR);
	pfree(text);
}

/* Is a slot with this restart_lsn and invalidated_at lost (wal_status lost)? */
static bool
slot_wal_lost(XLogRecPtr restart, XLogRecPtr invalidated_at)
{
	XLogSegNo	segno;

	if (restart == InvalidXLogRecPtr)
		return invalidated_at != InvalidXLogRecPtr;
	XLByteToSeg(restart, segno, wal_segment_size);
	return segno <= XLogGetLastRemovedSegno();
}

/*
 * Checks the slot against the shipper's record (recorded, invalid when there
 * is none).  Returns NULL when the slot continues the record, or why events
 * were lost, with *from the first position not shipped and *invalidated set
 * when the slot must be dropped before it can be used.
 */
const char *
slot_loss_check(const char *name, XLogRecPtr recorded, XLogRecPtr *from, bool *invalidated)
{
	ReplicationSlot *slot;
	XLogRecPtr	restart = InvalidXLogRecPtr;
	XLogRecPtr	invalidated_at = InvalidXLogRecPtr;
	XLogRecPtr	confirmed = InvalidXLogRecPtr;

	LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
	slot = SearchNamedReplicationSlot(name, false);
	if (slot != NULL)
	{
		SpinLockAcquire(&slot->mutex);
		restart = slot->data.restart_lsn;
		invalidated_at = slot->data.invalidated_at;
		confirmed = slot->data.confirmed_flush;
		SpinLockRelease(&slot->mutex);
	}
	LWLockRelease(ReplicationSlotControlLock);
	*invalidated = slot != NULL && slot_wal_lost(restart, invalidated_at);
	*from = recorded != InvalidXLogRecPtr ? recorded : confirmed;
	if (*invalidated)
		return "the slot was invalidated: PostgreSQL removed WAL it needed (max_slot_wal_keep_size)";
	if (recorded == InvalidXLogRecPtr)
		return NULL;
	if (slot == NULL)
		return "the slot was dropped";
	if (confirmed > recorded)
		return "the slot was dropped and created again, or advanced, while the shipper was not using it";
	return NULL;
}

/* Drops the invalidated slot name (its WAL is gone: it cannot be used again). */
void
slot_drop_lost(const char *name)
{
	ereport(LOG, (errmsg("pg_engage shipper: dropping invalidated replication slot \"%s\"", name)));
	ReplicationSlotDrop(name, true);
}
