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
/* A chunk stops growing once its records take this many bytes. */
#define CHUNK_MAX_BYTES (32 * 1024 * 1024)
/* Rows fetched from the chunk's cursor at a time. */
#define FETCH_ROWS 256
/* How often the requests are looked at when no snapshot is open. */
#define POLL_INTERVAL_MS 1000

/* One row of the chunk held: its record body and facts, in the chunk's arena. */
typedef struct ChunkRow
{
	int			body;
	int			body_len;
	int			key;			/* -1: the record has no key */
	int			key_len;
	int			topic;			/* -1: it has none (oversized) */
	int			topic_len;
	const char *no_topic_reason;
	int			keytext;		/* the key's values as text, NUL-terminated */
	uint32		hash;			/* of the key */
	bool		dropped;		/* changed in the stream meanwhile */
	bool		reread;			/* ... by an update: read it again */
} ChunkRow;

/* The chunk read and held until decoding reaches its watermark. */
typedef struct Chunk
{
	bool		held;
	char		nonce[17];		/* names its watermark */
	TransactionId xmin;			/* the snapshot S it was read with */
	TransactionId xmax;
	TransactionId *xip;			/* sorted */
	int			xcnt;
	StringInfoData arena;
	ChunkRow   *rows;
	int			nrows;
	int			maxrows;
	int		   *index;			/* open addressing by key hash: row + 1, 0 empty */
	uint32		index_mask;
	char	   *table;
	Oid			relid;
	char	  **last_key;		/* key texts of its last row; NULL: no row */
	int			nkeys;
	bool		last;			/* it reached the table's end */
	bool		is_reread;		/* it reads the keys of reread, not the next rows */
	bool		first;			/* the first chunk of a snapshot (not resumed) */
	bool		announce_start; /* at its watermark: a snapshot record "started" */
	bool		announce_done;	/* ... and one "done" after the rows */
	int			emitted;		/* next row to write at the watermark */
} Chunk;

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

static void *plugin = NULL;		/* the plugin's state, for its calls */
static MemoryContext snap_cxt = NULL;	/* everything of the session's snapshots */
static MemoryContext chunk_cxt = NULL;	/* the chunk held */
static Chunk chunk;
static bool have_request = false;
static SnapshotRequest request;
static int64 chunk_no = 0;
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
static char ***reread = NULL;
static int	nreread = 0;
static int	reread_nkeys = 0;
static bool progress_held = false;
static int64 reread_rows = 0;	/* of the request, this session */
static Progress held_progress;
static TransactionId decoded[DECODED_RING];
static int	decoded_next = 0;

/* Starts the snapshots of a session: nothing held, requests read again. */
void
snapshot_session_start(void *plugin_state)
{
	plugin = plugin_state;
	snap_cxt = AllocSetContextCreate(TopMemoryContext, "pg_engage snapshots",
									 ALLOCSET_SMALL_SIZES);
	chunk_cxt = NULL;
	memset(&chunk, 0, sizeof(chunk));
	have_request = false;
	request_exhausted = false;
	written = NIL;
	reread = NULL;
	nreread = 0;
	progress_held = false;
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
	snap_cxt = NULL;
	chunk_cxt = NULL;
	memset(&chunk, 0, sizeof(chunk));
	have_request = false;
	written = NIL;
	reread = NULL;
	nreread = 0;
	progress_held = false;
	plugin = NULL;
}

/* Remembers a transaction whose events were decoded. */
void
snapshot_saw_begin(TransactionId xid)
{
	decoded[decoded_next] = xid;
	decoded_next = (decoded_next + 1) % DECODED_RING;
}

/* Orders transaction ids for bsearch. */
static int
xid_cmp(const void *a, const void *b)
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
	return bsearch(&xid, chunk.xip, chunk.xcnt, sizeof(TransactionId), xid_cmp) != NULL;
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

