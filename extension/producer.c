/*
 * producer.c
 *		The Kafka producer of the shipper: the only file that touches librdkafka.
 *
 * librdkafka calls back (delivery reports, errors, logs) only from inside
 * rd_kafka_poll() and rd_kafka_flush(), which the shipper calls from its own
 * loop.  Callbacks never raise a PostgreSQL error: they record what happened
 * and the shipper acts on it after the call returns.
 */
#include "engage.h"

#include <librdkafka/rdkafka.h>

#include "miscadmin.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "utils/timestamp.h"

/* An event Kafka refused for good, waiting to go to the dead-letter topic. */
typedef struct DeadLetter
{
	struct DeadLetter *next;
	char	   *topic;			/* where it was meant to go */
	char	   *reason;
	void	   *key;
	size_t		keylen;
	void	   *payload;
	size_t		len;
	rd_kafka_headers_t *headers;
	uint64		txn;
} DeadLetter;

/* A topic handle, kept for the producer's life (no lookup by name per event). */
typedef struct TopicEntry
{
	char		name[256];		/* hash key */
	rd_kafka_topic_t *rkt;
} TopicEntry;

static rd_kafka_t *producer = NULL;
static HTAB *topics = NULL;
static EngageFailure failure = FAILURE_NONE;
static char failure_msg[512];
static bool broker_up = false;
static bool stopping = false;
static DeadLetter *dead_letters = NULL;
static int64 acked_events = 0;	/* since the last producer_take_counts() */
static int64 acked_bytes = 0;

/* Records a failure unless a worse one is already recorded. */
static void
note_failure(EngageFailure kind, const char *fmt, const char *topic, const char *err)
{
	if (kind <= failure)
		return;
	failure = kind;
	snprintf(failure_msg, sizeof(failure_msg), fmt, topic, err);
}

/* Is err final for this one event (retrying cannot make it succeed)? */
static bool
is_poison(rd_kafka_resp_err_t err)
{
	switch (err)
	{
		case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
		case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
		case RD_KAFKA_RESP_ERR_INVALID_RECORD:
		case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
		case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
		case RD_KAFKA_RESP_ERR_POLICY_VIOLATION:
		case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
		case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
		case RD_KAFKA_RESP_ERR__INVALID_ARG:
			return true;
		default:
			return false;
	}
}

/* Copies len bytes with malloc (callbacks must not palloc: it can throw). */
static void *
copy_bytes(const void *src, size_t len)
{
	void	   *dst = malloc(len ? len : 1);

	if (dst != NULL && len > 0)
		memcpy(dst, src, len);
	return dst;
}

/* Queues a refused event for the dead-letter topic; false if out of memory. */
static bool
queue_dead_letter(const rd_kafka_message_t *msg, const char *reason, uint64 txn)
{
	DeadLetter *dl = calloc(1, sizeof(DeadLetter));
	rd_kafka_headers_t *hdrs = NULL;

	if (dl == NULL)
		return false;
	dl->topic = strdup(rd_kafka_topic_name(msg->rkt));
	dl->reason = strdup(reason);
	dl->key = copy_bytes(msg->key, msg->key_len);
	dl->keylen = msg->key_len;
	dl->payload = copy_bytes(msg->payload, msg->len);
	dl->len = msg->len;
	if (rd_kafka_message_headers(msg, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR)
		dl->headers = rd_kafka_headers_copy(hdrs);
	else
		dl->headers = rd_kafka_headers_new(2);
	dl->txn = txn;
	if (!dl->topic || !dl->reason || !dl->key || !dl->payload)
		return false;
	dl->next = dead_letters;
	dead_letters = dl;
	return true;
}

/* Delivery report: acknowledge, or decide how the failure is handled. */
static void
on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
	uint64		txn = (uint64) (uintptr_t) msg->_private;
	const char *topic = rd_kafka_topic_name(msg->rkt);
	const char *err = rd_kafka_err2str(msg->err);

	if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		broker_up = true;
		tracker_acked(txn);
		acked_events++;
		acked_bytes += msg->len;
		return;
	}
	if (stopping)
		return;					/* purged on purpose; replayed from the slot */
	if (!is_poison(msg->err))
		note_failure(FAILURE_RETRY, "delivery to topic \"%s\" failed: %s", topic, err);
	else if (engage_poison_policy == ENGAGE_POISON_DEAD_LETTER &&
			 strcmp(topic, engage_dead_letter_topic) != 0 &&
			 queue_dead_letter(msg, err, txn))
		return;
	else
		note_failure(FAILURE_POISON, "Kafka refused an event for topic \"%s\": %s", topic, err);
}

