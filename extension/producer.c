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
 */
#include "engage.h"

#include <librdkafka/rdkafka.h>

#include "nodes/parsenodes.h"
#include "nodes/value.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
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
	char		name[ENGAGE_TOPIC_MAX_LEN + 1]; /* hash key */
	rd_kafka_topic_t *rkt;
} TopicEntry;

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
 * Is err final for this one event (retrying cannot make it succeed)?  A
 * broker's UNKNOWN_TOPIC_OR_PART is not: it is what a topic being created
 * answers at first.  librdkafka's own __UNKNOWN_TOPIC comes only after the
 * topic stayed missing from the metadata (topic.metadata.propagation.max.ms).
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
		case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
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

/* Frees one dead letter. */
static void
free_dead_letter(DeadLetter *dl)
{
	if (dl->headers)
		rd_kafka_headers_destroy(dl->headers);
	free(dl->topic);
	free(dl->reason);
	free(dl->key);
	free(dl->payload);
	free(dl);
}

/* Queues an event for the dead-letter topic; false if out of memory. */
static bool
queue_dead_letter(const char *topic, const char *reason, const void *key, size_t keylen,
				  const void *payload, size_t len, rd_kafka_headers_t *headers, uint64 txn)
{
	DeadLetter *dl = calloc(1, sizeof(DeadLetter));

	if (dl == NULL)
		return false;
	dl->topic = strdup(topic);
	dl->reason = strdup(reason);
	dl->key = copy_bytes(key, keylen);
	dl->keylen = keylen;
	dl->payload = copy_bytes(payload, len);
	dl->len = len;
	dl->headers = headers ? headers : rd_kafka_headers_new(2);
	dl->txn = txn;
	if (!dl->topic || !dl->reason || !dl->key || !dl->payload || !dl->headers)
	{
		free_dead_letter(dl);
		return false;
	}
	dl->next = dead_letters;
	dead_letters = dl;
	return true;
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

/* Delivery report: acknowledge, or decide how the failure is handled. */
static void
on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
	uint64		txn = (uint64) (uintptr_t) msg->_private;
	const char *topic = rd_kafka_topic_name(msg->rkt);
	const char *err = rd_kafka_err2str(msg->err);
	rd_kafka_headers_t *hdrs = NULL;

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
	if (!is_poison(msg->err))
		note_failure(FAILURE_RETRY, "delivery to topic \"%s\" failed: %s", topic, err);
	else if (dead_letter_topic != NULL && strcmp(topic, dead_letter_topic) != 0 &&
			 rd_kafka_message_headers(msg, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR &&
			 queue_dead_letter(topic, err, msg->key, msg->key_len, msg->payload, msg->len,
							   rd_kafka_headers_copy(hdrs), txn))
		return;
	else
		note_failure(FAILURE_POISON, "Kafka refused an event for topic \"%s\": %s", topic, err);
}

/* Error callback: broker reachability, authentication and fatal errors. */
static void
on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN || err == RD_KAFKA_RESP_ERR__TRANSPORT ||
		err == RD_KAFKA_RESP_ERR__RESOLVE)
		broker_state = 0;
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

		rd_kafka_fatal_error(rk, fatal, sizeof(fatal));
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
 * Creates the producer for brokers with extra properties and those of the
 * credentials file (DefElem list); dead-letter topic NULL means the stop policy.  False with a palloc'd message on failure.
 */
bool
producer_start(const char *brokers, const char *properties, List *credentials,
			   const char *credentials_path, const char *dead_letter, char **errmsg)
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
	reset_outcomes();
	dead_letter_topic = dead_letter ? strdup(dead_letter) : NULL;
	return true;
}

/*
 * The handle of a topic, created on first use.  Its metadata is fetched
 * right away: librdkafka 2.0.2 otherwise waits up to a second before it
 * asks for an unknown topic, which would stall the first event.
 */
static rd_kafka_topic_t *
topic_handle(const char *name, int len)
{
	TopicEntry *entry;
	char		key[ENGAGE_TOPIC_MAX_LEN + 1] = {0};
	bool		found;
	const struct rd_kafka_metadata *md;

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
		return last_topic->rkt;
	memcpy(key, name, len);
	entry = hash_search(topics, key, HASH_ENTER, &found);
	last_topic = entry;
	if (found)
		return entry->rkt;
	entry->rkt = rd_kafka_topic_new(producer, key, NULL);
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
	nacks = 0;
}

