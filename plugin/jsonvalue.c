/*
 * jsonvalue.c
 *		Writes one datum as a JSON value, exactly where JSON can carry it.
 */
#include "engage_decoder.h"

#include "common/base64.h"
#include "common/shortest_dec.h"
#include "datatype/timestamp.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/datetime.h"
#include "utils/timestamp.h"

/* Bytes that cannot stand in a JSON string as they are (0: none needed). */
static const char json_escape_table[256] = {
	'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'b', 't', 'n', 'u', 'f', 'r', 'u', 'u',
	'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u',
	0, 0, '"', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, '\\', 0, 0, 0,
};

/* Appends s[0..len) as a quoted JSON string (RFC 8259 escaping). */
void
engage_json_string(StringInfo out, const char *s, int len)
{
	static const char hex[] = "0123456789abcdef";
	const char *run = s;
	const char *end = s + len;

	appendStringInfoCharMacro(out, '"');
	for (const char *p = s; p < end; p++)
	{
		char		esc = json_escape_table[(unsigned char) *p];
		char		buf[6];

		if (likely(esc == 0))
			continue;
		appendBinaryStringInfo(out, run, p - run);
		run = p + 1;
		buf[0] = '\\';
		buf[1] = esc;
		if (esc != 'u')
		{
			appendBinaryStringInfo(out, buf, 2);
			continue;
		}
		buf[2] = '0';
		buf[3] = '0';
		buf[4] = hex[(unsigned char) *p >> 4];
		buf[5] = hex[(unsigned char) *p & 0xf];
		appendBinaryStringInfo(out, buf, 6);
	}
	appendBinaryStringInfo(out, run, end - run);
	appendStringInfoCharMacro(out, '"');
}

/* Writes n as exactly width decimal digits into buf; returns buf + width. */
static char *
put_digits(char *buf, int n, int width)
{
	for (int i = width - 1; i >= 0; i--)
	{
		buf[i] = '0' + n % 10;
		n /= 10;
	}
	return buf + width;
}

/*
 * Writes an ISO 8601 year into buf: at least four digits, astronomical
 * numbering (0000 is 1 BC, -0001 is 2 BC), a sign only before year zero.
 */
static char *
put_year(char *buf, int year)
{
	int			width = 4;

	if (year < 0)
	{
		*buf++ = '-';
		year = -year;
	}
	for (int y = year / 10000; y > 0; y /= 10)
		width++;
	return put_digits(buf, year, width);
}

/* Writes the date part YYYY-MM-DD of tm into buf; returns the end. */
static char *
put_date(char *p, const struct pg_tm *tm)
{
	p = put_year(p, tm->tm_year);
	*p++ = '-';
	p = put_digits(p, tm->tm_mon, 2);
	*p++ = '-';
	return put_digits(p, tm->tm_mday, 2);
}

/*
 * Writes a timestamp as a quoted ISO 8601 string into buf (MAXDATELEN + 3
 * bytes) and returns its length: "2026-11-25T09:00:00.123456Z" (no Z when
 * !utc), "infinity" or "-infinity".
 */
