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
#include "executor/spi.h"
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
#include "utils/fmgrprotos.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
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
static ResourceOwner shipper_owner = NULL;
static uint64 current_txn = 0;
static bool in_txn = false;
static XLogRecPtr confirmed = InvalidXLogRecPtr;
static TimestampTz last_slot_save = 0;
static char *session_settings = NULL;
static char *connected_db = NULL;

/* A string naming every setting a session depends on, to notice changes. */
static char *
settings_fingerprint(void)
{
	return psprintf("%d|%s|%s|%s|%s|%s|%s|%s|%d", engage_enabled, engage_brokers,
					engage_database, engage_slot_name, engage_topic_prefix,
					engage_tables, engage_kafka_properties, engage_dead_letter_topic,
					engage_poison_policy);
}

/* Records an error in the status and the log, and sets the state. */
static void
report(EngageShipperState state, const char *error)
{
	engage_status_set_state(state);
	if (error == NULL)
		return;
	engage_status_set_error(error);
	ereport(LOG, (errmsg("pg_engage shipper: %s", error)));
}

/* Runs sql with one text argument in its own transaction. */
static void
run_sql(const char *sql, const char *arg)
{
	Oid			argtype = TEXTOID;
	Datum		value = CStringGetTextDatum(arg);

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (SPI_execute_with_args(sql, 1, &argtype, &value, NULL, false, 0) < 0)
		elog(ERROR, "could not run: %s", sql);
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	CurrentResourceOwner = shipper_owner;
}

/* Creates the slot with engage_decoder if it does not exist yet. */
static void
ensure_slot(void)
{
	ReplicationSlot *slot;

	LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
	slot = SearchNamedReplicationSlot(engage_slot_name, false);
	LWLockRelease(ReplicationSlotControlLock);
	if (slot != NULL)
		return;
	ereport(LOG, (errmsg("pg_engage shipper: creating replication slot \"%s\"", engage_slot_name)));
	run_sql("SELECT pg_create_logical_replication_slot($1, 'engage_decoder')", engage_slot_name);
}

/* The Kafka key of an event: its pk, or a message's key string; none for null. */
static void
event_key(const EngageEvent *ev, const char **key, int *keylen)
{
	EngageSpan	k = ev->pk.p ? ev->pk : ev->key;
	JsonbValue	v;
	Jsonb	   *jb;

	if (k.p == NULL || engage_span_is(k, "null"))
		return;
	if (ev->pk.p != NULL || k.p[0] != '"')
	{
		*key = k.p;
		*keylen = k.len;
		return;
	}
	if (memchr(k.p, '\\', k.len) == NULL)
	{
		*key = k.p + 1;
		*keylen = k.len - 2;
		return;
	}
	/* An escaped string: let the JSON parser unescape it. */
	jb = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(pnstrdup(k.p, k.len))));
	if (JsonbExtractScalar(&jb->root, &v) && v.type == jbvString)
	{
		*key = v.val.string.val;
		*keylen = v.val.string.len;
	}
}

/* Hands one event record to the producer, tracked in its transaction. */
static void
send_event(const EngageEvent *ev, StringInfo record, XLogRecPtr lsn)
{
	uint64		txn = in_txn ? current_txn : tracker_begin();
	const char *topic = engage_event_topic(ev, engage_topic_prefix);
	EngageHeaders headers = {ev->id, ev->op, ev->table, ev->lsn};
	const char *key = NULL;
	int			keylen = 0;

	event_key(ev, &key, &keylen);
	if (topic == NULL)
		topic = producer_no_topic(record->data);
	if (topic != NULL)
		producer_send(topic, key, keylen, record->data, record->len, &headers, txn);
	if (!in_txn)
		tracker_commit(txn, lsn);
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
	EngageEvent ev;

	if (!engage_parse_event(lctx->out->data, lctx->out->len, &ev))
		elog(ERROR, "pg_engage shipper cannot read a record of engage_decoder: %.200s",
			 lctx->out->data);
	if (engage_span_is(ev.op, "begin"))
	{
		current_txn = tracker_begin();
		in_txn = true;
	}
	else if (engage_span_is(ev.op, "commit"))
	{
		tracker_commit(current_txn, engage_span_lsn(ev.end_lsn));
		in_txn = false;
	}
	else
		send_event(&ev, lctx->out, lsn);
}

