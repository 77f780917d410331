/*
 * options.c
 *		Options of engage_decoder and the table filter they define.
 *
 * Options:
 *	tables			which tables are captured: a comma-separated list of
 *					schema.table or schema.* (names as stored in the catalog),
 *					or * for every table; default engage.*
 *	transactions	write begin and commit records around the events of each
 *					transaction that has any; default false
 *	format_version	the record format; only 1 exists
 */
#include "engage_decoder.h"

#include "nodes/makefuncs.h"
#include "utils/builtins.h"

/* Raises the error for a bad value of an option. */
static void
bad_option_value(const char *name, const char *value, const char *hint)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid value \"%s\" for engage_decoder option \"%s\"",
					value ? value : "", name),
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
		bad_option_value(elem->defname, value, "Use a boolean: on, off, true, false, 1 or 0.");
	return result;
}

/* Trims spaces at both ends of s in place and returns it. */
static char *
trim(char *s)
{
	char	   *end;

	while (*s == ' ' || *s == '\t')
		s++;
	end = s + strlen(s);
	while (end > s && (end[-1] == ' ' || end[-1] == '\t'))
		*--end = '\0';
	return s;
}

/* Parses one entry of the tables option into opts. */
static void
parse_table_entry(EngageOptions *opts, char *entry, const char *whole)
{
	static const char *hint =
		"List schema-qualified tables or schema.* separated by commas, or use * for every table.";
	EngageTablePattern *pat;
	char	   *dot;

	if (strcmp(entry, "*") == 0)
	{
		opts->all_tables = true;
		return;
	}
	dot = strchr(entry, '.');
	if (dot == NULL || dot == entry || dot[1] == '\0' || strchr(dot + 1, '.') != NULL)
		bad_option_value("tables", whole, hint);
	pat = palloc(sizeof(EngageTablePattern));
	*dot = '\0';
	pat->schema = pstrdup(entry);
	pat->table = strcmp(dot + 1, "*") == 0 ? NULL : pstrdup(dot + 1);
	opts->tables = lappend(opts->tables, pat);
}

/* Parses the tables option, replacing the default filter. */
static void
parse_tables(EngageOptions *opts, DefElem *elem)
{
	char	   *value = option_string(elem);
	char	   *entry;

	if (value == NULL || trim(pstrdup(value))[0] == '\0')
		bad_option_value("tables", value, "Name at least one table, schema.* or *.");
	opts->all_tables = false;
	opts->tables = NIL;
	entry = pstrdup(value);
	for (;;)
	{
		char	   *comma = strchr(entry, ',');
		char	   *name;

		if (comma)
			*comma = '\0';
		name = trim(entry);
		if (name[0] == '\0')
			bad_option_value("tables", value, "Remove the empty entry from the list.");
		parse_table_entry(opts, name, value);
		if (comma == NULL)
			break;
		entry = comma + 1;
	}
}

/* Checks the format_version option: only format 1 exists. */
static void
check_format_version(DefElem *elem)
{
	char	   *value = option_string(elem);

	if (value == NULL || strcmp(value, "1") != 0)
		bad_option_value("format_version", value, "The only record format version is 1.");
}

/* Fills opts from the plugin options, raising an error for unknown ones. */
void
engage_parse_options(List *defels, EngageOptions *opts)
{
	ListCell   *lc;

	opts->all_tables = false;
	opts->tables = NIL;
	opts->transactions = false;
	parse_table_entry(opts, pstrdup("engage.*"), "engage.*");

	foreach(lc, defels)
	{
		DefElem    *elem = lfirst(lc);

		if (strcmp(elem->defname, "tables") == 0)
			parse_tables(opts, elem);
		else if (strcmp(elem->defname, "transactions") == 0)
			opts->transactions = option_bool(elem);
		else if (strcmp(elem->defname, "format_version") == 0)
			check_format_version(elem);
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("engage_decoder option \"%s\" is not recognized", elem->defname),
					 errhint("Valid options are tables, transactions and format_version.")));
	}
}

/* Does the filter in opts capture the table schema.table? */
bool
engage_table_captured(const EngageOptions *opts, const char *schema, const char *table)
{
	ListCell   *lc;

	if (opts->all_tables)
		return true;
	foreach(lc, opts->tables)
	{
		EngageTablePattern *pat = lfirst(lc);

		if (strcmp(pat->schema, schema) == 0 &&
			(pat->table == NULL || strcmp(pat->table, table) == 0))
			return true;
	}
	return false;
}
