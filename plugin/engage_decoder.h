/*
 * engage_decoder.h
 *		Shared declarations of the engage_decoder output plugin.
 *
 * The plugin writes one JSON event record per row change (format described
 * in README.md, "Event records").  Files:
 *	engage_decoder.c	entry point and decoding callbacks
 *	options.c			plugin options
 *	relinfo.c			per-relation cache of columns, types, keys and topic
 *	record.c			a record's opening and closing, tuples and keys as JSON
 *	keychange.c			updates that change the key: a delete and an insert
 *	message.c			the body of message records
 *	snapshotrow.c		read records of the shipper's snapshots
 *	schemamsg.c			schema records (the DDL event triggers' messages)
 *	schemadesc.c		a table's description and fingerprint (shared)
 *	jsonvalue.c			one datum as a JSON value
 *	topicname.c, tablelist.c	rules shared with pg_engage (engage_handoff.h)
 */
#ifndef ENGAGE_DECODER_H
#define ENGAGE_DECODER_H

#include "postgres.h"

#include "engage_handoff.h"

#include "access/htup.h"
#include "access/tupdesc.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "nodes/pg_list.h"
#include "replication/logical.h"
#include "utils/datetime.h"
#include "utils/rel.h"

/* Version of the record format written in every record's "v" field. */
#define ENGAGE_FORMAT_VERSION 1

/* How a value of one type is written as JSON. */
typedef enum EngageValueKind
{
	EV_INT,						/* int2, int4, int8, oid: a JSON number */
	EV_BOOL,					/* true or false */
	EV_FLOAT,					/* a number; NaN and infinities as strings */
	EV_NUMERIC,					/* every digit kept; NaN and infinities as strings */
	EV_JSON,					/* json and jsonb embedded as JSON */
	EV_TEXT,					/* text, varchar, bpchar: an escaped string */
	EV_TIMESTAMPTZ,				/* ISO 8601 in UTC with microseconds and Z */
	EV_TIMESTAMP,				/* ISO 8601 with microseconds, no zone */
	EV_DATE,					/* ISO 8601 date */
	EV_INTERVAL,				/* ISO 8601 duration */
	EV_BYTEA,					/* base64 string */
	EV_ARRAY,					/* a JSON array, nested for several dimensions */
	EV_STRING					/* anything else: its text output as a string */
} EngageValueKind;

/* Everything needed to write values of one (base) type. */
typedef struct EngageType
{
	EngageValueKind kind;
	Oid			typid;			/* the base type (domains resolved) */
	int16		typlen;
	bool		typbyval;
	char		typalign;
	FmgrInfo	out;			/* text output function */
	struct EngageType *elem;	/* element type of an array */
} EngageType;

/* One live column of a captured relation. */
typedef struct EngageColumn
{
	AttrNumber	attnum;			/* 1-based attribute number */
	char	   *name;			/* the quoted JSON name followed by ':' */
	int			namelen;
	char	   *bare;			/* the quoted JSON name alone */
	EngageType	type;
} EngageColumn;

/* What the plugin knows about one relation; rebuilt after invalidation. */
typedef struct EngageRel
{
	Oid			relid;			/* hash key */
	bool		valid;
	bool		captured;		/* does the table filter select it? */
	Oid			root;			/* the root of a partition, or relid */
	MemoryContext cxt;			/* holds everything below */
	char	   *table;			/* ,"table":"schema.name" (root of a partition) */
	char	   *partition;		/* ,"partition":"schema.leaf" or NULL */
	char	   *qualname;		/* schema.name of the root, as in the catalog */
	char	   *schema;			/* ,"schema":"<fingerprint of the root>" */
	char	   *topic;			/* its Kafka topic (option topic_prefix), or NULL */
	const char *no_topic_reason;	/* why topic is NULL despite a prefix */
	int			ncols;
	EngageColumn *cols;
	int			nkeys;			/* 0 when the table has no usable key */
	int		   *keys;			/* indexes into cols */
	TupleDesc	desc;			/* engage_rel_build() only: the relation's */
	int			nkeyatts;		/* the key's columns, also of tables not */
	AttrNumber *keyatts;		/* captured (key changes take two positions) */
} EngageRel;

/* Options given with the slot's get_changes call or replication command. */
typedef struct EngageOptions
{
	EngageTableList tables;		/* captured tables */
	bool		transactions;	/* write begin and commit records */
	char	   *topic_prefix;	/* hand over Kafka topics under it, or NULL */
	int			max_record_bytes;	/* larger row records lose their values */
} EngageOptions;

/*
 * The largest row record written with its values: a bigger one (a value can
 * be 1 GB) would fail to be built and stop decoding for good, and no consumer
 * could take it anyway.
 */
