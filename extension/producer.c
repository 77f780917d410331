/*
 * producer.c
 *		The Kafka producer of the shipper: the only file that touches librdkafka.
 *
 * It only speaks librdkafka: it hands messages over, serves librdkafka's
 * callbacks, and reports what happened (acknowledged transactions, failures,
 * log lines, broker reachability) for the shipper to act on.  librdkafka
 * calls back only from inside rd_kafka_poll() and rd_kafka_flush(), which run
 * on the worker's own thread, but on librdkafka's stack: callbacks never
 * raise a PostgreSQL error, log, or palloc.  They record into malloc'd
 * buffers, and the shipper reads them after the call returns.
 *
 * An event Kafka refuses for good, whether librdkafka refuses it before
 * sending (too large, ...) or the broker does, goes to the dead-letter topic
 * under the dead_letter policy and stops the shipper under stop.  A topic
 * Kafka does not know is diagnosed outside the callbacks (diagnose_topic):
 * Kafka may be creating it, or may never create it (a name colliding with an
 * existing topic, no right to create it, automatic creation off), and the
 * refusal then names that cause.  Error texts carry an event's id, topic and
 * the reason, never its key or value.
 *
 * A message without value data (a tombstone) is sent with Kafka's null
 * value, which an empty value is not; refused, it is a dead letter with a
 * null value too (it has no value that could make it too large).
 *
 * Under engage.delivery = exactly_once the producer is transactional (a
 * transactional.id per slot, so that a second shipper of the slot fences the
 * first), the shipper groups whole PostgreSQL transactions into Kafka
 * transactions, and the progress topic, read committed, tells where the last
 * committed one ended (producer_read_progress()).
 */
#include "engage.h"

#include <librdkafka/rdkafka.h>

#include "nodes/parsenodes.h"
#include "nodes/value.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

/*
 * An event Kafka refused for good, for the dead-letter topic.  Those a
 * delivery report refused are held (in malloc'd copies) until after the
 * poll; with reason NULL, until their unknown topic is diagnosed.
 */
typedef struct DeadLetter
{
	struct DeadLetter *next;
	const char *topic;			/* where it was meant to go */
	const char *id;				/* the event id, for error texts */
	const char *reason;			/* NULL: diagnose the topic first */
	const void *key;			/* NULL: no key */
	size_t		keylen;
	const void *payload;		/* NULL: the dead letter carries no value */
	size_t		len;
	rd_kafka_headers_t *headers;
	uint64		txn;
} DeadLetter;

/* A topic handle, kept for the producer's life (no lookup by name per event). */
typedef struct TopicEntry
{
	char		name[ENGAGE_TOPIC_MAX_LEN + 1]; /* hash key */
	rd_kafka_topic_t *rkt;
	char	   *refusal;		/* malloc'd: why Kafka takes no event for it */
	bool		diagnosed_late; /* diagnosed after it stayed unknown */
} TopicEntry;

/* How long the diagnosis of a topic may wait for the broker's answer. */
#define DIAGNOSE_TIMEOUT_MS 5000
/* Offsets read first at the end of the progress topic (records and markers of as many commits). */
#define PROGRESS_TAIL 2000

/* Log lines of librdkafka waiting for the shipper (a bounded ring). */
#define LOG_RING 32
typedef struct LogLine
{
	int			level;
	char		text[256];
} LogLine;

static rd_kafka_t *producer = NULL;
static HTAB *topics = NULL;
static TopicEntry *last_topic = NULL;	/* consecutive events mostly share one */
static char *dead_letter_topic = NULL;	/* NULL: the stop policy */
static EngageFailure failure = FAILURE_NONE;
static char failure_msg[512];
static int	broker_state = -1;	/* 1 reachable, 0 not, -1 not known yet */
static bool auth_failed = false;
static char auth_msg[256];
static bool stopping = false;
static DeadLetter *dead_letters = NULL;
static EngageAcks *acks = NULL;	/* acknowledged events, per transaction */
static int	nacks = 0;
static int	acks_size = 0;
static int64 acked_events = 0;	/* since the last producer_take_counts() */
static int64 acked_bytes = 0;
static rd_kafka_conf_t *consumer_conf = NULL;	/* for reading the progress topic */

/*
 * Under exactly_once: events the broker refused for good, by id (malloc'd,
 * kept across sessions).  Their refusal aborts the Kafka transaction; sent
 * again, they are refused at once (the dead-letter topic, or stop), so the
 * retried transaction can commit.
 */
typedef struct Remembered
{
	struct Remembered *next;
	char	   *id;
	char	   *reason;
} Remembered;

#define REMEMBERED_MAX 1000
static Remembered *remembered = NULL;
static int	nremembered = 0;
static bool transactional = false;	/* engage.delivery = exactly_once */
static LogLine log_ring[LOG_RING];
static int	log_head = 0;		/* next line to hand over */
static int	log_tail = 0;		/* next free line */
static int	log_dropped = 0;

/* Records a failure unless a worse one is already recorded. */
static void
pg_attribute_printf(2, 3)
note_failure(EngageFailure kind, const char *fmt,...)
{
	va_list		args;

	if (kind <= failure)
		return;
	failure = kind;
	va_start(args, fmt);
	vsnprintf(failure_msg, sizeof(failure_msg), fmt, args);
	va_end(args);
}

/*
 * Is err final for this one event (retrying cannot make it succeed)?  An
 * unknown topic is not final by itself: see is_unknown_topic.
 */
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
		case RD_KAFKA_RESP_ERR__INVALID_ARG:
			return true;
		default:
			return false;
	}
}

/*
 * Does err say the topic is unknown?  A topic being created answers so at
 * first; librdkafka fails its events so only after the topic stayed unknown
 * for topic.metadata.propagation.max.ms.  Then the topic is diagnosed.
 */
static bool
is_unknown_topic(rd_kafka_resp_err_t err)
{
	return err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART || err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
}

/* Does err say the event is too large? */
static bool
is_size_error(rd_kafka_resp_err_t err)
{
	return err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE || err == RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE;
}

