/*
 * engage_decoder.c
 *		Logical decoding output plugin writing engage event records.
 *
 * Every committed row change of a captured table becomes one JSON record;
 * logical messages with the prefix "engage" (written by engage.emit()) become
 * records with op "message".  A record's id is the commit LSN of its
 * transaction and the change's 1-based position in it, so decoding the same
 * WAL again gives the same ids.  Positions count every change of the
 * transaction, captured or not, so the table filter does not change ids; an
 * update that changes the row's key is written as a delete and an insert and
 * takes two positions (keychange.c).  Next to each record's text the plugin
 * sets the facts an in-process consumer routes on (engage_handoff.h).
 */
#include "engage_decoder.h"

#include "access/detoast.h"

#include "replication/output_plugin.h"
#include "utils/memutils.h"

PG_MODULE_MAGIC;

extern PGDLLEXPORT void _PG_output_plugin_init(OutputPluginCallbacks *cb);

/* Starts a decoding session: options, state, relation cache. */
static void
engage_startup(LogicalDecodingContext *ctx, OutputPluginOptions *opt, bool is_init)
{
	MemoryContext old = MemoryContextSwitchTo(ctx->context);
	EngageState *state = palloc0(sizeof(EngageState));

	state->handoff.magic = ENGAGE_HANDOFF_MAGIC;
	state->handoff.version = ENGAGE_HANDOFF_VERSION;
	state->change_cxt = AllocSetContextCreate(ctx->context, "engage_decoder change",
											  ALLOCSET_DEFAULT_SIZES);
	engage_snapshot_calls_init(&state->handoff.snapshot);
	engage_parse_options(ctx->output_plugin_options, &state->opts);
	engage_relcache_init();
	ctx->output_plugin_private = state;
	opt->output_type = OUTPUT_PLUGIN_TEXTUAL_OUTPUT;
	opt->receive_rewrites = false;
	MemoryContextSwitchTo(old);
}

/* Ends a decoding session. */
static void
engage_shutdown(LogicalDecodingContext *ctx)
{
	engage_relcache_reset();
}

/* Sets up the per-transaction state: commit LSN and time as text. */
static void
engage_begin(LogicalDecodingContext *ctx, ReorderBufferTXN *txn)
{
	EngageTxn  *etxn = MemoryContextAllocZero(ctx->context, sizeof(EngageTxn));

	etxn->commit_lsn_len = engage_lsn_chars(txn->final_lsn, etxn->commit_lsn);
	etxn->ts_len = engage_json_timestamp(etxn->ts, txn->xact_time.commit_time, true);
	etxn->ts[etxn->ts_len] = '\0';
	txn->output_plugin_private = etxn;
}

/* Sets the facts of a begin or commit record. */
static void
boundary_facts(LogicalDecodingContext *ctx, EngageRecordKind kind, const char *op,
			   XLogRecPtr end_lsn)
{
	EngageState *state = ctx->output_plugin_private;

	engage_reset_facts(state, kind, op);
	state->handoff.facts.end_lsn = end_lsn;
}

/* Writes the begin record before the transaction's first event, if asked. */
void
write_begin_once(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, EngageTxn *etxn)
{
	EngageState *state = ctx->output_plugin_private;

	if (!state->opts.transactions || etxn->begun)
		return;
	etxn->begun = true;
	/* The end of its commit record is known: the reorder buffer replays at commit. */
	boundary_facts(ctx, ENGAGE_RECORD_BEGIN, "begin", txn->end_lsn);
	OutputPluginPrepareWrite(ctx, false);
	appendStringInfo(ctx->out, "{\"v\":1,\"op\":\"begin\",\"xid\":%u,\"lsn\":\"%s\",\"ts\":%s}",
					 txn->xid, etxn->commit_lsn, etxn->ts);
	OutputPluginWrite(ctx, false);
}

