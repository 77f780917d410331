/*
 * options.c
 *		Options of engage_decoder.
 *
 * Options:
 *	tables			which tables are captured: a comma-separated list of
 *					schema.table or schema.* (names as stored in the catalog),
 *					or * for every table; default engage.*  (tablelist.c)
 *	transactions	write begin and commit records around the events of each
 *					transaction that has any; default false
 *	format_version	the record format; only 1 exists
 *	topic_prefix	for an in-process consumer (the pg_engage shipper): hand
 *					over each record's Kafka topic under this prefix; it
 *					changes nothing in the records
 *	max_record_bytes	a row record larger than this (the JSON text) is
 *					written without its row values, as an "oversized" record
 *					(record.c); default and upper bound 64 MB
 */
#include "engage_decoder.h"

#include "utils/builtins.h"

/* Raises the error for a bad value of an option. */
static void
bad_option_value(const char *name, const char *value, const char *detail, const char *hint)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid value \"%s\" for engage_decoder option \"%s\"",
					value ? value : "", name),
			 detail ? errdetail("%s.", detail) : 0,
			 errhint("%s", hint)));
}

/* Returns the option's value as a string, or NULL when it has none. */
static char *
option_string(DefElem *elem)
{
	if (elem->arg == NULL)
		return NULL;
	return strVal(elem->arg);
}

/* Parses a boolean option; a bare option name means true. */
static bool
option_bool(DefElem *elem)
{
	char	   *value = option_string(elem);
	bool		result;

	if (value == NULL)
		return true;
	if (!parse_bool(value, &result))
		bad_option_value(elem->defname, value, NULL, "Use a boolean: on, off, true, false, 1 or 0.");
	return result;
}

/* Parses the tables option, replacing the default list. */
static void
parse_tables(EngageOptions *opts, DefElem *elem)
{
	char	   *value = option_string(elem);
	const char *hint;
	const char *error = engage_parse_table_list(value, &opts->tables, &hint);

	if (error)
		bad_option_value("tables", value, NULL, hint);
}

/* Checks the format_version option: only format 1 exists. */
static void
check_format_version(DefElem *elem)
{
	char	   *value = option_string(elem);

	if (value == NULL || strcmp(value, "1") != 0)
		bad_option_value("format_version", value, NULL, "The only record format version is 1.");
}

/* Parses the topic_prefix option: a prefix of valid Kafka topic names. */
static void
parse_topic_prefix(EngageOptions *opts, DefElem *elem)
{
	char	   *value = option_string(elem);
	const char *why = value ? engage_topic_prefix_invalid(value) : "the value is missing";

	if (why)
		bad_option_value("topic_prefix", value, why,
						 "Use 1 to 200 characters from A-Z, a-z, 0-9, \".\", \"_\" and \"-\".");
	opts->topic_prefix = pstrdup(value);
}

/* Parses max_record_bytes: 1024 up to the default, ENGAGE_MAX_RECORD_BYTES. */
static void
parse_max_record_bytes(EngageOptions *opts, DefElem *elem)
{
	char	   *value = option_string(elem);
	char	   *end = NULL;
	long		n = value ? strtol(value, &end, 10) : 0;

	if (value == NULL || *value == '\0' || *end != '\0' || n < 1024 || n > ENGAGE_MAX_RECORD_BYTES)
		bad_option_value("max_record_bytes", value, NULL,
						 psprintf("Use a number of bytes from 1024 to %d.", ENGAGE_MAX_RECORD_BYTES));
	opts->max_record_bytes = (int) n;
}

/* Fills opts from the plugin options, raising an error for unknown ones. */
void
engage_parse_options(List *defels, EngageOptions *opts)
{
	ListCell   *lc;
	const char *hint;

	(void) engage_parse_table_list("engage.*", &opts->tables, &hint);
	opts->transactions = false;
	opts->topic_prefix = NULL;
	opts->max_record_bytes = ENGAGE_MAX_RECORD_BYTES;

	foreach(lc, defels)
	{
		DefElem    *elem = lfirst(lc);

		if (strcmp(elem->defname, "tables") == 0)
			parse_tables(opts, elem);
		else if (strcmp(elem->defname, "transactions") == 0)
			opts->transactions = option_bool(elem);
		else if (strcmp(elem->defname, "format_version") == 0)
			check_format_version(elem);
		else if (strcmp(elem->defname, "topic_prefix") == 0)
			parse_topic_prefix(opts, elem);
		else if (strcmp(elem->defname, "max_record_bytes") == 0)
			parse_max_record_bytes(opts, elem);
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("engage_decoder option \"%s\" is not recognized", elem->defname),
					 errhint("Valid options are tables, transactions, format_version, topic_prefix and max_record_bytes.")));
	}
}
