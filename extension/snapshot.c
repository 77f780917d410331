/*
 * snapshot.c
 *		Snapshots while the shipper streams: a table's rows read in chunks by
 *		key and placed in the stream by watermarks (the DBLog approach).
 *
 * Between two turns of decoding, the shipper reads the next chunk of the
 * table being snapshotted (at most engage.snapshot_chunk_rows rows after the
 * last key, in key order) in a short transaction of its own, with a snapshot
 * S, has each row's record body written by the plugin, and in the same
 * transaction writes a watermark: a logical message authenticated like
 * engage.emit()'s, that only the shipper can write.  It holds the chunk in
 * memory until decoding reaches the watermark, and there writes the chunk's
 * rows as "read" records, in the watermark's transaction.
 *
 * Why the result is the table's state: a change visible in S is in the
 * chunk's values and precedes the watermark in the stream (it committed
 * before S was taken, the watermark after).  A change not visible in S and
 * decoded before the watermark comes from a transaction S saw as running or
 * future: its rows are dropped from the chunk (the stream carries them, and
 * a read record after them would undo them).  A change after the watermark
 * follows the read record, as it should.  So a row of the chunk is dropped
 * when decoding, before the watermark, meets a change of its key by a
 * transaction S does not see, or a TRUNCATE of the table by one.
 *
 * One case is not in the stream after S was taken: a transaction whose
 * commit was decoded before S, but which S still saw as running (its commit
 * record was flushed and decoded before it left the proc array).  The
 * shipper remembers the last DECODED_RING transactions it decoded and throws
 * a chunk away, to read it again, when S saw one of them as running.
 *
 * Progress (the last key of a chunk, rows read) is recorded in
 * engage_internal.snapshots once Kafka acknowledged the chunk's transaction:
 * after a crash or restart a snapshot resumes at the first chunk not
 * acknowledged (the rows of a chunk shipped but not yet recorded are shipped
 * again, under new ids).  Tables are locked only as any reader does (ACCESS
 * SHARE) and no transaction lasts longer than one chunk's read.
 */
#include "engage.h"
#include "snapshot.h"

#include <limits.h>

#include "access/genam.h"
#include "access/relation.h"
#include "access/table.h"
#include "access/transam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "replication/message.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

/* Transactions remembered as decoded, to check a chunk's snapshot against. */
#define DECODED_RING 8192
/* How often the requests are looked at when no snapshot is open. */
#define POLL_INTERVAL_MS 1000

/* The progress a chunk makes, recorded once Kafka acknowledged it. */
typedef struct Progress
{
	char	  **last_key;		/* NULL: the chunk had no row */
	int			nkeys;
	int64		rows;
	bool		last;
} Progress;

/* A chunk written to the stream whose acknowledgement is awaited. */
typedef struct Written
{
	int64		request;
	Progress	progress;
	XLogRecPtr	end_lsn;		/* end of its transaction; Invalid until its commit */
} Written;

void	   *snap_plugin = NULL;		/* the plugin's state, for its calls */
static MemoryContext snap_cxt = NULL;	/* everything of the session's snapshots */
MemoryContext chunk_cxt = NULL;	/* the chunk held */
Chunk		chunk;
static bool have_request = false;
SnapshotRequest snap_request;
int64		chunk_no = 0;
static bool request_exhausted = false;	/* its last chunk is written */
static List *written = NIL;		/* of Written, in stream order */
static TimestampTz next_poll = 0;
static TimestampTz next_chunk = 0;	/* throttle */
/*
 * Rows of a chunk dropped because an update changed them meanwhile are read
 * again, by key, before the chunk's progress counts: the update's record may
 * lack unchanged TOASTed values that a consumer who never saw the row cannot
 * fill in (the key texts of each, in snap_cxt).  Meanwhile the progress of
 * the chunk waits in held_progress.
 */
static MemoryContext reread_cxt = NULL;	/* holds reread */
char	 ***reread = NULL;
int			nreread = 0;
int			reread_nkeys = 0;
static int64 reread_rows = 0;	/* of the request, this session */
static Progress held_progress;
static TransactionId decoded[DECODED_RING];
static int	decoded_next = 0;

/* Forgets what a session held (its memory, in snap_cxt, is deleted by the caller). */
static void
reset_session(void)
{
	snap_plugin = NULL;
	snap_cxt = NULL;
	chunk_cxt = NULL;
	memset(&chunk, 0, sizeof(chunk));
	have_request = false;
	request_exhausted = false;
	written = NIL;
	reread = NULL;
	reread_cxt = NULL;
	nreread = 0;
}

