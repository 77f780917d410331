/*
 * topicname.c
 *		Kafka's rule for topic names, and the topics of tables and messages.
 *
 * Shared by engage_decoder and pg_engage (see engage_handoff.h): the settings
 * check, engage.emit() and the shipper's routing all use this one rule.
 * Kafka accepts 1 to 249 characters of A-Z, a-z, 0-9, ".", "_" and "-", except
 * "." and "..", and refuses to create a topic whose name differs from an
 * existing one only by "." against "_" (its metrics names would collide).
 *
 * The namespaces under a prefix P never meet, not even by that collision:
 *	P.<table>, P.<schema>.<table>	row topics of tables with plain names
 *	P.<S>.<T>.<hash>				row topics of every other table
 *	P-app.<topic>					application events (engage.emit())
 *	P-control						the shipper's gap records (shipper.c)
 * A row topic continues P with ".", an application topic with "-", which
 * Kafka does not take for "." or "_".  Plain row topics have at most two dots
 * after P and escaped ones exactly three, so they are never equal; the hash
 * of the exact names tells escaped ones apart.  So the topic of a table
 * depends on its own name only, never on other tables.
 */
#include "engage_handoff.h"

#include "common/cryptohash.h"
#include "common/sha2.h"

/* Hex digits of SHA-256 that end an escaped row topic. */
#define ESCAPED_HASH_LEN 16

