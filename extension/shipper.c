/*
 * shipper.c
 *		The shipper worker: decodes the engage slot and sends every event to
 *		Kafka, confirming a WAL position only once Kafka acknowledged every
 *		event up to it.
 *
 * One decoding context lives as long as the session: the worker reads WAL up
 * to the flushed position, decodes it with engage_decoder into the producer,
 * then waits on its latch.  It never re-decodes from the slot's restart point
 * per batch.  A session ends on shutdown, on a settings change, or on a
 * delivery failure; the next one starts from the slot's confirmed position,
 * so an event is sent again rather than lost (its id tells the duplicate).
 */
#include "engage.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "access/xlogutils.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "replication/decode.h"
#include "replication/logical.h"
#include "replication/slot.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

PGDLLEXPORT void engage_shipper_main(Datum arg);

/* How a session ended. */
typedef enum SessionEnd
{
	END_SHUTDOWN,				/* SIGTERM: flush and exit */
	END_RELOAD,					/* settings changed: start a new session */
	END_RETRY,					/* transient failure: replay from the slot */
	END_POISON					/* an event was refused: hold and report */
} SessionEnd;

/* Reads at most this many WAL records before serving the producer. */
#define RECORDS_PER_BATCH 10000
/* Writes the slot to disk at most this often when its position moved. */
#define SLOT_SAVE_INTERVAL_MS 1000

static LogicalDecodingContext *ctx = NULL;
static MemoryContext session_cxt = NULL;	/* everything of one session */
static ResourceOwner shipper_owner = NULL;
static uint64 current_txn = 0;
static bool in_txn = false;
static XLogRecPtr confirmed = InvalidXLogRecPtr;
static XLogRecPtr recorded = InvalidXLogRecPtr;	/* in the shipper's record */
static XLogRecPtr acked = InvalidXLogRecPtr;	/* Kafka acknowledged all before */
static bool slot_lost_stop = false;	/* a lost slot waits for the operator */
static TimestampTz last_slot_save = 0;
static char *session_settings = NULL;
static char *connected_db = NULL;
static EngageShipperState shown_state = SHIPPER_STARTING;
static StringInfo read_buf = NULL;	/* snapshot read records, in session_cxt */

/* A string naming every setting a session depends on, to notice changes. */
static char *
settings_fingerprint(void)
{
	return psprintf("%d|%s|%s|%s|%s|%s|%s|%s|%s|%d|%d|%d|%d", engage_enabled, engage_brokers,
					engage_database, engage_slot_name, engage_topic_prefix,
					engage_tables, engage_kafka_properties, engage_kafka_credentials_file,
					engage_dead_letter_topic, engage_poison_policy, engage_on_slot_loss,
					engage_tombstones, engage_delivery);
}

/*
 * Did a setting of the session change since it started?  With a credentials
 * file, every reload counts as a change: the file is read again.
 */
static bool
settings_changed(void)
{
	char	   *now = settings_fingerprint();
	bool		changed = session_settings == NULL || strcmp(now, session_settings) != 0 ||
		engage_kafka_credentials_file[0] != '\0';

	pfree(now);
	return changed;
}

/* Sets the state in the status, remembering it to log only changes. */
static void
show_state(EngageShipperState state)
{
	shown_state = state;
	engage_status_set_state(state);
}

/*
 * Records an error in the status and the log, and sets the state.  The same
 * error again in the same state (a retry that failed alike) is not logged again.
 */
static void
report(EngageShipperState state, const char *error)
{
	static char last[512];
	bool		again = state == shown_state && error != NULL &&
		strncmp(error, last, sizeof(last) - 1) == 0;

	show_state(state);
	if (error == NULL)
		return;
	engage_status_set_error(error);
	if (!again)
		ereport(LOG, (errmsg("pg_engage shipper: %s", error)));
	strlcpy(last, error, sizeof(last));
}

/* Writes librdkafka's queued log lines to the server log. */
static void
write_kafka_log(void)
{
	int			level;
	char		line[256];

	while (producer_take_log(&level, line, sizeof(line)))
		ereport(level <= 4 ? LOG : DEBUG1, (errmsg("pg_engage: kafka: %s", line)));
}

/* A slot with less than 1/WAL_MARGIN_SHARE of max_slot_wal_keep_size left is warned about. */
#define WAL_MARGIN_SHARE 5
/* How often the WAL margin of the slot is looked at. */
#define WAL_MARGIN_CHECK_MS 5000

/*
 * Warns, once each time it falls below the threshold, that the slot is about
 * to be invalidated: less than a fifth of max_slot_wal_keep_size can still
 * be written before PostgreSQL removes WAL the slot needs.
 */