/* Starts the snapshots of a session: nothing held, requests read again. */
void
snapshot_session_start(void *plugin_state)
{
	reset_session();
	snap_plugin = plugin_state;
	snap_cxt = AllocSetContextCreate(TopMemoryContext, "pg_engage snapshots",
									 ALLOCSET_SMALL_SIZES);
	next_poll = 0;
	next_chunk = 0;
	memset(decoded, 0, sizeof(decoded));
	decoded_next = 0;
}

/* Ends the session's snapshots: what is held or unacknowledged is read again. */
void
snapshot_session_end(void)
{
	if (snap_cxt != NULL)
		MemoryContextDelete(snap_cxt);
	reset_session();
}

/* Remembers a transaction whose events were decoded. */
void
snapshot_saw_begin(TransactionId xid)
{
	decoded[decoded_next] = xid;
	decoded_next = (decoded_next + 1) % DECODED_RING;
}

/* Orders transaction ids for bsearch. */
int
snapshot_xid_cmp(const void *a, const void *b)
{
	TransactionId x = *(const TransactionId *) a;
	TransactionId y = *(const TransactionId *) b;

	return x < y ? -1 : x > y ? 1 : 0;
}

/* Did the chunk's snapshot not see (the commit of) transaction xid? */
static bool
unseen_by_chunk(TransactionId xid)
{
	if (TransactionIdPrecedes(xid, chunk.xmin))
		return false;
	if (TransactionIdFollowsOrEquals(xid, chunk.xmax))
		return true;
	return bsearch(&xid, chunk.xip, chunk.xcnt, sizeof(TransactionId), snapshot_xid_cmp) != NULL;
}

/* Drops the chunk (its memory and what it held). */
static void
drop_chunk(void)
{
	if (chunk_cxt != NULL)
		MemoryContextDelete(chunk_cxt);
	chunk_cxt = NULL;
	memset(&chunk, 0, sizeof(chunk));
}

/*
 * A row record was decoded: while a chunk is held, a change of its table by
 * a transaction the chunk's snapshot did not see drops the chunk's row of
 * that key, a TRUNCATE every row.
 */
void
snapshot_saw_row(const EngageRecordFacts *facts, TransactionId xid)
{
	if (!chunk.held || facts->relid != chunk.relid || !unseen_by_chunk(xid))
		return;
	if (strcmp(facts->op, "truncate") == 0)
	{
		for (int i = 0; i < chunk.nrows; i++)
			chunk.rows[i].dropped = true;
		return;
	}
	/* The update of a key change is two records, a delete and an insert. */
	if (facts->key.data == NULL || chunk.index == NULL)
		return;
	{
		uint32		hash = hash_bytes((const unsigned char *) facts->key.data, facts->key.len);

		for (uint32 slot = hash & chunk.index_mask; chunk.index[slot] != 0;
			 slot = (slot + 1) & chunk.index_mask)
		{
			ChunkRow   *row = &chunk.rows[chunk.index[slot] - 1];

			if (row->hash == hash && row->key_len == facts->key.len &&
				memcmp(chunk.arena.data + row->key, facts->key.data, facts->key.len) == 0)
			{
				row->dropped = true;
				row->reread |= strcmp(facts->op, "update") == 0;
			}
		}
	}
}

/* Does text[0..len) contain needle? */
static bool
contains(const char *text, int len, const char *needle)
{
	int			n = strlen(needle);

	for (int i = 0; i + n <= len; i++)
		if (memcmp(text + i, needle, n) == 0)
			return true;
	return false;
}

/* The progress of the (main) chunk held, copied into the current context. */
static Progress
chunk_progress(void)
{
	Progress	p = {.nkeys = chunk.nkeys, .rows = chunk.nrows, .last = chunk.last};

	if (chunk.last_key != NULL)
	{
		p.last_key = palloc(sizeof(char *) * chunk.nkeys);
		for (int i = 0; i < chunk.nkeys; i++)
			p.last_key[i] = pstrdup(chunk.last_key[i]);
	}
	return p;
}