/* Writes the commit record of a transaction that had events, if asked. */
static void
engage_commit(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, XLogRecPtr commit_lsn)
{
	EngageTxn  *etxn = txn->output_plugin_private;
	char		end_lsn[20];

	if (etxn->begun)
	{
		engage_lsn_chars(txn->end_lsn, end_lsn);
		boundary_facts(ctx, ENGAGE_RECORD_COMMIT, "commit", txn->end_lsn);
		OutputPluginPrepareWrite(ctx, true);
		appendStringInfo(ctx->out,
						 "{\"v\":1,\"op\":\"commit\",\"xid\":%u,\"lsn\":\"%s\","
						 "\"end_lsn\":\"%s\",\"ts\":%s,\"events\":%u}",
						 txn->xid, etxn->commit_lsn, end_lsn, etxn->ts, etxn->events);
		OutputPluginWrite(ctx, true);
	}
	pfree(etxn);
	txn->output_plugin_private = NULL;
}

/*
 * The bytes of a row's values as stored, uncompressed: a floor of their JSON
 * size.  Unchanged TOASTed values are not in WAL and not written: not counted.
 */
Size
row_raw_size(EngageRow *row, TupleDesc desc)
{
	Size		size = 0;

	for (int i = 0; i < row->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (row->nulls[i] || att->attisdropped)
			continue;
		if (att->attlen == -1 && VARATT_IS_EXTERNAL_ONDISK(DatumGetPointer(row->values[i])))
			continue;
		size += att->attlen == -1 ? toast_raw_datum_size(row->values[i]) :
			att->attlen > 0 ? att->attlen : 16;
	}
	return size;
}

/*
 * Makes the record being written an oversized one: its values (from
 * out->data[values_at] on) dropped, ,"oversized_bytes":<size> instead, and no
 * topic, with the reason, so the shipper dead-letters it or stops.
 */
void
write_oversized(EngageState *state, StringInfo out, int values_at, Size size)
{
	EngageRecordFacts *facts = &state->handoff.facts;

	out->len = values_at;
	out->data[out->len] = '\0';
	appendStringInfo(out, ",\"oversized_bytes\":%zu", size);
	facts->topic.data = NULL;
	facts->topic.len = 0;
	facts->no_topic_reason = psprintf("a record of %.*s is too large: at least %zu bytes, more "
									  "than max_record_bytes (%d); written without its values",
									  facts->table.len, facts->table.data, size,
									  state->opts.max_record_bytes);
}

/*
 * Writes the values of a row record after its key: ,"new":{...} (newrow, if
 * any) and ,"old":{...} (oldrow: the whole row when full, else its key), or
 * ,"old":null for a delete without old values; or, when they would make the
 * record larger than max_record_bytes, only ,"oversized_bytes":<size>.
 */
void
engage_write_values(EngageState *state, StringInfo out, EngageRel *erel, TupleDesc desc,
					EngageRow *newrow, EngageRow *oldrow, bool full, bool is_delete)
{
	int			values_at = out->len;
	Size		raw;

	raw = (newrow ? row_raw_size(newrow, desc) : 0) + (oldrow ? row_raw_size(oldrow, desc) : 0);
	if (raw > (Size) state->opts.max_record_bytes)
	{
		write_oversized(state, out, values_at, raw);
		return;
	}
	if (newrow)
		engage_write_row(out, "new", erel, newrow, false);
	if (oldrow)
		engage_write_row(out, "old", erel, oldrow, !full);
	else if (is_delete)
		appendBinaryStringInfo(out, ",\"old\":null", 11);
	/* Escaping can make the text larger than the values. */
	if (out->len + 1 > state->opts.max_record_bytes)
		write_oversized(state, out, values_at, out->len + 1);
}

/* Writes the body of an insert, update or delete record after the header. */
static void
write_change_body(EngageState *state, StringInfo out, EngageRel *erel, Relation rel,
				  ReorderBufferChange *change)
{
	TupleDesc	desc = RelationGetDescr(rel);
	bool		full = rel->rd_rel->relreplident == REPLICA_IDENTITY_FULL;
	HeapTuple	newtup = change->data.tp.newtuple ? &change->data.tp.newtuple->tuple : NULL;
	HeapTuple	oldtup = change->data.tp.oldtuple ? &change->data.tp.oldtuple->tuple : NULL;
	EngageRow	newrow;
	EngageRow	oldrow;

	engage_write_rel(out, erel, &state->handoff.facts);
	if (newtup)
		engage_deform_row(&newrow, desc, newtup);
	if (oldtup)
		engage_deform_row(&oldrow, desc, oldtup);
	engage_write_key(state, out, erel, newtup ? &newrow : NULL, oldtup ? &oldrow : NULL);
	engage_write_values(state, out, erel, desc, newtup ? &newrow : NULL, oldtup ? &oldrow : NULL,
						full, change->action == REORDER_BUFFER_CHANGE_DELETE);
}