/* Copies len bytes with malloc (callbacks must not palloc: it can throw); NULL stays NULL. */
static void *
copy_bytes(const void *src, size_t len)
{
	void	   *dst;

	if (src == NULL)
		return NULL;
	dst = malloc(len ? len : 1);
	if (dst != NULL && len > 0)
		memcpy(dst, src, len);
	return dst;
}

/* A malloc'd string like snprintf; NULL when out of memory. */
static char *
pg_attribute_printf(1, 2)
malloc_printf(const char *fmt,...)
{
	char		buf[1024];
	va_list		args;

	va_start(args, fmt);
	vsnprintf(buf, sizeof(buf), fmt, args);
	va_end(args);
	return strdup(buf);
}

/* Copies the value of header name into buf ("" when absent). */
static void
header_text(rd_kafka_headers_t *hdrs, const char *name, char *buf, size_t buflen)
{
	const void *value = NULL;
	size_t		size = 0;

	if (hdrs == NULL || rd_kafka_header_get_last(hdrs, name, &value, &size) != RD_KAFKA_RESP_ERR_NO_ERROR ||
		value == NULL)
		size = 0;
	snprintf(buf, buflen, "%.*s", (int) Min(size, buflen - 1), size ? (const char *) value : "");
}

/* Frees one dead letter. */
static void
free_dead_letter(DeadLetter *dl)
{
	if (dl->headers)
		rd_kafka_headers_destroy(dl->headers);
	free((void *) dl->topic);
	free((void *) dl->id);
	free((void *) dl->reason);
	free((void *) dl->key);
	free((void *) dl->payload);
	free(dl);
}

/*
 * Holds an event for the dead-letter topic (reason NULL: for the diagnosis
 * of its topic; payload NULL: without value).  Takes over headers, also when
 * it returns false (out of memory).
 */
static bool
queue_dead_letter(const char *topic, const char *reason, const void *key, size_t keylen,
				  const void *payload, size_t len, rd_kafka_headers_t *headers, uint64 txn)
{
	DeadLetter *dl = calloc(1, sizeof(DeadLetter));
	char		id[64];

	if (dl == NULL)
	{
		rd_kafka_headers_destroy(headers);
		return false;
	}
	header_text(headers, "engage.id", id, sizeof(id));
	dl->topic = strdup(topic);
	dl->id = strdup(id);
	dl->reason = reason ? strdup(reason) : NULL;
	dl->key = copy_bytes(key, keylen);
	dl->keylen = keylen;
	dl->payload = copy_bytes(payload, len);
	dl->len = payload ? len : 0;
	dl->headers = headers;
	dl->txn = txn;
	if (!dl->topic || !dl->id || (reason && !dl->reason) || (key && !dl->key) ||
		(payload && !dl->payload) || !dl->headers)
	{
		free_dead_letter(dl);
		return false;
	}
	dl->next = dead_letters;
	dead_letters = dl;
	return true;
}

/* Records that event id was refused for topic ("": it has none) as the stop's failure. */
static void
note_refusal(const char *id, const char *topic, const char *reason)
{
	if (topic[0] == '\0')
		note_failure(FAILURE_POISON, "event %s has no valid Kafka topic: %s", id, reason);
	else
		note_failure(FAILURE_POISON, "Kafka refused event %s for topic \"%s\": %s", id, topic, reason);
}

/* Remembers that an event of txn was acknowledged (runs of one txn counted once). */
static void
note_ack(uint64 txn)
{
	if (nacks > 0 && acks[nacks - 1].txn == txn)
	{
		acks[nacks - 1].events++;
		return;
	}
	if (nacks == acks_size)
	{
		int			size = acks_size ? acks_size * 2 : 1024;
		EngageAcks *grown = realloc(acks, sizeof(EngageAcks) * size);

		if (grown == NULL)
		{
			note_failure(FAILURE_RETRY, "out of memory counting acknowledgements");
			return;
		}
		acks = grown;
		acks_size = size;
	}
	acks[nacks].txn = txn;
	acks[nacks].events = 1;
	nacks++;
}

/*
 * Holds an event the broker refused (reason NULL: its topic was unknown) for
 * after the poll; under the stop policy without its value, which is not sent.
 */