/* Keeps the key texts of the chunk's rows an update dropped (in reread_cxt, reset each time). */
static void
collect_rereads(void)
{
	int			count = 0;
	MemoryContext old;

	for (int i = 0; i < chunk.nrows; i++)
		count += chunk.rows[i].reread;
	nreread = 0;
	reread = NULL;
	if (reread_cxt != NULL)
		MemoryContextReset(reread_cxt);
	if (count == 0)
		return;
	if (reread_cxt == NULL)
		reread_cxt = AllocSetContextCreate(snap_cxt, "pg_engage snapshot rereads", ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(reread_cxt);
	reread = palloc(sizeof(char **) * count);
	reread_nkeys = chunk.nkeys;
	for (int i = 0; i < chunk.nrows; i++)
	{
		const char *text = chunk.arena.data + chunk.rows[i].keytext;
		char	  **key;

		if (!chunk.rows[i].reread)
			continue;
		key = palloc(sizeof(char *) * chunk.nkeys);
		for (int k = 0; k < chunk.nkeys; k++)
		{
			key[k] = pstrdup(text);
			text += strlen(text) + 1;
		}
		reread[nreread++] = key;
	}
	reread_rows += nreread;
	MemoryContextSwitchTo(old);
}

/*
 * A watermark was decoded: true when it is the held chunk's, whose rows are
 * then written (snapshot_next_read()) in its transaction.
 */
bool
snapshot_saw_watermark(const EngageRecordFacts *facts)
{
	Written    *w;
	MemoryContext old;
	char		needle[32];

	if (!chunk.held || facts->content.data == NULL)
		return false;
	snprintf(needle, sizeof(needle), "\"nonce\":\"%s\"", chunk.nonce);
	if (!contains(facts->content.data, facts->content.len, needle))
		return false;
	old = MemoryContextSwitchTo(snap_cxt);
	if (!chunk.is_reread)
		held_progress = chunk_progress();
	chunk.announce_start = chunk.first;
	collect_rereads();
	/* With rows to read again, the chunk's progress waits in held_progress for them. */
	if (nreread == 0)
	{
		w = palloc0(sizeof(Written));
		w->request = snap_request.id;
		w->progress = held_progress;
		written = lappend(written, w);
		chunk.announce_done = held_progress.last;
	}
	MemoryContextSwitchTo(old);
	chunk.held = false;
	chunk.emitted = 0;
	return true;
}

/*
 * Writes a snapshot record of the request (state "started" or "done") into
 * out with its facts: to <prefix>-control, keyed by the table's name, at the
 * watermark's place in the stream.  A consumer learns from them where a
 * snapshot's read records begin and that it has read every row.
 */
static void
write_snapshot_record(StringInfo out, EngageRecordFacts *facts, const char *state)
{
	EngageHandoff *h = snap_plugin;
	MemoryContext old = MemoryContextSwitchTo(chunk_cxt);
	char	   *topic = psprintf("%s-control", engage_topic_prefix);
	StringInfoData body;

	initStringInfo(&body);
	appendStringInfoString(&body, ",\"table\":");
	escape_json(&body, chunk.table);
	appendStringInfo(&body, ",\"snapshot\":{\"id\":%lld,\"reason\":", (long long) snap_request.id);
	escape_json(&body, snap_request.reason);
	appendStringInfo(&body, ",\"state\":\"%s\"}", state);
	memset(facts, 0, sizeof(*facts));
	facts->kind = ENGAGE_RECORD_ROW;
	facts->op = "snapshot";
	facts->transactional = true;
	facts->table = (EngageBytes) {chunk.table, strlen(chunk.table)};
	facts->topic = (EngageBytes) {topic, strlen(topic)};
	facts->key = facts->table;
	resetStringInfo(out);
	h->snapshot.write_read(snap_plugin, out, "snapshot", body.data, body.len, facts);
	MemoryContextSwitchTo(old);
}

/*
 * Writes the next row of the chunk whose watermark is being handled as a
 * read record into out with its facts; false when all are written (the
 * chunk is then dropped).
 */
bool
snapshot_next_read(StringInfo out, EngageRecordFacts *facts)
{
	EngageHandoff *h = snap_plugin;

	if (chunk.announce_start)
	{
		chunk.announce_start = false;
		write_snapshot_record(out, facts, "started");
		return true;
	}
	while (chunk.emitted < chunk.nrows && chunk.rows[chunk.emitted].dropped)
		chunk.emitted++;
	if (chunk.emitted >= chunk.nrows)
	{
		if (chunk.announce_done)
		{
			chunk.announce_done = false;
			write_snapshot_record(out, facts, "done");
			return true;
		}
		drop_chunk();
		return false;
	}
	{
		ChunkRow   *row = &chunk.rows[chunk.emitted++];
		char	   *arena = chunk.arena.data;

		memset(facts, 0, sizeof(*facts));
		facts->kind = ENGAGE_RECORD_ROW;
		facts->op = "read";
		facts->transactional = true;
		facts->table = (EngageBytes) {chunk.table, strlen(chunk.table)};
		facts->relid = chunk.relid;
		if (row->topic >= 0)
			facts->topic = (EngageBytes) {arena + row->topic, row->topic_len};
		facts->no_topic_reason = row->no_topic_reason;
		if (row->key >= 0)
			facts->key = (EngageBytes) {arena + row->key, row->key_len};
		resetStringInfo(out);
		h->snapshot.write_read(snap_plugin, out, "read", arena + row->body, row->body_len, facts);
	}
	return true;
}

/* The commit of a transaction was decoded: it ends the chunks written in it. */
void
snapshot_saw_commit(XLogRecPtr end_lsn)
{
	ListCell   *lc;

	foreach(lc, written)
	{
		Written    *w = lfirst(lc);

		if (w->end_lsn == InvalidXLogRecPtr)
			w->end_lsn = end_lsn;
	}
}

/* Runs in a transaction of its own with SPI and a snapshot: begins it. */
static MemoryContext work_caller_cxt = NULL;

static void
begin_work(void)
{
	work_caller_cxt = CurrentMemoryContext;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
}

/* Commits what begin_work() began. */
static void
end_work(ResourceOwner owner)
{
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
	CurrentResourceOwner = owner;
	MemoryContextSwitchTo(work_caller_cxt);
}

/* Frees a chunk's entry once its progress is recorded. */
static void
free_written(Written *w)
{
	for (int i = 0; w->progress.last_key != NULL && i < w->progress.nkeys; i++)
		pfree(w->progress.last_key[i]);
	if (w->progress.last_key != NULL)
		pfree(w->progress.last_key);
	pfree(w);
}

/*
 * Records the progress of the chunks Kafka acknowledged (all before acked),
 * in one transaction; a snapshot whose last chunk is among them is done.
 */
static void
record_acknowledged(XLogRecPtr acked, ResourceOwner owner)
{
	List	   *remaining = NIL;
	List	   *done = NIL;
	ListCell   *lc;
	bool		any = false;

	foreach(lc, written)
	{
		Written    *w = lfirst(lc);

		if (w->end_lsn == InvalidXLogRecPtr || w->end_lsn > acked)
		{
			remaining = lappend(remaining, w);
			continue;
		}
		if (!any)
			begin_work();
		any = true;
		snapshot_record_progress(w->request, w->progress.last_key, w->progress.nkeys,
								 w->progress.rows, w->progress.last);
		done = lappend(done, w);
		if (w->progress.last)
			ereport(LOG, (errmsg("pg_engage shipper: snapshot %lld of %s is done; "
								 "%lld rows changed by updates while read were read again",
								 (long long) w->request, snap_request.table, (long long) reread_rows)));
	}
	if (!any)
		return;
	end_work(owner);
	{
		MemoryContext old = MemoryContextSwitchTo(snap_cxt);

		List	   *was = written;

		written = list_copy(remaining);
		list_free(was);
		MemoryContextSwitchTo(old);
	}
	foreach(lc, done)
		free_written(lfirst(lc));
}

/* Did S see as running a transaction the shipper had already decoded? */
static bool
snapshot_missed_decoded(void)
{
	for (int i = 0; i < chunk.xcnt; i++)
		for (int j = 0; j < DECODED_RING; j++)
			if (decoded[j] == chunk.xip[i] && TransactionIdIsValid(decoded[j]))
				return true;
	return false;
}

/* Gives up the request with why, recorded and logged. */
static void
fail_request(const char *why, ResourceOwner owner)
{
	ereport(WARNING,
			(errmsg("pg_engage shipper: snapshot %lld of %s failed: %s",
					(long long) snap_request.id, snap_request.table, why),
			 errhint("See engage.snapshots; request a new one with engage.snapshot() once the cause is fixed.")));
	begin_work();
	snapshot_record_failure(snap_request.id, why);
	end_work(owner);
	have_request = false;
	nreread = 0;
	next_poll = 0;
}

/*
 * Reads the next chunk in a transaction of its own and holds it.  An error
 * (a value that does not read back, say) fails the snapshot, not the
 * shipper.
 */
static void
next_chunk_or_fail(ResourceOwner owner)
{
	MemoryContext old = CurrentMemoryContext;
	const char *why = NULL;
	char	   *state;

	chunk_cxt = AllocSetContextCreate(snap_cxt, "pg_engage snapshot chunk", ALLOCSET_DEFAULT_SIZES);
	begin_work();
	PG_TRY();
	{
		MemoryContextSwitchTo(chunk_cxt);
		initStringInfo(&chunk.arena);
		chunk.maxrows = 1024;
		chunk.rows = palloc(sizeof(ChunkRow) * chunk.maxrows);
		state = snapshot_request_state(snap_request.id);
		MemoryContextSwitchTo(chunk_cxt);
		if (state == NULL || strcmp(state, "cancelled") == 0 || strcmp(state, "failed") == 0)
			why = "cancelled";
		else
			why = snapshot_read_chunk();
		MemoryContextSwitchTo(old);
		end_work(owner);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(snap_cxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		CurrentResourceOwner = owner;
		MemoryContextSwitchTo(old);
		work_caller_cxt = old;
		drop_chunk();
		fail_request(edata->message, owner);
		return;
	}
	PG_END_TRY();
	if (why != NULL)
	{
		drop_chunk();
		if (strcmp(why, "cancelled") == 0)
		{
			ereport(LOG, (errmsg("pg_engage shipper: snapshot %lld of %s was cancelled",
								 (long long) snap_request.id, snap_request.table)));
			have_request = false;
			nreread = 0;
			next_poll = 0;
		}
		else if (why[0] != '\0')
			fail_request(why, owner);
		return;
	}
	if (snapshot_missed_decoded())
	{
		/* Rare: read it again next turn (see the file's comment). */
		drop_chunk();
		return;
	}
	chunk.held = true;
	chunk_no++;
	if (chunk.last && !chunk.is_reread)
		request_exhausted = true;
}

/* Copies the chunk's last key into the request (it outlives the chunk). */
static void
advance_request(void)
{
	MemoryContext old;

	if (chunk.last_key == NULL)
		return;
	old = MemoryContextSwitchTo(snap_cxt);
	snap_request.nkeys = chunk.nkeys;
	snap_request.last_key = palloc(sizeof(char *) * chunk.nkeys);
	for (int i = 0; i < chunk.nkeys; i++)
		snap_request.last_key[i] = pstrdup(chunk.last_key[i]);
	MemoryContextSwitchTo(old);
}

/* Finds the oldest open request when there is none at hand (at most once a second). */
static bool
find_request(ResourceOwner owner)
{
	TimestampTz now = GetCurrentTimestamp();

	if (have_request)
		return true;
	if (now < next_poll)
		return false;
	next_poll = TimestampTzPlusMilliseconds(now, POLL_INTERVAL_MS);
	begin_work();
	have_request = snapshot_next_request(&snap_request, snap_cxt);
	end_work(owner);
	if (have_request)
	{
		request_exhausted = false;
		reread_rows = 0;
		chunk_no = 0;
		ereport(LOG, (errmsg("pg_engage shipper: snapshot %lld of %s %s",
							 (long long) snap_request.id, snap_request.table,
							 snap_request.last_key ? "resumes" : "starts")));
	}
	return have_request;
}

/*
 * One turn of the snapshots, between turns of decoding: records what Kafka
 * acknowledged, and unless a chunk is held (or the throttle says wait),
 * reads the next chunk of the open snapshot.
 */
void
snapshot_step(XLogRecPtr acked, ResourceOwner owner)
{
	TimestampTz now;

	if (snap_plugin == NULL)
		return;
	record_acknowledged(acked, owner);
	if (chunk.held)
		return;
	if (have_request && request_exhausted && nreread == 0)
	{
		/* The last chunk is written: its snapshot ends once it is acknowledged. */
		if (written != NIL)
			return;
		have_request = false;
		next_poll = 0;			/* the next snapshot may be waiting */
	}
	if (!find_request(owner))
		return;
	now = GetCurrentTimestamp();
	if (now < next_chunk)
		return;
	next_chunk_or_fail(owner);
	if (!chunk.held)
		return;
	if (!chunk.is_reread)
		advance_request();
	if (engage_snapshot_rows_per_second > 0)
		next_chunk = TimestampTzPlusMilliseconds(now, (int64) chunk.nrows * 1000 /
												 engage_snapshot_rows_per_second);
}
