/*
 * keychange.c
 *		Updates that change a row's key: told from the WAL, and written as a
 *		delete under the old key followed by an insert under the new one.
 *
 * PostgreSQL logs the old key of an update only when a key column changed
 * (or holds an out-of-line TOASTed value), and the whole old row under
 * REPLICA IDENTITY FULL; comparing the key columns of the old and new tuples
 * tells a key change.  A consumer that partitions or compacts by the Kafka
 * key must see the old key go, so such an update becomes two records, both
 * with "key_changed":true: a delete under the old key ("old" as the WAL has
 * it, "new_pk" naming where the row went), then an insert under the new key
 * ("old_pk" naming where it came from).  The update takes two positions in
 * its transaction, the delete the first and the insert the second, whether
 * its table is captured or not, so the table filter never changes an id.
 */
#include "engage_decoder.h"

#include "access/htup_details.h"
#include "utils/datum.h"

/* Is this value a TOAST pointer, which the WAL carries only when unchanged? */
static inline bool
is_toast_pointer(Form_pg_attribute att, Datum value)
{
	return att->attlen == -1 && VARATT_IS_EXTERNAL_ONDISK(DatumGetPointer(value));
}

/* Are two values of a key column the same bytes (compression aside)? */
static bool
same_key_value(Form_pg_attribute att, Datum a, Datum b)
{
	struct varlena *va;
	struct varlena *vb;

	if (att->attlen != -1)
		return datumIsEqual(a, b, att->attbyval, att->attlen);
	va = pg_detoast_datum_packed((struct varlena *) DatumGetPointer(a));
	vb = pg_detoast_datum_packed((struct varlena *) DatumGetPointer(b));
	return VARSIZE_ANY_EXHDR(va) == VARSIZE_ANY_EXHDR(vb) &&
		memcmp(VARDATA_ANY(va), VARDATA_ANY(vb), VARSIZE_ANY_EXHDR(va)) == 0;
}

/*
 * Does this change update the row's key?  Only an update whose WAL record
 * carries old values can tell (not under REPLICA IDENTITY NOTHING).  A key
 * column the new tuple holds as a TOAST pointer was not changed.
 */
bool
engage_key_changed(EngageRel *erel, Relation rel, ReorderBufferChange *change)
{
	TupleDesc	desc = RelationGetDescr(rel);
	HeapTuple	oldtup;
	HeapTuple	newtup;

	if (change->action != REORDER_BUFFER_CHANGE_UPDATE || erel->nkeyatts == 0 ||
		change->data.tp.oldtuple == NULL || change->data.tp.newtuple == NULL)
		return false;
	oldtup = &change->data.tp.oldtuple->tuple;
	newtup = &change->data.tp.newtuple->tuple;
	for (int k = 0; k < erel->nkeyatts; k++)
	{
		AttrNumber	attnum = erel->keyatts[k];
		Form_pg_attribute att = TupleDescAttr(desc, attnum - 1);
		bool		oldnull;
		bool		newnull;
		Datum		oldval = heap_getattr(oldtup, attnum, desc, &oldnull);
		Datum		newval = heap_getattr(newtup, attnum, desc, &newnull);

		if (oldnull || newnull)
		{
			if (oldnull != newnull)
				return true;
			continue;
		}
		if (is_toast_pointer(att, newval) || is_toast_pointer(att, oldval))
			continue;
		if (!same_key_value(att, oldval, newval))
			return true;
	}
	return false;
}

/* Is attribute number attnum one of the key's? */
static bool
is_key_attnum(EngageRel *erel, AttrNumber attnum)
{
	for (int k = 0; k < erel->nkeyatts; k++)
		if (erel->keyatts[k] == attnum)
			return true;
	return false;
}

/*
 * Gives the new row the old row's values of the columns it holds only as
 * unchanged TOAST pointers, where the old row has them: every column under
 * REPLICA IDENTITY FULL (the old row is whole), else only key columns.
 */
static void
fill_unchanged(EngageRow *newrow, EngageRow *oldrow, EngageRel *erel, TupleDesc desc, bool full)
{
	for (int i = 0; i < newrow->natts && i < oldrow->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (newrow->nulls[i] || oldrow->nulls[i] || !is_toast_pointer(att, newrow->values[i]) ||
			is_toast_pointer(att, oldrow->values[i]))
			continue;
		if (full || is_key_attnum(erel, att->attnum))
			newrow->values[i] = oldrow->values[i];
	}
}

/* Writes ,"key_changed":true and the row's other key, as "new_pk" or "old_pk". */
static void
write_link(StringInfo out, EngageRel *erel, const char *field, EngageRow *other)
{
	appendBinaryStringInfo(out, ",\"key_changed\":true", 19);
	engage_write_row(out, field, erel, other, true);
}

/*
 * Writes a key-changing update as a delete under the old key (this position)
 * and an insert under the new key (the next one).  The insert has every
 * value under REPLICA IDENTITY FULL; otherwise TOASTed values the update left
 * alone are listed in "unchanged_toast", as in an update.
 */
void
engage_write_key_change(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, EngageTxn *etxn,
						EngageRel *erel, Relation rel, ReorderBufferChange *change)
{
	EngageState *state = ctx->output_plugin_private;
	TupleDesc	desc = RelationGetDescr(rel);
	bool		full = rel->rd_rel->relreplident == REPLICA_IDENTITY_FULL;
	EngageRow	oldrow;
	EngageRow	newrow;

	engage_deform_row(&oldrow, desc, &change->data.tp.oldtuple->tuple);
	engage_deform_row(&newrow, desc, &change->data.tp.newtuple->tuple);
	fill_unchanged(&newrow, &oldrow, erel, desc, full);

	engage_open_record(ctx, etxn, change->lsn, txn->xid, ENGAGE_RECORD_ROW, "delete");
	engage_write_rel(ctx->out, erel, &state->handoff.facts);
	engage_write_key(state, ctx->out, erel, NULL, &oldrow);
	write_link(ctx->out, erel, "new_pk", &newrow);
	engage_write_values(state, ctx->out, erel, desc, NULL, &oldrow, full, true);
	engage_close_record(ctx, etxn);

	etxn->position++;
	engage_open_record(ctx, etxn, change->lsn, txn->xid, ENGAGE_RECORD_ROW, "insert");
	engage_write_rel(ctx->out, erel, &state->handoff.facts);
	engage_write_key(state, ctx->out, erel, &newrow, NULL);
	write_link(ctx->out, erel, "old_pk", &oldrow);
	engage_write_values(state, ctx->out, erel, desc, &newrow, NULL, full, false);
	engage_close_record(ctx, etxn);
}
