/*
 * schemamsg.c
 *		Schema records: the messages pg_engage's DDL event triggers write
 *		(prefix ENGAGE_SCHEMA_PREFIX, extension/schema.c), checked and
 *		written for the captured tables.
 *
 * A schema message is genuine only when it carries the authenticator for
 * ENGAGE_MAC_SCHEMA of the transaction that committed it (emitauth.c);
 * anything else with the prefix (pg_logical_emit_message() is anyone's, and
 * a non-transactional message is decoded even when its transaction rolls
 * back) is quarantined like a forged event.  After the authenticator come two
 * lines of JSON: what the plugin routes on, {"relid":..,"nspname":..,
 * "relname":..[,"old_nspname":..,"old_relname":..],"gone":..}, and the
 * members of the record, spliced after its header.
 *
 * The record goes to the topic of the table when the table is captured,
 * and, when its name changed, also to the topic of the old name when that
 * one was captured: the consumers of the old topic learn where the table
 * went, or that it left the captured set.  Both are the same record (same
 * id).  "captured" says whether rows of the table follow under this name.
 * The Kafka key is the table's name as a JSON string (never an object, so
 * never a row's key): the old name on the old topic, so that on each topic
 * the schema records of its table share one key.
 */
#include "engage_decoder.h"

#include "common/jsonapi.h"
#include "mb/pg_wchar.h"
#include "utils/memutils.h"

/* The routing line of a schema message. */
typedef struct SchemaRouting
{
	JsonLexContext *lex;
	const char *member;			/* the top-level member being parsed */
	Oid			relid;
	char	   *nspname;
	char	   *relname;
	char	   *old_nspname;	/* NULL when the name did not change */
	char	   *old_relname;
	bool		gone;			/* no more rows under this name */
} SchemaRouting;

/* Parser callback: notes the top-level member that starts. */
static void
note_member(void *state, char *fname, bool isnull)
{
	SchemaRouting *r = state;

	r->member = r->lex->lex_level == 1 ? fname : NULL;
}

/* Parser callback: keeps the top-level values the routing needs. */
static void
note_scalar(void *state, char *token, JsonTokenType type)
{
	SchemaRouting *r = state;

	if (r->lex->lex_level != 1 || r->member == NULL)
		return;
	if (strcmp(r->member, "relid") == 0 && type == JSON_TOKEN_NUMBER)
		r->relid = (Oid) strtoul(token, NULL, 10);
	else if (strcmp(r->member, "gone") == 0)
		r->gone = type == JSON_TOKEN_TRUE;
	else if (type != JSON_TOKEN_STRING)
		return;
	else if (strcmp(r->member, "nspname") == 0)
		r->nspname = token;
	else if (strcmp(r->member, "relname") == 0)
		r->relname = token;
	else if (strcmp(r->member, "old_nspname") == 0)
		r->old_nspname = token;
	else if (strcmp(r->member, "old_relname") == 0)
		r->old_relname = token;
}

/*
 * Parses a genuine message's body into its routing and the members of its
 * record (members[0..*len), without braces); false when it is not what the
 * triggers write.
 */
static bool
parse_body(const char *body, Size size, SchemaRouting *r, const char **members, int *len)
{
	const char *newline = memchr(body, '\n', size);
	const char *end = body + size;
	JsonSemAction sem = {0};

	if (newline == NULL || end - newline < 3 || newline[1] != '{' || end[-1] != '}')
		return false;
	r->lex = makeJsonLexContextCstringLen(pnstrdup(body, newline - body), newline - body,
										  GetDatabaseEncoding(), true);
	sem.semstate = r;
	sem.object_field_start = note_member;
	sem.scalar = note_scalar;
	if (pg_parse_json(r->lex, &sem) != JSON_SUCCESS || r->nspname == NULL || r->relname == NULL ||
		(r->old_nspname == NULL) != (r->old_relname == NULL))
		return false;
	*members = newline + 2;
	*len = end - 1 - *members;
	return true;
}