/* Hands one message to librdkafka; never waits. */
static rd_kafka_resp_err_t
produce(const char *topic, int topiclen, const void *key, size_t keylen,
		const void *payload, size_t len, rd_kafka_headers_t *headers, uint64 txn)
{
	rd_kafka_topic_t *rkt = topic_handle(topic, topiclen);

	if (rkt == NULL)
		return RD_KAFKA_RESP_ERR__INVALID_ARG;
	return rd_kafka_producev(producer,
							 RD_KAFKA_V_RKT(rkt),
							 RD_KAFKA_V_KEY(key, keylen),
							 RD_KAFKA_V_VALUE((void *) payload, len),
							 RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
							 RD_KAFKA_V_HEADERS(headers),
							 RD_KAFKA_V_OPAQUE((void *) (uintptr_t) txn),
							 RD_KAFKA_V_END);
}

/* Sends the queued dead letters; those that do not fit now wait for the next poll. */
static void
send_dead_letters(void)
{
	while (dead_letters != NULL)
	{
		DeadLetter *dl = dead_letters;
		rd_kafka_resp_err_t err;

		rd_kafka_header_add(dl->headers, "engage.reason", -1, dl->reason, -1);
		rd_kafka_header_add(dl->headers, "engage.topic", -1, dl->topic, -1);
		err = produce(dead_letter_topic, strlen(dead_letter_topic), dl->key, dl->keylen,
					  dl->payload, dl->len, dl->headers, dl->txn);
		if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL)
		{
			rd_kafka_header_remove(dl->headers, "engage.reason");
			rd_kafka_header_remove(dl->headers, "engage.topic");
			return;
		}
		if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
			dl->headers = NULL; /* librdkafka owns them now */
		else
			note_failure(FAILURE_POISON, "dead-letter topic \"%s\" refused an event: %s",
						 dead_letter_topic, rd_kafka_err2str(err));
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
 * Hands one event to librdkafka.  An event without a topic (msg->topic
 * absent) goes to the dead-letter topic with msg->no_topic_reason, or is a
 * failure under the stop policy.  Returns SEND_QUEUE_FULL when librdkafka's
 * queue has no room (nothing was sent: poll, then send again).
 */
EngageSendResult
producer_send(const EngageMessage *msg)
{
	rd_kafka_headers_t *hdrs = make_headers(msg);
	rd_kafka_resp_err_t err;

	if (msg->topic.data == NULL)
	{
		if (dead_letter_topic == NULL)
			rd_kafka_headers_destroy(hdrs);
		else if (queue_dead_letter("", msg->no_topic_reason, msg->key.data, msg->key.len,
								   msg->value.data, msg->value.len, hdrs, msg->txn))
			return SEND_OK;
		note_failure(FAILURE_POISON, "event %.*s has no valid Kafka topic: %s",
					 msg->id.len, msg->id.data, msg->no_topic_reason);
		return SEND_FAILED;
	}
	err = produce(msg->topic.data, msg->topic.len, msg->key.data, msg->key.len,
				  msg->value.data, msg->value.len, hdrs, msg->txn);
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
		return SEND_OK;
	rd_kafka_headers_destroy(hdrs);
	if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL)
		return SEND_QUEUE_FULL;
	if (is_poison(err))
		note_failure(FAILURE_POISON, "Kafka refused an event for topic \"%.*s\": %s",
					 msg->topic.len, msg->topic.data, rd_kafka_err2str(err));
	else
		note_failure(FAILURE_RETRY, "could not produce to topic \"%.*s\": %s",
					 msg->topic.len, msg->topic.data, rd_kafka_err2str(err));
	return SEND_FAILED;
}

/* Serves callbacks for up to timeout_ms, then sends any dead letters. */
void
producer_poll(int timeout_ms)
{
	rd_kafka_poll(producer, timeout_ms);
	if (dead_letters != NULL)
		send_dead_letters();
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
 * idle or not.  With authentication failing, *auth_error says why.
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
