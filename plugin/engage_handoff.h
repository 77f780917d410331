/*
 * engage_handoff.h
 *		What engage_decoder hands an in-process consumer next to each record's
 *		text, and the rules both libraries share.
 *
 * This header is the one definition shared by the output plugin
 * (engage_decoder) and the pg_engage library, whose shipper decodes in its
 * own process.  While the plugin writes a record, the facts the shipper
 * routes on (what the record is, its id, where it goes, its Kafka key) are
 * set in the EngageHandoff at the start of the plugin's private state, so the
 * shipper never scans the JSON text again.  The magic and version let the
 * shipper refuse a plugin built from another release: change
 * ENGAGE_HANDOFF_VERSION whenever this header changes.
 *
 * Shared rules, compiled into both libraries (the plugin never links Kafka):
 *	topicname.c		valid Kafka topic names and the topics of tables and messages
 *	tablelist.c		the "tables" list of captured tables
 *	emitauth.c		the authenticator of messages written by engage.emit()
 *	schemadesc.c	a table's description (columns, key) and its fingerprint
 */
#ifndef ENGAGE_HANDOFF_H
#define ENGAGE_HANDOFF_H

#include "postgres.h"

#include "access/xlogdefs.h"
#include "lib/stringinfo.h"
#include "nodes/pg_list.h"
#include "utils/relcache.h"

/* Prefix of the logical messages written by engage.emit(). */
#define ENGAGE_MESSAGE_PREFIX "engage"
/* Prefix of the snapshot watermarks the shipper writes (see snapshot.c). */
#define ENGAGE_WATERMARK_PREFIX "engage.watermark"
/* Prefix of the schema changes the DDL event triggers write. */
#define ENGAGE_SCHEMA_PREFIX "engage.schema"

#define ENGAGE_HANDOFF_MAGIC	0x45474831	/* "EGH1" */
#define ENGAGE_HANDOFF_VERSION	4

/* What a record is. */
typedef enum EngageRecordKind
{
	ENGAGE_RECORD_BEGIN,		/* a transaction's first event follows */
	ENGAGE_RECORD_COMMIT,		/* the transaction's events are all written */
	ENGAGE_RECORD_ROW,			/* insert, update, delete or truncate */
	ENGAGE_RECORD_MESSAGE,		/* an event written by engage.emit() */
	ENGAGE_RECORD_QUARANTINE,	/* any other message with an engage prefix */
	ENGAGE_RECORD_WATERMARK,	/* a snapshot watermark: never shipped */
	ENGAGE_RECORD_SCHEMA		/* a captured table's columns after DDL */
} EngageRecordKind;

/* Bytes that are not NUL-terminated; data is NULL when absent. */
typedef struct EngageBytes
{
	const char *data;
	int			len;
} EngageBytes;

/*
 * The facts of the record being written.  Pointers are valid only during the
 * write callback of that record.
 */
typedef struct EngageRecordFacts
{
	EngageRecordKind kind;
	const char *op;				/* "insert", ..., "message", "begin", "commit" */
	EngageBytes id;				/* the event id, "<commit lsn>:<position>" */
	EngageBytes lsn;			/* the change's LSN as text */
	EngageBytes table;			/* "schema.table" as in the catalog (rows) */
	Oid			relid;			/* the table (root of a partition); rows only */
	EngageBytes topic;			/* the Kafka topic; absent when it has none */
	EngageBytes key;			/* the Kafka key; absent when it has none */
	const char *no_topic_reason;	/* why topic is absent, when it is (for a
									 * quarantined message: why it is one) */
	bool		transactional;	/* false only for non-transactional messages */
	XLogRecPtr	end_lsn;		/* begin and commit records: end of the commit record */
	EngageBytes content;		/* watermark records: what the shipper wrote */
} EngageRecordFacts;

struct RelationData;
struct HeapTupleData;

/*
 * What the plugin does for the shipper's snapshots (shipper's snapshot.c),
 * called with the plugin's private state: the plugin alone writes records.
 *	open_rel	prepares rows of a relation read now (the current catalog);
 *				NULL when the relation is not captured
 *	write_row	writes the body of a row's read record (from ,"table" on) to
 *				out and its facts (table, topic, key; no id yet)
 *	close_rel	frees what open_rel made
 *	write_read	only while the shipper handles a watermark record: writes a
 *				whole record of op ("read", or "snapshot" for the start and end
 *				of a snapshot) with that body at the watermark's place in the
 *				stream (the next position of its transaction); sets the id and
 *				lsn of facts
 */
typedef struct EngageSnapshotCalls
{
	void	   *(*open_rel) (void *plugin, struct RelationData *rel);
	void		(*write_row) (void *plugin, void *rel, struct HeapTupleData *tuple,
							  StringInfo out, EngageRecordFacts *facts);
	void		(*close_rel) (void *plugin, void *rel);
	void		(*write_read) (void *plugin, StringInfo out, const char *op, const char *body,
							   int len, EngageRecordFacts *facts);
} EngageSnapshotCalls;

/* The first member of the plugin's private state. */
typedef struct EngageHandoff
{
	uint32		magic;
	uint32		version;
	EngageRecordFacts facts;
	EngageSnapshotCalls snapshot;
} EngageHandoff;

/* topicname.c: Kafka's rule for topic names, and the names of our topics. */
#define ENGAGE_TOPIC_MAX_LEN 249
#define ENGAGE_TOPIC_PREFIX_MAX_LEN 200
#define ENGAGE_APP_TOPIC_INFIX "-app."	/* <prefix>-app.<topic> */

extern const char *engage_topic_invalid(const char *name, int len);
extern const char *engage_topic_prefix_invalid(const char *prefix);
extern bool engage_topics_collide(const char *a, const char *b);
extern const char *engage_dead_letter_conflict(const char *topic, const char *prefix);
extern const char *engage_table_topic(StringInfo buf, const char *prefix,
									  const char *schema, const char *table);
extern const char *engage_message_topic(StringInfo buf, const char *prefix,
										const char *topic, int len);

/*
 * emitauth.c: the messages pg_engage writes start with an authenticator (hex)
 * bound to their purpose.
 */
#define ENGAGE_EMIT_MAC_CHARS 64
#define ENGAGE_MAC_EMIT "pg_engage emit v1"
#define ENGAGE_MAC_WATERMARK "pg_engage watermark v1"
#define ENGAGE_MAC_SCHEMA "pg_engage schema v1"

extern void engage_sign(StringInfo buf, const char *domain, TransactionId xid,
						const char *event, Size len);
extern bool engage_verify(const char *domain, TransactionId xid, const char *message, Size size);

/*
 * schemadesc.c: a table's description ("columns":[...],"key":[...]) and its
 * fingerprint, the 16 hex digits every row record carries as "schema".
 */
#define ENGAGE_SCHEMA_FINGERPRINT_CHARS 16

extern Oid	engage_key_index(Relation rel);
extern void engage_describe_rel(StringInfo buf, Relation rel);
extern void engage_schema_fingerprint(const char *desc, int len, char *out);

/* tablelist.c: the list of captured tables. */
typedef struct EngageTableList
{
	bool		all_tables;		/* "*" */
	List	   *patterns;		/* of EngageTablePattern */
} EngageTableList;

typedef struct EngageTablePattern
{
	char	   *schema;
	char	   *table;			/* NULL matches every table of the schema */
} EngageTablePattern;

extern const char *engage_parse_table_list(const char *value, EngageTableList *list,
										   const char **hint);
extern bool engage_table_list_matches(const EngageTableList *list,
									  const char *schema, const char *table);

#endif							/* ENGAGE_HANDOFF_H */