/* Is c allowed in a Kafka topic name? */
static inline bool
topic_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		(c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

/* Is c allowed in one part (schema or table) of a plain row topic? */
static inline bool
plain_char(char c)
{
	return c != '.' && topic_char(c);
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

/* NULL when prefix can start every topic name (see the top), else why not. */
const char *
engage_topic_prefix_invalid(const char *prefix)
{
	int			len = strlen(prefix);

	if (len > ENGAGE_TOPIC_PREFIX_MAX_LEN)
		return "A topic prefix is at most 200 characters, so that every topic under it fits in "
			"Kafka's 249: a row topic may add a schema, a table and a 16-digit hash, "
			"an application topic \"-app.\" and the event's topic";
	return engage_topic_invalid(prefix, len);
}

/* Are a and b the same character for Kafka's collision rule? */
static inline bool
same_for_kafka(char a, char b)
{
	return a == b || ((a == '.' || a == '_') && (b == '.' || b == '_'));
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
		if (!same_for_kafka(*a, *b))
			return false;
	}
	return *a == '\0' && *b == '\0' && !same;
}

/* Does name start with start, or with a name that collides with it? */
static bool
starts_for_kafka(const char *name, const char *start)
{
	for (; *start; name++, start++)
		if (*name == '\0' || !same_for_kafka(*name, *start))
			return false;
	return true;
}

/*
 * NULL when topic can be the dead-letter topic next to the topics under
 * prefix, else why not: it must be no row topic nor application topic, and
 * collide with none, whatever tables and events come.
 */
const char *
engage_dead_letter_conflict(const char *topic, const char *prefix)
{
	char	   *rows = psprintf("%s.", prefix);
	char	   *apps = psprintf("%s-app.", prefix);
	char	   *control = psprintf("%s-control", prefix);
	char	   *progress = psprintf("%s-progress", prefix);
	const char *why = NULL;

	if (starts_for_kafka(topic, rows))
		why = "it is in the namespace of row topics (the prefix and \".\"; Kafka takes \"_\" for \".\"), "
			"where a table could send its rows";
	else if (starts_for_kafka(topic, apps))
		why = "it is in the namespace of application events (the prefix and \"-app.\"; "
			"Kafka takes \"_\" for \".\"), where engage.emit() could send events";
	else if (strcmp(topic, control) == 0 || engage_topics_collide(topic, control))
		why = "it is (or collides with) the control topic, the prefix and \"-control\", "
			"where the shipper announces gaps";
	else if (strcmp(topic, progress) == 0 || engage_topics_collide(topic, progress))
		why = "it is (or collides with) the progress topic, the prefix and \"-progress\", "
			"where the shipper records what Kafka committed (exactly_once)";
	pfree(progress);
	pfree(control);
	pfree(rows);
	pfree(apps);
	return why;
}

/* Is name made only of plain characters (and not empty)? */
static bool
plain_name(const char *name)
{
	if (*name == '\0')
		return false;
	for (; *name; name++)
		if (!plain_char(*name))
			return false;
	return true;
}

/* Appends at most max bytes of name, each byte that is no plain character as "_". */
static void
append_escaped(StringInfo buf, const char *name, int max)
{
	for (int i = 0; name[i] != '\0' && i < max; i++)
		appendStringInfoChar(buf, plain_char(name[i]) ? name[i] : '_');
}

/* Appends the first 16 hex digits of SHA-256 over schema, a NUL byte, table. */
static void
append_name_hash(StringInfo buf, const char *schema, const char *table)
{
	pg_cryptohash_ctx *ctx = pg_cryptohash_create(PG_SHA256);
	uint8		digest[PG_SHA256_DIGEST_LENGTH];

	if (ctx == NULL || pg_cryptohash_init(ctx) < 0 ||
		pg_cryptohash_update(ctx, (const uint8 *) schema, strlen(schema) + 1) < 0 ||
		pg_cryptohash_update(ctx, (const uint8 *) table, strlen(table)) < 0 ||
		pg_cryptohash_final(ctx, digest, sizeof(digest)) < 0)
		elog(ERROR, "could not compute SHA-256 of a table name: %s",
			 ctx ? pg_cryptohash_error(ctx) : "out of memory");
	pg_cryptohash_free(ctx);
	for (int i = 0; i < ESCAPED_HASH_LEN / 2; i++)
		appendStringInfo(buf, "%02x", digest[i]);
}

/*
 * Writes the escaped row topic <prefix>.<S>.<T>.<hash> into buf.  When S and
 * T do not both fit, each keeps at least half the room (or all it needs).
 */
static void
escaped_table_topic(StringInfo buf, const char *prefix, const char *schema, const char *table)
{
	int			room = ENGAGE_TOPIC_MAX_LEN - strlen(prefix) - 3 - ESCAPED_HASH_LEN;
	int			slen = strlen(schema);
	int			tlen = strlen(table);
	int			skeep = Min(slen, Max(room / 2, room - tlen));
	int			tkeep = Min(tlen, room - skeep);

	appendStringInfo(buf, "%s.", prefix);
	append_escaped(buf, schema, skeep);
	appendStringInfoChar(buf, '.');
	append_escaped(buf, table, tkeep);
	appendStringInfoChar(buf, '.');
	append_name_hash(buf, schema, table);
}

/*
 * Writes the topic of a table into buf.  Plain names (only A-Z, a-z, 0-9,
 * "_" and "-") give <prefix>.<table> in the engage schema and
 * <prefix>.<schema>.<table> elsewhere, when that fits; every other table
 * gets the escaped form (see escaped_table_topic).  Returns NULL when it is
 * a valid topic name, else why not (only for a bad prefix).
 */
const char *
engage_table_topic(StringInfo buf, const char *prefix, const char *schema, const char *table)
{
	const char *why = engage_topic_prefix_invalid(prefix);

	resetStringInfo(buf);
	if (why != NULL)
		return why;
	if (plain_name(schema) && plain_name(table))
	{
		if (strcmp(schema, "engage") == 0)
			appendStringInfo(buf, "%s.%s", prefix, table);
		else
			appendStringInfo(buf, "%s.%s.%s", prefix, schema, table);
		if (buf->len <= ENGAGE_TOPIC_MAX_LEN)
			return NULL;
		resetStringInfo(buf);
	}
	escaped_table_topic(buf, prefix, schema, table);
	return engage_topic_invalid(buf->data, buf->len);
}

/*
 * Writes the topic of an application event into buf: <prefix>-app.<topic>.
 * Returns NULL when it is a valid topic name, else why not.
 */
const char *
engage_message_topic(StringInfo buf, const char *prefix, const char *topic, int len)
{
	const char *why = engage_topic_invalid(topic, len);

	resetStringInfo(buf);
	appendStringInfo(buf, "%s" ENGAGE_APP_TOPIC_INFIX, prefix);
	appendBinaryStringInfo(buf, topic, len);
	return why ? why : engage_topic_invalid(buf->data, buf->len);
}