/* The op name of a row change. */
static const char *
change_op(ReorderBufferChange *change)
{
	switch (change->action)
	{
		case REORDER_BUFFER_CHANGE_INSERT:
			return "insert";
		case REORDER_BUFFER_CHANGE_UPDATE:
			return "update";
		case REORDER_BUFFER_CHANGE_DELETE:
			return "delete";
		default:
			elog(ERROR, "unexpected change action %d", change->action);
	}
	return NULL;
}

/*
 * Writes the record of a row change of a captured table: one, or two for an
 * update that changes the key (keychange.c).  Such an update takes two
 * positions also when its table is not captured, so the filter does not
 * change ids.
 */
static void
engage_change(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
			  Relation rel, ReorderBufferChange *change)
{
	EngageState *state = ctx->output_plugin_private;
	EngageTxn  *etxn = txn->output_plugin_private;
	EngageRel  *erel;
	MemoryContext old;
	bool		key_changed;

	etxn->position++;
	erel = engage_rel_get(rel, &state->opts);
	old = MemoryContextSwitchTo(state->change_cxt);
	key_changed = engage_key_changed(erel, rel, change);
	if (!erel->captured)
		etxn->position += key_changed ? 1 : 0;
	else if (key_changed)
	{
		write_begin_once(ctx, txn, etxn);
		engage_write_key_change(ctx, txn, etxn, erel, rel, change);
	}
	else
	{
		write_begin_once(ctx, txn, etxn);
		engage_open_record(ctx, etxn, change->lsn, txn->xid, ENGAGE_RECORD_ROW, change_op(change));
		write_change_body(state, ctx->out, erel, rel, change);
		engage_close_record(ctx, etxn);
	}
	MemoryContextSwitchTo(old);
	MemoryContextReset(state->change_cxt);
}

/* Writes one truncate record per captured table in a TRUNCATE. */
static void
engage_truncate(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
				int nrelations, Relation relations[], ReorderBufferChange *change)
{
	EngageState *state = ctx->output_plugin_private;
	EngageTxn  *etxn = txn->output_plugin_private;
	MemoryContext old = MemoryContextSwitchTo(state->change_cxt);

	for (int i = 0; i < nrelations; i++)
	{
		EngageRel  *erel;

		etxn->position++;
		erel = engage_rel_get(relations[i], &state->opts);
		if (!erel->captured)
			continue;
		write_begin_once(ctx, txn, etxn);
		engage_open_record(ctx, etxn, change->lsn, txn->xid, ENGAGE_RECORD_ROW, "truncate");
		engage_write_rel(ctx->out, erel, &state->handoff.facts);
		appendStringInfo(ctx->out, ",\"cascade\":%s,\"restart_identity\":%s",
						 change->data.truncate.cascade ? "true" : "false",
						 change->data.truncate.restart_seqs ? "true" : "false");
		engage_close_record(ctx, etxn);
	}
	MemoryContextSwitchTo(old);
	MemoryContextReset(state->change_cxt);
}

/*
 * Writes the record of a snapshot watermark the shipper wrote: op
 * "watermark" and its content, never shipped and not counted among the
 * transaction's events.  While the shipper handles it, it may have read
 * records written at its place (snapshotrow.c).
 */
static void
write_watermark(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, EngageTxn *etxn,
				XLogRecPtr lsn, const char *message, Size size)
{
	EngageState *state = ctx->output_plugin_private;
	MemoryContext old = MemoryContextSwitchTo(state->change_cxt);
	const char *content = message + ENGAGE_EMIT_MAC_CHARS;
	int			len = size - ENGAGE_EMIT_MAC_CHARS;

	write_begin_once(ctx, txn, etxn);
	engage_open_record(ctx, etxn, lsn, txn->xid, ENGAGE_RECORD_WATERMARK, "watermark");
	appendBinaryStringInfo(ctx->out, ",\"watermark\":", 13);
	engage_json_one_line(ctx->out, content, len);
	state->handoff.facts.content.data = content;
	state->handoff.facts.content.len = len;
	state->wm_txn = etxn;
	state->wm_lsn = lsn;
	state->wm_xid = txn->xid;
	engage_close_record(ctx, etxn);
	state->wm_txn = NULL;
	etxn->events--;
	MemoryContextSwitchTo(old);
	MemoryContextReset(state->change_cxt);
}

