/*
 * tracker.c
 *		Transactions whose events are in flight to Kafka, in commit order.
 *
 * Each decoded transaction with events gets a sequence number.  Delivery
 * reports may arrive out of order across partitions, so every transaction
 * counts its unacknowledged events; the position safe to confirm is the end
 * of the newest transaction such that it and every older one are complete.
 */
#include "engage.h"

#include "utils/memutils.h"

typedef struct TrackedTxn
{
	XLogRecPtr	end_lsn;		/* end of the commit record, once known */
	int64		pending;		/* events produced but not acknowledged */
	bool		committed;		/* all its events have been produced */
} TrackedTxn;

static TrackedTxn *ring = NULL;
static uint64 ring_size = 0;	/* a power of two */
static uint64 head = 0;			/* oldest transaction still tracked */
static uint64 tail = 0;			/* next sequence number */
static int64 pending_events = 0;

/* The slot of sequence number seq. */
static inline TrackedTxn *
slot_of(uint64 seq)
{
	return &ring[seq & (ring_size - 1)];
}

/* Forgets everything (after a replay from the slot). */
void
tracker_reset(void)
{
	if (ring == NULL)
	{
		ring_size = 1024;
		ring = MemoryContextAllocZero(TopMemoryContext, sizeof(TrackedTxn) * ring_size);
	}
	head = tail = 0;
	pending_events = 0;
}

/* Doubles the ring, keeping every sequence number in its slot. */
static void
grow(void)
{
	uint64		new_size = ring_size * 2;
	TrackedTxn *new_ring = MemoryContextAllocZero(TopMemoryContext, sizeof(TrackedTxn) * new_size);

	for (uint64 seq = head; seq < tail; seq++)
		new_ring[seq & (new_size - 1)] = *slot_of(seq);
	pfree(ring);
	ring = new_ring;
	ring_size = new_size;
}

/* Starts tracking a transaction; returns its sequence number. */
uint64
tracker_begin(void)
{
	TrackedTxn *t;

	if (tail - head == ring_size)
		grow();
	t = slot_of(tail);
	t->end_lsn = InvalidXLogRecPtr;
	t->pending = 0;
	t->committed = false;
	return tail++;
}

/* Counts one more event of txn handed to the producer. */
void
tracker_add(uint64 txn)
{
	slot_of(txn)->pending++;
	pending_events++;
}

/* Marks txn complete on our side: all its events were produced. */
void
tracker_commit(uint64 txn, XLogRecPtr end_lsn)
{
	TrackedTxn *t = slot_of(txn);

	t->end_lsn = end_lsn;
	t->committed = true;
}

/* Counts acknowledged events of txn. */
void
tracker_acked(uint64 txn, int64 events)
{
	Assert(txn >= head && txn < tail);
	slot_of(txn)->pending -= events;
	pending_events -= events;
}

/* True when no transaction is in flight. */
bool
tracker_empty(void)
{
	return head == tail;
}

/* Events produced and not yet acknowledged. */
int64
tracker_pending_events(void)
{
	return pending_events;
}

/*
 * Drops the complete transactions at the head and returns the end LSN of the
 * newest of them, or InvalidXLogRecPtr when none completed.
 */
XLogRecPtr
tracker_confirmable(void)
{
	XLogRecPtr	result = InvalidXLogRecPtr;

	while (head < tail)
	{
		TrackedTxn *t = slot_of(head);

		if (!t->committed || t->pending > 0)
			break;
		result = t->end_lsn;
		head++;
	}
	return result;
}