int
engage_json_timestamp(char *buf, int64 ts, bool utc)
{
	struct pg_tm tm;
	fsec_t		fsec;
	char	   *p = buf;

	if (TIMESTAMP_NOT_FINITE(ts))
		return sprintf(buf, "\"%s\"", TIMESTAMP_IS_NOBEGIN(ts) ? "-infinity" : "infinity");
	if (timestamp2tm(ts, NULL, &tm, &fsec, NULL, NULL) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp out of range")));
	*p++ = '"';
	p = put_date(p, &tm);
	*p++ = 'T';
	p = put_digits(p, tm.tm_hour, 2);
	*p++ = ':';
	p = put_digits(p, tm.tm_min, 2);
	*p++ = ':';
	p = put_digits(p, tm.tm_sec, 2);
	*p++ = '.';
	p = put_digits(p, fsec, 6);
	if (utc)
		*p++ = 'Z';
	*p++ = '"';
	return p - buf;
}

/*
 * Writes a timestamp value.  Rows of one transaction often share a timestamp
 * (now() defaults), so the last one formatted is kept.
 */
static void
write_timestamp(StringInfo out, int64 ts, bool utc)
{
	static int64 last_ts = 0;
	static bool last_utc = false;
	static int	last_len = 0;
	static char last_buf[MAXDATELEN + 3];

	if (last_len == 0 || ts != last_ts || utc != last_utc)
	{
		last_len = engage_json_timestamp(last_buf, ts, utc);
		last_ts = ts;
		last_utc = utc;
	}
	appendBinaryStringInfo(out, last_buf, last_len);
}

/* Writes a date as a quoted ISO 8601 date. */
static void
write_date(StringInfo out, DateADT date)
{
	struct pg_tm tm;
	char		buf[32];
	char	   *p = buf;

	if (DATE_NOT_FINITE(date))
	{
		appendStringInfoString(out, DATE_IS_NOBEGIN(date) ? "\"-infinity\"" : "\"infinity\"");
		return;
	}
	j2date(date + POSTGRES_EPOCH_JDATE, &tm.tm_year, &tm.tm_mon, &tm.tm_mday);
	*p++ = '"';
	p = put_date(p, &tm);
	*p++ = '"';
	appendBinaryStringInfo(out, buf, p - buf);
}

/* Writes an interval as a quoted ISO 8601 duration. */
static void
write_interval(StringInfo out, Interval *span)
{
	struct pg_itm itm;
	char		buf[MAXDATELEN + 1];

	interval2itm(*span, &itm);
	EncodeInterval(&itm, INTSTYLE_ISO_8601, buf);
	appendStringInfoCharMacro(out, '"');
	appendStringInfoString(out, buf);
	appendStringInfoCharMacro(out, '"');
}

/* Writes bytea as a quoted base64 string (RFC 4648, padded). */
static void
write_bytea(StringInfo out, Datum value)
{
	bytea	   *b = DatumGetByteaPP(value);
	int			len = VARSIZE_ANY_EXHDR(b);
	int			enclen = pg_b64_enc_len(len);
	int			written;

	enlargeStringInfo(out, enclen + 2);
	out->data[out->len++] = '"';
	written = pg_b64_encode(VARDATA_ANY(b), len, out->data + out->len, enclen);
	if (written < 0)
		elog(ERROR, "could not encode bytea as base64");
	out->len += written;
	out->data[out->len++] = '"';
	out->data[out->len] = '\0';
}

/*
 * Writes a number's text output: as a JSON number, or as a string for NaN
 * and the infinities, which JSON numbers cannot carry.
 */
static void
write_number_text(StringInfo out, const char *s)
{
	bool		special = (s[0] == 'N' || s[0] == 'I' || (s[0] == '-' && s[1] == 'I'));

	if (special)
		appendStringInfoCharMacro(out, '"');
	appendStringInfoString(out, s);
	if (special)
		appendStringInfoCharMacro(out, '"');
}

/*
 * Writes a float4 or float8 in its shortest exact form, whatever
 * extra_float_digits says; NaN and the infinities as strings.
 */
static void
write_float(StringInfo out, Datum value, Oid typid)
{
	double		d = typid == FLOAT4OID ? (double) DatumGetFloat4(value) : DatumGetFloat8(value);
	char		buf[32];

	if (isnan(d))
		appendBinaryStringInfo(out, "\"NaN\"", 5);
	else if (isinf(d))
		appendStringInfoString(out, d > 0 ? "\"Infinity\"" : "\"-Infinity\"");
	else if (typid == FLOAT4OID)
		appendBinaryStringInfo(out, buf, float_to_shortest_decimal_bufn(DatumGetFloat4(value), buf));
	else
		appendBinaryStringInfo(out, buf, double_to_shortest_decimal_bufn(d, buf));
}

/*
 * Appends JSON text on one line: a newline or carriage return in valid JSON
 * can only be whitespace between tokens, so it becomes a space.
 */
void
engage_json_one_line(StringInfo out, const char *json, int len)
{
	int			start = out->len;

	appendBinaryStringInfo(out, json, len);
	for (char *p = out->data + start; p < out->data + out->len; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
}

/* Writes the elements of dimension dim of an array, starting at *next. */
static void
write_array_dim(StringInfo out, EngageType *elem, int ndim, const int *dims,
				int dim, Datum *values, bool *nulls, int *next)
{
	appendStringInfoCharMacro(out, '[');
	for (int i = 0; i < dims[dim]; i++)
	{
		if (i > 0)
			appendStringInfoCharMacro(out, ',');
		if (dim + 1 < ndim)
			write_array_dim(out, elem, ndim, dims, dim + 1, values, nulls, next);
		else
		{
			if (nulls[*next])
				appendBinaryStringInfo(out, "null", 4);
			else
				engage_json_value(out, values[*next], elem);
			(*next)++;
		}
	}
	appendStringInfoCharMacro(out, ']');
}

/* Writes an array as a JSON array, nested by dimension, nulls as null. */
static void
write_array(StringInfo out, Datum value, EngageType *type)
{
	ArrayType  *arr = DatumGetArrayTypeP(value);
	EngageType *elem = type->elem;
	Datum	   *values;
	bool	   *nulls;
	int			n;
	int			next = 0;

	if (ARR_NDIM(arr) == 0)
	{
		appendBinaryStringInfo(out, "[]", 2);
		return;
	}
	deconstruct_array(arr, ARR_ELEMTYPE(arr), elem->typlen, elem->typbyval,
					  elem->typalign, &values, &nulls, &n);
	write_array_dim(out, elem, ARR_NDIM(arr), ARR_DIMS(arr), 0, values, nulls, &next);
}

/* Writes a text-like value as an escaped string without its output function. */
static void
write_text(StringInfo out, Datum value)
{
	text	   *t = DatumGetTextPP(value);

	engage_json_string(out, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
}

/* Writes an integer value of a 2, 4 or 8 byte type (or oid). */
static void
write_int(StringInfo out, Datum value, Oid typid)
{
	char		buf[MAXINT8LEN + 1];
	int			len;

	if (typid == INT8OID)
		len = pg_lltoa(DatumGetInt64(value), buf);
	else if (typid == INT4OID)
		len = pg_ltoa(DatumGetInt32(value), buf);
	else if (typid == INT2OID)
		len = pg_ltoa(DatumGetInt16(value), buf);
	else
		len = pg_ultoa_n(DatumGetObjectId(value), buf);
	appendBinaryStringInfo(out, buf, len);
}

/* Appends one non-null datum as the JSON value its type calls for. */
void
engage_json_value(StringInfo out, Datum value, EngageType *type)
{
	switch (type->kind)
	{
		case EV_INT:
			write_int(out, value, type->typid);
			break;
		case EV_BOOL:
			appendStringInfoString(out, DatumGetBool(value) ? "true" : "false");
			break;
		case EV_FLOAT:
			write_float(out, value, type->typid);
			break;
		case EV_NUMERIC:
			write_number_text(out, OutputFunctionCall(&type->out, value));
			break;
		case EV_JSON:
			{
				char	   *s = OutputFunctionCall(&type->out, value);

				engage_json_one_line(out, s, strlen(s));
				break;
			}
		case EV_TEXT:
			write_text(out, value);
			break;
		case EV_TIMESTAMPTZ:
		case EV_TIMESTAMP:
			write_timestamp(out, DatumGetTimestamp(value), type->kind == EV_TIMESTAMPTZ);
			break;
		case EV_DATE:
			write_date(out, DatumGetDateADT(value));
			break;
		case EV_INTERVAL:
			write_interval(out, DatumGetIntervalP(value));
			break;
		case EV_BYTEA:
			write_bytea(out, value);
			break;
		case EV_ARRAY:
			write_array(out, value, type);
			break;
		case EV_STRING:
			{
				char	   *s = OutputFunctionCall(&type->out, value);

				engage_json_string(out, s, strlen(s));
				break;
			}
	}
}