/*
 * Writes a record for a logical message with the engage prefix: an event
 * when engage.emit() wrote it, else a quarantine record (message.c); or the
 * schema records of a message with the schema prefix (schemamsg.c).
 */
static void
engage_message(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
			   XLogRecPtr lsn, bool transactional, const char *prefix,
			   Size size, const char *message)
{
	EngageState *state = ctx->output_plugin_private;
	EngageTxn	untied = {0};
	EngageTxn  *etxn = &untied;
	TransactionId xid = txn ? txn->xid : InvalidTransactionId;
	const char *reason;
	MemoryContext old;

	if (transactional)
		etxn = txn->output_plugin_private;
	else
	{
		/* Outside a transaction the message's own LSN names it. */
		untied.commit_lsn_len = engage_lsn_chars(lsn, untied.commit_lsn);
		strcpy(untied.ts, "null");
		untied.ts_len = 4;
	}
	etxn->position++;
	if (strcmp(prefix, ENGAGE_WATERMARK_PREFIX) == 0 && transactional &&
		engage_verify(ENGAGE_MAC_WATERMARK, xid, message, size))
	{
		write_watermark(ctx, txn, etxn, lsn, message, size);
		return;
	}
	if (strcmp(prefix, ENGAGE_SCHEMA_PREFIX) == 0)
	{
		engage_schema_message(ctx, txn, etxn, lsn, transactional, message, size);
		return;
	}
	if (strcmp(prefix, ENGAGE_MESSAGE_PREFIX) != 0 && strcmp(prefix, ENGAGE_WATERMARK_PREFIX) != 0)
		return;
	old = MemoryContextSwitchTo(state->change_cxt);
	if (transactional)
		write_begin_once(ctx, txn, etxn);
	if (strcmp(prefix, ENGAGE_MESSAGE_PREFIX) == 0)
		reason = engage_message_quarantine_reason(transactional, xid, message, size);
	else
		reason = "a watermark not written by the pg_engage shipper";
	engage_open_record(ctx, etxn, lsn, xid,
					   reason ? ENGAGE_RECORD_QUARANTINE : ENGAGE_RECORD_MESSAGE,
					   reason ? "quarantine" : "message");
	state->handoff.facts.transactional = transactional;
	if (!transactional)
		appendBinaryStringInfo(ctx->out, ",\"transactional\":false", 22);
	if (strcmp(prefix, ENGAGE_MESSAGE_PREFIX) != 0)
	{
		appendBinaryStringInfo(ctx->out, ",\"prefix\":", 10);
		engage_json_string(ctx->out, prefix, strlen(prefix));
	}
	if (reason)
	{
		state->handoff.facts.no_topic_reason = reason;
		appendBinaryStringInfo(ctx->out, ",\"reason\":", 10);
		engage_json_string(ctx->out, reason, strlen(reason));
		engage_write_quarantined_body(state, ctx->out, message, size);
	}
	else
		engage_write_message_body(state, ctx->out, message, size);
	engage_close_record(ctx, etxn);
	MemoryContextSwitchTo(old);
	MemoryContextReset(state->change_cxt);
}

/* Registers the plugin's callbacks. */
void
_PG_output_plugin_init(OutputPluginCallbacks *cb)
{
	AssertVariableIsOfType(&_PG_output_plugin_init, LogicalOutputPluginInit);

	cb->startup_cb = engage_startup;
	cb->begin_cb = engage_begin;
	cb->change_cb = engage_change;
	cb->truncate_cb = engage_truncate;
	cb->message_cb = engage_message;
	cb->commit_cb = engage_commit;
	cb->shutdown_cb = engage_shutdown;
}
