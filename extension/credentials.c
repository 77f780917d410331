/*
 * credentials.c
 *		The Kafka credentials file (engage.kafka_credentials_file): where
 *		passwords and keys go instead of a setting.
 *
 * Every setting's value can be read by members of pg_read_all_settings (and
 * so pg_monitor) and is written to the server log whenever it changes or is
 * refused, so secrets never belong in engage.kafka_properties, which refuses
 * them.  The credentials file holds librdkafka properties, one name=value per
 * line (blank lines and lines starting with # are skipped; the value is
 * everything after the first "=", spaces included).  The shipper reads it at
 * the start of each session and only accepts a regular file owned by the
 * server's operating-system user that neither group nor others can read or
 * write.  Nothing read from it is ever shown: errors name the file, the line
 * and the property, never a value.
 */
#include "engage.h"

#include <sys/stat.h>
#include <unistd.h>

#include "nodes/makefuncs.h"
#include "nodes/value.h"
#include "storage/fd.h"

/* A credentials file is small; a bigger one is a mistake. */
#define CREDENTIALS_MAX_BYTES 65536

/* Is name a librdkafka property that holds a secret? */
bool
engage_property_is_secret(const char *name)
{
	static const char *const secret[] = {
		"password", "secret", "ssl.key.pem", "ssl_key",
		"sasl.oauthbearer.config", "sasl.kerberos.keytab", NULL
	};

	for (int i = 0; secret[i] != NULL; i++)
		if (strstr(name, secret[i]) != NULL)
			return true;
	return false;
}

/* Why the file open as fd may not hold secrets, or NULL when it may. */
static char *
unsafe_file(const char *path, int fd, off_t *size)
{
	struct stat st;

	if (fstat(fd, &st) != 0)
		return psprintf("could not stat \"%s\": %m", path);
	*size = st.st_size;
	if (!S_ISREG(st.st_mode))
		return psprintf("\"%s\" is not a regular file", path);
	if (st.st_uid != geteuid())
		return psprintf("\"%s\" is not owned by the server's operating-system user", path);
	if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0)
		return psprintf("\"%s\" is accessible to group or others (mode %04o); make it chmod 600",
						path, (unsigned) (st.st_mode & 07777));
	if (st.st_size > CREDENTIALS_MAX_BYTES)
		return psprintf("\"%s\" is larger than %d bytes", path, CREDENTIALS_MAX_BYTES);
	return NULL;
}

/* Reads the whole file at path into a palloc'd string; NULL with *errmsg on failure. */
static char *
read_file(const char *path, char **errmsg)
{
	int			fd = OpenTransientFile(path, O_RDONLY | PG_BINARY);
	off_t		size = 0;
	char	   *text;
	ssize_t		got;

	if (fd < 0)
	{
		*errmsg = psprintf("could not open \"%s\": %m", path);
		return NULL;
	}
	*errmsg = unsafe_file(path, fd, &size);
	if (*errmsg != NULL)
	{
		CloseTransientFile(fd);
		return NULL;
	}
	text = palloc(size + 1);
	got = read(fd, text, size);
	CloseTransientFile(fd);
	if (got != size)
	{
		*errmsg = psprintf("could not read \"%s\"", path);
		return NULL;
	}
	text[size] = '\0';
	return text;
}

/* Parses one line into *item; false with *errmsg when it is not name=value. */
static bool
parse_line(char *line, int lineno, const char *path, DefElem **item, char **errmsg)
{
	char	   *eq;
	char	   *end;
	int			len = strlen(line);

	*item = NULL;
	if (len > 0 && line[len - 1] == '\r')
		line[--len] = '\0';
	while (*line == ' ' || *line == '\t')
		line++;
	if (*line == '\0' || *line == '#')
		return true;
	eq = strchr(line, '=');
	if (eq == NULL)
	{
		*errmsg = psprintf("line %d of \"%s\" is not name=value", lineno, path);
		return false;
	}
	for (end = eq; end > line && (end[-1] == ' ' || end[-1] == '\t'); end--)
		;
	*end = '\0';
	if (*line == '\0')
	{
		*errmsg = psprintf("line %d of \"%s\" has no property name", lineno, path);
		return false;
	}
	*item = makeDefElem(pstrdup(line), (Node *) makeString(pstrdup(eq + 1)), lineno);
	return true;
}

/*
 * Reads the credentials file at path into a list of DefElem (property name,
 * String value, line number as location).  False with a palloc'd *errmsg
 * (never a value) when the file is unsafe, unreadable or malformed.
 */
bool
engage_read_credentials(const char *path, List **items, char **errmsg)
{
	char	   *text = read_file(path, errmsg);
	char	   *save = NULL;
	int			lineno = 0;
	bool		ok = true;
	size_t		len;

	*items = NIL;
	if (text == NULL)
		return false;
	len = strlen(text);
	for (char *line = text; ok && line != NULL; line = save)
	{
		DefElem    *item;

		save = strchr(line, '\n');
		if (save != NULL)
			*save++ = '\0';
		ok = parse_line(line, ++lineno, path, &item, errmsg);
		if (ok && item != NULL)
			*items = lappend(*items, item);
	}
	explicit_bzero(text, len);
	return ok;
}

/* Overwrites the values read from the credentials file before they are freed. */
void
engage_forget_credentials(List *items)
{
	ListCell   *lc;

	foreach(lc, items)
	{
		char	   *value = strVal(((DefElem *) lfirst(lc))->arg);

		explicit_bzero(value, strlen(value));
	}
}
