/*
 * snapshotrow.c
 *		Read records: the rows of the pg_engage shipper's snapshots, written
 *		by the plugin so that they have exactly the shape of row records.
 *
 * The shipper reads a chunk of a table's rows (with the catalog as it is
 * then) and has each row's record body written here: the table, its schema
 * fingerprint, "pk" and "new", with the same JSON values, Kafka key and topic
 * as an insert of that row, or the oversized form.  When decoding reaches the
 * chunk's watermark, the shipper has the read records written at its place
 * in the stream: the next positions of the watermark's transaction, so their
 * ids are as unique and stable as any other (see engage_handoff.h).
 */
#include "engage_decoder.h"

/* Prepares the rows of rel, read now; NULL when rel is not captured. */
static void *
open_rel(void *plugin, Relation rel)
{
	EngageState *state = plugin;
	EngageRel  *erel = engage_rel_build(rel, &state->opts);

	if (!erel->captured)
	{
		engage_rel_free(erel);
		return NULL;
	}
	return erel;
}

/* Frees what open_rel() made. */
static void
close_rel(void *plugin, void *rel)
{
	engage_rel_free(rel);
}

/*
 * Writes the body of the read record of tuple (a row of rel, whose
 * descriptor it has) to out, and its facts; oversized rows lose their
 * values as row records do.
 */
static void
write_row(void *plugin, void *rel, HeapTuple tuple, StringInfo out, EngageRecordFacts *facts)
{
	EngageState *state = plugin;
	EngageRel  *erel = rel;
	TupleDesc	desc = erel->desc;
	EngageRow	row;
	int			values_at;
	Size		raw;

	engage_reset_facts(state, ENGAGE_RECORD_ROW, "read");
	engage_write_rel(out, erel, &state->handoff.facts);
	engage_deform_row(&row, desc, tuple);
	engage_write_key(state, out, erel, &row, NULL);
	values_at = out->len;
	raw = row_raw_size(&row, desc);
	if (raw > (Size) state->opts.max_record_bytes)
		write_oversized(state, out, values_at, raw);
	else
	{
		engage_write_row(out, "new", erel, &row, false);
		if (out->len + 512 > state->opts.max_record_bytes)
			write_oversized(state, out, values_at, out->len + 512);
	}
	*facts = state->handoff.facts;
	if (state->key_off >= 0)
	{
		facts->key.data = out->data + state->key_off;
		facts->key.len = state->key_len;
	}
	pfree(row.values);
	pfree(row.nulls);
}

/* Writes a read record at the watermark being written (record.c). */
static void
write_read(void *plugin, StringInfo out, const char *op, const char *body, int len,
		   EngageRecordFacts *facts)
{
	engage_write_read_record(plugin, out, op, body, len, facts);
}

/* Fills the calls the shipper's snapshots make. */
void
engage_snapshot_calls_init(EngageSnapshotCalls *calls)
{
	calls->open_rel = open_rel;
	calls->write_row = write_row;
	calls->close_rel = close_rel;
	calls->write_read = write_read;
}