/* Error callback: track broker reachability and fatal producer errors. */
static void
on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN || err == RD_KAFKA_RESP_ERR__TRANSPORT ||
		err == RD_KAFKA_RESP_ERR__RESOLVE)
		broker_up = false;
	if (err == RD_KAFKA_RESP_ERR__FATAL)
	{
		char		fatal[256];

		rd_kafka_fatal_error(rk, fatal, sizeof(fatal));
		note_failure(FAILURE_RETRY, "fatal producer error%s: %s", "", fatal);
	}
}

/* Log callback: librdkafka's warnings and errors go to the server log. */
static void
on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	if (level <= 4)
		elog(LOG, "pg_engage: kafka: %s: %s", fac, buf);
	else
		elog(DEBUG1, "pg_engage: kafka: %s: %s", fac, buf);
}

/*
 * Properties the shipper's guarantees rest on: ordered, idempotent delivery
 * acknowledged by all in-sync replicas, to engage.brokers, with logs served
 * from the worker's loop.  engage.kafka_properties may not override them.
 */
static const char *const reserved_properties[] = {
	"bootstrap.servers", "metadata.broker.list", "enable.idempotence", "acks",
	"request.required.acks", "max.in.flight.requests.per.connection", "max.in.flight",
	"retries", "message.send.max.retries", "enable.gapless.guarantee",
	"transactional.id", "log.queue", "queuing.strategy", NULL
};

/* Is name one of the reserved properties? */
static bool
is_reserved(const char *name)
{
	for (int i = 0; reserved_properties[i] != NULL; i++)
		if (strcmp(name, reserved_properties[i]) == 0)
			return true;
	return false;
}

/*
 * Applies "key=value;key=value" properties to conf; on error returns false
 * with a palloc'd message.
 */
