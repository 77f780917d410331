/*
 * guc.c
 *		The engage.* settings of the shipper and their checks.
 *
 * Every setting can be changed with a reload; the shipper picks changes up
 * by starting a new session.  A bad value is refused with a message when the
 * configuration is loaded, so the shipper never runs with it.
 */
#include "engage.h"

#include <limits.h>

#include "utils/guc.h"

bool		engage_enabled = true;
char	   *engage_brokers = NULL;
char	   *engage_database = NULL;
char	   *engage_slot_name = NULL;
char	   *engage_topic_prefix = NULL;
char	   *engage_tables = NULL;
char	   *engage_kafka_properties = NULL;
char	   *engage_kafka_credentials_file = NULL;
int			engage_poll_interval_ms = 10;
int			engage_shutdown_timeout_ms = 10000;
bool		engage_wake_on_commit = true;
int			engage_poison_policy = ENGAGE_POISON_STOP;
char	   *engage_dead_letter_topic = NULL;
int			engage_on_slot_loss = ENGAGE_SLOT_LOSS_RESNAPSHOT;
int			engage_snapshot_mode = ENGAGE_SNAPSHOT_INITIAL;
int			engage_delivery = ENGAGE_DELIVERY_AT_LEAST_ONCE;
int			engage_snapshot_chunk_rows = 10000;
int			engage_snapshot_rows_per_second = 0;
bool		engage_tombstones = false;

static const struct config_enum_entry poison_options[] = {
	{"stop", ENGAGE_POISON_STOP, false},
	{"dead_letter", ENGAGE_POISON_DEAD_LETTER, false},
	{NULL, 0, false}
};

static const struct config_enum_entry slot_loss_options[] = {
	{"resnapshot", ENGAGE_SLOT_LOSS_RESNAPSHOT, false},
	{"continue", ENGAGE_SLOT_LOSS_CONTINUE, false},
	{"stop", ENGAGE_SLOT_LOSS_STOP, false},
	{NULL, 0, false}
};

static const struct config_enum_entry delivery_options[] = {
	{"at_least_once", ENGAGE_DELIVERY_AT_LEAST_ONCE, false},
	{"exactly_once", ENGAGE_DELIVERY_EXACTLY_ONCE, false},
	{NULL, 0, false}
};

static const struct config_enum_entry snapshot_mode_options[] = {
	{"initial", ENGAGE_SNAPSHOT_INITIAL, false},
	{"never", ENGAGE_SNAPSHOT_NEVER, false},
	{NULL, 0, false}
};

/* Check hook of engage.topic_prefix: it starts every topic name. */
static bool
check_topic_prefix(char **newval, void **extra, GucSource source)
{
	const char *why = *newval ? engage_topic_prefix_invalid(*newval) : "it is missing";

	if (why == NULL)
		return true;
	GUC_check_errdetail("%s.", why);
	GUC_check_errhint("Use 1 to 200 characters from A-Z, a-z, 0-9, \".\", \"_\" and \"-\".");
	return false;
}

/* Check hook of engage.dead_letter_topic: a whole topic name. */
static bool
check_topic(char **newval, void **extra, GucSource source)
{
	const char *why = *newval ? engage_topic_invalid(*newval, strlen(*newval)) : "it is missing";

	if (why == NULL)
		return true;
	GUC_check_errdetail("%s.", why);
	return false;
}

/* Check hook of engage.tables: the plugin's own parser of the list. */
static bool
check_tables(char **newval, void **extra, GucSource source)
{
	EngageTableList list;
	const char *hint;
	const char *error = engage_parse_table_list(*newval, &list, &hint);

	if (error == NULL)
		return true;
	GUC_check_errdetail("%s.", error);
	GUC_check_errhint("%s", hint);
	return false;
}

/* Check hook of settings that must not be empty. */
static bool
check_not_empty(char **newval, void **extra, GucSource source)
{
	if (*newval != NULL && (*newval)[0] != '\0')
		return true;
	GUC_check_errdetail("The value must not be empty.");
	return false;
}

