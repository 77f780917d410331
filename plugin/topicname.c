/*
 * topicname.c
 *		Kafka's rule for topic names, and the topics of tables and messages.
 *
 * Shared by engage_decoder and pg_engage (see engage_handoff.h): the settings
 * check, engage.emit() and the shipper's routing all use this one rule.
 * Kafka accepts 1 to 249 characters of A-Z, a-z, 0-9, ".", "_" and "-", except
 * "." and "..", and refuses to create a topic whose name differs from an
 * existing one only by "." against "_" (its metrics names would collide).
 */
#include "engage_handoff.h"

/* Is c allowed in a Kafka topic name? */
static inline bool
topic_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		(c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

/* NULL when name[0..len) is a valid Kafka topic name, else why it is not. */
const char *
engage_topic_invalid(const char *name, int len)
{
	if (len <= 0)
		return "A Kafka topic name cannot be empty";
	if (len > ENGAGE_TOPIC_MAX_LEN)
		return "A Kafka topic name is at most 249 characters";
	if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.'))
		return "A Kafka topic name cannot be \".\" or \"..\"";
	for (int i = 0; i < len; i++)
		if (!topic_char(name[i]))
			return "A Kafka topic name has only the characters A-Z, a-z, 0-9, \".\", \"_\" and \"-\"";
	return NULL;
}

/* NULL when prefix can start topic names (<prefix>.<name>), else why not. */
const char *
engage_topic_prefix_invalid(const char *prefix)
{
	int			len = strlen(prefix);

	if (len > ENGAGE_TOPIC_MAX_LEN - 2)
		return "A topic prefix is at most 247 characters, leaving room for \".\" and a name";
	return engage_topic_invalid(prefix, len);
}

/* Do two different names collide in Kafka ("." and "_" taken as the same)? */
bool
engage_topics_collide(const char *a, const char *b)
{
	bool		same = true;

	for (; *a && *b; a++, b++)
	{
		if (*a == *b)
			continue;
		same = false;
		if (!((*a == '.' || *a == '_') && (*b == '.' || *b == '_')))
			return false;
	}
	return *a == '\0' && *b == '\0' && !same;
}

/*
 * Writes the topic of a table into buf: <prefix>.<table> for the engage
 * schema, <prefix>.<schema>.<table> for others.  Returns NULL when it is a
 * valid topic name, else why not.
 */
const char *
engage_table_topic(StringInfo buf, const char *prefix, const char *schema, const char *table)
{
	resetStringInfo(buf);
	if (strcmp(schema, "engage") == 0)
		appendStringInfo(buf, "%s.%s", prefix, table);
	else
		appendStringInfo(buf, "%s.%s.%s", prefix, schema, table);
	return engage_topic_invalid(buf->data, buf->len);
}

/*
 * Writes the topic of an application event into buf: <prefix>.<topic>.
 * Returns NULL when it is a valid topic name, else why not.
 */
const char *
engage_message_topic(StringInfo buf, const char *prefix, const char *topic, int len)
{
	const char *why = engage_topic_invalid(topic, len);

	resetStringInfo(buf);
	appendStringInfo(buf, "%s.", prefix);
	appendBinaryStringInfo(buf, topic, len);
	return why ? why : engage_topic_invalid(buf->data, buf->len);
}
