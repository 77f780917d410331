/*
 * delivery.c
 *		Exactly-once delivery (engage.delivery = exactly_once): whole
 *		PostgreSQL transactions in Kafka transactions, the progress topic, and
 *		what a new session skips.
 *
 * The shipper opens a Kafka transaction before the first event it sends and
 * commits it between two PostgreSQL transactions, never inside one: when it
 * has read all WAL, or when the Kafka transaction holds COMMIT_MAX_TXNS
 * PostgreSQL transactions or COMMIT_MAX_EVENTS events, or has been open for
 * COMMIT_MAX_MS.  The last record of every Kafka transaction goes to the
 * compacted progress topic <prefix>-progress, keyed by the slot's name: the
 * end LSN of the last PostgreSQL transaction in it.  So Kafka holds, in one
 * atomic commit, the events and how far they go.  A new session reads that
 * topic (read_committed) and skips every PostgreSQL transaction that ends at
 * or before it: whatever crashed and when, no event is committed twice.  The
 * slot is confirmed only up to what Kafka committed.
 *
 * The producer's transactional.id is fixed per topic prefix and slot: a
 * second shipper of the same slot (a zombie, or a copy of the server) fences
 * the first, whose commit then fails for good (TXN_FATAL): it stops.
 */
#include "engage.h"

#include "access/xlog.h"

#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/pg_lsn.h"
#include "utils/timestamp.h"

/* Bounds of a Kafka transaction (several PostgreSQL transactions each). */
#define COMMIT_MAX_TXNS 1000
#define COMMIT_MAX_EVENTS 500000
#define COMMIT_MAX_MS 500
/* Rest between a Kafka commit and the next transaction's first event (see rest_after_commit()). */
#define TXN_REST_MS 3

static bool exactly_once = false;
static bool kafka_txn_open = false;
static bool skipping = false;		/* in a PostgreSQL transaction Kafka already has */
static XLogRecPtr skip_until = InvalidXLogRecPtr;	/* as the progress topic says */
static XLogRecPtr last_end = InvalidXLogRecPtr; /* of the last transaction sent */
static XLogRecPtr committed = InvalidXLogRecPtr;	/* ... and committed in Kafka */
static int	txns_in_kafka_txn = 0;
static int64 events_in_kafka_txn = 0;
static TimestampTz opened_at = 0;
static TimestampTz committed_at = 0;	/* when the last Kafka transaction ended */

/* The transactional.id of the shipper (per prefix and slot), or NULL under at_least_once. */
char *
delivery_transactional_id(void)
{
	if (engage_delivery != ENGAGE_DELIVERY_EXACTLY_ONCE)
		return NULL;
	return psprintf("pg_engage.%s.%s", engage_topic_prefix, engage_slot_name);
}

/* The progress topic of the prefix. */
static char *
progress_topic(void)
{
	return psprintf("%s-progress", engage_topic_prefix);
}

/* Reads the end LSN out of a progress record; Invalid when it has none. */
static XLogRecPtr
progress_end(const char *record)
{
	const char *at = strstr(record, "\"end_lsn\":\"");
	char		lsn[32];
	bool		bad = false;
	XLogRecPtr	end;

	if (at == NULL)
		return InvalidXLogRecPtr;
	at += strlen("\"end_lsn\":\"");
	strlcpy(lsn, at, Min(sizeof(lsn), strcspn(at, "\"") + 1));
	end = pg_lsn_in_internal(lsn, &bad);
	return bad ? InvalidXLogRecPtr : end;
}

/*
 * Starts a session's delivery: under exactly_once, makes sure the progress
 * topic exists and reads where Kafka's committed events end.  NULL, or why
 * it cannot (palloc'd; *fatal when retrying cannot help).
 */
char *
delivery_session_start(bool *fatal)
{
	char	   *record = NULL;
	char	   *error = NULL;
	char	   *topic;

	*fatal = false;
	exactly_once = engage_delivery == ENGAGE_DELIVERY_EXACTLY_ONCE;
	kafka_txn_open = skipping = false;
	skip_until = last_end = committed = InvalidXLogRecPtr;
	if (!exactly_once)
		return NULL;
	topic = progress_topic();
	if (!producer_ensure_compacted_topic(topic, &error) ||
		!producer_read_progress(topic, engage_slot_name, &record, &error))
		return error;
	if (record != NULL)
		skip_until = committed = progress_end(record);
	if (skip_until > GetXLogInsertRecPtr())
	{
		*fatal = true;
		return psprintf("topic %s says Kafka has the transactions up to %X/%X, past this server's WAL (%X/%X): "
						"was the server restored from a backup?  Shipping would skip new transactions; "
						"use a new engage.topic_prefix, or delete the topic if Kafka's events are to be replaced",
						topic, LSN_FORMAT_ARGS(skip_until), LSN_FORMAT_ARGS(GetXLogInsertRecPtr()));
	}
	if (skip_until != InvalidXLogRecPtr)
		ereport(LOG, (errmsg("pg_engage shipper: Kafka has the transactions up to %X/%X (topic %s); they are not sent again",
							 LSN_FORMAT_ARGS(skip_until), topic)));
	return NULL;
}