/* Sets the topic and key of a schema record on the topic of nspname.relname. */
static void
route(EngageState *state, const char *nspname, const char *relname)
{
	EngageRecordFacts *facts = &state->handoff.facts;
	StringInfoData key;
	StringInfoData topic;
	char	   *name = psprintf("%s.%s", nspname, relname);

	initStringInfo(&key);
	engage_json_string(&key, name, strlen(name));
	facts->key.data = key.data;
	facts->key.len = key.len;
	if (state->opts.topic_prefix == NULL)
		return;
	initStringInfo(&topic);
	facts->no_topic_reason = engage_table_topic(&topic, state->opts.topic_prefix, nspname, relname);
	if (facts->no_topic_reason == NULL)
	{
		facts->topic.data = topic.data;
		facts->topic.len = topic.len;
	}
}

/* Writes one schema record, for the topic of nspname.relname. */
static void
write_record(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, EngageTxn *etxn,
			 XLogRecPtr lsn, SchemaRouting *r, const char *members, int len,
			 const char *nspname, const char *relname)
{
	EngageState *state = ctx->output_plugin_private;
	EngageRecordFacts *facts = &state->handoff.facts;
	bool		captured = !r->gone &&
		engage_table_list_matches(&state->opts.tables, r->nspname, r->relname);
	char	   *table = psprintf("%s.%s", r->nspname, r->relname);

	write_begin_once(ctx, txn, etxn);
	engage_open_record(ctx, etxn, lsn, txn->xid, ENGAGE_RECORD_SCHEMA, "schema");
	appendStringInfoChar(ctx->out, ',');
	appendBinaryStringInfo(ctx->out, members, len);
	appendStringInfo(ctx->out, ",\"captured\":%s", captured ? "true" : "false");
	facts->table.data = table;
	facts->table.len = strlen(table);
	facts->relid = r->relid;
	route(state, nspname, relname);
	engage_close_record(ctx, etxn);
}

/* Writes the schema records of a genuine message for the captured topics. */
static void
write_records(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, EngageTxn *etxn,
			  XLogRecPtr lsn, SchemaRouting *r, const char *members, int len)
{
	EngageState *state = ctx->output_plugin_private;
	const EngageTableList *tables = &state->opts.tables;

	if (r->old_nspname && engage_table_list_matches(tables, r->old_nspname, r->old_relname))
		write_record(ctx, txn, etxn, lsn, r, members, len, r->old_nspname, r->old_relname);
	if (engage_table_list_matches(tables, r->nspname, r->relname))
		write_record(ctx, txn, etxn, lsn, r, members, len, r->nspname, r->relname);
}

/*
 * Writes the records of a message with the prefix ENGAGE_SCHEMA_PREFIX: the
 * schema records of a genuine one, else a quarantine record.
 */
void
engage_schema_message(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, EngageTxn *etxn,
					  XLogRecPtr lsn, bool transactional, const char *message, Size size)
{
	EngageState *state = ctx->output_plugin_private;
	MemoryContext old = MemoryContextSwitchTo(state->change_cxt);
	SchemaRouting r = {0};
	const char *members = NULL;
	int			len = 0;
	const char *reason = NULL;

	if (!transactional)
		reason = "non-transactional message: it is decoded even when its transaction rolls back";
	else if (!engage_verify(ENGAGE_MAC_SCHEMA, txn->xid, message, size))
		reason = "a schema message not written by pg_engage's schema-change triggers "
			"in the transaction that committed it";
	else if (!pg_verifymbstr(message, size, true) ||
			 !parse_body(message + ENGAGE_EMIT_MAC_CHARS, size - ENGAGE_EMIT_MAC_CHARS,
						 &r, &members, &len))
		reason = "a schema message this engage_decoder cannot read";
	if (reason)
		engage_write_quarantine(ctx, txn, etxn, lsn, transactional, reason, message, size);
	else
		write_records(ctx, txn, etxn, lsn, &r, members, len);
	MemoryContextSwitchTo(old);
	MemoryContextReset(state->change_cxt);
}
