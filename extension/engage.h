/*
 * engage.h
 *		Shared declarations of the pg_engage library: settings, the shipper
 *		worker, its shared status, and the Kafka producer.
 *
 * Files:
 *	pg_engage.c		library entry point: settings, shared memory, the launcher
 *	guc.c			the engage.* settings and their checks
 *	launcher.c		starts the shipper once its database exists, with backoff
 *	shipper.c		the worker: one long-lived decoding session into Kafka
 *	slotloss.c		the shipper's own record of its position; lost slots
 *	snapshot.c		snapshots: chunks read by key, placed in the stream by watermarks
 *	snapshotread.c	reading a snapshot's chunk from its table (snapshot.h)
 *	snapshotreq.c	snapshot requests and progress (engage_internal.snapshots)
 *	tracker.c		in-flight transactions and the position safe to confirm
 *	delivery.c		exactly once: Kafka transactions, the progress topic
 *	producer.c		everything that touches librdkafka
 *	status.c		shared status and engage.shipper_status()
 *	emit.c			engage.emit(): transactional application events
 *	credentials.c	the Kafka credentials file
 *	confcheck.c		refuses to ship when an engage.* line of the configuration failed
 *	shared.c		the rules shared with engage_decoder (plugin/engage_handoff.h)
 *	topicnames.c	those topic rules callable from SQL, for the tests
 *	schema.c		the DDL event triggers: schema messages in stream order
 *	relnames.c		engage_internal.relation_names, what they last saw of each table
 */
#ifndef ENGAGE_H
#define ENGAGE_H

#include "postgres.h"

#include "engage_handoff.h"

#include "access/xlogdefs.h"
#include "datatype/timestamp.h"
#include "storage/spin.h"
#include "utils/resowner.h"

/* Settings (guc.c). */
extern bool engage_enabled;
extern char *engage_brokers;
extern char *engage_database;
extern char *engage_slot_name;
extern char *engage_topic_prefix;
extern char *engage_tables;
extern char *engage_kafka_properties;
extern char *engage_kafka_credentials_file;
extern int	engage_poll_interval_ms;
extern int	engage_shutdown_timeout_ms;
extern bool engage_wake_on_commit;
extern int	engage_poison_policy;
extern char *engage_dead_letter_topic;
extern int	engage_on_slot_loss;
extern int	engage_snapshot_mode;
extern int	engage_delivery;
extern int	engage_snapshot_chunk_rows;
extern int	engage_snapshot_rows_per_second;
extern bool engage_tombstones;

/* What to do with an event Kafka refuses for good. */
typedef enum EngagePoisonPolicy
{
	ENGAGE_POISON_STOP,			/* hold the position and report the error */
	ENGAGE_POISON_DEAD_LETTER	/* send it to the dead-letter topic, go on */
} EngagePoisonPolicy;

/* What to do when the shipper's slot was lost (engage.on_slot_loss). */
typedef enum EngageSlotLossPolicy
{
	ENGAGE_SLOT_LOSS_RESNAPSHOT,	/* announce the gap, new slot, snapshot all */
	ENGAGE_SLOT_LOSS_CONTINUE,	/* announce the gap, go on from a new slot */
	ENGAGE_SLOT_LOSS_STOP		/* announce in the status, wait for the operator */
} EngageSlotLossPolicy;

/* How events reach Kafka (engage.delivery). */
typedef enum EngageDelivery
{
	ENGAGE_DELIVERY_AT_LEAST_ONCE,	/* idempotent producer; resent after failures */
	ENGAGE_DELIVERY_EXACTLY_ONCE	/* Kafka transactions and a progress topic */
} EngageDelivery;

/* Whether a new slot starts with a snapshot (engage.snapshot_mode). */
typedef enum EngageSnapshotMode
{
	ENGAGE_SNAPSHOT_INITIAL,
	ENGAGE_SNAPSHOT_NEVER
} EngageSnapshotMode;

extern void engage_define_settings(void);

/* The shipper's state as shown by engage.shipper_status(). */
typedef enum EngageShipperState
{
	SHIPPER_STOPPED,
	SHIPPER_STARTING,
	SHIPPER_RUNNING,
	SHIPPER_WAITING_FOR_BROKER,
	SHIPPER_STOPPED_ON_ERROR,
	SHIPPER_WAITING_FOR_DATABASE,
	SHIPPER_AUTH_FAILED,
	SHIPPER_SLOT_LOST
} EngageShipperState;

