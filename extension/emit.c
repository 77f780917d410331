/*
 * emit.c
 *		engage.emit(): transactional application events (the outbox pattern
 *		without an outbox table).
 *
 * The event is a transactional logical message with the prefix "engage": it
 * is decoded, and shipped, if and only if the calling transaction commits.
 * Its topic is checked up front with the rule routing uses (topicname.c),
 * against the topic it will have in Kafka, <engage.topic_prefix>-app.<topic>.
 */
#include "engage.h"

#include "fmgr.h"
#include "replication/message.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/pg_lsn.h"

PG_FUNCTION_INFO_V1(engage_emit);

/* Raises the error for a bad topic (NULL: a NULL topic). */
static void
refuse_topic(const char *topic, const char *why)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid engage event topic: %s", topic ? quote_literal_cstr(topic) : "NULL"),
			 errdetail("%s.", why),
			 errhint("Events go to the Kafka topic \"<engage.topic_prefix>-app.<topic>\" (\"%s-app.<topic>\" here), "
					 "so that name must be a valid Kafka topic name: at most 249 characters from "
					 "A-Z, a-z, 0-9, \".\", \"_\" and \"-\".", engage_topic_prefix)));
}

/* Checks the topic of an event against the name it will have in Kafka. */
static void
check_topic(const char *topic)
{
	StringInfoData full;
	const char *why;

	if (topic == NULL)
		refuse_topic(NULL, "The topic is NULL");
	initStringInfo(&full);
	why = engage_message_topic(&full, engage_topic_prefix, topic, strlen(topic));
	if (why)
		refuse_topic(topic, why);
}

/* Appends a JSON string, or null for a NULL. */
static void
append_json_text(StringInfo buf, const char *s)
{
	if (s == NULL)
		appendStringInfoString(buf, "null");
	else
		escape_json(buf, s);
}

/* SQL: engage.emit(topic text, key text, payload jsonb) returns pg_lsn. */
Datum
engage_emit(PG_FUNCTION_ARGS)
{
	char	   *topic = PG_ARGISNULL(0) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *key = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	StringInfoData message;
	Jsonb	   *payload;

	check_topic(topic);
	if (PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("engage event payload must not be NULL"),
				 errhint("Pass 'null'::jsonb to send a JSON null on purpose.")));
	payload = PG_GETARG_JSONB_P(2);
	initStringInfo(&message);
	appendStringInfoString(&message, "{\"topic\":");
	append_json_text(&message, topic);
	appendStringInfoString(&message, ",\"key\":");
	append_json_text(&message, key);
	appendStringInfoString(&message, ",\"payload\":");
	(void) JsonbToCString(&message, &payload->root, VARSIZE(payload));
	appendStringInfoChar(&message, '}');
	PG_RETURN_LSN(LogLogicalMessage(ENGAGE_MESSAGE_PREFIX, message.data, message.len, true));
}
