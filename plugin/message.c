/*
 * message.c
 *		The body of a message record: an event engage.emit() wrote, or a
 *		quarantined message.
 *
 * A message with the engage prefix is an application event only when
 * engage.emit() wrote it in the transaction that committed it: it starts with
 * the authenticator only emit() can compute (emitauth.c), followed by a JSON
 * object with the members topic (a string), key (a string or null) and
 * payload.  They are spliced into the record, and the topic and key are
 * handed over for routing.
 *
 * Anything else with the prefix (written with pg_logical_emit_message(), or
 * non-transactional, so decoded even when its transaction rolled back) is
 * quarantined: a record with op "quarantine" and the reason, whose content is
 * kept whole, never spliced, so it cannot pose as an event: a JSON object
 * under "message", other text under "raw", bytes that are not valid text in
 * the database encoding under "raw_base64"; content over 64 kB is not copied,
 * only its size ("content_bytes").  It has no topic.
 */
#include "engage_decoder.h"

#include "common/base64.h"
#include "common/jsonapi.h"
#include "mb/pg_wchar.h"

/* Quarantined content above this size is not copied into the record. */
#define QUARANTINE_MAX_CONTENT (64 * 1024)

/* What the parser saw of a message's top level. */
typedef struct MessageShape
{
	JsonLexContext *lex;
	const char *member;			/* the top-level member being parsed */
	bool		foreign;		/* not what engage.emit() writes */
	char	   *topic;			/* the topic string, if any */
	char	   *key;			/* the key string, if any */
} MessageShape;

/* Parser callback: notes the top-level member that starts. */
static void
note_member(void *state, char *fname, bool isnull)
{
	MessageShape *shape = state;

	if (shape->lex->lex_level != 1)
		return;
	shape->member = NULL;
	if (strcmp(fname, "topic") == 0 || strcmp(fname, "key") == 0)
		shape->member = fname;
	else if (strcmp(fname, "payload") != 0)
		shape->foreign = true;
}

/* Parser callback: keeps the topic and key strings of the top level. */
static void
note_scalar(void *state, char *token, JsonTokenType type)
{
	MessageShape *shape = state;
	bool		is_key;

	if (shape->lex->lex_level != 1 || shape->member == NULL)
		return;
	is_key = strcmp(shape->member, "key") == 0;
	if (type == JSON_TOKEN_STRING)
	{
		if (is_key)
			shape->key = token;
		else
			shape->topic = token;
	}
	else if (!(is_key && type == JSON_TOKEN_NULL))
		shape->foreign = true;
	shape->member = NULL;
}

/* Parser callback: a topic or key that is an object or array is foreign. */
static void
note_nested(void *state)
{
	MessageShape *shape = state;

	if (shape->lex->lex_level == 1 && shape->member != NULL)
		shape->foreign = true;
}

/* What a message is. */
typedef enum MessageKind
{
	MESSAGE_TEXT,				/* not a JSON object */
	MESSAGE_OBJECT,				/* a JSON object engage.emit() did not write */
	MESSAGE_EMITTED				/* string topic, string or null key, payload */
} MessageKind;

/* Parses the message (valid text) and tells what it is. */
static MessageKind
parse_message(const char *message, Size size, MessageShape *shape)
{
	char	   *copy = pnstrdup(message, size);
	JsonSemAction sem = {0};
	const char *p = copy;

	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
		p++;
	if (*p != '{')
		return MESSAGE_TEXT;
	shape->lex = makeJsonLexContextCstringLen(copy, size, GetDatabaseEncoding(), true);
	sem.semstate = shape;
	sem.object_field_start = note_member;
	sem.scalar = note_scalar;
	sem.object_start = note_nested;
	sem.array_start = note_nested;
	if (pg_parse_json(shape->lex, &sem) != JSON_SUCCESS)
		return MESSAGE_TEXT;
	return !shape->foreign && shape->topic != NULL ? MESSAGE_EMITTED : MESSAGE_OBJECT;
}

/* Writes ,"raw":"<text>" or ,"raw_base64":"<bytes>". */
static void
write_raw(StringInfo out, const char *message, Size size)
{
	if (pg_verifymbstr(message, size, true))
	{
		appendBinaryStringInfo(out, ",\"raw\":", 7);
		engage_json_string(out, message, size);
	}
	else
	{
		int			enclen = pg_b64_enc_len(size);
		char	   *enc = palloc(enclen + 1);
		int			written = pg_b64_encode(message, size, enc, enclen);

		if (written < 0)
			elog(ERROR, "could not encode message as base64");
		appendBinaryStringInfo(out, ",\"raw_base64\":\"", 15);
		appendBinaryStringInfo(out, enc, written);
		appendStringInfoCharMacro(out, '"');
	}
}