#define ENGAGE_MAX_RECORD_BYTES (64 * 1024 * 1024)

/* Plugin state of one decoding session. */
typedef struct EngageState
{
	EngageHandoff handoff;		/* first: read by the pg_engage shipper */
	MemoryContext change_cxt;	/* reset after every callback */
	EngageOptions opts;
	int			id_off;			/* where the record being written has its id */
	int			lsn_off;		/* ... and its change LSN */
	int			key_off;		/* ... and its key object, or -1 */
	int			key_len;
	struct EngageTxn *wm_txn;	/* while a watermark is written: its transaction */
	XLogRecPtr	wm_lsn;			/* ... its LSN */
	TransactionId wm_xid;		/* ... and its transaction id */
} EngageState;

/* Per-transaction state, in txn->output_plugin_private. */
typedef struct EngageTxn EngageTxn;
struct EngageTxn
{
	uint32		position;		/* changes seen so far, captured or not */
	uint32		events;			/* records written */
	bool		begun;			/* begin record written */
	char		commit_lsn[20]; /* commit LSN as text */
	int			commit_lsn_len;
	char		ts[MAXDATELEN + 3]; /* commit time as a JSON string */
	int			ts_len;
};

/* One decoded tuple: its values and nulls by attribute number - 1. */
typedef struct EngageRow
{
	int			natts;
	Datum	   *values;
	bool	   *nulls;
} EngageRow;

/* engage_decoder.c */
extern void write_begin_once(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, EngageTxn *etxn);

/* options.c */
extern void engage_parse_options(List *defels, EngageOptions *opts);

/* relinfo.c */
extern void engage_relcache_init(void);
extern void engage_relcache_reset(void);
extern EngageRel *engage_rel_get(Relation rel, const EngageOptions *opts);
extern EngageRel *engage_rel_build(Relation rel, const EngageOptions *opts);
extern void engage_rel_free(EngageRel *erel);

/* record.c */
extern void engage_reset_facts(EngageState *state, EngageRecordKind kind, const char *op);
extern void engage_open_record(LogicalDecodingContext *ctx, EngageTxn *etxn,
							   XLogRecPtr lsn, TransactionId xid,
							   EngageRecordKind kind, const char *op);
extern void engage_close_record(LogicalDecodingContext *ctx, EngageTxn *etxn);
extern void engage_write_rel(StringInfo out, EngageRel *erel, EngageRecordFacts *facts);
extern void engage_deform_row(EngageRow *row, TupleDesc desc, HeapTuple tuple);
extern int	engage_write_row(StringInfo out, const char *field,
							 EngageRel *erel, EngageRow *row, bool keys_only);
extern void engage_write_key(EngageState *state, StringInfo out, EngageRel *erel,
							 EngageRow *newrow, EngageRow *oldrow);
extern int	engage_lsn_chars(XLogRecPtr lsn, char *buf);
extern void engage_write_read_record(EngageState *state, StringInfo out, const char *op,
									 const char *body, int len, EngageRecordFacts *facts);

/* snapshotrow.c */
extern void engage_snapshot_calls_init(EngageSnapshotCalls *calls);

/* engage_decoder.c */
extern Size row_raw_size(EngageRow *row, TupleDesc desc);
extern void write_oversized(EngageState *state, StringInfo out, int values_at, Size size);
extern void engage_write_values(EngageState *state, StringInfo out, EngageRel *erel,
								TupleDesc desc, EngageRow *newrow, EngageRow *oldrow,
								bool full, bool is_delete);

/* keychange.c */
extern bool engage_key_changed(EngageRel *erel, Relation rel, ReorderBufferChange *change);
extern void engage_write_key_change(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
									EngageTxn *etxn, EngageRel *erel, Relation rel,
									ReorderBufferChange *change);

/* message.c */
extern const char *engage_message_quarantine_reason(bool transactional, TransactionId xid,
													const char *message, Size size);
extern void engage_write_message_body(EngageState *state, StringInfo out,
									  const char *message, Size size);
extern void engage_write_quarantined_body(EngageState *state, StringInfo out,
										  const char *message, Size size);
extern void engage_write_quarantine(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
									EngageTxn *etxn, XLogRecPtr lsn, bool transactional,
									const char *reason, const char *message, Size size);

/* schemamsg.c */
extern void engage_schema_message(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
								  EngageTxn *etxn, XLogRecPtr lsn, bool transactional,
								  const char *message, Size size);

/* jsonvalue.c */
extern void engage_json_string(StringInfo out, const char *s, int len);
extern void engage_json_one_line(StringInfo out, const char *json, int len);
extern void engage_json_value(StringInfo out, Datum value, EngageType *type);
extern int	engage_json_timestamp(char *buf, int64 ts, bool utc);

#endif							/* ENGAGE_DECODER_H */
