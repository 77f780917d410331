/*
 * tablelist.c
 *		The list of captured tables: the plugin's "tables" option and the
 *		shipper's engage.tables setting, parsed by this one parser.
 *
 * A list is "*" (every table) or comma-separated entries schema.table or
 * schema.* with names as stored in the catalog; blanks around entries are
 * ignored.  Shared by engage_decoder and pg_engage (see engage_handoff.h); it
 * never raises an error, so a GUC check hook can call it.
 */
#include "engage_handoff.h"

/* Trims blanks at both ends of s in place and returns it. */
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

/* Adds one entry to list; false when it is not "*", schema.table or schema.*. */
static bool
add_entry(EngageTableList *list, char *entry)
{
	EngageTablePattern *pat;
	char	   *dot;

	if (strcmp(entry, "*") == 0)
	{
		list->all_tables = true;
		return true;
	}
	dot = strchr(entry, '.');
	if (dot == NULL || dot == entry || dot[1] == '\0' || strchr(dot + 1, '.') != NULL)
		return false;
	pat = palloc(sizeof(EngageTablePattern));
	*dot = '\0';
	pat->schema = pstrdup(entry);
	pat->table = strcmp(dot + 1, "*") == 0 ? NULL : pstrdup(dot + 1);
	list->patterns = lappend(list->patterns, pat);
	return true;
}

/*
 * Parses value into list.  Returns NULL on success, else what is wrong, with
 * a hint in *hint.
 */
const char *
engage_parse_table_list(const char *value, EngageTableList *list, const char **hint)
{
	char	   *entry;

	list->all_tables = false;
	list->patterns = NIL;
	*hint = "List schema-qualified tables or schema.* separated by commas, or use * for every table.";
	if (value == NULL || trim(pstrdup(value))[0] == '\0')
	{
		*hint = "Name at least one table, schema.* or *.";
		return "the list of tables is empty";
	}
	entry = pstrdup(value);
	for (;;)
	{
		char	   *comma = strchr(entry, ',');
		char	   *name;

		if (comma)
			*comma = '\0';
		name = trim(entry);
		if (name[0] == '\0')
		{
			*hint = "Remove the empty entry from the list.";
			return "the list of tables has an empty entry";
		}
		if (!add_entry(list, name))
			return psprintf("\"%s\" is not schema.table, schema.* or *", name);
		if (comma == NULL)
			return NULL;
		entry = comma + 1;
	}
}

/* Does list capture the table schema.table? */
bool
engage_table_list_matches(const EngageTableList *list, const char *schema, const char *table)
{
	ListCell   *lc;

	if (list->all_tables)
		return true;
	foreach(lc, list->patterns)
	{
		EngageTablePattern *pat = lfirst(lc);

		if (strcmp(pat->schema, schema) == 0 &&
			(pat->table == NULL || strcmp(pat->table, table) == 0))
			return true;
	}
	return false;
}