/* Starts the producer and the decoding session; false (reported) on failure. */
static bool
session_start(void)
{
	char	   *error = NULL;
	List	   *options;

	if (session_settings)
		pfree(session_settings);
	session_settings = MemoryContextStrdup(TopMemoryContext, settings_fingerprint());
	if (!producer_start(&error))
	{
		report(SHIPPER_STOPPED_ON_ERROR, psprintf("invalid Kafka configuration: %s", error));
		return false;
	}
	ensure_slot();
	ReplicationSlotAcquire(engage_slot_name, true);
	engage_status_set_slot(engage_slot_name);
	if (strcmp(NameStr(MyReplicationSlot->data.plugin), "engage_decoder") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("replication slot \"%s\" uses output plugin \"%s\", not engage_decoder",
						engage_slot_name, NameStr(MyReplicationSlot->data.plugin)),
				 errhint("Drop the slot or set engage.slot_name to another name.")));
	options = list_make2(makeDefElem("tables", (Node *) makeString(engage_tables), -1),
						 makeDefElem("transactions", (Node *) makeString("on"), -1));
	ctx = CreateDecodingContext(InvalidXLogRecPtr, options, false,
								XL_ROUTINE(.page_read = read_local_xlog_page,
										   .segment_open = wal_segment_open,
										   .segment_close = wal_segment_close),
								shipper_prepare_write, shipper_write, NULL);
	XLogBeginRead(ctx->reader, MyReplicationSlot->data.restart_lsn);
	InvalidateSystemCaches();
	CurrentResourceOwner = shipper_owner;
	confirmed = MyReplicationSlot->data.confirmed_flush;
	engage_status_confirmed(confirmed);
	tracker_reset();
	in_txn = false;
	report(SHIPPER_RUNNING, NULL);
	ereport(LOG, (errmsg("pg_engage shipper: streaming slot \"%s\" from %X/%X to %s",
						 engage_slot_name, LSN_FORMAT_ARGS(confirmed), engage_brokers)));
	return true;
}

/* Confirms to the slot everything Kafka has acknowledged. */
static void
confirm_progress(void)
{
	XLogRecPtr	lsn = tracker_confirmable();
	TimestampTz now;

	/* Nothing in flight: everything decoded so far is safe, relevant or not. */
	if (tracker_empty() && !in_txn)
		lsn = ctx->reader->EndRecPtr;
	if (lsn == InvalidXLogRecPtr || lsn <= confirmed)
		return;
	LogicalConfirmReceivedLocation(lsn);
	ReplicationSlotMarkDirty();
	confirmed = lsn;
	engage_status_confirmed(lsn);
	now = GetCurrentTimestamp();
	if (TimestampDifferenceExceeds(last_slot_save, now, SLOT_SAVE_INTERVAL_MS))
	{
		ReplicationSlotSave();
		last_slot_save = now;
	}
}

/* Publishes counters and broker reachability to the status. */
static void
publish_progress(void)
{
	int64		events;
	int64		bytes;
	bool		up = producer_broker_up();

	producer_take_counts(&events, &bytes);
	engage_status_shipped(events, bytes, tracker_pending_events());
	engage_status_broker(up);
	engage_status_set_state(up ? SHIPPER_RUNNING : SHIPPER_WAITING_FOR_BROKER);
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

/* Handles a reload; true when a setting of the session changed. */
static bool
reload_changed_settings(void)
{
	if (!ConfigReloadPending)
		return false;
	ConfigReloadPending = false;
	ProcessConfigFile(PGC_SIGHUP);
	return strcmp(settings_fingerprint(), session_settings) != 0;
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
		producer_poll(0);
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
		confirm_progress();
		publish_progress();
		if (n > 0)
			continue;
		if (tracker_pending_events() > 0)
			producer_poll(engage_poll_interval_ms);
		else
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 engage_poll_interval_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * Runs a session's loop.  The decoding context lives in TopMemoryContext,
 * never under loop_cxt, which each turn resets.
 */
static SessionEnd
session_run(MemoryContext loop_cxt)
{
	SessionEnd	end = session_loop(loop_cxt);

	MemoryContextSwitchTo(TopMemoryContext);
	return end;
}

/*
 * Ends a session.  With flush, waits (bounded) for Kafka to acknowledge what
 * is in flight and confirms it; otherwise drops it, to be replayed.
 */
static void
session_end(bool flush)
{
	if (flush && ctx != NULL)
	{
		producer_flush(engage_shutdown_timeout_ms);
		producer_poll(0);
		confirm_progress();
		publish_progress();
	}
	producer_stop(0);
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
			wait_before_retry(&backoff_ms);
			(void) reload_changed_settings();
			continue;
		}
		end = session_run(loop_cxt);
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
	shipper_owner = ResourceOwnerCreate(NULL, "pg_engage shipper");
	CurrentResourceOwner = shipper_owner;
	loop_cxt = AllocSetContextCreate(TopMemoryContext, "pg_engage shipper loop",
									 ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(TopMemoryContext);
	engage_status_set_pid(MyProcPid);
	engage_status_set_state(SHIPPER_STARTING);
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
	engage_status_set_pid(0);
	proc_exit(0);
}
