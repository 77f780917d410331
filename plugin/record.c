/*
 * record.c
 *		The parts of an event record: its opening and closing, the relation,
 *		key and row objects; and the facts handed over with it.
 */
#include "engage_decoder.h"

#include "access/htup_details.h"
#include "replication/output_plugin.h"
#include "utils/builtins.h"

/* Writes lsn as PostgreSQL's text form "X/X" into buf; returns its length. */
int
engage_lsn_chars(XLogRecPtr lsn, char *buf)
{
	static const char hex[] = "0123456789ABCDEF";
	uint32		parts[2] = {(uint32) (lsn >> 32), (uint32) lsn};
	char	   *p = buf;

	for (int i = 0; i < 2; i++)
	{
		int			shift = 28;

		if (i == 1)
			*p++ = '/';
		while (shift > 0 && ((parts[i] >> shift) & 0xf) == 0)
			shift -= 4;
		for (; shift >= 0; shift -= 4)
			*p++ = hex[(parts[i] >> shift) & 0xf];
	}
	*p = '\0';
	return p - buf;
}

/*
 * Writes the opening of a record: {"v":1,"id":"<commit lsn>:<position>",
 * "lsn":"<change lsn>","xid":<xid>,"ts":<commit time>,"op":"<op>"
 * and notes where its id and LSN are.
 */
static void
write_header(EngageState *state, StringInfo out, EngageTxn *etxn, XLogRecPtr lsn,
			 TransactionId xid, const char *op)
{
	char		buf[32];
	int			len;

	enlargeStringInfo(out, 512);
	appendBinaryStringInfo(out, "{\"v\":1,\"id\":\"", 13);
	state->id_off = out->len;
	appendBinaryStringInfo(out, etxn->commit_lsn, etxn->commit_lsn_len);
	appendStringInfoCharMacro(out, ':');
	len = pg_ultoa_n(etxn->position, buf);
	appendBinaryStringInfo(out, buf, len);
	state->handoff.facts.id.len = out->len - state->id_off;
	appendBinaryStringInfo(out, "\",\"lsn\":\"", 9);
	state->lsn_off = out->len;
	state->handoff.facts.lsn.len = engage_lsn_chars(lsn, buf);
	appendBinaryStringInfo(out, buf, state->handoff.facts.lsn.len);
	appendBinaryStringInfo(out, "\",\"xid\":", 8);
	len = pg_ultoa_n(xid, buf);
	appendBinaryStringInfo(out, buf, len);
	appendBinaryStringInfo(out, ",\"ts\":", 6);
	appendBinaryStringInfo(out, etxn->ts, etxn->ts_len);
	appendBinaryStringInfo(out, ",\"op\":\"", 7);
	appendStringInfoString(out, op);
	appendStringInfoCharMacro(out, '"');
}

/* Starts the facts of a new record of kind and op: nothing else known yet. */
void
engage_reset_facts(EngageState *state, EngageRecordKind kind, const char *op)
{
	EngageRecordFacts *facts = &state->handoff.facts;

	memset(facts, 0, sizeof(*facts));
	facts->kind = kind;
	facts->op = op;
	facts->transactional = true;
	state->key_off = -1;
}

/* Starts an event record: prepares the write, writes the header, resets the facts. */
void
engage_open_record(LogicalDecodingContext *ctx, EngageTxn *etxn, XLogRecPtr lsn,
				   TransactionId xid, EngageRecordKind kind, const char *op)
{
	EngageState *state = ctx->output_plugin_private;

	engage_reset_facts(state, kind, op);
	OutputPluginPrepareWrite(ctx, true);
	write_header(state, ctx->out, etxn, lsn, xid, op);
}

/* Ends an event record: closes the object, completes the facts, writes it. */
void
engage_close_record(LogicalDecodingContext *ctx, EngageTxn *etxn)
{
	EngageState *state = ctx->output_plugin_private;
	EngageRecordFacts *facts = &state->handoff.facts;
	StringInfo	out = ctx->out;

	appendStringInfoCharMacro(out, '}');
	/* Offsets become pointers only now: the buffer may have moved. */
	facts->id.data = out->data + state->id_off;
	facts->lsn.data = out->data + state->lsn_off;
	if (state->key_off >= 0)
	{
		facts->key.data = out->data + state->key_off;
		facts->key.len = state->key_len;
	}
	OutputPluginWrite(ctx, true);
	etxn->events++;
}

/*
 * Writes ,"table":...(,"partition":...),"schema":... of a relation and notes
 * where it goes.
 */
void
engage_write_rel(StringInfo out, EngageRel *erel, EngageRecordFacts *facts)
{
	appendStringInfoString(out, erel->table);
	if (erel->partition)
		appendStringInfoString(out, erel->partition);
	appendStringInfoString(out, erel->schema);
	facts->table.data = erel->qualname;
	facts->table.len = strlen(erel->qualname);
	facts->relid = erel->root;
	if (erel->topic)
	{
		facts->topic.data = erel->topic;
		facts->topic.len = strlen(erel->topic);
	}
	facts->no_topic_reason = erel->no_topic_reason;
}

/* Is this datum an unchanged TOAST value that the WAL does not carry? */
static inline bool
is_unchanged_toast(EngageColumn *col, Datum value)
{
	return col->type.typlen == -1 &&
		VARATT_IS_EXTERNAL_ONDISK(DatumGetPointer(value));
}

/* Splits tuple into the values and nulls of row. */
void
engage_deform_row(EngageRow *row, TupleDesc desc, HeapTuple tuple)
{
	row->natts = desc->natts;
	row->values = palloc(sizeof(Datum) * desc->natts);
	row->nulls = palloc(sizeof(bool) * desc->natts);
	heap_deform_tuple(tuple, desc, row->values, row->nulls);
}

