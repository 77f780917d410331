/*
 * route.c
 *		Picks the fields the shipper needs out of an event record: where it
 *		goes (topic), its Kafka key, and the headers consumers dedupe on.
 *
 * Records come from engage_decoder, so this is a small scanner of one JSON
 * object's top-level members, not a general parser: it finds each member's
 * value by skipping strings, nesting and literals, in one pass.
 */
#include "engage.h"

#include "utils/builtins.h"
#include "utils/pg_lsn.h"

/* Skips JSON whitespace. */
static const char *
skip_ws(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return p;
}

/* Returns the position after the string starting at p (on its quote). */
static const char *
skip_string(const char *p, const char *end)
{
	for (p++; p < end; p++)
	{
		if (*p == '\\')
			p++;
		else if (*p == '"')
			return p + 1;
	}
	return NULL;
}

/* Returns the position after the JSON value starting at p, or NULL. */
static const char *
skip_value(const char *p, const char *end)
{
	int			depth = 0;

	while (p < end)
	{
		char		c = *p;

		if (c == '"')
		{
			p = skip_string(p, end);
			if (p == NULL || depth == 0)
				return p;
			continue;
		}
		if (c == '{' || c == '[')
			depth++;
		else if (c == '}' || c == ']')
		{
			if (depth == 0)
				return p;		/* a literal ended by its enclosing object */
			if (--depth == 0)
				return p + 1;
		}
		else if (c == ',' && depth == 0)
			return p;
		p++;
	}
	return depth == 0 ? p : NULL;
}

/* Stores a member's value in the field of ev it belongs to, if any. */
static void
keep_member(EngageEvent *ev, const char *name, int namelen, const char *v, int vlen)
{
	EngageSpan	raw = {v, vlen};
	EngageSpan	str = {v + 1, vlen - 2};
	bool		is_str = vlen >= 2 && v[0] == '"';

#define NAME_IS(s) (namelen == sizeof(s) - 1 && memcmp(name, s, namelen) == 0)
	if (NAME_IS("pk"))
		ev->pk = raw;
	else if (NAME_IS("key"))
		ev->key = raw;
	else if (!is_str)
		return;
	else if (NAME_IS("op"))
		ev->op = str;
	else if (NAME_IS("id"))
		ev->id = str;
	else if (NAME_IS("lsn"))
		ev->lsn = str;
	else if (NAME_IS("table"))
		ev->table = str;
	else if (NAME_IS("topic"))
		ev->topic = str;
	else if (NAME_IS("end_lsn"))
		ev->end_lsn = str;
#undef NAME_IS
}

/* Fills ev from the record data[0..len); false when it is not an object. */
bool
engage_parse_event(const char *data, int len, EngageEvent *ev)
{
	const char *end = data + len;
	const char *p = skip_ws(data, end);

	memset(ev, 0, sizeof(*ev));
	if (p >= end || *p != '{')
		return false;
	p = skip_ws(p + 1, end);
	while (p < end && *p == '"')
	{
		const char *name = p + 1;
		const char *name_end = skip_string(p, end);
		const char *value;

		if (name_end == NULL)
			return false;
		p = skip_ws(name_end, end);
		if (p >= end || *p != ':')
			return false;
		value = skip_ws(p + 1, end);
		p = skip_value(value, end);
		if (p == NULL)
			return false;
		keep_member(ev, name, name_end - 1 - name, value, p - value);
		p = skip_ws(p, end);
		if (p < end && *p == ',')
			p = skip_ws(p + 1, end);
	}
	return p < end && *p == '}';
}

/* Does span s hold exactly str? */
bool
engage_span_is(EngageSpan s, const char *str)
{
	return s.len == (int) strlen(str) && memcmp(s.p, str, s.len) == 0;
}

/* Parses an LSN held in a span ("X/X"). */
XLogRecPtr
engage_span_lsn(EngageSpan s)
{
	char		buf[32];
	bool		have_error = false;
	XLogRecPtr	lsn;

	if (s.len <= 0 || s.len >= (int) sizeof(buf))
		return InvalidXLogRecPtr;
	memcpy(buf, s.p, s.len);
	buf[s.len] = '\0';
	lsn = pg_lsn_in_internal(buf, &have_error);
	return have_error ? InvalidXLogRecPtr : lsn;
}

/*
 * The Kafka topic of an event, palloc'd: <prefix>.<table> for tables of the
 * engage schema, <prefix>.<schema>.<table> for others, <prefix>.<topic> for
 * messages.  NULL when the record names neither.
 */
char *
engage_event_topic(const EngageEvent *ev, const char *prefix)
{
	const char *name;
	int			len;

	if (ev->topic.p != NULL)
	{
		name = ev->topic.p;
		len = ev->topic.len;
	}
	else if (ev->table.p != NULL)
	{
		name = ev->table.p;
		len = ev->table.len;
		if (len > 7 && memcmp(name, "engage.", 7) == 0)
			name += 7, len -= 7;
	}
	else
		return NULL;
	return psprintf("%s.%.*s", prefix, len, name);
}