static void
hold_refused(const rd_kafka_message_t *msg, uint64 txn, const char *reason)
{
	const char *topic = rd_kafka_topic_name(msg->rkt);
	bool		keep = dead_letter_topic != NULL;
	rd_kafka_headers_t *hdrs = NULL;

	if (rd_kafka_message_headers(msg, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR ||
		!queue_dead_letter(topic, reason, msg->key, msg->key_len, keep ? msg->payload : NULL,
						   keep ? msg->len : 0, rd_kafka_headers_copy(hdrs), txn))
		note_failure(FAILURE_RETRY, "could not keep an event refused for topic \"%s\": out of memory", topic);
}

/*
 * The dead-letter topic refused a dead letter.  One too large is held again
 * without its value; anything else stops the shipper.
 */
static void
dead_letter_refused(const rd_kafka_message_t *msg, uint64 txn)
{
	rd_kafka_headers_t *hdrs = NULL;
	rd_kafka_headers_t *copy;
	char		id[64];
	char		topic[ENGAGE_TOPIC_MAX_LEN + 1];
	char		reason[512];

	(void) rd_kafka_message_headers(msg, &hdrs);
	header_text(hdrs, "engage.id", id, sizeof(id));
	header_text(hdrs, "engage.topic", topic, sizeof(topic));
	header_text(hdrs, "engage.reason", reason, sizeof(reason));
	if (is_size_error(msg->err) && msg->payload != NULL && hdrs != NULL &&
		(copy = rd_kafka_headers_copy(hdrs)) != NULL)
	{
		rd_kafka_header_remove(copy, "engage.reason");
		rd_kafka_header_remove(copy, "engage.topic");
		strlcat(reason, "; the dead-letter topic refused it too as too large, so it carries no value",
				sizeof(reason));
		if (queue_dead_letter(topic, reason, msg->key, msg->key_len, NULL, 0, copy, txn))
			return;
	}
	note_failure(FAILURE_POISON, "dead-letter topic \"%s\" refused event %s (refused for topic \"%s\"): %s",
				 dead_letter_topic, id, topic, rd_kafka_err2str(msg->err));
}

/* Remembers (exactly_once) that the broker refused the event of msg for reason. */
static void
remember_refusal(const rd_kafka_message_t *msg, const char *reason)
{
	rd_kafka_headers_t *hdrs = NULL;
	char		id[64];
	Remembered *r;

	if (!transactional || reason == NULL || nremembered >= REMEMBERED_MAX)
		return;
	(void) rd_kafka_message_headers(msg, &hdrs);
	header_text(hdrs, "engage.id", id, sizeof(id));
	r = malloc(sizeof(Remembered));
	if (r == NULL || (r->id = strdup(id)) == NULL || (r->reason = strdup(reason)) == NULL)
	{
		note_failure(FAILURE_RETRY, "out of memory keeping a refusal");
		return;
	}
	r->next = remembered;
	remembered = r;
	nremembered++;
}

/* The reason the broker refused the event of msg before (exactly_once), or NULL. */
static const char *
remembered_reason(const EngageMessage *msg)
{
	for (Remembered *r = remembered; r != NULL; r = r->next)
		if (strlen(r->id) == msg->id.len && memcmp(r->id, msg->id.data, msg->id.len) == 0)
			return r->reason;
	return NULL;
}

/* Delivery report: acknowledge, or decide how the failure is handled. */
static void
on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
	uint64		txn = (uint64) (uintptr_t) msg->_private;
	const char *topic = rd_kafka_topic_name(msg->rkt);

	if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR && msg->offset < 0)
	{
		/*
		 * "Delivered" without an offset: librdkafka assumed the broker had
		 * it (a retried batch refused as out of order after a later one was
		 * taken).  Seen with the first batch to a partition Kafka was still
		 * creating, which the broker never wrote.  Not acknowledged: sent
		 * again.
		 */
		note_failure(FAILURE_RETRY, "Kafka did not confirm an offset for an event to topic \"%s\" "
					 "(librdkafka assumed it written); sending again", topic);
		return;
	}
	if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		broker_state = 1;
		auth_failed = false;
		note_ack(txn);
		acked_events++;
		acked_bytes += msg->len;
		return;
	}
	if (stopping)
		return;					/* purged on purpose; replayed from the slot */
	if (!is_poison(msg->err) && !is_unknown_topic(msg->err))
		note_failure(FAILURE_RETRY, "delivery to topic \"%s\" failed: %s", topic, rd_kafka_err2str(msg->err));
	else if (dead_letter_topic != NULL && strcmp(topic, dead_letter_topic) == 0)
		dead_letter_refused(msg, txn);
	else
	{
		remember_refusal(msg, is_unknown_topic(msg->err) ? NULL : rd_kafka_err2str(msg->err));
		hold_refused(msg, txn, is_unknown_topic(msg->err) ? NULL : rd_kafka_err2str(msg->err));
	}
}

/* Error callback: broker reachability, authentication and fatal errors. */
static void
on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
		broker_state = 0;
	/* One broker lost is not all (librdkafka says ALL_BROKERS_DOWN when it is the last). */
	if (err == RD_KAFKA_RESP_ERR__AUTHENTICATION || err == RD_KAFKA_RESP_ERR__SSL ||
		err == RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED)
	{
		auth_failed = true;
		broker_state = 0;
		snprintf(auth_msg, sizeof(auth_msg), "%s", reason);
	}
	if (err == RD_KAFKA_RESP_ERR__FATAL)
	{
		char		fatal[256];
		rd_kafka_resp_err_t cause = rd_kafka_fatal_error(rk, fatal, sizeof(fatal));

		/* Fenced: a second shipper of the slot took over; starting again would fence it back. */
		if (cause == RD_KAFKA_RESP_ERR__FENCED || cause == RD_KAFKA_RESP_ERR_PRODUCER_FENCED)
			note_failure(FAILURE_POISON, "this shipper was fenced by another with the same "
						 "transactional.id (a second shipper of the slot and prefix): %s", fatal);
		else
			note_failure(FAILURE_RETRY, "fatal producer error: %s", fatal);
	}
}