static bool
apply_properties(rd_kafka_conf_t *conf, const char *props, char **errmsg)
{
	char	   *copy = pstrdup(props ? props : "");
	char	   *save = NULL;
	char		errstr[512];

	for (char *item = strtok_r(copy, ";", &save); item; item = strtok_r(NULL, ";", &save))
	{
		char	   *eq = strchr(item, '=');

		while (*item == ' ')
			item++;
		if (*item == '\0')
			continue;
		if (eq == NULL)
		{
			*errmsg = psprintf("Kafka property \"%s\" has no \"=\"", item);
			return false;
		}
		*eq = '\0';
		if (is_reserved(item))
		{
			*errmsg = psprintf("Kafka property \"%s\" is set by pg_engage and cannot be changed%s", item,
							   strcmp(item, "bootstrap.servers") == 0 ? "; use engage.brokers" : "");
			return false;
		}
		if (rd_kafka_conf_set(conf, item, eq + 1, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
		{
			*errmsg = pstrdup(errstr);
			return false;
		}
	}
	return true;
}

/* Checks a property list without starting anything (used by the GUC check). */
bool
producer_check_properties(const char *props, char **errmsg)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	bool		ok = apply_properties(conf, props, errmsg);

	rd_kafka_conf_destroy(conf);
	return ok;
}

/* Sets a property we rely on; failing here is a bug, not bad input. */
static void
set_required(rd_kafka_conf_t *conf, const char *name, const char *value)
{
	char		errstr[512];

	if (rd_kafka_conf_set(conf, name, value, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
		elog(ERROR, "could not set Kafka property %s: %s", name, errstr);
}

/* Creates the producer from the settings; false with a message on failure. */
bool
producer_start(char **errmsg)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char		errstr[512];

	set_required(conf, "bootstrap.servers", engage_brokers);
	set_required(conf, "enable.idempotence", "true");
	set_required(conf, "log.queue", "true");
	set_required(conf, "client.id", "pg_engage");
	/* Defaults engage.kafka_properties may change. */
	/* Bound the worker's memory: a full queue makes it wait, never drop. */
	set_required(conf, "queue.buffering.max.kbytes", "65536");
	/* JSON records compress well: less for the network and the broker. */
	set_required(conf, "compression.type", "lz4");
	if (!apply_properties(conf, engage_kafka_properties, errmsg))
	{
		rd_kafka_conf_destroy(conf);
		return false;
	}
	rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
	rd_kafka_conf_set_error_cb(conf, on_error);
	rd_kafka_conf_set_log_cb(conf, on_log);
	producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	if (producer == NULL)
	{
		rd_kafka_conf_destroy(conf);
		*errmsg = pstrdup(errstr);
		return false;
	}
	rd_kafka_set_log_queue(producer, NULL);
	failure = FAILURE_NONE;
	stopping = false;
	broker_up = true;			/* until librdkafka says otherwise */
	return true;
}

/*
 * The handle of a topic, created on first use.  Its metadata is fetched
 * right away: librdkafka 2.0.2 otherwise waits up to a second before it
 * asks for an unknown topic, which would stall the first event.
 */
static rd_kafka_topic_t *
topic_handle(const char *name)
{
	TopicEntry *entry;
	bool		found;
	const struct rd_kafka_metadata *md;

	if (topics == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(((TopicEntry *) 0)->name);
		ctl.entrysize = sizeof(TopicEntry);
		ctl.hcxt = TopMemoryContext;
		topics = hash_create("pg_engage topics", 64, &ctl, HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	}
	if (strlen(name) >= sizeof(entry->name))
		return NULL;
	entry = hash_search(topics, name, HASH_ENTER, &found);
	if (found)
		return entry->rkt;
	entry->rkt = rd_kafka_topic_new(producer, name, NULL);
	if (entry->rkt != NULL &&
		rd_kafka_metadata(producer, 0, entry->rkt, &md, 2000) == RD_KAFKA_RESP_ERR_NO_ERROR)
		rd_kafka_metadata_destroy(md);
	return entry->rkt;
}

/* Releases every topic handle (before the producer goes). */
static void
drop_topics(void)
{
	HASH_SEQ_STATUS status;
	TopicEntry *entry;

	if (topics == NULL)
		return;
	hash_seq_init(&status, topics);
	while ((entry = hash_seq_search(&status)) != NULL)
		if (entry->rkt != NULL)
			rd_kafka_topic_destroy(entry->rkt);
	hash_destroy(topics);
	topics = NULL;
}

/* Frees the dead letters still queued. */
static void
free_dead_letters(void)
{
	while (dead_letters != NULL)
	{
		DeadLetter *dl = dead_letters;

		dead_letters = dl->next;
		if (dl->headers)
			rd_kafka_headers_destroy(dl->headers);
		free(dl->topic);
		free(dl->reason);
		free(dl->key);
		free(dl->payload);
		free(dl);
	}
}

/*
 * Destroys the producer.  With timeout_ms > 0 it first waits that long for
 * what is in flight; whatever is still queued then is purged, and the shipper
 * replays it from the slot later.
 */
void
producer_stop(int timeout_ms)
{
	if (producer == NULL)
		return;
	if (timeout_ms > 0)
		rd_kafka_flush(producer, timeout_ms);
	stopping = true;
	rd_kafka_purge(producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
	rd_kafka_poll(producer, 0);
	drop_topics();
	rd_kafka_destroy(producer);
	producer = NULL;
	free_dead_letters();
}

/* Produces one message, waiting (and serving callbacks) while the queue is full. */
static rd_kafka_resp_err_t
produce(const char *topic, const void *key, size_t keylen, const void *payload,
		size_t len, rd_kafka_headers_t *headers, uint64 txn)
{
	rd_kafka_topic_t *rkt = topic_handle(topic);

	if (rkt == NULL)
		return RD_KAFKA_RESP_ERR__INVALID_ARG;
	for (;;)
	{
		rd_kafka_resp_err_t err;

		err = rd_kafka_producev(producer,
								RD_KAFKA_V_RKT(rkt),
								RD_KAFKA_V_KEY(key, keylen),
								RD_KAFKA_V_VALUE((void *) payload, len),
								RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
								RD_KAFKA_V_HEADERS(headers),
								RD_KAFKA_V_OPAQUE((void *) (uintptr_t) txn),
								RD_KAFKA_V_END);
		if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
			return err;
		/* Never drop: wait for deliveries to make room. */
		rd_kafka_poll(producer, 50);
		CHECK_FOR_INTERRUPTS();
		if (!broker_up)
			engage_status_set_state(SHIPPER_WAITING_FOR_BROKER);
		if (ShutdownRequestPending)
		{
			/* Nothing queued was confirmed: the next start sends it again. */
			ereport(LOG, (errmsg("pg_engage shipper: stopping with a full queue; unconfirmed events will be sent again")));
			proc_exit(0);
		}
	}
}

/* Sends the queued dead letters (outside any callback). */
static void
send_dead_letters(void)
{
	while (dead_letters != NULL)
	{
		DeadLetter *dl = dead_letters;
		rd_kafka_resp_err_t err;

		dead_letters = dl->next;
		rd_kafka_header_add(dl->headers, "engage.reason", -1, dl->reason, -1);
		rd_kafka_header_add(dl->headers, "engage.topic", -1, dl->topic, -1);
		elog(LOG, "pg_engage: event for topic \"%s\" sent to dead-letter topic \"%s\": %s",
			 dl->topic, engage_dead_letter_topic, dl->reason);
		err = produce(engage_dead_letter_topic, dl->key, dl->keylen, dl->payload,
					  dl->len, dl->headers, dl->txn);
		if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
		{
			rd_kafka_headers_destroy(dl->headers);
			note_failure(FAILURE_POISON, "dead-letter topic \"%s\" refused an event: %s",
						 engage_dead_letter_topic, rd_kafka_err2str(err));
		}
		dl->headers = NULL;
		free(dl->topic);
		free(dl->reason);
		free(dl->key);
		free(dl->payload);
		free(dl);
	}
}

/* Adds one header from a span. */
static void
add_header(rd_kafka_headers_t *hdrs, const char *name, EngageSpan value)
{
	if (value.p != NULL)
		rd_kafka_header_add(hdrs, name, -1, value.p, value.len);
}

/* Hands one event to the producer; its delivery acknowledges it in txn. */
void
producer_send(const char *topic, const char *key, int keylen,
			  const char *payload, int len, const EngageHeaders *headers, uint64 txn)
{
	rd_kafka_headers_t *hdrs = rd_kafka_headers_new(4);
	rd_kafka_resp_err_t err;

	add_header(hdrs, "engage.id", headers->id);
	add_header(hdrs, "engage.op", headers->op);
	add_header(hdrs, "engage.table", headers->table);
	add_header(hdrs, "engage.lsn", headers->lsn);
	tracker_add(txn);
	err = produce(topic, key, keylen, payload, len, hdrs, txn);
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
		return;
	rd_kafka_headers_destroy(hdrs);
	if (is_poison(err))
		note_failure(FAILURE_POISON, "Kafka refused an event for topic \"%s\": %s",
					 topic, rd_kafka_err2str(err));
	else
		note_failure(FAILURE_RETRY, "could not produce to topic \"%s\": %s",
					 topic, rd_kafka_err2str(err));
}

/*
 * Handles a record that names no topic (a message that is not a JSON object):
 * returns the dead-letter topic under that policy, else records the failure
 * and returns NULL.
 */
const char *
producer_no_topic(const char *record)
{
	if (engage_poison_policy == ENGAGE_POISON_DEAD_LETTER)
		return engage_dead_letter_topic;
	note_failure(FAILURE_POISON, "an event names no topic%s: %.200s", "", record);
	return NULL;
}

/* Serves callbacks for up to timeout_ms, then sends any dead letters. */
void
producer_poll(int timeout_ms)
{
	rd_kafka_poll(producer, timeout_ms);
	if (dead_letters != NULL)
		send_dead_letters();
}

/* Waits up to timeout_ms for everything in flight; true when all delivered. */
bool
producer_flush(int timeout_ms)
{
	return rd_kafka_flush(producer, timeout_ms) == RD_KAFKA_RESP_ERR_NO_ERROR;
}

/* The worst failure since the last clear, with its message. */
EngageFailure
producer_failure(char *errbuf, int errlen)
{
	if (failure != FAILURE_NONE)
		strlcpy(errbuf, failure_msg, errlen);
	return failure;
}

/* Returns and resets the events and bytes acknowledged since the last call. */
void
producer_take_counts(int64 *events, int64 *bytes)
{
	*events = acked_events;
	*bytes = acked_bytes;
	acked_events = acked_bytes = 0;
}

/*
 * Has the producer reached a broker?  Deliveries say so while events flow;
 * when librdkafka reported every broker down, a short metadata request
 * (at most every few seconds) tells when one answers again, idle or not.
 */
bool
producer_broker_up(void)
{
	static TimestampTz last_probe = 0;
	const struct rd_kafka_metadata *md;
	TimestampTz now;

	if (broker_up)
		return true;
	now = GetCurrentTimestamp();
	if (!TimestampDifferenceExceeds(last_probe, now, 3000))
		return false;
	last_probe = now;
	if (rd_kafka_metadata(producer, 0, NULL, &md, 200) == RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		rd_kafka_metadata_destroy(md);
		broker_up = true;
	}
	return broker_up;
}
