/*
 * emit.c
 *		engage.emit(): transactional application events (the outbox pattern
 *		without an outbox table).
 *
 * The event is a transactional logical message with the prefix "engage": it
 * is decoded, and shipped, if and only if the calling transaction commits.
 * The message starts with an authenticator only emit() can compute
 * (plugin/emitauth.c), so the decoder ships nothing else as an event.
 * Whatever Kafka would refuse later is refused here, up front: a topic that
 * is not a valid Kafka name once prefixed (topicname.c), a topic that Kafka
 * would take for an existing one ("." and "_" are the same to it; see
 * engage_internal.app_topics), and an event larger than the producer's
 * message.max.bytes.
 */
#include "engage.h"

#include "access/xact.h"
#include "catalog/pg_type_d.h"
#include "fmgr.h"
#include "catalog/namespace.h"
#include "catalog/pg_proc.h"
#include "replication/message.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/pg_lsn.h"
#include "utils/syscache.h"

PG_FUNCTION_INFO_V1(engage_emit);

/* Room a record needs beyond its event: envelope, headers and Kafka key. */
#define RECORD_OVERHEAD 512

/* Topics this backend registered, valid for the register function's OID. */
static HTAB *registered = NULL;
static Oid	registered_with = InvalidOid;

/* Raises the error for a bad topic (NULL: a NULL topic). */
static void
refuse_topic(const char *topic, const char *why)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid engage event topic: %s", topic ? quote_literal_cstr(topic) : "NULL"),
			 errdetail("%s.", why),
			 errhint("Application events go to the Kafka topic \"<engage.topic_prefix>-app.<topic>\", "
					 "so that name must be a valid Kafka topic name: at most 249 characters from "
					 "A-Z, a-z, 0-9, \".\", \"_\" and \"-\".")));
}

/* Checks the topic of an event against the name it will have in Kafka. */
static void
check_topic(const char *topic)
{
	StringInfoData full;
	const char *why;

	if (topic == NULL)
		refuse_topic(NULL, "The topic is NULL");
	initStringInfo(&full);
	why = engage_message_topic(&full, engage_topic_prefix, topic, strlen(topic));
	if (why)
		refuse_topic(topic, why);
}

/* Forgets the registrations of an aborted (sub)transaction: all of them. */
static void
forget_registrations(void)
{
	if (registered != NULL)
		hash_destroy(registered);
	registered = NULL;
}

/* Transaction callback: a rolled back registration is no registration. */
static void
on_xact(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
		forget_registrations();
}

/* Subtransaction callback: the same for a rolled back savepoint. */
static void
on_subxact(SubXactEvent event, SubTransactionId mySubid, SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
		forget_registrations();
}

/*
 * The OID of engage_internal.register_app_topic(text), looked up in the
 * catalog directly: the caller has no USAGE on engage_internal, and needs none.
 */
static Oid
register_function(void)
{
	Oid			argtype = TEXTOID;
	Oid			nsp = get_namespace_oid("engage_internal", true);
	Oid			fn = InvalidOid;

	if (OidIsValid(nsp))
		fn = GetSysCacheOid3(PROCNAMEARGSNSP, Anum_pg_proc_oid,
							 CStringGetDatum("register_app_topic"),
							 PointerGetDatum(buildoidvector(&argtype, 1)),
							 ObjectIdGetDatum(nsp));

	if (!OidIsValid(fn))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("function engage_internal.register_app_topic(text) does not exist"),
				 errhint("Run ALTER EXTENSION pg_engage UPDATE: the library is newer than the extension's SQL.")));
	return fn;
}

/*
 * Registers topic as an application topic, refusing one that Kafka would
 * take for a registered other one.  The function is SECURITY DEFINER and
 * not executable by PUBLIC: emit() calls it directly, as its gate.
 */