static void
watch_wal_margin(void)
{
	static TimestampTz last_check = 0;
	static bool warned = false;
	TimestampTz now = GetCurrentTimestamp();
	int64		limit = (int64) max_slot_wal_keep_size_mb * 1024 * 1024;
	int64		retained;
	int64		safe;

	if (!TimestampDifferenceExceeds(last_check, now, WAL_MARGIN_CHECK_MS) || limit < 0)
		return;
	last_check = now;
	if (!engage_slot_wal_margin(engage_slot_name, GetXLogInsertRecPtr(), &retained, &safe))
		return;
	if (safe >= limit / WAL_MARGIN_SHARE)
	{
		warned = false;
		return;
	}
	if (warned)
		return;
	warned = true;
	ereport(WARNING,
			(errmsg("pg_engage shipper: replication slot \"%s\" is close to being invalidated",
					engage_slot_name),
			 errdetail("It retains %lld bytes of WAL; %lld more can be written before max_slot_wal_keep_size (%d MB) is reached.",
					   (long long) retained, (long long) Max(safe, 0), max_slot_wal_keep_size_mb),
			 errhint("Bring Kafka back (see engage.shipper) or raise max_slot_wal_keep_size; a lost slot is announced by a gap record in %s-control.",
					 engage_topic_prefix)));
}

/* Serves the producer for up to timeout_ms: acknowledgements and log lines. */
static void
serve_producer(int timeout_ms)
{
	const EngageAcks *acked;
	int			n;

	producer_poll(timeout_ms);
	n = producer_take_acks(&acked);
	for (int i = 0; i < n; i++)
		tracker_acked(acked[i].txn, acked[i].events);
	write_kafka_log();
	watch_wal_margin();
}

/*
 * Before a new slot is created: requests the snapshot it starts with, if
 * any (engage.snapshot_mode for a first slot, engage.on_slot_loss for one
 * replacing a lost slot), so that a crash in between cannot leave a new slot
 * without it.  False (reported) when it cannot be requested.
 */
static bool
request_new_slot_snapshot(const char *lost)
{
	const char *reason = lost ? "slot loss" : "initial";
	char	   *problem;

	if (lost ? engage_on_slot_loss != ENGAGE_SLOT_LOSS_RESNAPSHOT :
		engage_snapshot_mode != ENGAGE_SNAPSHOT_INITIAL)
		return true;
	problem = snapshot_request_all(reason, lost != NULL);
	CurrentResourceOwner = shipper_owner;
	if (problem == NULL)
		return true;
	report(SHIPPER_STOPPED_ON_ERROR, problem);
	return false;
}

/*
 * Creates the slot with engage_decoder if it does not exist yet.  Through
 * the C API, as pg_create_logical_replication_slot() does: no SQL runs, so
 * nothing a role can put on a search_path is ever called.
 */
static bool
ensure_slot(const char *lost)
{
	ReplicationSlot *slot;
	MemoryContext cxt = CurrentMemoryContext;
	LogicalDecodingContext *init;

	LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
	slot = SearchNamedReplicationSlot(engage_slot_name, false);
	LWLockRelease(ReplicationSlotControlLock);
	if (slot != NULL)
		return true;
	if (!request_new_slot_snapshot(lost))
		return false;
	ereport(LOG, (errmsg("pg_engage shipper: creating replication slot \"%s\"", engage_slot_name)));
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	CheckLogicalDecodingRequirements();
	/* Ephemeral until its start point is found: an error drops it. */
	ReplicationSlotCreate(engage_slot_name, true, RS_EPHEMERAL, false);
	init = CreateInitDecodingContext("engage_decoder", NIL, false, InvalidXLogRecPtr,
									 XL_ROUTINE(.page_read = engage_read_wal_page,
												.segment_open = wal_segment_open,
												.segment_close = wal_segment_close),
									 NULL, NULL, NULL);
	DecodingContextFindStartpoint(init);
	FreeDecodingContext(init);
	ReplicationSlotPersist();
	ReplicationSlotRelease();
	CommitTransactionCommand();
	CurrentResourceOwner = shipper_owner;
	MemoryContextSwitchTo(cxt);
	return true;
}

/* Refuses an engage_decoder built from another release than this library. */
static void
check_handoff(LogicalDecodingContext *lctx)
{
	EngageHandoff *h = lctx->output_plugin_private;

	if (h == NULL || h->magic != ENGAGE_HANDOFF_MAGIC || h->version != ENGAGE_HANDOFF_VERSION)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("engage_decoder does not match the pg_engage library"),
				 errdetail("pg_engage expects handoff version %d; the loaded engage_decoder has %d.",
						   ENGAGE_HANDOFF_VERSION,
						   h && h->magic == ENGAGE_HANDOFF_MAGIC ? (int) h->version : 0),
				 errhint("Install engage_decoder and pg_engage from the same build, then restart the server.")));
}

