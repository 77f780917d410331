/*
 * message.c
 *		The body of a message record: what engage.emit() wrote.
 *
 * engage.emit() writes a JSON object with the members topic, key and payload;
 * they are spliced into the record.  Anything else written with the engage
 * prefix is kept whole, never spliced, so it cannot pose as the record's own
 * fields: another JSON object goes under "message", other text under "raw",
 * bytes that are not valid text in the database encoding under "raw_base64".
 */
#include "engage_decoder.h"

#include "common/base64.h"
#include "common/jsonapi.h"
#include "mb/pg_wchar.h"

/* What the parser saw of a message's top level. */
typedef struct MessageShape
{
	JsonLexContext *lex;
	bool		foreign_member; /* a member other than topic, key, payload */
} MessageShape;

/* Parser callback: notes top-level members engage.emit() does not write. */
static void
note_member(void *state, char *fname, bool isnull)
{
	MessageShape *shape = state;

	if (shape->lex->lex_level == 1 && strcmp(fname, "topic") != 0 &&
		strcmp(fname, "key") != 0 && strcmp(fname, "payload") != 0)
		shape->foreign_member = true;
}

/*
 * Parses the message; returns false unless it is a valid JSON object, and
 * tells whether it has members engage.emit() does not write.
 */
static bool
parse_object(const char *message, Size size, bool *foreign_member)
{
	char	   *copy = pnstrdup(message, size);
	MessageShape shape = {0};
	JsonSemAction sem = {0};
	const char *p = copy;

	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
		p++;
	if (*p != '{')
		return false;
	shape.lex = makeJsonLexContextCstringLen(copy, size, GetDatabaseEncoding(), true);
	sem.semstate = &shape;
	sem.object_field_start = note_member;
	if (pg_parse_json(shape.lex, &sem) != JSON_SUCCESS)
		return false;
	*foreign_member = shape.foreign_member;
	return true;
}

/* Writes ,"raw":"<text>" or ,"raw_base64":"<bytes>" and closes the record. */
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
	appendStringInfoCharMacro(out, '}');
}

/* Writes the members of a message record after its header, and closes it. */
void
engage_write_message_body(StringInfo out, const char *message, Size size)
{
	bool		foreign_member = false;
	const char *members;

	if (!pg_verifymbstr(message, size, true) || !parse_object(message, size, &foreign_member))
	{
		write_raw(out, message, size);
		return;
	}
	if (foreign_member)
	{
		appendBinaryStringInfo(out, ",\"message\":", 11);
		engage_json_one_line(out, message, size);
		appendStringInfoCharMacro(out, '}');
		return;
	}
	/* Splice: skip the opening brace; the closing one closes the record. */
	members = (const char *) memchr(message, '{', size) + 1;
	while (*members == ' ' || *members == '\t' || *members == '\n' || *members == '\r')
		members++;
	if (*members != '}')
		appendStringInfoCharMacro(out, ',');
	engage_json_one_line(out, members, size - (members - message));
}
