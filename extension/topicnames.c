/*
 * topicnames.c
 *		The topic rules of topicname.c callable from SQL, so that the
 *		regression tests can check the names exactly.
 *
 * The extension's script does not declare these functions: a test declares
 * the ones it uses with CREATE FUNCTION ... LANGUAGE C.
 */
#include "engage.h"

#include "fmgr.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(engage_table_topic_sql);
PG_FUNCTION_INFO_V1(engage_message_topic_sql);
PG_FUNCTION_INFO_V1(engage_dead_letter_conflict_sql);

/* Raises the reason a topic name cannot be made. */
static void
refuse(const char *why)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("no valid Kafka topic"),
			 errdetail("%s.", why)));
}

/* SQL (prefix text, schema text, table text) returns text: a table's topic. */
Datum
engage_table_topic_sql(PG_FUNCTION_ARGS)
{
	StringInfoData buf;
	const char *why;

	initStringInfo(&buf);
	why = engage_table_topic(&buf, text_to_cstring(PG_GETARG_TEXT_PP(0)),
							 text_to_cstring(PG_GETARG_TEXT_PP(1)),
							 text_to_cstring(PG_GETARG_TEXT_PP(2)));
	if (why)
		refuse(why);
	PG_RETURN_TEXT_P(cstring_to_text_with_len(buf.data, buf.len));
}

/* SQL (prefix text, topic text) returns text: an application event's topic. */
Datum
engage_message_topic_sql(PG_FUNCTION_ARGS)
{
	StringInfoData buf;
	char	   *topic = text_to_cstring(PG_GETARG_TEXT_PP(1));
	const char *why;

	initStringInfo(&buf);
	why = engage_message_topic(&buf, text_to_cstring(PG_GETARG_TEXT_PP(0)), topic, strlen(topic));
	if (why)
		refuse(why);
	PG_RETURN_TEXT_P(cstring_to_text_with_len(buf.data, buf.len));
}

/* SQL (prefix text, topic text) returns text: why topic cannot be the dead-letter topic, or NULL. */
Datum
engage_dead_letter_conflict_sql(PG_FUNCTION_ARGS)
{
	const char *why = engage_dead_letter_conflict(text_to_cstring(PG_GETARG_TEXT_PP(1)),
												  text_to_cstring(PG_GETARG_TEXT_PP(0)));

	if (why == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(why));
}