/* Shared status of the shipper, written by the workers, read by SQL. */
typedef struct EngageStatus
{
	slock_t		mutex;
	EngageShipperState state;
	int			pid;
	TimestampTz started_at;
	XLogRecPtr	confirmed_lsn;
	int64		events_shipped;
	int64		bytes_shipped;
	int64		in_flight;
	int			broker_state;	/* 1 reachable, 0 not, -1 unknown */
	int64		sessions;		/* sessions started since the server started */
	char		slot_name[NAMEDATALEN]; /* the slot of the current session */
	char		last_error[512];
	TimestampTz last_error_at;
	TimestampTz error_resolved_at;	/* 0 while last_error is current */
	int64		quarantined;	/* engage-prefixed messages not written by emit() */
	TimestampTz last_quarantined_at;
	int64		slot_losses;	/* gaps announced since the server started */
	XLogRecPtr	last_gap_from;	/* the last gap: first position not shipped */
	XLogRecPtr	last_gap_to;	/* and where the new slot starts */
	struct Latch *shipper_latch;	/* set by committing backends; NULL when none */
} EngageStatus;

/* status.c */
extern void engage_status_request(void);
extern void engage_status_startup(void);
extern void engage_status_set_state(EngageShipperState state);
extern void engage_status_set_error(const char *error);
extern void engage_status_resolved(void);
extern void engage_status_shipped(int64 events, int64 bytes, int64 in_flight);
extern void engage_status_confirmed(XLogRecPtr lsn);
extern void engage_status_session(const char *slot_name);
extern void engage_status_broker(int state);
extern void engage_status_quarantined(void);
extern bool engage_slot_wal_margin(const char *name, XLogRecPtr current, int64 *retained, int64 *safe);
extern void engage_status_gap(XLogRecPtr from, XLogRecPtr to);
extern void engage_status_set_pid(int pid);
extern void engage_status_clear_pid(int code, Datum arg);
extern void engage_status_wake_shipper(void);

/* slotloss.c: the shipper's own record, lost slots. */
extern XLogRecPtr shipper_record_read(const char *slot);
extern void shipper_record_write(const char *slot, XLogRecPtr lsn);
extern const char *slot_loss_check(const char *name, XLogRecPtr recorded, XLogRecPtr *from,
								   bool *invalidated);
extern void slot_drop_lost(const char *name);

/* snapshotreq.c: snapshot requests and progress (engage_internal.snapshots). */
typedef struct SnapshotRequest
{
	int64		id;
	Oid			relid;
	char	   *table;			/* its name when requested */
	char	   *reason;			/* initial, requested, slot loss */
	char	  **last_key;		/* key of the last row acknowledged; NULL: none */
	int			nkeys;
} SnapshotRequest;

extern bool snapshot_table_exists(void);
extern bool snapshot_captured_rows_exist(void);
extern char *snapshot_request_all(const char *reason, bool restart);
extern bool snapshot_next_request(SnapshotRequest *req, MemoryContext cxt);
extern char *snapshot_request_state(int64 id);
extern void snapshot_mark_running(int64 id);
extern void snapshot_record_progress(int64 id, char **last_key, int nkeys, int64 rows, bool done);
extern void snapshot_record_failure(int64 id, const char *error);

/* snapshot.c: snapshots read in chunks and placed in the stream. */
extern void snapshot_session_start(void *plugin);
extern void snapshot_session_end(void);
extern void snapshot_step(XLogRecPtr acked, ResourceOwner owner);
extern void snapshot_saw_begin(TransactionId xid);
extern void snapshot_saw_row(const EngageRecordFacts *facts, TransactionId xid);
extern bool snapshot_saw_watermark(const EngageRecordFacts *facts);
extern bool snapshot_next_read(StringInfo out, EngageRecordFacts *facts);
extern void snapshot_saw_commit(XLogRecPtr end_lsn);

/* launcher.c */
extern void engage_register_launcher(void);

/* tracker.c: transactions in flight, in commit order. */
extern void tracker_reset(void);
extern uint64 tracker_begin(void);
extern void tracker_add(uint64 txn);
extern void tracker_commit(uint64 txn, XLogRecPtr end_lsn);
extern void tracker_acked(uint64 txn, int64 events);
extern bool tracker_empty(void);
extern int64 tracker_pending_events(void);
extern XLogRecPtr tracker_confirmable(void);

/* confcheck.c: every engage.* line of the configuration files applies. */
extern char *engage_config_problem(void);

/* credentials.c: the Kafka credentials file. */
extern bool engage_property_is_secret(const char *name);
extern bool engage_read_credentials(const char *path, List **items, char **errmsg);
extern void engage_forget_credentials(List *items);

/* producer.c: the only file that touches librdkafka. */