static void publish_progress(void);
static void send_progress(void);

/*
 * Waits for room in librdkafka's queue; never drops an event.  Publishes the
 * counters once a second meanwhile: a huge transaction fills the queue for as
 * long as it is sent, and the status should show it moving.
 */
static void
wait_for_room(void)
{
	static TimestampTz published_at = 0;

	serve_producer(50);
	if (TimestampDifferenceExceeds(published_at, GetCurrentTimestamp(), 1000))
	{
		publish_progress();
		published_at = GetCurrentTimestamp();
	}
	CHECK_FOR_INTERRUPTS();
	if (ShutdownRequestPending)
	{
		/* Nothing queued was confirmed: the next start sends it again. */
		ereport(LOG, (errmsg("pg_engage shipper: stopping with a full queue; unconfirmed events will be sent again")));
		proc_exit(0);
	}
}

/*
 * Hands one message to the producer, counted in its tracked transaction;
 * under exactly_once inside a Kafka transaction.  Waits for room in
 * librdkafka's queue; never drops a message.
 */
static void
hand_over(EngageMessage *msg)
{
	char		error[256];

	if (!delivery_before_send(error, sizeof(error)))
		ereport(ERROR, (errcode(ERRCODE_CONNECTION_FAILURE), errmsg("pg_engage shipper: %s", error)));
	tracker_add(msg->txn);
	while (producer_send(msg) == SEND_QUEUE_FULL)
		wait_for_room();
}

/*
 * Under engage.tombstones, after a delete with a key (also the delete of a
 * key change): a message with the same topic and key and a null value, so
 * that a compacted topic drops the row.  Tracked in the delete's
 * transaction, so its commit is confirmed only once Kafka took both.  A
 * delete without a topic (dead-lettered, or oversized) gets none.
 */
static void
send_tombstone(const EngageRecordFacts *facts, uint64 txn)
{
	char	   *id;
	EngageMessage msg;

	if (!engage_tombstones || facts->kind != ENGAGE_RECORD_ROW || strcmp(facts->op, "delete") != 0 ||
		facts->key.data == NULL || facts->key.len == 0 || facts->topic.data == NULL)
		return;
	id = psprintf("%.*s:tombstone", facts->id.len, facts->id.data);
	msg = (EngageMessage) {
		.topic = facts->topic, .key = facts->key, .value = {NULL, 0},
		.id = {id, strlen(id)}, .op = "tombstone", .table = facts->table,
		.lsn = facts->lsn, .txn = txn
	};
	hand_over(&msg);
	pfree(id);
}

/* Hands one event record to the producer, tracked in its transaction. */
static void
send_event(const EngageRecordFacts *facts, StringInfo record, XLogRecPtr lsn)
{
	uint64		txn;
	EngageMessage msg = {
		.topic = facts->topic,
		.no_topic_reason = facts->no_topic_reason,
		.key = facts->key,
		.value = {record->data, record->len},
		.id = facts->id,
		.op = facts->op,
		.table = facts->table,
		.lsn = facts->lsn
	};

	if (delivery_skipping())
		return;					/* Kafka committed it already (exactly_once) */
	txn = in_txn ? current_txn : tracker_begin();
	msg.txn = txn;
	hand_over(&msg);
	send_tombstone(facts, txn);
	if (!in_txn)
		tracker_commit(txn, lsn);
}

/* Logs at most this many quarantined messages a minute (forgeries can flood). */
#define QUARANTINE_LOG_PER_MINUTE 10

/*
 * Logs a quarantined message by id and reason, never its content, at most
 * QUARANTINE_LOG_PER_MINUTE a minute; the ones not logged are counted in the
 * next line.
 */
static void
log_quarantined(const EngageRecordFacts *facts)
{
	static TimestampTz window_start = 0;
	static int	logged = 0;
	static int64 unlogged = 0;
	TimestampTz now = GetCurrentTimestamp();

	if (TimestampDifferenceExceeds(window_start, now, 60000))
	{
		window_start = now;
		logged = 0;
	}
	if (logged >= QUARANTINE_LOG_PER_MINUTE)
	{
		unlogged++;
		return;
	}
	logged++;
	ereport(LOG,
			(errmsg("pg_engage shipper: quarantined message %.*s: %s",
					facts->id.len, facts->id.data, facts->no_topic_reason),
			 unlogged > 0 ? errdetail("%lld more quarantined messages were not logged.",
									  (long long) unlogged) : 0,
			 errhint("Only engage.emit() writes application events; see engage.shipper.quarantined.")));
	unlogged = 0;
}

