/*
 * snapshotread.c
 *		Reading a snapshot's next chunk from its table (see snapshot.c for
 *		how the chunk is placed in the stream).
 *
 * In the running transaction, with its MVCC snapshot S: the rows after the
 * last key read (or the keys to read again), in key order, through a
 * cursor; each row's record body written by the plugin into the chunk's
 * arena with its key's texts; then the watermark, a logical message only the
 * shipper can write, naming the chunk by a random nonce.
 */
#include "engage.h"
#include "snapshot.h"

#include <limits.h>

#include "access/genam.h"
#include "access/relation.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "replication/message.h"
#include "storage/lmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/snapmgr.h"

/* Makes the chunk's snapshot S the one of the running transaction. */
static void
keep_snapshot(Snapshot snap)
{
	chunk.xmin = snap->xmin;
	chunk.xmax = snap->xmax;
	chunk.xcnt = snap->xcnt;
	chunk.xip = palloc(sizeof(TransactionId) * Max(snap->xcnt, 1));
	memcpy(chunk.xip, snap->xip, sizeof(TransactionId) * snap->xcnt);
	qsort(chunk.xip, chunk.xcnt, sizeof(TransactionId), snapshot_xid_cmp);
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
	/* Planned for one chunk: no sort of what is left, no JIT for a whole table. */
	if (!by_keys)
		appendStringInfo(&q, " LIMIT %d", engage_snapshot_chunk_rows);
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
	EngageHandoff *h = snap_plugin;
	EngageRecordFacts facts;
	ChunkRow   *row;

	resetStringInfo(body);
	h->snapshot.write_row(snap_plugin, erel, tuple, body, &facts);
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
					 (long long) snap_request.id, (long long) chunk_no, chunk.nonce, chunk.nrows);
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
const char *
snapshot_read_chunk(void)
{
	EngageHandoff *h = snap_plugin;
	Relation	rel;
	void	   *erel;
	int		   *keys = NULL;
	int			nkeys;
	Datum	   *args;
	Oid		   *types;
	Portal		cursor;
	bool		after = snap_request.last_key != NULL;

	if (!ConditionalLockRelationOid(snap_request.relid, AccessShareLock))
		return "";				/* busy (DDL): next turn */
	rel = try_relation_open(snap_request.relid, NoLock);
	if (rel == NULL)
		return "the table was dropped";
	nkeys = key_columns(rel, &keys);
	if (nkeys == 0)
	{
		relation_close(rel, NoLock);
		return "the table has no primary key or replica identity index any more";
	}
	if ((after && snap_request.nkeys != nkeys) || (nreread > 0 && reread_nkeys != nkeys))
	{
		relation_close(rel, NoLock);
		return "the table's key changed during the snapshot";
	}
	erel = h->snapshot.open_rel(snap_plugin, rel);
	if (erel == NULL)
	{
		relation_close(rel, NoLock);
		return "the table is not captured any more (engage.tables)";
	}
	keep_snapshot(GetActiveSnapshot());
	chunk.relid = snap_request.relid;
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
			after ? CStringGetTextDatum(snap_request.last_key[k]) : (Datum) 0;
	}
	cursor = SPI_cursor_open_with_args(NULL, chunk_query(rel, keys, nkeys, after, chunk.is_reread),
									   after || chunk.is_reread ? nkeys : 0, types, args,
									   NULL, true, 0);
	MemoryContextSwitchTo(chunk_cxt);
	read_rows(cursor, erel, nkeys);
	index_rows();
	SPI_cursor_close(cursor);
	h->snapshot.close_rel(snap_plugin, erel);
	relation_close(rel, NoLock);
	write_watermark();
	snapshot_mark_running(snap_request.id);
	return NULL;
}