/* Check hook of the slot name: what a replication slot accepts. */
static bool
check_slot_name(char **newval, void **extra, GucSource source)
{
	size_t		len = *newval ? strlen(*newval) : 0;

	if (len == 0 || len >= NAMEDATALEN)
	{
		GUC_check_errdetail("A slot name is 1 to %d characters.", NAMEDATALEN - 1);
		return false;
	}
	for (const char *p = *newval; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
		{
			GUC_check_errdetail("A slot name contains only lower case letters, digits and underscores.");
			return false;
		}
	return true;
}

/* Check hook of the Kafka properties: librdkafka must accept every one. */
static bool
check_properties(char **newval, void **extra, GucSource source)
{
	char	   *errmsg = NULL;

	if (producer_check_properties(*newval, &errmsg))
		return true;
	GUC_check_errdetail("%s", errmsg);
	GUC_check_errhint("Write properties as name=value pairs separated by semicolons, e.g. 'compression.type=lz4;linger.ms=5'.");
	return false;
}

/* Defines a reloadable string setting. */
static void
define_string(const char *name, const char *desc, char **var, const char *boot,
			  int flags, GucStringCheckHook check)
{
	DefineCustomStringVariable(name, desc, NULL, var, boot, PGC_SIGHUP, flags,
							   check, NULL, NULL);
}

/* Defines every engage.* setting. */
void
engage_define_settings(void)
{
	DefineCustomBoolVariable("engage.enabled",
							 gettext_noop("Runs the shipper that sends engage events to Kafka."),
							 NULL, &engage_enabled, true, PGC_SIGHUP, 0, NULL, NULL, NULL);
	define_string("engage.brokers", gettext_noop("Kafka bootstrap servers (host:port, comma-separated)."),
				  &engage_brokers, "127.0.0.1:9092", 0, check_not_empty);
	define_string("engage.database", gettext_noop("Database whose engage changes the shipper sends."),
				  &engage_database, "postgres", 0, check_not_empty);
	define_string("engage.slot_name", gettext_noop("Logical replication slot of the shipper (created if missing)."),
				  &engage_slot_name, "engage_shipper", 0, check_slot_name);
	define_string("engage.topic_prefix", gettext_noop("Prefix of the Kafka topics: <prefix>.<table>, <prefix>-app.<topic>."),
				  &engage_topic_prefix, "engage", 0, check_topic_prefix);
	define_string("engage.tables", gettext_noop("Tables captured, as the engage_decoder option tables."),
				  &engage_tables, "engage.*", 0, check_tables);
	define_string("engage.kafka_properties",
				  gettext_noop("Extra librdkafka properties, name=value separated by semicolons."),
				  &engage_kafka_properties, "", GUC_SUPERUSER_ONLY, check_properties);
	define_string("engage.kafka_credentials_file",
				  gettext_noop("File of secret librdkafka properties (name=value lines), readable only by the server's user."),
				  &engage_kafka_credentials_file, "", GUC_SUPERUSER_ONLY, NULL);
	define_string("engage.dead_letter_topic", gettext_noop("Topic of events Kafka refuses, with policy dead_letter."),
				  &engage_dead_letter_topic, "engage-dead_letter", 0, check_topic);
	DefineCustomEnumVariable("engage.poison_policy",
							 gettext_noop("What to do with an event Kafka refuses for good: stop or dead_letter."),
							 NULL, &engage_poison_policy, ENGAGE_POISON_STOP, poison_options,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomEnumVariable("engage.on_slot_loss",
							 gettext_noop("What to do when the shipper's slot was lost: resnapshot, continue (announce the gap only) or stop."),
							 NULL, &engage_on_slot_loss, ENGAGE_SLOT_LOSS_RESNAPSHOT, slot_loss_options,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomEnumVariable("engage.delivery",
							 gettext_noop("at_least_once, or exactly_once: each PostgreSQL transaction in one Kafka transaction, never twice."),
							 NULL, &engage_delivery, ENGAGE_DELIVERY_AT_LEAST_ONCE, delivery_options,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomEnumVariable("engage.snapshot_mode",
							 gettext_noop("Whether a new slot starts with a snapshot of every captured table: initial or never."),
							 NULL, &engage_snapshot_mode, ENGAGE_SNAPSHOT_INITIAL, snapshot_mode_options,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("engage.snapshot_chunk_rows",
							gettext_noop("Rows a snapshot reads per chunk (one short transaction each)."),
							NULL, &engage_snapshot_chunk_rows, 10000, 1, 1000000, PGC_SIGHUP,
							0, NULL, NULL, NULL);
	DefineCustomIntVariable("engage.snapshot_rows_per_second",
							gettext_noop("Upper bound on the rows snapshots read per second; 0: no bound."),
							NULL, &engage_snapshot_rows_per_second, 0, 0, INT_MAX, PGC_SIGHUP,
							0, NULL, NULL, NULL);
	DefineCustomIntVariable("engage.poll_interval",
							gettext_noop("How long the shipper sleeps when it has read all WAL."),
							NULL, &engage_poll_interval_ms, 10, 1, 10000, PGC_SIGHUP,
							GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("engage.shutdown_timeout",
							gettext_noop("How long a stopping shipper waits for Kafka to acknowledge what is in flight."),
							NULL, &engage_shutdown_timeout_ms, 10000, 0, 600000, PGC_SIGHUP,
							GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomBoolVariable("engage.wake_on_commit",
							 gettext_noop("Committing backends wake the shipper instead of letting it wait for its next poll."),
							 NULL, &engage_wake_on_commit, true, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomBoolVariable("engage.tombstones",
							 gettext_noop("After each delete with a key, sends a message with that key and a null value, for compacted topics."),
							 NULL, &engage_tombstones, false, PGC_SIGHUP, 0, NULL, NULL, NULL);
	MarkGUCPrefixReserved("engage");
}
