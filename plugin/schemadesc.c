/*
 * schemadesc.c
 *		The description of a table's shape and its fingerprint, as the schema
 *		records and every row record carry them.
 *
 * A description is the JSON text
 *	"columns":[{"name":"<name>","type":"<type>","nullable":<bool>},...],
 *	"key":["<name>",...]
 * with the live columns in attribute-number order, each type written by
 * format_type_extended() with its modifier and, for types outside pg_catalog,
 * always with their schema (never depending on a search_path: "text",
 * "timestamp with time zone", "numeric(10,2)", "engage.mood[]"), and the key
 * columns of the row key: the replica identity index, else the primary key
 * (what a row record's "pk" holds).  The fingerprint is the first 16 hex
 * digits of SHA-256 over that text: it depends on names, types, nullability
 * and the key only, never on OIDs, so it is the same in every database and
 * every run.
 *
 * Shared by engage_decoder (row records) and pg_engage (the schema messages
 * of the event triggers), see engage_handoff.h: both must compute it alike.
 */
#include "engage_handoff.h"

#include "common/cryptohash.h"
#include "common/sha2.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/rel.h"
#include "utils/relcache.h"

/* The row key's index of rel: its replica identity index, else its primary key. */
Oid
engage_key_index(Relation rel)
{
	Oid			indexoid = RelationGetReplicaIndex(rel);

	if (!OidIsValid(indexoid))
		indexoid = RelationGetPrimaryKeyIndex(rel);
	return indexoid;
}

/*
 * The name of a type with its modifier, independent of any search_path: with
 * its schema, except for the types of pg_catalog ("text", "integer",
 * "character varying(20)", "text[]", "engage.mood").
 */
static char *
type_name(Oid typid, int32 typmod)
{
	char	   *name = format_type_extended(typid, typmod, FORMAT_TYPE_TYPEMOD_GIVEN |
											FORMAT_TYPE_FORCE_QUALIFY);

	if (strncmp(name, "pg_catalog.", 11) == 0)
		return name + 11;
	return name;
}

/* Appends "columns":[...] of the live columns of rel to buf. */
static void
describe_columns(StringInfo buf, Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);
	bool		first = true;

	appendStringInfoString(buf, "\"columns\":[");
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped)
			continue;
		if (!first)
			appendStringInfoChar(buf, ',');
		first = false;
		appendStringInfoString(buf, "{\"name\":");
		escape_json(buf, NameStr(att->attname));
		appendStringInfoString(buf, ",\"type\":");
		escape_json(buf, type_name(att->atttypid, att->atttypmod));
		appendStringInfo(buf, ",\"nullable\":%s}", att->attnotnull ? "false" : "true");
	}
	appendStringInfoChar(buf, ']');
}

/* Appends "key":[...] with the names of rel's row key columns to buf. */
static void
describe_key(StringInfo buf, Relation rel)
{
	Oid			indexoid = engage_key_index(rel);
	TupleDesc	desc = RelationGetDescr(rel);
	bool		first = true;

	appendStringInfoString(buf, "\"key\":[");
	if (OidIsValid(indexoid))
	{
		Relation	index = RelationIdGetRelation(indexoid);

		for (int k = 0; k < index->rd_index->indnkeyatts; k++)
		{
			AttrNumber	attnum = index->rd_index->indkey.values[k];

			if (attnum <= 0)
				continue;		/* an expression: never in a usable key */
			if (!first)
				appendStringInfoChar(buf, ',');
			first = false;
			escape_json(buf, NameStr(TupleDescAttr(desc, attnum - 1)->attname));
		}
		RelationClose(index);
	}
	appendStringInfoChar(buf, ']');
}

/* Appends the description of rel (see the top) to buf. */
void
engage_describe_rel(StringInfo buf, Relation rel)
{
	describe_columns(buf, rel);
	appendStringInfoChar(buf, ',');
	describe_key(buf, rel);
}

/* Writes the fingerprint of desc[0..len) into out: 16 hex digits and a NUL. */
void
engage_schema_fingerprint(const char *desc, int len, char *out)
{
	pg_cryptohash_ctx *ctx = pg_cryptohash_create(PG_SHA256);
	uint8		digest[PG_SHA256_DIGEST_LENGTH];
	static const char hex[] = "0123456789abcdef";

	if (ctx == NULL || pg_cryptohash_init(ctx) < 0 ||
		pg_cryptohash_update(ctx, (const uint8 *) desc, len) < 0 ||
		pg_cryptohash_final(ctx, digest, sizeof(digest)) < 0)
		elog(ERROR, "could not compute SHA-256 of a table's description: %s",
			 ctx ? pg_cryptohash_error(ctx) : "out of memory");
	pg_cryptohash_free(ctx);
	for (int i = 0; i < ENGAGE_SCHEMA_FINGERPRINT_CHARS / 2; i++)
	{
		out[2 * i] = hex[digest[i] >> 4];
		out[2 * i + 1] = hex[digest[i] & 0xf];
	}
	out[ENGAGE_SCHEMA_FINGERPRINT_CHARS] = '\0';
}