/* Writes ,"<field><suffix>":[...] listing the quoted column names in names. */
static void
write_name_list(StringInfo out, const char *field, const char *suffix, List *names)
{
	ListCell   *lc;

	/* The new row's lists are the documented "unchanged_toast", "json_null". */
	if (strcmp(field, "new") == 0)
		appendStringInfo(out, ",\"%s\":[", suffix);
	else
		appendStringInfo(out, ",\"%s_%s\":[", field, suffix);
	foreach(lc, names)
	{
		if (lc != list_head(names))
			appendStringInfoCharMacro(out, ',');
		appendStringInfoString(out, lfirst(lc));
	}
	appendStringInfoCharMacro(out, ']');
}

/* Is the JSON text out->data[start..] the literal null (blanks around it)? */
static bool
wrote_json_null(StringInfo out, int start)
{
	const char *p = out->data + start;
	const char *end = out->data + out->len;

	while (p < end && *p == ' ')
		p++;
	while (end > p && end[-1] == ' ')
		end--;
	return end - p == 4 && memcmp(p, "null", 4) == 0;
}

/*
 * Writes ,"<field>":{...} for a row: every live column, or only the key
 * columns.  Unchanged TOAST values are left out and their names listed in
 * ,"unchanged_toast":[...]; json and jsonb columns holding the JSON value
 * null (not SQL NULL) are listed in ,"json_null":[...].  Lists of other rows
 * than "new" are named after the row ("old_unchanged_toast", ...).  Returns
 * the offset in out just after the row object.
 */
int
engage_write_row(StringInfo out, const char *field, EngageRel *erel,
				 EngageRow *row, bool keys_only)
{
	int			n = keys_only ? erel->nkeys : erel->ncols;
	List	   *toasted = NIL;
	List	   *json_nulls = NIL;
	bool		first = true;
	int			end;

	appendStringInfoCharMacro(out, ',');
	appendStringInfoCharMacro(out, '"');
	appendStringInfoString(out, field);
	appendBinaryStringInfo(out, "\":{", 3);
	for (int k = 0; k < n; k++)
	{
		EngageColumn *col = &erel->cols[keys_only ? erel->keys[k] : k];
		int			i = col->attnum - 1;
		bool		isnull = (i >= row->natts || row->nulls[i]);
		int			start;

		if (!isnull && is_unchanged_toast(col, row->values[i]))
		{
			toasted = lappend(toasted, col->bare);
			continue;
		}
		if (!first)
			appendStringInfoCharMacro(out, ',');
		first = false;
		appendBinaryStringInfo(out, col->name, col->namelen);
		if (isnull)
		{
			appendBinaryStringInfo(out, "null", 4);
			continue;
		}
		start = out->len;
		engage_json_value(out, row->values[i], &col->type);
		if (col->type.kind == EV_JSON && wrote_json_null(out, start))
			json_nulls = lappend(json_nulls, col->bare);
	}
	appendStringInfoCharMacro(out, '}');
	end = out->len;
	if (toasted != NIL)
		write_name_list(out, field, "unchanged_toast", toasted);
	if (json_nulls != NIL)
		write_name_list(out, field, "json_null", json_nulls);
	return end;
}

/* Does row carry every key column's value (none left out as unchanged TOAST)? */
static bool
has_whole_key(EngageRel *erel, EngageRow *row)
{
	for (int k = 0; k < erel->nkeys; k++)
	{
		EngageColumn *col = &erel->cols[erel->keys[k]];
		int			i = col->attnum - 1;

		if (i < row->natts && !row->nulls[i] && is_unchanged_toast(col, row->values[i]))
			return false;
	}
	return true;
}

/*
 * Writes ,"pk":{...} with the key columns of the new row, or of the old one
 * when the new one lacks a key value (an unchanged TOASTed key, which
 * PostgreSQL then logs with the old key), or ,"pk":null.  Notes where the key
 * object is: it is the Kafka key.
 */
void
engage_write_key(EngageState *state, StringInfo out, EngageRel *erel,
				 EngageRow *newrow, EngageRow *oldrow)
{
	EngageRow  *row = newrow;

	if (row == NULL || !has_whole_key(erel, row))
		row = oldrow;
	if (erel->nkeys == 0 || row == NULL || !has_whole_key(erel, row))
	{
		appendBinaryStringInfo(out, ",\"pk\":null", 10);
		return;
	}
	state->key_off = out->len + 6;	/* after ,"pk": */
	state->key_len = engage_write_row(out, "pk", erel, row, true) - state->key_off;
}

/*
 * Writes a read record of a snapshot at the place of the watermark being
 * written (state->wm_txn): the next position of the watermark's transaction,
 * its LSN and time, op ("read" or "snapshot"), then body.  Sets the id and lsn of facts,
 * leaving the facts of the watermark record as they are.
 */
void
engage_write_read_record(EngageState *state, StringInfo out, const char *op, const char *body,
						 int len, EngageRecordFacts *facts)
{
	EngageRecordFacts watermark = state->handoff.facts;
	EngageTxn  *etxn = state->wm_txn;

	if (etxn == NULL)
		elog(ERROR, "engage_decoder: a read record can only be written at a watermark");
	etxn->position++;
	write_header(state, out, etxn, state->wm_lsn, state->wm_xid, op);
	facts->id.len = state->handoff.facts.id.len;
	facts->lsn.len = state->handoff.facts.lsn.len;
	state->handoff.facts = watermark;
	appendBinaryStringInfo(out, body, len);
	appendStringInfoCharMacro(out, '}');
	facts->id.data = out->data + state->id_off;
	facts->lsn.data = out->data + state->lsn_off;
	etxn->events++;
}