/* Keeps the key texts of the chunk's rows an update dropped (current context). */
static void
collect_rereads(void)
{
	reread = palloc(sizeof(char **) * Max(chunk.nrows, 1));
	nreread = 0;
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
	if (nreread > 0)
		progress_held = true;
	else
	{
		w = palloc0(sizeof(Written));
		w->request = request.id;
		w->progress = held_progress;
		written = lappend(written, w);
		chunk.announce_done = held_progress.last;
		progress_held = false;
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
	EngageHandoff *h = plugin;
	MemoryContext old = MemoryContextSwitchTo(chunk_cxt);
	char	   *topic = psprintf("%s-control", engage_topic_prefix);
	StringInfoData body;

	initStringInfo(&body);
	appendStringInfoString(&body, ",\"table\":");
	escape_json(&body, chunk.table);
	appendStringInfo(&body, ",\"snapshot\":{\"id\":%lld,\"reason\":", (long long) request.id);
	escape_json(&body, request.reason);
	appendStringInfo(&body, ",\"state\":\"%s\"}", state);
	memset(facts, 0, sizeof(*facts));
	facts->kind = ENGAGE_RECORD_ROW;
	facts->op = "snapshot";
	facts->transactional = true;
	facts->table = (EngageBytes) {chunk.table, strlen(chunk.table)};
	facts->topic = (EngageBytes) {topic, strlen(topic)};
	facts->key = facts->table;
	resetStringInfo(out);
	h->snapshot.write_read(plugin, out, "snapshot", body.data, body.len, facts);
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
	EngageHandoff *h = plugin;

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
		h->snapshot.write_read(plugin, out, "read", arena + row->body, row->body_len, facts);
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

/*
 * Records the progress of the chunks Kafka acknowledged (all before acked),
 * in one transaction; a snapshot whose last chunk is among them is done.
 */
static void
record_acknowledged(XLogRecPtr acked, ResourceOwner owner)
{
	List	   *remaining = NIL;
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
		if (w->progress.last)
			ereport(LOG, (errmsg("pg_engage shipper: snapshot %lld of %s is done; "
								 "%lld rows changed by updates while read were read again",
								 (long long) w->request, request.table, (long long) reread_rows)));
	}
	if (!any)
		return;
	end_work(owner);
	{
		MemoryContext old = MemoryContextSwitchTo(snap_cxt);

		written = list_copy(remaining);
		MemoryContextSwitchTo(old);
	}
}

/* Makes the chunk's snapshot S the one of the running transaction. */
static void
keep_snapshot(Snapshot snap)
{
	chunk.xmin = snap->xmin;
	chunk.xmax = snap->xmax;
	chunk.xcnt = snap->xcnt;
	chunk.xip = palloc(sizeof(TransactionId) * Max(snap->xcnt, 1));
	memcpy(chunk.xip, snap->xip, sizeof(TransactionId) * snap->xcnt);
	qsort(chunk.xip, chunk.xcnt, sizeof(TransactionId), xid_cmp);
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

/* An alias for the table's rows that is none of its column names. */
static char *
row_alias(TupleDesc desc)
{
	char	   *alias = pstrdup("r");

	for (int i = 0; i < desc->natts; i++)
		if (strcmp(NameStr(TupleDescAttr(desc, i)->attname), alias) == 0)
		{
			alias = psprintf("%s_", alias);
			i = -1;
		}
	return alias;
}

/*
 * The query of a chunk: the whole row and its key columns as text, after
 * the last key ($1...) when there is one, or (by_keys) of the keys in the
 * arrays $1..., in key order.  ONLY a plain table
 * (not its inheritance children); a partitioned table with its partitions.
 */
static char *
chunk_query(Relation rel, int *keys, int nkeys, bool after, bool by_keys)
{
	TupleDesc	desc = RelationGetDescr(rel);
	char	   *alias = row_alias(desc);
	StringInfoData q;
	StringInfoData cols;

	initStringInfo(&q);
	initStringInfo(&cols);
	appendStringInfo(&q, "SELECT %s", alias);
	for (int k = 0; k < nkeys; k++)
	{
		const char *col = quote_identifier(NameStr(TupleDescAttr(desc, keys[k] - 1)->attname));

		appendStringInfo(&q, ", %s.%s::pg_catalog.text", alias, col);
		appendStringInfo(&cols, "%s%s.%s", k ? ", " : "", alias, col);
	}
	appendStringInfo(&q, " FROM %s%s AS %s",
					 rel->rd_rel->relkind == RELKIND_PARTITIONED_TABLE ? "" : "ONLY ",
					 quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
												RelationGetRelationName(rel)), alias);
	if (after || by_keys)
	{
		appendStringInfo(&q, by_keys ? " WHERE ROW(%s) IN (SELECT * FROM ROWS FROM (" :
						 " WHERE ROW(%s) > ROW(", cols.data);
		for (int k = 0; k < nkeys; k++)
		{
			Oid			type = TupleDescAttr(desc, keys[k] - 1)->atttypid;

			if (by_keys)
				appendStringInfo(&q, "%spg_catalog.unnest($%d::pg_catalog.text[]::%s[])",
								 k ? ", " : "", k + 1, format_type_be_qualified(type));
			else
				appendStringInfo(&q, "%s$%d::pg_catalog.text::%s", k ? ", " : "", k + 1,
								 format_type_be_qualified(type));
		}
		appendStringInfoString(&q, by_keys ? "))" : ")");
	}
	appendStringInfo(&q, " ORDER BY %s", cols.data);
	return q.data;
}

/* The attribute numbers of the key records carry as "pk"; 0 when none. */
static int
key_columns(Relation rel, int **keys)
{
	Oid			indexoid = RelationGetReplicaIndex(rel);
	Relation	index;
	int			n;

	if (!OidIsValid(indexoid))
		indexoid = RelationGetPrimaryKeyIndex(rel);
	if (!OidIsValid(indexoid))
		return 0;
	index = index_open(indexoid, AccessShareLock);
	n = index->rd_index->indnkeyatts;
	*keys = palloc(sizeof(int) * n);
	for (int k = 0; k < n; k++)
		(*keys)[k] = index->rd_index->indkey.values[k];
	index_close(index, AccessShareLock);
	return n;
}

/* Appends len bytes to the chunk's arena; returns their offset. */
static int
arena_add(const char *data, int len)
{
	int			off = chunk.arena.len;

	appendBinaryStringInfo(&chunk.arena, data, len);
	return off;
}

/*
 * Adds the row tuple (a row of rel) to the chunk, written by the plugin,
 * with the texts of its key (columns 2... of row i of rows).
 */
static void
add_row(void *erel, HeapTuple tuple, StringInfo body, SPITupleTable *rows, uint64 i)
{
	EngageHandoff *h = plugin;
	EngageRecordFacts facts;
	ChunkRow   *row;

	resetStringInfo(body);
	h->snapshot.write_row(plugin, erel, tuple, body, &facts);
	if (chunk.nrows == chunk.maxrows)
	{
		chunk.maxrows *= 2;
		chunk.rows = repalloc(chunk.rows, sizeof(ChunkRow) * chunk.maxrows);
	}
	row = &chunk.rows[chunk.nrows++];
	memset(row, 0, sizeof(*row));
	row->key = row->topic = -1;
	if (facts.key.data != NULL)
	{
		row->key_len = facts.key.len;
		row->key = arena_add(facts.key.data, facts.key.len);
		row->hash = hash_bytes((const unsigned char *) facts.key.data, facts.key.len);
	}
	if (facts.topic.data != NULL)
	{
		row->topic_len = facts.topic.len;
		row->topic = arena_add(facts.topic.data, facts.topic.len);
	}
	if (facts.no_topic_reason != NULL)
		row->no_topic_reason = pstrdup(facts.no_topic_reason);
	row->body_len = body->len;
	row->body = arena_add(body->data, body->len);
	row->keytext = chunk.arena.len;
	for (int k = 0; k < chunk.nkeys; k++)
	{
		char	   *text = SPI_getvalue(rows->vals[i], rows->tupdesc, k + 2);

		arena_add(text, strlen(text) + 1);
		pfree(text);
	}
}

/* Indexes the chunk's rows by the hash of their key, for snapshot_saw_row(). */
static void
index_rows(void)
{
	uint32		size = 16;

	while (size < (uint32) chunk.nrows * 2)
		size *= 2;
	chunk.index = palloc0(sizeof(int) * size);
	chunk.index_mask = size - 1;
	for (int i = 0; i < chunk.nrows; i++)
	{
		uint32		slot;

		if (chunk.rows[i].key < 0)
			continue;
		for (slot = chunk.rows[i].hash & chunk.index_mask; chunk.index[slot] != 0;
			 slot = (slot + 1) & chunk.index_mask)
			;
		chunk.index[slot] = i + 1;
	}
}

/* Keeps the key texts of the cursor's row i (columns 2...) as the chunk's last key. */
static void
keep_last_key(SPITupleTable *rows, uint64 i, int nkeys)
{
	chunk.nkeys = nkeys;
	chunk.last_key = MemoryContextAlloc(chunk_cxt, sizeof(char *) * nkeys);
	for (int k = 0; k < nkeys; k++)
		chunk.last_key[k] = MemoryContextStrdup(chunk_cxt,
												SPI_getvalue(rows->vals[i], rows->tupdesc, k + 2));
}

/*
 * Reads the chunk's rows from the cursor into it: at most
 * engage.snapshot_chunk_rows rows or CHUNK_MAX_BYTES.  Sets chunk.last when
 * the table ended first.
 */
static void
read_rows(Portal cursor, void *erel, int nkeys)
{
	StringInfoData body;
	int			wanted = engage_snapshot_chunk_rows;

	initStringInfo(&body);
	chunk.last = false;
	if (chunk.is_reread)
		wanted = INT_MAX;		/* every key asked for, whatever their size */
	while (chunk.nrows < wanted && (chunk.is_reread || chunk.arena.len < CHUNK_MAX_BYTES))
	{
		SPITupleTable *rows;
		uint64		n;
		uint64		i;

		SPI_cursor_fetch(cursor, true, Min(FETCH_ROWS, wanted - chunk.nrows));
		/* SPI left its own context current: the chunk's rows go to the chunk's. */
		MemoryContextSwitchTo(chunk_cxt);
		rows = SPI_tuptable;
		n = SPI_processed;
		if (n == 0)
		{
			chunk.last = true;
			break;
		}
		for (i = 0; i < n && (chunk.is_reread || chunk.arena.len < CHUNK_MAX_BYTES); i++)
		{
			bool		isnull;
			HeapTupleHeader th = DatumGetHeapTupleHeader(SPI_getbinval(rows->vals[i], rows->tupdesc, 1, &isnull));
			HeapTupleData tuple = {.t_len = HeapTupleHeaderGetDatumLength(th), .t_data = th,
			.t_tableOid = chunk.relid};

			ItemPointerSetInvalid(&tuple.t_self);
			add_row(erel, &tuple, &body, rows, i);
		}
		if (!chunk.is_reread)
			keep_last_key(rows, i - 1, nkeys);
		SPI_freetuptable(rows);
	}
	pfree(body.data);
}

/* Writes the chunk's watermark in the running transaction. */
static void
write_watermark(void)
{
	StringInfoData content;
	StringInfoData message;
	uint64		nonce;

	if (!pg_strong_random(&nonce, sizeof(nonce)))
		elog(ERROR, "could not generate a snapshot watermark");
	snprintf(chunk.nonce, sizeof(chunk.nonce), "%016llx", (unsigned long long) nonce);
	initStringInfo(&content);
	appendStringInfo(&content, "{\"snapshot\":%lld,\"chunk\":%lld,\"nonce\":\"%s\",\"rows\":%d}",
					 (long long) request.id, (long long) chunk_no, chunk.nonce, chunk.nrows);
	initStringInfo(&message);
	engage_sign(&message, ENGAGE_MAC_WATERMARK, GetTopTransactionId(), content.data, content.len);
	appendBinaryStringInfo(&message, content.data, content.len);
	LogLogicalMessage(ENGAGE_WATERMARK_PREFIX, message.data, message.len, true);
}

/* The k-th key column of the keys to read again, as a text[] datum. */
static Datum
reread_array(int k)
{
	Datum	   *elems = palloc(sizeof(Datum) * nreread);

	for (int i = 0; i < nreread; i++)
		elems[i] = CStringGetTextDatum(reread[i][k]);
	return PointerGetDatum(construct_array(elems, nreread, TEXTOID, -1, false, TYPALIGN_INT));
}

/*
 * Reads the next chunk of the request's table (or the rows to read again)
 * and writes its watermark, in
 * the running transaction; NULL, or why the snapshot cannot go on.
 */
static const char *
read_chunk(void)
{
	EngageHandoff *h = plugin;
	Relation	rel;
	void	   *erel;
	int		   *keys = NULL;
	int			nkeys;
	Datum	   *args;
	Oid		   *types;
	Portal		cursor;
	bool		after = request.last_key != NULL;

	if (!ConditionalLockRelationOid(request.relid, AccessShareLock))
		return "";				/* busy (DDL): next turn */
	rel = try_relation_open(request.relid, NoLock);
	if (rel == NULL)
		return "the table was dropped";
	nkeys = key_columns(rel, &keys);
	if (nkeys == 0)
	{
		relation_close(rel, NoLock);
		return "the table has no primary key or replica identity index any more";
	}
	if ((after && request.nkeys != nkeys) || (nreread > 0 && reread_nkeys != nkeys))
	{
		relation_close(rel, NoLock);
		return "the table's key changed during the snapshot";
	}
	erel = h->snapshot.open_rel(plugin, rel);
	if (erel == NULL)
	{
		relation_close(rel, NoLock);
		return "the table is not captured any more (engage.tables)";
	}
	keep_snapshot(GetActiveSnapshot());
	chunk.relid = request.relid;
	chunk.table = psprintf("%s.%s", get_namespace_name(RelationGetNamespace(rel)),
						   RelationGetRelationName(rel));
	chunk.nkeys = nkeys;
	chunk.is_reread = nreread > 0;
	if (chunk.is_reread)
		after = false;
	chunk.first = !chunk.is_reread && !after;
	args = palloc(sizeof(Datum) * nkeys);
	types = palloc(sizeof(Oid) * nkeys);
	for (int k = 0; k < nkeys; k++)
	{
		types[k] = chunk.is_reread ? TEXTARRAYOID : TEXTOID;
		args[k] = chunk.is_reread ? reread_array(k) :
			after ? CStringGetTextDatum(request.last_key[k]) : (Datum) 0;
	}
	cursor = SPI_cursor_open_with_args(NULL, chunk_query(rel, keys, nkeys, after, chunk.is_reread),
									   after || chunk.is_reread ? nkeys : 0, types, args,
									   NULL, true, 0);
	MemoryContextSwitchTo(chunk_cxt);
	read_rows(cursor, erel, nkeys);
	index_rows();
	SPI_cursor_close(cursor);
	h->snapshot.close_rel(plugin, erel);
	relation_close(rel, NoLock);
	write_watermark();
	snapshot_mark_running(request.id);
	return NULL;
}

/* Gives up the request with why, recorded and logged. */
static void
fail_request(const char *why, ResourceOwner owner)
{
	ereport(WARNING,
			(errmsg("pg_engage shipper: snapshot %lld of %s failed: %s",
					(long long) request.id, request.table, why),
			 errhint("See engage.snapshots; request a new one with engage.snapshot() once the cause is fixed.")));
	begin_work();
	snapshot_record_failure(request.id, why);
	end_work(owner);
	have_request = false;
	nreread = 0;
	progress_held = false;
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
		state = snapshot_request_state(request.id);
		MemoryContextSwitchTo(chunk_cxt);
		if (state == NULL || strcmp(state, "cancelled") == 0 || strcmp(state, "failed") == 0)
			why = "cancelled";
		else
			why = read_chunk();
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
								 (long long) request.id, request.table)));
			have_request = false;
			nreread = 0;
			progress_held = false;
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
	request.nkeys = chunk.nkeys;
	request.last_key = palloc(sizeof(char *) * chunk.nkeys);
	for (int i = 0; i < chunk.nkeys; i++)
		request.last_key[i] = pstrdup(chunk.last_key[i]);
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
	have_request = snapshot_next_request(&request, snap_cxt);
	end_work(owner);
	if (have_request)
	{
		request_exhausted = false;
		reread_rows = 0;
		chunk_no = 0;
		ereport(LOG, (errmsg("pg_engage shipper: snapshot %lld of %s %s",
							 (long long) request.id, request.table,
							 request.last_key ? "resumes" : "starts")));
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

	if (plugin == NULL)
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