/*
 * A message with the engage prefix that engage.emit() did not write: never
 * shipped as an event, never a reason to stop.  Counted and logged, and sent
 * to the dead-letter topic with its reason under the dead_letter policy.
 */
static void
quarantine(const EngageRecordFacts *facts, StringInfo record, XLogRecPtr lsn)
{
	engage_status_quarantined();
	log_quarantined(facts);
	if (engage_poison_policy == ENGAGE_POISON_DEAD_LETTER)
		send_event(facts, record, lsn);
}

/*
 * Sends the read records of the snapshot chunk whose watermark is being
 * handled, in the watermark's transaction (snapshot.c).
 */
static void
send_snapshot_reads(XLogRecPtr lsn)
{
	EngageRecordFacts facts;

	while (snapshot_next_read(read_buf, &facts))
		send_event(&facts, read_buf, lsn);
}

/* Output plugin callback before a record: start it empty. */
static void
shipper_prepare_write(LogicalDecodingContext *lctx, XLogRecPtr lsn,
					  TransactionId xid, bool last_write)
{
	resetStringInfo(lctx->out);
}

/* Output plugin callback after a record: track a boundary or send the event. */
static void
shipper_write(LogicalDecodingContext *lctx, XLogRecPtr lsn, TransactionId xid,
			  bool last_write)
{
	EngageRecordFacts *facts = &((EngageHandoff *) lctx->output_plugin_private)->facts;

	switch (facts->kind)
	{
		case ENGAGE_RECORD_BEGIN:
			current_txn = tracker_begin();
			in_txn = true;
			snapshot_saw_begin(xid);
			(void) delivery_begin_txn(facts->end_lsn);
			break;
		case ENGAGE_RECORD_COMMIT:
			tracker_commit(current_txn, facts->end_lsn);
			in_txn = false;
			snapshot_saw_commit(facts->end_lsn);
			delivery_end_txn(facts->end_lsn);
			break;
		case ENGAGE_RECORD_ROW:
			snapshot_saw_row(facts, xid);
			send_event(facts, lctx->out, lsn);
			break;
		case ENGAGE_RECORD_MESSAGE:
		case ENGAGE_RECORD_SCHEMA:
			send_event(facts, lctx->out, lsn);
			break;
		case ENGAGE_RECORD_WATERMARK:
			if (snapshot_saw_watermark(facts))
				send_snapshot_reads(lsn);
			break;
		case ENGAGE_RECORD_QUARANTINE:
			quarantine(facts, lctx->out, lsn);
			break;
	}
}

/* Room a Kafka message needs beside its record: key and headers. */
#define MESSAGE_OVERHEAD 4096

/*
 * The decoding options of the shipper's session.  A row record the producer
 * would refuse as too large is written without its values (max_record_bytes):
 * that stub fits the dead-letter topic.
 */
static List *
decoding_options(void)
{
	int			max = producer_max_message_bytes(engage_kafka_properties) - MESSAGE_OVERHEAD;

	return list_make4(makeDefElem("tables", (Node *) makeString(engage_tables), -1),
					  makeDefElem("transactions", (Node *) makeString("on"), -1),
					  makeDefElem("topic_prefix", (Node *) makeString(engage_topic_prefix), -1),
					  makeDefElem("max_record_bytes", (Node *) makeString(psprintf("%d", Max(max, 1024))), -1));
}

/*
 * Acquires the shipper's slot (created if missing, after lost) and checks its
 * plugin; false (reported) when a new slot's snapshot cannot be requested.
 */
static bool
acquire_slot(const char *lost)
{
	if (!ensure_slot(lost))
		return false;
	ReplicationSlotAcquire(engage_slot_name, true);
	if (strcmp(NameStr(MyReplicationSlot->data.plugin), "engage_decoder") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("replication slot \"%s\" uses output plugin \"%s\", not engage_decoder",
						engage_slot_name, NameStr(MyReplicationSlot->data.plugin)),
				 errhint("Drop the slot or set engage.slot_name to another name.")));
	return true;
}

/*
 * Compares the slot with the shipper's record.  Returns why events were lost
 * (*from: the first position not shipped), or NULL.  Under
 * engage.on_slot_loss = stop, a loss is reported (state slot lost) and the
 * slot left as it is; otherwise an invalidated slot is dropped, to be
 * created again.
 */
static const char *
detect_slot_loss(XLogRecPtr *from)
{
	bool		invalidated;
	const char *why;

	recorded = shipper_record_read(engage_slot_name);
	why = slot_loss_check(engage_slot_name, recorded, from, &invalidated);
	if (why == NULL)
		return NULL;
	if (engage_on_slot_loss == ENGAGE_SLOT_LOSS_STOP)
	{
		report(SHIPPER_SLOT_LOST,
			   psprintf("replication slot \"%s\" lost the events from %X/%X on: %s; "
						"set engage.on_slot_loss = resnapshot (or continue) and reload to announce the gap and go on",
						engage_slot_name, LSN_FORMAT_ARGS(*from), why));
		slot_lost_stop = true;
	}
	else if (invalidated)
		slot_drop_lost(engage_slot_name);
	return why;
}