/* Writes the object's members into the record: skips its braces. */
static void
splice_members(StringInfo out, const char *message, Size size)
{
	const char *members = (const char *) memchr(message, '{', size) + 1;
	const char *end = message + size;

	while (*members == ' ' || *members == '\t' || *members == '\n' || *members == '\r')
		members++;
	while (end > members && end[-1] != '}')
		end--;
	end--;						/* the closing brace */
	if (*members != '}')
		appendStringInfoCharMacro(out, ',');
	engage_json_one_line(out, members, end - members);
}

/* Hands over the topic and key of an emitted event. */
static void
hand_over(EngageState *state, MessageShape *shape)
{
	EngageRecordFacts *facts = &state->handoff.facts;
	StringInfoData topic;

	facts->no_topic_reason = NULL;
	if (shape->key)
	{
		facts->key.data = shape->key;
		facts->key.len = strlen(shape->key);
	}
	if (state->opts.topic_prefix == NULL)
		return;
	initStringInfo(&topic);
	facts->no_topic_reason = engage_message_topic(&topic, state->opts.topic_prefix,
												  shape->topic, strlen(shape->topic));
	if (facts->no_topic_reason == NULL)
	{
		facts->topic.data = topic.data;
		facts->topic.len = topic.len;
	}
}

/*
 * Why a message with the engage prefix is not an application event, or NULL
 * when engage.emit() wrote it in transaction xid (the top-level transaction
 * that committed it).
 */
const char *
engage_message_quarantine_reason(bool transactional, TransactionId xid,
								 const char *message, Size size)
{
	if (!transactional)
		return "non-transactional message: it is decoded even when its transaction rolls back";
	if (!engage_verify(ENGAGE_MAC_EMIT, xid, message, size))
		return "not written by engage.emit() in the transaction that committed it";
	return NULL;
}

/* Writes the members of an event record after its header: what emit() wrote. */
void
engage_write_message_body(EngageState *state, StringInfo out, const char *message, Size size)
{
	MessageShape shape = {0};
	const char *event = message + ENGAGE_EMIT_MAC_CHARS;
	Size		len = size - ENGAGE_EMIT_MAC_CHARS;

	state->handoff.facts.no_topic_reason = "the event is not what engage.emit() writes";
	if (pg_verifymbstr(event, len, true) &&
		parse_message(event, len, &shape) == MESSAGE_EMITTED)
	{
		splice_members(out, event, len);
		hand_over(state, &shape);
	}
	else
		engage_write_quarantined_body(state, out, event, len);
}

/*
 * Writes the content of a quarantined message after its header and reason,
 * whole; or, above QUARANTINE_MAX_CONTENT bytes, only its size: anyone can
 * write a message of up to 1 GB, and copying it (twice, escaped) would fail
 * and stop decoding for good.
 */
void
engage_write_quarantined_body(EngageState *state, StringInfo out, const char *message, Size size)
{
	MessageShape shape = {0};

	if (size > QUARANTINE_MAX_CONTENT)
	{
		appendStringInfo(out, ",\"content_bytes\":%zu", size);
		return;
	}
	if (pg_verifymbstr(message, size, true) &&
		parse_message(message, size, &shape) != MESSAGE_TEXT)
	{
		appendBinaryStringInfo(out, ",\"message\":", 11);
		engage_json_one_line(out, message, size);
	}
	else
		write_raw(out, message, size);
}

/*
 * Writes a quarantine record: a message with one of pg_engage's prefixes
 * that pg_engage did not write in the transaction that committed it.
 */
void
engage_write_quarantine(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, EngageTxn *etxn,
						XLogRecPtr lsn, bool transactional, const char *reason,
						const char *message, Size size)
{
	EngageState *state = ctx->output_plugin_private;

	if (transactional)
		write_begin_once(ctx, txn, etxn);
	engage_open_record(ctx, etxn, lsn, txn ? txn->xid : InvalidTransactionId,
					   ENGAGE_RECORD_QUARANTINE, "quarantine");
	state->handoff.facts.transactional = transactional;
	if (!transactional)
		appendBinaryStringInfo(ctx->out, ",\"transactional\":false", 22);
	state->handoff.facts.no_topic_reason = reason;
	appendBinaryStringInfo(ctx->out, ",\"reason\":", 10);
	engage_json_string(ctx->out, reason, strlen(reason));
	engage_write_quarantined_body(state, ctx->out, message, size);
	engage_close_record(ctx, etxn);
}