/* Log callback: keeps the line for the shipper, which writes it to the log. */
static void
on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	LogLine    *line;

	if ((log_tail + 1) % LOG_RING == log_head)
	{
		log_dropped++;
		return;
	}
	line = &log_ring[log_tail];
	line->level = level;
	snprintf(line->text, sizeof(line->text), "%s: %s", fac, buf);
	log_tail = (log_tail + 1) % LOG_RING;
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
		if (engage_property_is_secret(item))
		{
			*errmsg = psprintf("Kafka property \"%s\" holds a secret, and settings are readable by "
							   "pg_read_all_settings and written to the server log; put it in "
							   "engage.kafka_credentials_file", item);
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

/*
 * Applies the properties read from the credentials file (credentials.c).
 * False with a palloc'd message that never shows a value.
 */
static bool
apply_credentials(rd_kafka_conf_t *conf, List *items, const char *path, char **errmsg)
{
	ListCell   *lc;
	char		errstr[512];

	foreach(lc, items)
	{
		DefElem    *item = lfirst(lc);
		const char *value = strVal(item->arg);

		if (is_reserved(item->defname))
		{
			*errmsg = psprintf("Kafka property \"%s\" on line %d of \"%s\" is set by pg_engage and cannot be changed",
							   item->defname, item->location, path);
			return false;
		}
		if (rd_kafka_conf_set(conf, item->defname, value, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
		{
			/* librdkafka may quote the value: its text is shown only when it does not. */
			bool		quotes = value[0] == '\0' || strstr(errstr, value) != NULL;

			*errmsg = psprintf("librdkafka refused property \"%s\" on line %d of \"%s\"%s%s",
							   item->defname, item->location, path,
							   quotes ? " (its value is not shown)" : ": ", quotes ? "" : errstr);
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

/* Forgets the outcomes of the previous producer. */
static void
reset_outcomes(void)
{
	failure = FAILURE_NONE;
	failure_msg[0] = '\0';
	stopping = false;
	broker_state = -1;
	auth_failed = false;
	nacks = 0;
	acked_events = acked_bytes = 0;
}

/*
 * Fences earlier producers of the transactional id and aborts what they left
 * open; false with a palloc'd message (the broker did not answer in time, or
 * refused).
 */
static bool
init_transactions(char **errmsg)
{
	rd_kafka_error_t *error = rd_kafka_init_transactions(producer, TXN_INIT_TIMEOUT_MS);

	if (error == NULL)
		return true;
	*errmsg = psprintf("Kafka transactions could not be initialized: %s", rd_kafka_error_string(error));
	rd_kafka_error_destroy(error);
	return false;
}

/*
 * Creates the producer for brokers with extra properties and those of the
 * credentials file (DefElem list); dead-letter topic NULL means the stop
 * policy; transactional_id NULL means at-least-once delivery, else the
 * producer is transactional, its earlier instances fenced and their open
 * transaction aborted (this can wait for the broker up to
 * TXN_INIT_TIMEOUT_MS).  False with a palloc'd message on failure.
 */
bool
producer_start(const char *brokers, const char *properties, List *credentials,
			   const char *credentials_path, const char *dead_letter,
			   const char *transactional_id, char **errmsg)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char		errstr[512];

	set_required(conf, "bootstrap.servers", brokers);
	set_required(conf, "enable.idempotence", "true");
	set_required(conf, "log.queue", "true");
	set_required(conf, "client.id", "pg_engage");
	/* Defaults engage.kafka_properties may change. */
	/*
	 * Bound the worker's memory: a full queue makes it wait, never drop.  Each
	 * queued event also costs about 600 bytes of librdkafka's structures and
	 * headers, so the count binds first: 20,000 events are about 19 MB, and
	 * still several full batches in flight.
	 */
	set_required(conf, "queue.buffering.max.messages", "20000");
	set_required(conf, "queue.buffering.max.kbytes", "16384");
	/* JSON records compress well: less for the network and the broker. */
	set_required(conf, "compression.type", "lz4");
	if (!apply_properties(conf, properties, errmsg) ||
		!apply_credentials(conf, credentials, credentials_path, errmsg))
	{
		rd_kafka_conf_destroy(conf);
		return false;
	}
	rd_kafka_conf_set_error_cb(conf, on_error);
	rd_kafka_conf_set_log_cb(conf, on_log);
	consumer_conf = rd_kafka_conf_dup(conf);
	rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
	if (transactional_id != NULL)
	{
		set_required(conf, "transactional.id", transactional_id);
		set_required(conf, "transaction.timeout.ms", CppAsString2(TXN_TIMEOUT_MS));
	}
	producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	if (producer == NULL)
	{
		rd_kafka_conf_destroy(conf);
		rd_kafka_conf_destroy(consumer_conf);
		consumer_conf = NULL;
		*errmsg = pstrdup(errstr);
		return false;
	}
	rd_kafka_set_log_queue(producer, NULL);
	reset_outcomes();
	dead_letter_topic = dead_letter ? strdup(dead_letter) : NULL;
	transactional = transactional_id != NULL;
	if (transactional && !init_transactions(errmsg))
	{
		producer_stop();
		return false;
	}
	return true;
}

/* The result of validating the creation of one topic: its error and message. */
static rd_kafka_resp_err_t
creation_result(rd_kafka_event_t *ev, char *detail, size_t len)
{
	const rd_kafka_CreateTopics_result_t *res = rd_kafka_event_CreateTopics_result(ev);
	const rd_kafka_topic_result_t **topics_res;
	size_t		n = 0;
	rd_kafka_resp_err_t err = rd_kafka_event_error(ev);

	strlcpy(detail, rd_kafka_event_error_string(ev), len);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR || res == NULL)
		return err;
	topics_res = rd_kafka_CreateTopics_result_topics(res, &n);
	if (n != 1)
		return RD_KAFKA_RESP_ERR__FAIL;
	err = rd_kafka_topic_result_error(topics_res[0]);
	strlcpy(detail, rd_kafka_topic_result_error_string(topics_res[0]) ?
			rd_kafka_topic_result_error_string(topics_res[0]) : rd_kafka_err2str(err), len);
	return err;
}

/*
 * Asks the broker whether it would create topic name (CreateTopics with
 * validate_only, its default partitions and replication: nothing is
 * created).  Waits at most DIAGNOSE_TIMEOUT_MS; the broker's message in detail.
 */
static rd_kafka_resp_err_t
validate_creation(const char *name, char *detail, size_t len)
{
	char		errstr[256];
	rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(name, -1, -1, errstr, sizeof(errstr));
	rd_kafka_AdminOptions_t *opts;
	rd_kafka_queue_t *queue;
	rd_kafka_event_t *ev;
	rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR__TIMED_OUT;

	strlcpy(detail, nt ? "no answer from Kafka" : errstr, len);
	if (nt == NULL)
		return RD_KAFKA_RESP_ERR__INVALID_ARG;
	opts = rd_kafka_AdminOptions_new(producer, RD_KAFKA_ADMIN_OP_CREATETOPICS);
	(void) rd_kafka_AdminOptions_set_validate_only(opts, 1, errstr, sizeof(errstr));
	(void) rd_kafka_AdminOptions_set_request_timeout(opts, DIAGNOSE_TIMEOUT_MS, errstr, sizeof(errstr));
	queue = rd_kafka_queue_new(producer);
	rd_kafka_CreateTopics(producer, &nt, 1, opts, queue);
	ev = rd_kafka_queue_poll(queue, DIAGNOSE_TIMEOUT_MS + 1000);
	if (ev != NULL)
	{
		err = creation_result(ev, detail, len);
		rd_kafka_event_destroy(ev);
	}
	rd_kafka_queue_destroy(queue);
	rd_kafka_AdminOptions_destroy(opts);
	rd_kafka_NewTopic_destroy(nt);
	return err;
}

/*
 * Why Kafka will never create topic name (malloc'd), or NULL when it may or
 * when Kafka did not say.  The broker names a collision with an existing
 * topic ("." against "_"), an invalid name, a policy or a missing right.
 * late: the topic stayed unknown past topic.metadata.propagation.max.ms, so
 * one the broker could create, but did not, will not be created for us.
 * Never called from a callback: it waits for the broker.
 */
static char *
diagnose_topic(const char *name, bool late)
{
	char		detail[512];

	switch (validate_creation(name, detail, sizeof(detail)))
	{
		case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
		case RD_KAFKA_RESP_ERR_POLICY_VIOLATION:
		case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
		case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
			return malloc_printf("Kafka will not create the topic: %s", detail);
		case RD_KAFKA_RESP_ERR_NO_ERROR:
			if (!late)
				return NULL;
			return malloc_printf("the topic does not exist and Kafka did not create it within "
								 "topic.metadata.propagation.max.ms (is auto.create.topics.enable off?); "
								 "create the topic");
		default:
			return NULL;
	}
}

/*
 * Fetches the metadata of a new topic right away: librdkafka 2.0.2 otherwise
 * waits up to a second before it asks, which would stall the first event.  A
 * topic Kafka does not know yet is diagnosed at once: Kafka may be creating
 * it, or may never create it.
 */
static void
check_new_topic(TopicEntry *entry)
{
	const struct rd_kafka_metadata *md;
	rd_kafka_resp_err_t err;

	if (rd_kafka_metadata(producer, 0, entry->rkt, &md, 2000) != RD_KAFKA_RESP_ERR_NO_ERROR)
		return;
	err = md->topic_cnt == 1 ? md->topics[0].err : RD_KAFKA_RESP_ERR_NO_ERROR;
	rd_kafka_metadata_destroy(md);
	if (err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART || err == RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION)
		entry->refusal = diagnose_topic(entry->name, false);
}

/* The entry of a topic, created (and checked) on first use; NULL for a name too long. */
static TopicEntry *
topic_entry(const char *name, int len)
{
	TopicEntry *entry;
	char		key[ENGAGE_TOPIC_MAX_LEN + 1] = {0};
	bool		found;

	if (topics == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(key);
		ctl.entrysize = sizeof(TopicEntry);
		ctl.hcxt = TopMemoryContext;
		topics = hash_create("pg_engage topics", 64, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	if (len > ENGAGE_TOPIC_MAX_LEN)
		return NULL;
	if (last_topic != NULL && memcmp(last_topic->name, name, len) == 0 &&
		last_topic->name[len] == '\0')
		return last_topic;
	memcpy(key, name, len);
	entry = hash_search(topics, key, HASH_ENTER, &found);
	last_topic = entry;
	if (found)
		return entry;
	entry->refusal = NULL;
	entry->diagnosed_late = false;
	entry->rkt = rd_kafka_topic_new(producer, key, NULL);
	if (entry->rkt == NULL)
		entry->refusal = strdup(rd_kafka_err2str(rd_kafka_last_error()));
	else
		check_new_topic(entry);
	return entry;
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
	{
		if (entry->rkt != NULL)
			rd_kafka_topic_destroy(entry->rkt);
		free(entry->refusal);
	}
	hash_destroy(topics);
	topics = NULL;
	last_topic = NULL;
}

/*
 * Destroys the producer.  Whatever is still queued is purged; the shipper
 * replays it from the slot later.
 */
void
producer_stop(void)
{
	if (producer == NULL)
		return;
	stopping = true;
	rd_kafka_purge(producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
	rd_kafka_poll(producer, 0);
	drop_topics();
	rd_kafka_destroy(producer);
	producer = NULL;
	while (dead_letters != NULL)
	{
		DeadLetter *dl = dead_letters;

		dead_letters = dl->next;
		free_dead_letter(dl);
	}
	free(dead_letter_topic);
	dead_letter_topic = NULL;
	if (consumer_conf != NULL)
		rd_kafka_conf_destroy(consumer_conf);
	consumer_conf = NULL;
	transactional = false;
	nacks = 0;
}

/*
 * Hands one message for the topic of entry to librdkafka; never waits.
 * payload NULL is the null value (librdkafka copies a non-NULL one, even empty).
 */
static rd_kafka_resp_err_t
produce(TopicEntry *entry, const void *key, size_t keylen,
		const void *payload, size_t len, rd_kafka_headers_t *headers, uint64 txn)
{
	if (entry == NULL || entry->rkt == NULL)
		return RD_KAFKA_RESP_ERR__INVALID_ARG;
	return rd_kafka_producev(producer,
							 RD_KAFKA_V_RKT(entry->rkt),
							 RD_KAFKA_V_KEY(key, keylen),
							 RD_KAFKA_V_VALUE((void *) payload, len),
							 RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
							 RD_KAFKA_V_HEADERS(headers),
							 RD_KAFKA_V_OPAQUE((void *) (uintptr_t) txn),
							 RD_KAFKA_V_END);
}

/*
 * Gives a held event of an unknown topic its reason: why Kafka will never
 * create the topic.  False (a failure to retry noted) when Kafka may still.
 * A topic is diagnosed once; events of a refused topic are refused at once.
 */
static bool
diagnose_held(DeadLetter *dl)
{
	TopicEntry *entry = topic_entry(dl->topic, strlen(dl->topic));

	if (entry != NULL && entry->refusal == NULL && !entry->diagnosed_late)
	{
		entry->refusal = diagnose_topic(dl->topic, true);
		entry->diagnosed_late = true;
	}
	if (entry == NULL || entry->refusal == NULL)
	{
		note_failure(FAILURE_RETRY, "delivery of event %s to topic \"%s\" failed: the topic is unknown to Kafka",
					 dl->id, dl->topic);
		return false;
	}
	dl->reason = strdup(entry->refusal);
	if (dl->reason == NULL)
		note_failure(FAILURE_RETRY, "out of memory refusing event %s", dl->id);
	return dl->reason != NULL;
}

/*
 * Hands dead letter dl to librdkafka (with_value false: without its value);
 * on success librdkafka owns dl->headers.  One too large goes again without
 * its value.  A dead-letter topic Kafka will not create refuses everything.
 */
static rd_kafka_resp_err_t
produce_dead_letter(DeadLetter *dl, bool with_value)
{
	TopicEntry *entry = topic_entry(dead_letter_topic, strlen(dead_letter_topic));
	const char *reason = dl->reason;
	rd_kafka_resp_err_t err;

	if (entry == NULL || entry->refusal != NULL)
		return RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION;
	if (!with_value && dl->payload != NULL)
		reason = psprintf("%s; the dead letter carries no value", reason);
	rd_kafka_header_add(dl->headers, "engage.reason", -1, reason, -1);
	rd_kafka_header_add(dl->headers, "engage.topic", -1, dl->topic, -1);
	err = produce(entry, dl->key, dl->keylen, with_value ? dl->payload : NULL,
				  with_value ? dl->len : 0, dl->headers, dl->txn);
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		dl->headers = NULL;
		return err;
	}
	rd_kafka_header_remove(dl->headers, "engage.reason");
	rd_kafka_header_remove(dl->headers, "engage.topic");
	if (is_size_error(err) && with_value && dl->payload != NULL)
		return produce_dead_letter(dl, false);
	return err;
}

/* Records that the dead-letter topic refused dl (err) as the failure that stops. */
static void
note_dead_letter_refused(const DeadLetter *dl, rd_kafka_resp_err_t err)
{
	TopicEntry *entry = topic_entry(dead_letter_topic, strlen(dead_letter_topic));

	note_failure(FAILURE_POISON, "dead-letter topic \"%s\" refused event %s (refused for topic \"%s\"): %s",
				 dead_letter_topic, dl->id, dl->topic,
				 entry && entry->refusal ? entry->refusal : rd_kafka_err2str(err));
}

/*
 * After a poll: diagnoses the topics of held events, then sends each refused
 * event to the dead-letter topic, or records the refusal under the stop
 * policy.  Events that do not fit librdkafka's queue wait for the next poll.
 */
static void
settle_refused(void)
{
	while (dead_letters != NULL)
	{
		DeadLetter *dl = dead_letters;

		/* An event not diagnosed as refused is dropped: replayed from the slot. */
		if (dl->reason != NULL || diagnose_held(dl))
		{
			rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;

			if (dead_letter_topic == NULL)
				note_refusal(dl->id, dl->topic, dl->reason);
			else
				err = produce_dead_letter(dl, true);
			if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL)
				return;
			if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
				note_dead_letter_refused(dl, err);
		}
		dead_letters = dl->next;
		free_dead_letter(dl);
	}
}

/* The headers of a message. */
static rd_kafka_headers_t *
make_headers(const EngageMessage *msg)
{
	rd_kafka_headers_t *hdrs = rd_kafka_headers_new(4);

	rd_kafka_header_add(hdrs, "engage.id", -1, msg->id.data, msg->id.len);
	rd_kafka_header_add(hdrs, "engage.op", -1, msg->op, -1);
	if (msg->table.data)
		rd_kafka_header_add(hdrs, "engage.table", -1, msg->table.data, msg->table.len);
	rd_kafka_header_add(hdrs, "engage.lsn", -1, msg->lsn.data, msg->lsn.len);
	return hdrs;
}

/*
 * An event refused for good before it was sent: to the dead-letter topic
 * under the dead_letter policy (without its value unless with_value), else
 * the failure that stops the shipper.  SEND_QUEUE_FULL when librdkafka's
 * queue has no room for the dead letter.  Takes over hdrs.
 */
static EngageSendResult
refuse_event(const EngageMessage *msg, rd_kafka_headers_t *hdrs, const char *topic,
			 const char *reason, bool with_value)
{
	DeadLetter	dl = {
		.topic = topic, .id = pnstrdup(msg->id.data, msg->id.len), .reason = reason,
		.key = msg->key.data, .keylen = msg->key.len, .payload = msg->value.data,
		.len = msg->value.len, .headers = hdrs, .txn = msg->txn
	};
	rd_kafka_resp_err_t err;

	if (dead_letter_topic == NULL)
	{
		rd_kafka_headers_destroy(hdrs);
		note_refusal(dl.id, topic, reason);
		return SEND_FAILED;
	}
	err = produce_dead_letter(&dl, with_value);
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
		return SEND_OK;
	rd_kafka_headers_destroy(hdrs);
	if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL)
		return SEND_QUEUE_FULL;
	note_dead_letter_refused(&dl, err);
	return SEND_FAILED;
}

/* Why an event is too large for the producer: its size and message.max.bytes. */
static const char *
size_reason(const EngageMessage *msg)
{
	char		max[32] = "?";
	size_t		size = sizeof(max);

	(void) rd_kafka_conf_get(rd_kafka_conf(producer), "message.max.bytes", max, &size);
	return psprintf("the event is too large: %d bytes of key and value (and its headers), "
					"over the producer's message.max.bytes of %s", msg->key.len + msg->value.len, max);
}

/*
 * An event librdkafka did not take: refused for good (too large, a topic
 * Kafka will never create, ...), else a failure to retry.  Takes over hdrs.
 */
static EngageSendResult
refuse_at_send(const EngageMessage *msg, rd_kafka_headers_t *hdrs, TopicEntry *entry,
			   rd_kafka_resp_err_t err)
{
	if (is_size_error(err))
		return refuse_event(msg, hdrs, entry->name, size_reason(msg), false);
	if (is_unknown_topic(err) && entry->refusal == NULL && !entry->diagnosed_late)
	{
		entry->refusal = diagnose_topic(entry->name, true);
		entry->diagnosed_late = true;
	}
	if (is_unknown_topic(err) && entry->refusal != NULL)
		return refuse_event(msg, hdrs, entry->name, entry->refusal, true);
	if (is_poison(err))
		return refuse_event(msg, hdrs, entry->name, rd_kafka_err2str(err), true);
	rd_kafka_headers_destroy(hdrs);
	note_failure(FAILURE_RETRY, "could not produce event %.*s to topic \"%s\": %s",
				 msg->id.len, msg->id.data, entry->name, rd_kafka_err2str(err));
	return SEND_FAILED;
}

/*
 * Hands one event to librdkafka.  An event refused for good (no valid topic,
 * a topic Kafka will not create, too large) goes to the dead-letter topic, or
 * is a failure under the stop policy.  Returns SEND_QUEUE_FULL when
 * librdkafka's queue has no room (nothing was sent: poll, then send again).
 */
EngageSendResult
producer_send(const EngageMessage *msg)
{
	rd_kafka_headers_t *hdrs = make_headers(msg);
	TopicEntry *entry;
	rd_kafka_resp_err_t err;
	const char *reason;

	if (msg->topic.data == NULL)
		return refuse_event(msg, hdrs, "", msg->no_topic_reason, true);
	entry = topic_entry(msg->topic.data, msg->topic.len);
	if (entry == NULL)
		return refuse_event(msg, hdrs, "", "its topic name is longer than 249 characters", true);
	if (entry->refusal != NULL)
		return refuse_event(msg, hdrs, entry->name, entry->refusal, true);
	if (remembered != NULL && (reason = remembered_reason(msg)) != NULL)
		return refuse_event(msg, hdrs, entry->name, reason, true);
	err = produce(entry, msg->key.data, msg->key.len, msg->value.data, msg->value.len, hdrs, msg->txn);
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
		return SEND_OK;
	if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
		return refuse_at_send(msg, hdrs, entry, err);
	rd_kafka_headers_destroy(hdrs);
	return SEND_QUEUE_FULL;
}

/* Serves callbacks for up to timeout_ms, then settles the events refused meanwhile. */
void
producer_poll(int timeout_ms)
{
	rd_kafka_poll(producer, timeout_ms);
	if (dead_letters != NULL)
		settle_refused();
}

/*
 * Hands over the events acknowledged since the last call, counted per
 * transaction (also those served by producer_flush()); valid until the next
 * poll or flush.
 */
int
producer_take_acks(const EngageAcks **acked)
{
	int			n = nacks;

	*acked = acks;
	nacks = 0;
	return n;
}

/* Waits up to timeout_ms for everything in flight; true when all delivered. */
bool
producer_flush(int timeout_ms)
{
	return rd_kafka_flush(producer, timeout_ms) == RD_KAFKA_RESP_ERR_NO_ERROR;
}

/* The worst failure since the producer started, with its message. */
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
 * Hands over the next librdkafka log line (level as syslog: 0 emergency to
 * 7 debug) into buf; false when there is none.  Lines dropped because the
 * shipper did not keep up are reported as one line.
 */
bool
producer_take_log(int *level, char *buf, int buflen)
{
	if (log_dropped > 0)
	{
		*level = 4;
		snprintf(buf, buflen, "%d log lines of librdkafka were dropped", log_dropped);
		log_dropped = 0;
		return true;
	}
	if (log_head == log_tail)
		return false;
	*level = log_ring[log_head].level;
	strlcpy(buf, log_ring[log_head].text, buflen);
	log_head = (log_head + 1) % LOG_RING;
	return true;
}

/*
 * Is a broker reachable: 1 yes, 0 no, -1 not known yet?  Deliveries say so
 * while events flow; when librdkafka reported every broker down, a short
 * metadata request (at most every few seconds) tells when one answers again,
 * idle or not.  A lost connection to one broker of several is not "none
 * reachable": only librdkafka's ALL_BROKERS_DOWN is.
 * With authentication failing, *auth_error says why.
 */
int
producer_broker_state(const char **auth_error)
{
	static TimestampTz last_probe = 0;
	const struct rd_kafka_metadata *md;
	TimestampTz now;

	*auth_error = auth_failed ? auth_msg : NULL;
	if (broker_state == 1)
		return 1;
	now = GetCurrentTimestamp();
	if (!TimestampDifferenceExceeds(last_probe, now, broker_state == -1 ? 500 : 3000))
		return broker_state;
	last_probe = now;
	if (rd_kafka_metadata(producer, 0, NULL, &md, 200) == RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		rd_kafka_metadata_destroy(md);
		broker_state = 1;
		auth_failed = false;
	}
	*auth_error = auth_failed ? auth_msg : NULL;
	return broker_state;
}

/*
 * The largest message the producer sends with properties (librdkafka's
 * message.max.bytes): larger ones it refuses before sending.  Remembered for
 * the last properties asked about.
 */
int
producer_max_message_bytes(const char *properties)
{
	static char *asked = NULL;
	static int	max = 0;
	rd_kafka_conf_t *conf;
	char	   *ignored = NULL;
	char		value[32];
	size_t		size = sizeof(value);

	if (properties == NULL)
		properties = "";
	if (asked != NULL && strcmp(asked, properties) == 0)
		return max;
	conf = rd_kafka_conf_new();
	(void) apply_properties(conf, properties, &ignored);
	if (rd_kafka_conf_get(conf, "message.max.bytes", value, &size) != RD_KAFKA_CONF_OK)
		strlcpy(value, "1000000", sizeof(value));
	rd_kafka_conf_destroy(conf);
	max = atoi(value);
	if (asked != NULL)
		pfree(asked);
	asked = MemoryContextStrdup(TopMemoryContext, properties);
	return max;
}


/*
 * Begins a Kafka transaction (exactly_once); false with the reason in
 * errbuf (the producer must then be started again).
 */
bool
producer_txn_begin(char *errbuf, int errlen)
{
	rd_kafka_error_t *error = rd_kafka_begin_transaction(producer);

	if (error == NULL)
		return true;
	snprintf(errbuf, errlen, "could not begin a Kafka transaction: %s", rd_kafka_error_string(error));
	rd_kafka_error_destroy(error);
	return false;
}

/*
 * Commits the Kafka transaction: everything sent in it is delivered first.
 * A retriable error is retried; one that requires an abort aborts
 * (TXN_ABORTED: send it all again); any other (fenced by another producer
 * of the transactional id, ...) is TXN_FATAL.  The reason goes to errbuf.
 */
EngageTxnResult
producer_txn_commit(char *errbuf, int errlen)
{
	for (int attempt = 0;; attempt++)
	{
		rd_kafka_error_t *error = rd_kafka_commit_transaction(producer, TXN_COMMIT_TIMEOUT_MS);
		EngageTxnResult result;

		if (error == NULL)
			return TXN_COMMITTED;
		snprintf(errbuf, errlen, "Kafka transaction not committed: %s", rd_kafka_error_string(error));
		if (rd_kafka_error_is_retriable(error) && attempt < 3)
		{
			rd_kafka_error_destroy(error);
			continue;
		}
		result = rd_kafka_error_txn_requires_abort(error) ? TXN_ABORTED : TXN_FATAL;
		rd_kafka_error_destroy(error);
		if (result == TXN_ABORTED)
			producer_txn_abort();
		return result;
	}
}

/* Aborts the Kafka transaction (what it held is never seen by read_committed consumers). */
void
producer_txn_abort(void)
{
	rd_kafka_error_t *error = rd_kafka_abort_transaction(producer, TXN_COMMIT_TIMEOUT_MS);

	if (error != NULL)
		rd_kafka_error_destroy(error);
}

/*
 * Makes sure the compacted topic exists (the progress topic: only the last
 * record of each key matters); false with a palloc'd message.
 */
bool
producer_ensure_compacted_topic(const char *name, char **errmsg)
{
	rd_kafka_NewTopic_t *topic = rd_kafka_NewTopic_new(name, 1, -1, NULL, 0);
	rd_kafka_queue_t *queue = rd_kafka_queue_new(producer);
	rd_kafka_event_t *ev;
	const rd_kafka_topic_result_t **results;
	size_t		n;
	bool		ok = false;

	rd_kafka_NewTopic_set_config(topic, "cleanup.policy", "compact");
	/* Compaction never cleans the active segment: keep it small (one record a commit). */
	rd_kafka_NewTopic_set_config(topic, "segment.bytes", "16777216");
	rd_kafka_CreateTopics(producer, &topic, 1, NULL, queue);
	ev = rd_kafka_queue_poll(queue, DIAGNOSE_TIMEOUT_MS * 2);
	if (ev == NULL)
		*errmsg = psprintf("Kafka did not answer the creation of topic \"%s\" in time", name);
	else if (rd_kafka_event_error(ev) != RD_KAFKA_RESP_ERR_NO_ERROR)
		*errmsg = psprintf("could not create topic \"%s\": %s", name, rd_kafka_event_error_string(ev));
	else
	{
		results = rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
		if (n == 1 && rd_kafka_topic_result_error(results[0]) != RD_KAFKA_RESP_ERR_NO_ERROR &&
			rd_kafka_topic_result_error(results[0]) != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
			*errmsg = psprintf("could not create topic \"%s\": %s", name,
							   rd_kafka_topic_result_error_string(results[0]));
		else
			ok = true;
	}
	if (ev != NULL)
		rd_kafka_event_destroy(ev);
	rd_kafka_queue_destroy(queue);
	rd_kafka_NewTopic_destroy(topic);
	return ok;
}

/*
 * Reads the progress topic's partition from offset start to its end as a
 * read_committed consumer, the same brokers and properties as the producer:
 * *value is a palloc'd copy of the last value with key key, or stays NULL.
 * False with a palloc'd message when the end is not reached in time.
 */
static bool
read_progress_from(const char *topic, int64_t start, const char *key, char **value, char **errmsg)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_dup(consumer_conf);
	rd_kafka_t *consumer;
	rd_kafka_topic_partition_list_t *parts;
	char		errstr[512];
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), TXN_INIT_TIMEOUT_MS);
	bool		done = false;

	set_required(conf, "isolation.level", "read_committed");
	/* The broker would hold the last fetch 500 ms (its default) before the end is known. */
	set_required(conf, "fetch.wait.max.ms", "10");
	set_required(conf, "enable.partition.eof", "true");
	set_required(conf, "enable.auto.commit", "false");
	set_required(conf, "group.id", "pg_engage-progress");
	consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
	if (consumer == NULL)
	{
		rd_kafka_conf_destroy(conf);
		*errmsg = pstrdup(errstr);
		return false;
	}
	rd_kafka_set_log_queue(consumer, NULL);
	parts = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(parts, topic, 0)->offset = start;
	rd_kafka_assign(consumer, parts);
	rd_kafka_topic_partition_list_destroy(parts);
	while (!done && GetCurrentTimestamp() < deadline)
	{
		rd_kafka_message_t *msg = rd_kafka_consumer_poll(consumer, 200);

		if (msg == NULL)
			continue;
		if (msg->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
			done = true;
		else if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR && msg->key_len == strlen(key) &&
				 memcmp(msg->key, key, msg->key_len) == 0 && msg->payload != NULL)
		{
			if (*value != NULL)
				pfree(*value);
			*value = pnstrdup(msg->payload, msg->len);
		}
		rd_kafka_message_destroy(msg);
	}
	rd_kafka_consumer_close(consumer);
	rd_kafka_destroy(consumer);
	if (!done)
		*errmsg = psprintf("could not read topic \"%s\" to its end in time", topic);
	return done;
}

/*
 * The last value with key key in the progress topic (one partition), read
 * committed: *value is a palloc'd copy, or NULL when there is none.  An empty
 * topic needs no consumer; otherwise the last PROGRESS_TAIL offsets are read
 * first (the slot's latest record is almost always there), the whole
 * partition only when they hold none of the key.  False with a palloc'd
 * message when it cannot be read.
 */
bool
producer_read_progress(const char *topic, const char *key, char **value, char **errmsg)
{
	int64_t		low = 0;
	int64_t		high = 0;
	rd_kafka_resp_err_t err;

	*value = NULL;
	err = rd_kafka_query_watermark_offsets(producer, topic, 0, &low, &high, DIAGNOSE_TIMEOUT_MS);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
		low = high = -1;		/* unknown: read it all */
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR && low == high)
		return true;
	if (high - PROGRESS_TAIL > low && low >= 0)
	{
		if (!read_progress_from(topic, high - PROGRESS_TAIL, key, value, errmsg))
			return false;
		if (*value != NULL)
			return true;
	}
	return read_progress_from(topic, RD_KAFKA_OFFSET_BEGINNING, key, value, errmsg);
}
