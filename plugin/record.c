/*
 * record.c
 *		The parts of an event record: header, key and row objects.
 */
#include "engage_decoder.h"

#include "access/htup_details.h"
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
 */
void
engage_write_header(StringInfo out, EngageTxn *etxn, XLogRecPtr lsn,
					TransactionId xid, const char *op)
{
	char		buf[32];
	int			len;

	enlargeStringInfo(out, 512);
	appendBinaryStringInfo(out, "{\"v\":1,\"id\":\"", 13);
	appendBinaryStringInfo(out, etxn->commit_lsn, etxn->commit_lsn_len);
	appendStringInfoCharMacro(out, ':');
	len = pg_ultoa_n(etxn->position, buf);
	appendBinaryStringInfo(out, buf, len);
	appendBinaryStringInfo(out, "\",\"lsn\":\"", 9);
	len = engage_lsn_chars(lsn, buf);
	appendBinaryStringInfo(out, buf, len);
	appendBinaryStringInfo(out, "\",\"xid\":", 8);
	len = pg_ultoa_n(xid, buf);
	appendBinaryStringInfo(out, buf, len);
	appendBinaryStringInfo(out, ",\"ts\":", 6);
	appendBinaryStringInfo(out, etxn->ts, etxn->ts_len);
	appendBinaryStringInfo(out, ",\"op\":\"", 7);
	appendStringInfoString(out, op);
	appendStringInfoCharMacro(out, '"');
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

/* Writes ,"name":[...] listing the quoted column names in names. */
static void
write_name_list(StringInfo out, const char *name, List *names)
{
	ListCell   *lc;

	appendStringInfo(out, ",\"%s\":[", name);
	foreach(lc, names)
	{
		if (lc != list_head(names))
			appendStringInfoCharMacro(out, ',');
		appendStringInfoString(out, lfirst(lc));
	}
	appendStringInfoCharMacro(out, ']');
}

/*
 * Writes ,"<field>":{...} for a row: every live column, or only the key
 * columns.  Unchanged TOAST values are left out and their names listed in
 * ,"unchanged_toast":[...] (,"old_unchanged_toast" for the old row).
 */
void
engage_write_row(StringInfo out, const char *field, EngageRel *erel,
				 EngageRow *row, bool keys_only)
{
	int			n = keys_only ? erel->nkeys : erel->ncols;
	List	   *toasted = NIL;
	bool		first = true;

	appendStringInfoCharMacro(out, ',');
	appendStringInfoCharMacro(out, '"');
	appendStringInfoString(out, field);
	appendBinaryStringInfo(out, "\":{", 3);
	for (int k = 0; k < n; k++)
	{
		EngageColumn *col = &erel->cols[keys_only ? erel->keys[k] : k];
		int			i = col->attnum - 1;
		bool		isnull = (i >= row->natts || row->nulls[i]);

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
			appendBinaryStringInfo(out, "null", 4);
		else
			engage_json_value(out, row->values[i], &col->type);
	}
	appendStringInfoCharMacro(out, '}');
	if (toasted != NIL)
		write_name_list(out, strcmp(field, "new") == 0 ? "unchanged_toast" : "old_unchanged_toast",
						toasted);
}

/* Writes ,"pk":{...} with the key columns of row, or ,"pk":null without a key. */
void
engage_write_key(StringInfo out, EngageRel *erel, EngageRow *row)
{
	if (erel->nkeys == 0 || row == NULL)
	{
		appendBinaryStringInfo(out, ",\"pk\":null", 10);
		return;
	}
	engage_write_row(out, "pk", erel, row, true);
}
