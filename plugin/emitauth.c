/*
 * emitauth.c
 *		The authenticator that tells a message written by engage.emit() from
 *		any other message with the engage prefix.
 *
 * pg_logical_emit_message() is executable by PUBLIC, so the prefix proves
 * nothing: anyone could write what looks like an application event.
 * engage.emit() therefore starts its message with a keyed hash (HMAC-SHA-256,
 * 64 hex digits) of the id of the top-level transaction writing it and of the
 * event that follows.  The key is 32 random bytes in the file
 * $PGDATA/pg_engage_emit.key, created on first use with mode 0600: only the
 * server's operating-system user (and so superusers and members of
 * pg_read_server_files) can read it.  The decoder recomputes the hash with
 * the transaction that committed the message: a message not written by
 * emit(), or copied from another transaction, does not match.
 *
 * The same authenticator, with another purpose (domain) in the hash, marks
 * the other messages only pg_engage writes: snapshot watermarks and schema
 * changes (ENGAGE_MAC_*): a hash made for one purpose never passes for
 * another.
 *
 * Shared by engage_decoder and pg_engage (see engage_handoff.h).
 */
#include "engage_handoff.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "access/transam.h"
#include "common/hmac.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "utils/builtins.h"

#define EMIT_KEY_FILE	"pg_engage_emit.key"
#define EMIT_KEY_LEN	32
#define EMIT_MAC_LEN	32		/* SHA-256 */

static uint8 emit_key[EMIT_KEY_LEN];
static bool emit_key_loaded = false;

/* Writes a new random key file at path (temporary name, then linked). */
static void
create_key_file(const char *path)
{
	uint8		key[EMIT_KEY_LEN];
	char	   *tmp = psprintf("%s.%d.tmp", path, MyProcPid);
	int			fd;

	if (!pg_strong_random(key, sizeof(key)))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate the engage.emit() key")));
	fd = OpenTransientFilePerm(tmp, O_WRONLY | O_CREAT | O_EXCL | PG_BINARY, S_IRUSR | S_IWUSR);
	if (fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create file \"%s\": %m", tmp)));
	if (write(fd, key, sizeof(key)) != sizeof(key) || pg_fsync(fd) != 0)
	{
		int			save_errno = errno;

		CloseTransientFile(fd);
		unlink(tmp);
		errno = save_errno;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not write file \"%s\": %m", tmp)));
	}
	CloseTransientFile(fd);
	/* link() fails if another process made the key first: then theirs is read. */
	if (link(tmp, path) != 0 && errno != EEXIST)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not link file \"%s\" to \"%s\": %m", tmp, path)));
	unlink(tmp);
	fsync_fname(DataDir, true);
	explicit_bzero(key, sizeof(key));
}

/* Reads the key file, creating it first when there is none. */
static void
load_key(void)
{
	char	   *path = psprintf("%s/%s", DataDir, EMIT_KEY_FILE);
	int			fd = OpenTransientFile(path, O_RDONLY | PG_BINARY);
	int			got;

	if (fd < 0 && errno == ENOENT)
	{
		create_key_file(path);
		fd = OpenTransientFile(path, O_RDONLY | PG_BINARY);
	}
	if (fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open the engage.emit() key file \"%s\": %m", path)));
	got = read(fd, emit_key, sizeof(emit_key));
	CloseTransientFile(fd);
	if (got != sizeof(emit_key))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("the engage.emit() key file \"%s\" is damaged", path),
				 errdetail("It holds %d bytes instead of %d.", Max(got, 0), EMIT_KEY_LEN),
				 errhint("Restore it from a backup of the data directory; events emitted with the lost key are quarantined.")));
	emit_key_loaded = true;
}

/*
 * Computes the hash of event[0..len) written in transaction xid for the
 * purpose domain (ENGAGE_MAC_*) into mac.
 */
static void
compute_mac(const char *domain, TransactionId xid, const char *event, Size len, uint8 *mac)
{
	pg_hmac_ctx *hmac;
	uint8		xid_bytes[4] = {xid >> 24, xid >> 16, xid >> 8, xid};

	if (!emit_key_loaded)
		load_key();
	hmac = pg_hmac_create(PG_SHA256);
	if (hmac == NULL ||
		pg_hmac_init(hmac, emit_key, sizeof(emit_key)) < 0 ||
		pg_hmac_update(hmac, (const uint8 *) domain, strlen(domain) + 1) < 0 ||
		pg_hmac_update(hmac, xid_bytes, sizeof(xid_bytes)) < 0 ||
		pg_hmac_update(hmac, (const uint8 *) event, len) < 0 ||
		pg_hmac_final(hmac, mac, EMIT_MAC_LEN) < 0)
		elog(ERROR, "could not compute the engage.emit() authenticator: %s",
			 hmac ? pg_hmac_error(hmac) : "out of memory");
	pg_hmac_free(hmac);
}

/*
 * Appends the authenticator of event, written in transaction xid for the
 * purpose domain, to buf.
 */
void
engage_sign(StringInfo buf, const char *domain, TransactionId xid, const char *event, Size len)
{
	uint8		mac[EMIT_MAC_LEN];

	compute_mac(domain, xid, event, len, mac);
	enlargeStringInfo(buf, ENGAGE_EMIT_MAC_CHARS);
	buf->len += hex_encode((const char *) mac, sizeof(mac), buf->data + buf->len);
	buf->data[buf->len] = '\0';
}

/*
 * Is message (authenticator, then event) what pg_engage wrote for the purpose
 * domain in transaction xid?  The comparison takes the same time wherever it
 * differs.
 */
bool
engage_verify(const char *domain, TransactionId xid, const char *message, Size size)
{
	uint8		mac[EMIT_MAC_LEN];
	char		hex[ENGAGE_EMIT_MAC_CHARS];
	uint8		diff = 0;

	if (size < ENGAGE_EMIT_MAC_CHARS || !TransactionIdIsValid(xid))
		return false;
	compute_mac(domain, xid, message + ENGAGE_EMIT_MAC_CHARS, size - ENGAGE_EMIT_MAC_CHARS, mac);
	hex_encode((const char *) mac, sizeof(mac), hex);
	for (int i = 0; i < ENGAGE_EMIT_MAC_CHARS; i++)
		diff |= hex[i] ^ message[i];
	return diff == 0;
}