/*
 * A PostgreSQL transaction ending at end_lsn begins: true when Kafka
 * already committed it (its events are not sent again).
 */
bool
delivery_begin_txn(XLogRecPtr end_lsn)
{
	skipping = exactly_once && end_lsn != InvalidXLogRecPtr && end_lsn <= skip_until;
	return skipping;
}

/* Is the transaction being decoded one Kafka already has? */
bool
delivery_skipping(void)
{
	return skipping;
}

/* A PostgreSQL transaction ending at end_lsn was decoded. */
void
delivery_end_txn(XLogRecPtr end_lsn)
{
	if (skipping)
	{
		skipping = false;
		return;
	}
	if (!exactly_once || !kafka_txn_open)
		return;
	last_end = Max(last_end, end_lsn);
	txns_in_kafka_txn++;
}

/*
 * Waits until TXN_REST_MS have passed since the last Kafka commit.  The
 * commit returns once the coordinator decided it; it then writes the commit
 * markers, and until they are written it refuses to add partitions to the
 * producer's next transaction (CONCURRENT_TRANSACTIONS), which librdkafka
 * retries only after a fixed 20 ms.  A short rest first avoids most
 * refusals: measured p99 commit-to-visible 26 ms instead of 50 ms at
 * 5,000 changes/s (BENCHMARKS.md).
 */
static void
rest_after_commit(void)
{
	long		secs;
	int			usecs;

	TimestampDifference(committed_at, GetCurrentTimestamp(), &secs, &usecs);
	if (secs == 0 && usecs < TXN_REST_MS * 1000)
		pg_usleep(TXN_REST_MS * 1000 - usecs);
}

/*
 * Before an event is sent: under exactly_once, a Kafka transaction must be
 * open.  False with the reason in errbuf when it cannot begin.
 */
bool
delivery_before_send(char *errbuf, int errlen)
{
	if (!exactly_once)
		return true;
	if (!kafka_txn_open)
	{
		rest_after_commit();
		if (!producer_txn_begin(errbuf, errlen))
			return false;
		kafka_txn_open = true;
		opened_at = GetCurrentTimestamp();
		txns_in_kafka_txn = 0;
		events_in_kafka_txn = 0;
	}
	events_in_kafka_txn++;
	return true;
}

/*
 * Is it time to commit the Kafka transaction?  Only between PostgreSQL
 * transactions: when all WAL is read, or a bound is reached.
 */
bool
delivery_commit_due(bool caught_up)
{
	if (!exactly_once || !kafka_txn_open)
		return false;
	return caught_up || txns_in_kafka_txn >= COMMIT_MAX_TXNS ||
		events_in_kafka_txn >= COMMIT_MAX_EVENTS ||
		TimestampDifferenceExceeds(opened_at, GetCurrentTimestamp(), COMMIT_MAX_MS);
}

/*
 * The progress record that ends the Kafka transaction: to the progress
 * topic, keyed by the slot, {"v":1,"slot":...,"end_lsn":"X/X"}.
 */
void
delivery_progress_message(EngageMessage *msg, StringInfo value, XLogRecPtr *end)
{
	char	   *topic = progress_topic();
	XLogRecPtr	upto = Max(last_end, committed);
	char	   *lsn = psprintf("%X/%X", LSN_FORMAT_ARGS(upto));
	char	   *id = psprintf("%s:progress", lsn);

	resetStringInfo(value);
	appendStringInfoString(value, "{\"v\":1,\"slot\":");
	escape_json(value, engage_slot_name);
	appendStringInfo(value, ",\"end_lsn\":\"%s\"}", lsn);
	memset(msg, 0, sizeof(*msg));
	msg->topic = (EngageBytes) {topic, strlen(topic)};
	msg->key = (EngageBytes) {engage_slot_name, strlen(engage_slot_name)};
	msg->value = (EngageBytes) {value->data, value->len};
	msg->id = (EngageBytes) {id, strlen(id)};
	msg->op = "progress";
	msg->lsn = (EngageBytes) {lsn, strlen(lsn)};
	*end = upto;
}

/*
 * Commits the open Kafka transaction (its progress record sent last); on
 * success what it held counts as committed.
 */
EngageTxnResult
delivery_commit(char *errbuf, int errlen)
{
	EngageTxnResult result = producer_txn_commit(errbuf, errlen);

	kafka_txn_open = false;
	committed_at = GetCurrentTimestamp();
	if (result == TXN_COMMITTED)
		committed = Max(committed, last_end);
	return result;
}

/* Is a Kafka transaction open? */
bool
delivery_txn_open(void)
{
	return kafka_txn_open;
}

/*
 * The position that may be confirmed to the slot, given lsn (what Kafka
 * acknowledged): under exactly_once, while a Kafka transaction is open, no
 * further than what Kafka committed.
 */
XLogRecPtr
delivery_confirmable(XLogRecPtr lsn)
{
	if (!exactly_once || !kafka_txn_open)
		return lsn;
	return Min(lsn, committed);
}