/* Writes a gap record: the events from from to to could not be shipped. */
static void
gap_record(StringInfo rec, const char *id, XLogRecPtr from, XLogRecPtr to, const char *why)
{
	appendStringInfo(rec, "{\"v\":1,\"id\":\"%s\",\"op\":\"gap\",\"from_lsn\":\"%X/%X\","
					 "\"to_lsn\":\"%X/%X\",\"slot\":",
					 id, LSN_FORMAT_ARGS(from), LSN_FORMAT_ARGS(to));
	escape_json(rec, engage_slot_name);
	appendStringInfoString(rec, ",\"reason\":");
	escape_json(rec, why);
	appendStringInfoChar(rec, '}');
}

/*
 * Announces the events from from to the slot's start (confirmed) as lost:
 * a warning, the status, and a gap record to <prefix>-control, tracked
 * before anything of the slot so that nothing is confirmed (and the record
 * not moved on) before Kafka acknowledged it.
 */
static void
announce_gap(const char *why, XLogRecPtr from)
{
	char	   *topic = psprintf("%s-control", engage_topic_prefix);
	char	   *id = psprintf("%X/%X:0", LSN_FORMAT_ARGS(confirmed));
	char	   *lsn = psprintf("%X/%X", LSN_FORMAT_ARGS(confirmed));
	StringInfoData rec;
	uint64		txn = tracker_begin();
	EngageMessage msg = {
		.topic = {topic, strlen(topic)}, .key = {engage_slot_name, strlen(engage_slot_name)},
		.id = {id, strlen(id)}, .op = "gap", .lsn = {lsn, strlen(lsn)}, .txn = txn
	};

	ereport(WARNING,
			(errmsg("pg_engage shipper: replication slot \"%s\" was lost; the events from %X/%X to %X/%X cannot be shipped",
					engage_slot_name, LSN_FORMAT_ARGS(from), LSN_FORMAT_ARGS(confirmed)),
			 errdetail("Cause: %s.", why),
			 errhint("A gap record with id %s goes to topic %s.", id, topic)));
	engage_status_gap(from, confirmed);
	initStringInfo(&rec);
	gap_record(&rec, id, from, confirmed, why);
	msg.value = (EngageBytes) {rec.data, rec.len};
	hand_over(&msg);
	tracker_commit(txn, confirmed);
}

/*
 * Under the dead_letter policy, refuses (reported) a dead-letter topic among
 * the row or application topics of the prefix, or colliding with them: a
 * table or engage.emit() could write there, or make Kafka refuse it.
 */
static bool
dead_letter_topic_allowed(void)
{
	const char *why;

	if (engage_poison_policy != ENGAGE_POISON_DEAD_LETTER)
		return true;
	why = engage_dead_letter_conflict(engage_dead_letter_topic, engage_topic_prefix);
	if (why == NULL)
		return true;
	report(SHIPPER_STOPPED_ON_ERROR,
		   psprintf("engage.dead_letter_topic \"%s\" cannot be used with engage.topic_prefix \"%s\": %s; "
					"set engage.dead_letter_topic to a topic outside \"%s.\" and \"%s-app.\" "
					"(the default is engage-dead_letter)",
					engage_dead_letter_topic, engage_topic_prefix, why,
					engage_topic_prefix, engage_topic_prefix));
	return false;
}

/*
 * Starts the producer with the settings and the credentials file, if any,
 * once every engage.* line of the configuration files applies; false
 * (reported, without any value read from the file) on failure.
 */
static bool
start_producer(void)
{
	List	   *credentials = NIL;
	char	   *error = engage_config_problem();
	const char *path = engage_kafka_credentials_file;
	bool		ok;
	bool		fatal;

	if (error != NULL)
	{
		report(SHIPPER_STOPPED_ON_ERROR, error);
		return false;
	}
	if (!dead_letter_topic_allowed())
		return false;
	if (path[0] != '\0' && !engage_read_credentials(path, &credentials, &error))
	{
		report(SHIPPER_STOPPED_ON_ERROR,
			   psprintf("engage.kafka_credentials_file cannot be used: %s", error));
		return false;
	}
	ok = producer_start(engage_brokers, engage_kafka_properties, credentials, path,
						engage_poison_policy == ENGAGE_POISON_DEAD_LETTER ?
						engage_dead_letter_topic : NULL, delivery_transactional_id(), &error);
	engage_forget_credentials(credentials);
	if (!ok)
	{
		report(engage_delivery == ENGAGE_DELIVERY_EXACTLY_ONCE ? SHIPPER_WAITING_FOR_BROKER :
			   SHIPPER_STOPPED_ON_ERROR,
			   engage_delivery == ENGAGE_DELIVERY_EXACTLY_ONCE ? error :
			   psprintf("invalid Kafka configuration: %s", error));
		return false;
	}
	error = delivery_session_start(&fatal);
	if (error != NULL)
	{
		report(fatal ? SHIPPER_STOPPED_ON_ERROR : SHIPPER_WAITING_FOR_BROKER,
			   psprintf("exactly_once: %s", error));
		return false;
	}
	return true;
}

