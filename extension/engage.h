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
 *	tracker.c		in-flight transactions and the position safe to confirm
 *	route.c			topic, key and headers of an event record
 *	producer.c		everything that touches librdkafka
 *	status.c		shared status and engage.shipper_status()
 */
#ifndef ENGAGE_H
#define ENGAGE_H

#include "postgres.h"

#include "access/xlogdefs.h"
#include "datatype/timestamp.h"
#include "storage/spin.h"

/* Settings (guc.c). */
extern bool engage_enabled;
extern char *engage_brokers;
extern char *engage_database;
extern char *engage_slot_name;
extern char *engage_topic_prefix;
extern char *engage_tables;
extern char *engage_kafka_properties;
extern int	engage_poll_interval_ms;
extern int	engage_shutdown_timeout_ms;
extern int	engage_poison_policy;
extern char *engage_dead_letter_topic;

/* What to do with an event Kafka refuses for good. */
typedef enum EngagePoisonPolicy
{
	ENGAGE_POISON_STOP,			/* hold the position and report the error */
	ENGAGE_POISON_DEAD_LETTER	/* send it to the dead-letter topic, go on */
} EngagePoisonPolicy;

extern void engage_define_settings(void);

/* The shipper's state as shown by engage.shipper_status(). */
typedef enum EngageShipperState
{
	SHIPPER_STOPPED,
	SHIPPER_STARTING,
	SHIPPER_RUNNING,
	SHIPPER_WAITING_FOR_BROKER,
	SHIPPER_STOPPED_ON_ERROR,
	SHIPPER_WAITING_FOR_DATABASE
} EngageShipperState;

/* Shared status of the shipper, written by the worker, read by SQL. */
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
	bool		broker_up;
	char		slot_name[NAMEDATALEN]; /* the slot of the current session */
	char		last_error[512];
	TimestampTz last_error_at;
} EngageStatus;

/* status.c */
extern void engage_status_request(void);
extern void engage_status_startup(void);
extern void engage_status_set_state(EngageShipperState state);
extern void engage_status_set_error(const char *error);
extern void engage_status_shipped(int64 events, int64 bytes, int64 in_flight);
extern void engage_status_confirmed(XLogRecPtr lsn);
extern void engage_status_set_slot(const char *slot_name);
extern void engage_status_broker(bool up);
extern void engage_status_set_pid(int pid);

/* launcher.c */
extern void engage_register_launcher(void);

/* tracker.c: transactions in flight, in commit order. */
extern void tracker_reset(void);
extern uint64 tracker_begin(void);
extern void tracker_add(uint64 txn);
extern void tracker_commit(uint64 txn, XLogRecPtr end_lsn);
extern void tracker_acked(uint64 txn);
extern bool tracker_empty(void);
extern int64 tracker_pending_events(void);
extern XLogRecPtr tracker_confirmable(void);

/* route.c: the fields of an event record the shipper needs. */
typedef struct EngageSpan
{
	const char *p;
	int			len;
} EngageSpan;

typedef struct EngageEvent
{
	EngageSpan	op;				/* contents of the string, without quotes */
	EngageSpan	id;
	EngageSpan	lsn;
	EngageSpan	table;
	EngageSpan	topic;
	EngageSpan	pk;				/* raw JSON of the key object */
	EngageSpan	key;			/* raw JSON of a message's key */
	EngageSpan	end_lsn;
} EngageEvent;

extern bool engage_parse_event(const char *data, int len, EngageEvent *ev);
extern bool engage_span_is(EngageSpan s, const char *str);
extern char *engage_event_topic(const EngageEvent *ev, const char *prefix);
extern XLogRecPtr engage_span_lsn(EngageSpan s);

/* producer.c: the only file that touches librdkafka. */
typedef struct EngageHeaders
{
	EngageSpan	id;
	EngageSpan	op;
	EngageSpan	table;
	EngageSpan	lsn;
} EngageHeaders;

/* How a failed delivery must be handled (decided in producer.c). */
typedef enum EngageFailure
{
	FAILURE_NONE,
	FAILURE_RETRY,				/* transient: rebuild and replay from the slot */
	FAILURE_POISON				/* permanent for this event */
} EngageFailure;

extern bool producer_check_properties(const char *props, char **errmsg);
extern bool producer_start(char **errmsg);
extern void producer_stop(int timeout_ms);
extern void producer_send(const char *topic, const char *key, int keylen,
						  const char *payload, int len,
						  const EngageHeaders *headers, uint64 txn);
extern const char *producer_no_topic(const char *record);
extern void producer_poll(int timeout_ms);
extern bool producer_flush(int timeout_ms);
extern EngageFailure producer_failure(char *errbuf, int errlen);
extern bool producer_broker_up(void);
extern void producer_take_counts(int64 *events, int64 *bytes);

#endif							/* ENGAGE_H */
