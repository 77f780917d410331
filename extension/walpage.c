/*
 * walpage.c
 *		The shipper's WAL page reader: read_local_xlog_page, except that it
 *		waits for WAL not yet flushed on the shipper's latch and gives up when
 *		the shipper is asked to stop.
 *
 * A WAL record may begin before the flushed position and end after it.
 * read_local_xlog_page then waits in a loop that only an interrupt ends, and
 * the shipper takes SIGTERM as a request (ShutdownRequestPending), not as an
 * interrupt: a fast shutdown could wait for the rest of that record for as
 * long as nothing flushes it.  Here the wait ends with the request; the read
 * fails without a message (XLogReadRecord returns NULL) and the shipper ends
 * its session as on any stop.
 */
#include "engage.h"

#include "access/xlog.h"
#include "access/xlogutils.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/interrupt.h"
#include "storage/latch.h"

/* How long one wait for more WAL lasts before the flushed position is read again. */
#define WAL_WAIT_MS 10

/* The page_read callback of the shipper's decoding contexts (see the file's comment). */
int
engage_read_wal_page(XLogReaderState *state, XLogRecPtr page, int wanted,
					 XLogRecPtr record, char *buf)
{
	while (!RecoveryInProgress() && page + wanted > GetFlushRecPtr(NULL))
	{
		if (ShutdownRequestPending)
			return -1;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 WAL_WAIT_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	return read_local_xlog_page(state, page, wanted, record, buf);
}