static void
register_topic(const char *topic)
{
	static bool callbacks = false;
	Oid			fn = register_function();
	bool		found;
	char	   *other;

	if (fn != registered_with)
		forget_registrations();
	if (registered == NULL)
	{
		HASHCTL		ctl = {.keysize = NAMEDATALEN * 4, .entrysize = NAMEDATALEN * 4,
		.hcxt = TopMemoryContext};

		registered = hash_create("pg_engage app topics", 16, &ctl,
								 HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
		registered_with = fn;
	}
	if (!callbacks)
	{
		RegisterXactCallback(on_xact, NULL);
		RegisterSubXactCallback(on_subxact, NULL);
		callbacks = true;
	}
	(void) hash_search(registered, topic, HASH_FIND, &found);
	if (found)
		return;
	other = TextDatumGetCString(OidFunctionCall1(fn, CStringGetTextDatum(topic)));
	if (strcmp(other, topic) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("engage event topic %s collides with the existing topic %s",
						quote_literal_cstr(topic), quote_literal_cstr(other)),
				 errdetail("Kafka takes \".\" and \"_\" in topic names for the same character and refuses the second name."),
				 errhint("Use the existing topic name.")));
	(void) hash_search(registered, topic, HASH_ENTER, NULL);
}

/* Refuses an event the producer would refuse as larger than message.max.bytes. */
static void
check_size(const char *topic, int event_len, int key_len)
{
	int			max = producer_max_message_bytes(engage_kafka_properties);

	if (event_len + key_len + RECORD_OVERHEAD <= max)
		return;
	ereport(ERROR,
			(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
			 errmsg("engage event for topic %s is too large for Kafka", quote_literal_cstr(topic)),
			 errdetail("The event takes %d bytes with its key; the producer sends at most %d (message.max.bytes, "
					   "less %d bytes for the record's envelope and headers).",
					   event_len + key_len, max - RECORD_OVERHEAD, RECORD_OVERHEAD),
			 errhint("Send a smaller payload, or raise message.max.bytes in engage.kafka_properties "
					 "together with the broker's and topic's max.message.bytes.")));
}

/* Appends a JSON string, or null for a NULL. */
static void
append_json_text(StringInfo buf, const char *s)
{
	if (s == NULL)
		appendStringInfoString(buf, "null");
	else
		escape_json(buf, s);
}

/* The event's JSON: {"topic":...,"key":...,"payload":...}. */
static void
write_event(StringInfo event, const char *topic, const char *key, Jsonb *payload)
{
	appendStringInfoString(event, "{\"topic\":");
	append_json_text(event, topic);
	appendStringInfoString(event, ",\"key\":");
	append_json_text(event, key);
	appendStringInfoString(event, ",\"payload\":");
	(void) JsonbToCString(event, &payload->root, VARSIZE(payload));
	appendStringInfoChar(event, '}');
}

/* SQL: engage.emit(topic text, key text, payload jsonb) returns pg_lsn. */
Datum
engage_emit(PG_FUNCTION_ARGS)
{
	char	   *topic = PG_ARGISNULL(0) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *key = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	StringInfoData event;
	StringInfoData message;
	TransactionId xid;

	check_topic(topic);
	if (PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("engage event payload must not be NULL"),
				 errhint("Pass 'null'::jsonb to send a JSON null on purpose.")));
	initStringInfo(&event);
	write_event(&event, topic, key, PG_GETARG_JSONB_P(2));
	check_size(topic, event.len, key ? strlen(key) : 0);
	register_topic(topic);
	/* The decoder checks the hash with the top-level transaction that commits. */
	xid = GetTopTransactionId();
	initStringInfo(&message);
	engage_sign(&message, ENGAGE_MAC_EMIT, xid, event.data, event.len);
	appendBinaryStringInfo(&message, event.data, event.len);
	PG_RETURN_LSN(LogLogicalMessage(ENGAGE_MESSAGE_PREFIX, message.data, message.len, true));
}