/*
 * One event for Kafka; the bytes are copied by producer_send().  A value
 * whose data is NULL is Kafka's null value (a tombstone), not an empty one.
 */
typedef struct EngageMessage
{
	EngageBytes topic;			/* absent: goes to the dead-letter topic or fails */
	const char *no_topic_reason;
	EngageBytes key;
	EngageBytes value;			/* data NULL: a null value */
	EngageBytes id;				/* headers */
	const char *op;
	EngageBytes table;
	EngageBytes lsn;
	uint64		txn;			/* the tracked transaction its delivery counts for */
} EngageMessage;

/* How a failed delivery must be handled (decided in producer.c). */
typedef enum EngageFailure
{
	FAILURE_NONE,
	FAILURE_RETRY,				/* transient: rebuild and replay from the slot */
	FAILURE_POISON				/* permanent for this event */
} EngageFailure;

/* Events of one tracked transaction acknowledged by Kafka. */
typedef struct EngageAcks
{
	uint64		txn;
	int64		events;
} EngageAcks;

typedef enum EngageSendResult
{
	SEND_OK,
	SEND_QUEUE_FULL,			/* nothing sent: poll, then send again */
	SEND_FAILED					/* see producer_failure() */
} EngageSendResult;

/* How a Kafka transaction ended (exactly_once). */
typedef enum EngageTxnResult
{
	TXN_COMMITTED,
	TXN_ABORTED,				/* nothing of it is visible: send it again */
	TXN_FATAL					/* e.g. fenced by another shipper: stop */
} EngageTxnResult;

/* A Kafka transaction may stay open this long (the broker's default maximum). */
#define TXN_TIMEOUT_MS 900000
/* How long fencing, a commit or an abort may wait for the brokers. */
#define TXN_INIT_TIMEOUT_MS 30000
#define TXN_COMMIT_TIMEOUT_MS 60000

extern bool producer_check_properties(const char *props, char **errmsg);
extern bool producer_start(const char *brokers, const char *properties, List *credentials,
						   const char *credentials_path, const char *dead_letter,
						   const char *transactional_id, char **errmsg);
extern bool producer_txn_begin(char *errbuf, int errlen);
extern EngageTxnResult producer_txn_commit(char *errbuf, int errlen);
extern void producer_txn_abort(void);
extern bool producer_ensure_compacted_topic(const char *name, char **errmsg);
extern bool producer_read_progress(const char *topic, const char *key, char **value, char **errmsg);
extern void producer_stop(void);
extern EngageSendResult producer_send(const EngageMessage *msg);
extern void producer_poll(int timeout_ms);
extern int	producer_take_acks(const EngageAcks **acked);
extern bool producer_flush(int timeout_ms);
extern EngageFailure producer_failure(char *errbuf, int errlen);
extern int	producer_broker_state(const char **auth_error);
extern void producer_take_counts(int64 *events, int64 *bytes);
extern bool producer_take_log(int *level, char *buf, int buflen);
extern int	producer_max_message_bytes(const char *properties);

/* relnames.c: what the schema-change triggers last saw of a table. */
typedef struct EngageRelName
{
	Oid			relid;
	char	   *nspname;
	char	   *relname;
	Oid			root;			/* the topmost partitioned table above it, or relid */
	char	   *fingerprint;	/* of a root's description; "" for a partition */
} EngageRelName;

extern bool relnames_present(void);
extern bool relnames_get(Oid relid, EngageRelName *row);
extern void relnames_put(const EngageRelName *row);
extern void relnames_delete(Oid relid);
extern List *relnames_oids(const char *sql, Oid arg);

/* walpage.c: the shipper's WAL page reader (stops waiting when asked to stop). */
struct XLogReaderState;
extern int	engage_read_wal_page(struct XLogReaderState *state, XLogRecPtr page, int wanted,
								 XLogRecPtr record, char *buf);

/* delivery.c: exactly once (Kafka transactions, the progress topic). */
extern char *delivery_transactional_id(void);
extern char *delivery_session_start(bool *fatal);
extern bool delivery_begin_txn(XLogRecPtr end_lsn);
extern bool delivery_skipping(void);
extern void delivery_end_txn(XLogRecPtr end_lsn);
extern bool delivery_before_send(char *errbuf, int errlen);
extern bool delivery_commit_due(bool caught_up);
extern void delivery_progress_message(EngageMessage *msg, StringInfo value, XLogRecPtr *end);
extern EngageTxnResult delivery_commit(char *errbuf, int errlen);
extern bool delivery_txn_open(void);
extern XLogRecPtr delivery_confirmable(XLogRecPtr lsn);

#endif							/* ENGAGE_H */