/*
 * Starts the producer and the decoding session, everything allocated in a
 * new session context; false (reported) on failure.
 */
static bool
session_start(void)
{
	MemoryContext old;
	const char *lost;
	XLogRecPtr	lost_from = InvalidXLogRecPtr;

	session_cxt = AllocSetContextCreate(TopMemoryContext, "pg_engage shipper session",
										ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(session_cxt);
	session_settings = settings_fingerprint();
	engage_status_session(engage_slot_name);
	if (!start_producer())
	{
		MemoryContextSwitchTo(old);
		return false;
	}
	lost = detect_slot_loss(&lost_from);
	if (slot_lost_stop)
	{
		MemoryContextSwitchTo(old);
		return false;
	}
	if (!acquire_slot(lost))
	{
		MemoryContextSwitchTo(old);
		return false;
	}
	ctx = CreateDecodingContext(InvalidXLogRecPtr, decoding_options(), false,
								XL_ROUTINE(.page_read = engage_read_wal_page,
										   .segment_open = wal_segment_open,
										   .segment_close = wal_segment_close),
								shipper_prepare_write, shipper_write, NULL);
	check_handoff(ctx);
	read_buf = makeStringInfo();
	snapshot_session_start(ctx->output_plugin_private);
	XLogBeginRead(ctx->reader, MyReplicationSlot->data.restart_lsn);
	InvalidateSystemCaches();
	CurrentResourceOwner = shipper_owner;
	confirmed = MyReplicationSlot->data.confirmed_flush;
	engage_status_confirmed(confirmed);
	tracker_reset();
	in_txn = false;
	acked = recorded != InvalidXLogRecPtr ? Min(confirmed, recorded) : InvalidXLogRecPtr;
	if (lost != NULL && confirmed > lost_from)
		announce_gap(lost, lost_from);
	show_state(SHIPPER_RUNNING);
	ereport(LOG, (errmsg("pg_engage shipper: streaming slot \"%s\" from %X/%X to %s",
						 engage_slot_name, LSN_FORMAT_ARGS(confirmed), engage_brokers)));
	MemoryContextSwitchTo(old);
	return true;
}

/*
 * Confirms to the slot everything Kafka has acknowledged, at most once a
 * second unless forced.  The shipper's record is written first: a slot that
 * continues the shipper's stream is never ahead of it (see slotloss.c).
 */
static void
confirm_progress(bool force)
{
	XLogRecPtr	lsn = tracker_confirmable();
	XLogRecPtr	target;
	TimestampTz now = GetCurrentTimestamp();
	bool		due;

	/* Nothing in flight: everything decoded so far is safe, relevant or not. */
	if (tracker_empty() && !in_txn)
		lsn = ctx->reader->EndRecPtr;
	lsn = delivery_confirmable(lsn);
	acked = Max(acked, lsn);
	due = force || TimestampDifferenceExceeds(last_slot_save, now, SLOT_SAVE_INTERVAL_MS);
	if (due && acked > recorded && acked >= confirmed)
	{
		shipper_record_write(engage_slot_name, acked);
		recorded = acked;
		last_slot_save = now;
	}
	target = Min(acked, recorded);
	if (target <= confirmed)
		return;
	LogicalConfirmReceivedLocation(target);
	ReplicationSlotMarkDirty();
	if (due)
		ReplicationSlotSave();
	confirmed = target;
	engage_status_confirmed(target);
}

/*
 * Publishes counters, broker reachability and the state to the status.  A
 * reachable broker ends the previous trouble; an authentication failure is
 * reported as such, once.
 */
static void
publish_progress(void)
{
	int64		events;
	int64		bytes;
	const char *auth_error;
	int			broker = producer_broker_state(&auth_error);

	producer_take_counts(&events, &bytes);
	engage_status_shipped(events, bytes, tracker_pending_events());
	engage_status_broker(broker);
	if (auth_error != NULL)
	{
		if (shown_state != SHIPPER_AUTH_FAILED)
			report(SHIPPER_AUTH_FAILED, psprintf("Kafka authentication failed: %s", auth_error));
		return;
	}
	if (broker == 0)
	{
		if (shown_state != SHIPPER_WAITING_FOR_BROKER)
			ereport(LOG, (errmsg("pg_engage shipper: no Kafka broker of %s is reachable", engage_brokers)));
		show_state(SHIPPER_WAITING_FOR_BROKER);
		return;
	}
	if (shown_state != SHIPPER_RUNNING)
		show_state(SHIPPER_RUNNING);
	if (broker == 1)
		engage_status_resolved();
}

/* Under exactly_once: sends a progress record in the open Kafka transaction. */
static void
send_progress(void)
{
	EngageMessage msg;
	StringInfoData value;
	XLogRecPtr	progress_end;
	uint64		txn = tracker_begin();

	initStringInfo(&value);
	delivery_progress_message(&msg, &value, &progress_end);
	msg.txn = txn;
	hand_over(&msg);
	tracker_commit(txn, progress_end);
	pfree(value.data);
}

/*
 * Under exactly_once: ends the open Kafka transaction with its progress
 * record and commits it.  False when the session must end (*end: how): the
 * commit was aborted (sent again from the progress topic's position), or
 * failed for good (fenced by another shipper of the slot).
 */
static bool
commit_kafka_txn(SessionEnd *end)
{
	char		error[512];

	send_progress();
	switch (delivery_commit(error, sizeof(error)))
	{
		case TXN_COMMITTED:
			serve_producer(0);
			return true;
		case TXN_ABORTED:
			report(SHIPPER_WAITING_FOR_BROKER, error);
			*end = END_RETRY;
			return false;
		case TXN_FATAL:
			report(SHIPPER_STOPPED_ON_ERROR,
				   psprintf("%s; another shipper of slot \"%s\" with topic prefix \"%s\" may have fenced "
							"this one: stop it, then reload the configuration", error, engage_slot_name,
							engage_topic_prefix));
			*end = END_POISON;
			return false;
	}
	return true;
}

/* Decodes WAL up to the flushed position, at most a batch; returns records read. */
static int
decode_batch(void)
{
	XLogRecPtr	flush = GetFlushRecPtr(NULL);
	int			n = 0;
	char		errbuf[8];
	/* The reader allocates its buffers on first use: they must outlive the turn. */
	MemoryContext turn_cxt = MemoryContextSwitchTo(ctx->context);

	while (ctx->reader->EndRecPtr < flush && n < RECORDS_PER_BATCH &&
		   producer_failure(errbuf, sizeof(errbuf)) == FAILURE_NONE &&
		   !ShutdownRequestPending)
	{
		char	   *errm = NULL;
		XLogRecord *record = XLogReadRecord(ctx->reader, &errm);

		if (errm)
			elog(ERROR, "could not read WAL for logical decoding: %s", errm);
		if (record != NULL)
			LogicalDecodingProcessRecord(ctx, ctx->reader);
		n++;
		CHECK_FOR_INTERRUPTS();
	}
	CurrentResourceOwner = shipper_owner;
	MemoryContextSwitchTo(turn_cxt);
	return n;
}

/*
 * Handles a reload; true when a setting of the session changed, or when an
 * engage.* line failed to apply (the next session start reports it and does
 * not ship with the values PostgreSQL kept instead).
 */
static bool
reload_changed_settings(void)
{
	char	   *problem;

	if (!ConfigReloadPending)
		return false;
	ConfigReloadPending = false;
	ProcessConfigFile(PGC_SIGHUP);
	if (settings_changed())
		return true;
	problem = engage_config_problem();
	if (problem == NULL)
		return false;
	pfree(problem);
	return true;
}

/* The main loop of a session, in loop_cxt reset every turn; returns why it ended. */
static SessionEnd
session_loop(MemoryContext loop_cxt)
{
	char		error[512];

	for (;;)
	{
		int			n;
		EngageFailure failure;

		MemoryContextSwitchTo(TopMemoryContext);
		MemoryContextReset(loop_cxt);
		MemoryContextSwitchTo(loop_cxt);
		if (ShutdownRequestPending)
			return END_SHUTDOWN;
		if (reload_changed_settings())
			return END_RELOAD;
		n = decode_batch();
		serve_producer(0);
		failure = producer_failure(error, sizeof(error));
		if (failure == FAILURE_RETRY)
		{
			report(SHIPPER_WAITING_FOR_BROKER, error);
			return END_RETRY;
		}
		if (failure == FAILURE_POISON)
		{
			report(SHIPPER_STOPPED_ON_ERROR, error);
			return END_POISON;
		}
		if (delivery_commit_due(ctx->reader->EndRecPtr >= GetFlushRecPtr(NULL)))
		{
			SessionEnd	end;

			if (!commit_kafka_txn(&end))
				return end;
		}
		confirm_progress(false);
		publish_progress();
		snapshot_step(acked, shipper_owner);
		if (n > 0)
			continue;
		if (tracker_pending_events() > 0)
			serve_producer(engage_poll_interval_ms);
		else
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 engage_poll_interval_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * Ends a session.  With flush, waits (bounded) for Kafka to acknowledge what
 * is in flight and confirms it; otherwise drops it, to be replayed.  Then
 * frees everything the session allocated.
 */
static void
session_end(bool flush)
{
	if (flush && ctx != NULL)
	{
		char		error[8];
		SessionEnd	ignored;

		if (delivery_txn_open() && producer_failure(error, sizeof(error)) == FAILURE_NONE)
			(void) commit_kafka_txn(&ignored);
		producer_flush(engage_shutdown_timeout_ms);
		serve_producer(0);
		confirm_progress(true);
		publish_progress();
	}
	producer_stop();
	snapshot_session_end();
	read_buf = NULL;
	if (ctx != NULL)
	{
		FreeDecodingContext(ctx);
		ctx = NULL;
	}
	if (MyReplicationSlot != NULL)
	{
		ReplicationSlotSave();
		ReplicationSlotRelease();
	}
	CurrentResourceOwner = shipper_owner;
	tracker_reset();
	MemoryContextSwitchTo(TopMemoryContext);
	MemoryContextDelete(session_cxt);
	session_cxt = NULL;
	session_settings = NULL;
}

/* Waits before the next session; returns early on shutdown or reload. */
static void
wait_before_retry(int *backoff_ms)
{
	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					 *backoff_ms, PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	*backoff_ms = Min(*backoff_ms * 2, 30000);
}

/*
 * After a refused event under the stop policy: hold the position until the
 * configuration is reloaded (the operator fixed the cause or changed the
 * policy), instead of sending the same events again and again.
 */
static void
wait_for_reload(void)
{
	ereport(LOG, (errmsg("pg_engage shipper: stopped; fix the cause, then reload the configuration to retry")));
	while (!ConfigReloadPending && !ShutdownRequestPending)
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_EXIT_ON_PM_DEATH, -1, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}
}

/* Records an error that escaped a session in the status before exiting. */
static void
report_escaped_error(void)
{
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
	ErrorData  *edata = CopyErrorData();

	MemoryContextSwitchTo(old);
	engage_status_set_error(edata->message);
	engage_status_set_state(SHIPPER_STOPPED_ON_ERROR);
}

/* Runs sessions until shutdown. */
static void
ship(MemoryContext loop_cxt)
{
	int			backoff_ms = 1000;

	while (!ShutdownRequestPending)
	{
		SessionEnd	end;

		if (!session_start())
		{
			session_end(false);
			if (slot_lost_stop)
			{
				slot_lost_stop = false;
				wait_for_reload();
				if (!engage_enabled || strcmp(connected_db, engage_database) != 0)
					break;
				continue;
			}
			wait_before_retry(&backoff_ms);
			if (ConfigReloadPending)
			{
				ConfigReloadPending = false;
				ProcessConfigFile(PGC_SIGHUP);
			}
			continue;
		}
		end = session_loop(loop_cxt);
		session_end(end == END_SHUTDOWN || end == END_RELOAD);
		/* The launcher starts a new worker for another database. */
		if (!engage_enabled || strcmp(connected_db, engage_database) != 0)
			break;
		if (end == END_POISON)
			wait_for_reload();
		else if (end == END_RETRY)
			wait_before_retry(&backoff_ms);
		else
			backoff_ms = 1000;
	}
}

/* Entry point of the shipper worker. */
void
engage_shipper_main(Datum arg)
{
	MemoryContext loop_cxt;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	BackgroundWorkerUnblockSignals();
	connected_db = MemoryContextStrdup(TopMemoryContext, engage_database);
	BackgroundWorkerInitializeConnection(connected_db, NULL, 0);
	/* Whatever SQL the worker runs finds only the system's objects. */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);
	shipper_owner = ResourceOwnerCreate(NULL, "pg_engage shipper");
	CurrentResourceOwner = shipper_owner;
	loop_cxt = AllocSetContextCreate(TopMemoryContext, "pg_engage shipper loop",
									 ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(TopMemoryContext);
	engage_status_set_pid(MyProcPid);
	before_shmem_exit(engage_status_clear_pid, (Datum) 0);
	show_state(SHIPPER_STARTING);
	PG_TRY();
	{
		ship(loop_cxt);
	}
	PG_CATCH();
	{
		report_escaped_error();
		PG_RE_THROW();
	}
	PG_END_TRY();
	engage_status_set_state(SHIPPER_STOPPED);
	proc_exit(0);
}
