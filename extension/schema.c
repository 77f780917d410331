/*
 * schema.c
 *		Schema changes in stream order: the event triggers that write a schema
 *		message for every table a DDL statement changed.
 *
 * At ddl_command_end (and sql_drop) of every statement, the tables the
 * statement touched are compared with what engage_internal.relation_names
 * (relnames.c) last saw of them: a new table, a new name, a new description
 * (columns, types, nullability, key: schemadesc.c), a partition attached or
 * detached, a table dropped.  Each change of a root table becomes one
 * transactional logical message with the prefix ENGAGE_SCHEMA_PREFIX, written
 * in the statement's transaction, so it is decoded in place: after the rows
 * written under the old shape, before any row under the new one.  It starts
 * with the authenticator for ENGAGE_MAC_SCHEMA (emitauth.c): nobody without
 * the key can forge one.  Its body is two JSON objects on two lines: what the
 * decoder needs to route it (schemamsg.c), then the members of the record.
 *
 * The triggers are ENABLE ALWAYS (they fire whatever session_replication_role
 * says; only a superuser can disable them) and their functions SECURITY
 * DEFINER, so that a role doing DDL on its own tables neither skips the
 * message nor needs any right on the registry.
 */
#include "engage.h"

#include "access/relation.h"
#include "access/xact.h"
#include "catalog/catalog.h"
#include "catalog/partition.h"
#include "catalog/pg_class.h"
#include "commands/event_trigger.h"
#include "executor/spi.h"
#include "replication/message.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

PG_FUNCTION_INFO_V1(engage_schema_ddl_end);
PG_FUNCTION_INFO_V1(engage_schema_sql_drop);
PG_FUNCTION_INFO_V1(engage_register_relations);

/* A table as the catalog shows it now. */
typedef struct TableNow
{
	Oid			relid;
	char	   *nspname;
	char	   *relname;
	Oid			root;			/* the topmost partitioned table above it, or relid */
	StringInfoData desc;		/* description of a root; empty for a partition */
	char		fingerprint[ENGAGE_SCHEMA_FINGERPRINT_CHARS + 1];	/* "" for a partition */
} TableNow;

/* One schema change to announce. */
typedef struct SchemaChange
{
	const char *change;			/* create, alter, rename, set_schema, drop, attach, detach */
	const TableNow *now;		/* the table; for drop only relid and names */
	const char *old_nspname;	/* the previous name, when it changed */
	const char *old_relname;
	char	   *partition;		/* a root's attach/detach: the partition */
	char	   *partition_of;	/* a partition's own attach/detach: the root */
	bool		gone;			/* no more rows under this name: no description */
} SchemaChange;

/*
 * The tables a statement touched: tables and the tables of indexes it named,
 * every table of a schema it named (ALTER SCHEMA ... RENAME), in the order of
 * the statement's commands; via_schema tells the latter.
 */
static const char *const touched_sql =
"WITH d AS (SELECT d.classid, d.objid, d.n"
"             FROM pg_catalog.pg_event_trigger_ddl_commands() WITH ORDINALITY"
"                  AS d(classid, objid, objsubid, command_tag, object_type, schema_name,"
"                       object_identity, in_extension, command, n))"
" SELECT t.relid, pg_catalog.bool_or(t.via_schema)"
"   FROM (SELECT COALESCE(i.indrelid, c.oid) AS relid, false AS via_schema, d.n"
"           FROM d JOIN pg_catalog.pg_class AS c ON c.oid OPERATOR(pg_catalog.=) d.objid"
"           LEFT JOIN pg_catalog.pg_index AS i ON i.indexrelid OPERATOR(pg_catalog.=) c.oid"
"          WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass"
"         UNION ALL"
"         SELECT c.oid, true, d.n"
"           FROM d JOIN pg_catalog.pg_class AS c ON c.relnamespace OPERATOR(pg_catalog.=) d.objid"
"          WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_namespace'::pg_catalog.regclass) AS t"
"  GROUP BY t.relid ORDER BY pg_catalog.min(t.n), t.relid";

/* The tables the statement touched (touched_sql), and for each whether via its schema. */
static void
touched_tables(List **relids, List **via_schema)
{
	bool		isnull;

	if (SPI_execute(touched_sql, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "pg_engage: could not list the tables of a DDL statement");
	*relids = NIL;
	*via_schema = NIL;
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];

		*relids = lappend_oid(*relids, DatumGetObjectId(SPI_getbinval(tup, SPI_tuptable->tupdesc, 1, &isnull)));
		*via_schema = lappend_int(*via_schema, DatumGetBool(SPI_getbinval(tup, SPI_tuptable->tupdesc, 2, &isnull)));
	}
}

/* Raises the error for a trigger function called other than as an event trigger. */
static void
check_event_trigger(FunctionCallInfo fcinfo, const char *name)
{
	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("%s can only be called as an event trigger", name),
				 errhint("pg_engage's event triggers call it after DDL statements.")));
}

/* Is relid a table whose changes are announced (not temporary, not a system table)? */
static bool
is_announced(Oid relid)
{
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Form_pg_class c;
	bool		announced;

	if (!HeapTupleIsValid(tup))
		return false;
	c = (Form_pg_class) GETSTRUCT(tup);
	announced = (c->relkind == RELKIND_RELATION || c->relkind == RELKIND_PARTITIONED_TABLE) &&
		c->relpersistence != RELPERSISTENCE_TEMP &&
		!IsCatalogNamespace(c->relnamespace) && !IsToastNamespace(c->relnamespace) &&
		strcmp(get_namespace_name(c->relnamespace), "information_schema") != 0;
	ReleaseSysCache(tup);
	return announced;
}

/* Fills t with what the catalog shows of relid now. */
static void
table_now(Oid relid, TableNow *t)
{
	Relation	rel = relation_open(relid, AccessShareLock);

	t->relid = relid;
	t->nspname = get_namespace_name(RelationGetNamespace(rel));
	t->relname = pstrdup(RelationGetRelationName(rel));
	t->root = rel->rd_rel->relispartition ? llast_oid(get_partition_ancestors(relid)) : relid;
	initStringInfo(&t->desc);
	t->fingerprint[0] = '\0';
	if (t->root == relid)
	{
		engage_describe_rel(&t->desc, rel);
		engage_schema_fingerprint(t->desc.data, t->desc.len, t->fingerprint);
	}
	relation_close(rel, AccessShareLock);
}

/* "schema.name" of a table as the catalog shows it now, or NULL. */
static char *
qualname_now(Oid relid)
{
	char	   *relname = get_rel_name(relid);

	return relname ? psprintf("%s.%s", get_namespace_name(get_rel_namespace(relid)), relname) : NULL;
}

/* Appends ,"field":"value" (value a JSON string) when value is not NULL. */
static void
append_member(StringInfo buf, const char *field, const char *value)
{
	if (value == NULL)
		return;
	appendStringInfo(buf, ",\"%s\":", field);
	escape_json(buf, value);
}

/* Appends the first line of the body: what the decoder routes on. */
static void
append_routing(StringInfo buf, const SchemaChange *c)
{
	appendStringInfo(buf, "{\"relid\":%u", c->now->relid);
	append_member(buf, "nspname", c->now->nspname);
	append_member(buf, "relname", c->now->relname);
	append_member(buf, "old_nspname", c->old_nspname);
	append_member(buf, "old_relname", c->old_relname);
	appendStringInfo(buf, ",\"gone\":%s}\n", c->gone ? "true" : "false");
}

/* Appends the second line of the body: the members of the schema record. */
static void
append_record(StringInfo buf, const SchemaChange *c)
{
	appendStringInfoString(buf, "{\"table\":");
	escape_json(buf, psprintf("%s.%s", c->now->nspname, c->now->relname));
	append_member(buf, "change", c->change);
	if (c->old_nspname)
		append_member(buf, "old_table", psprintf("%s.%s", c->old_nspname, c->old_relname));
	append_member(buf, "partition", c->partition);
	append_member(buf, "partition_of", c->partition_of);
	if (!c->gone)
	{
		appendStringInfoChar(buf, ',');
		appendBinaryStringInfo(buf, c->now->desc.data, c->now->desc.len);
		append_member(buf, "schema", c->now->fingerprint);
	}
	appendStringInfoChar(buf, '}');
}

/* Writes the schema message of c, signed for this transaction. */
static void
write_message(const SchemaChange *c)
{
	StringInfoData body;
	StringInfoData message;

	initStringInfo(&body);
	append_routing(&body, c);
	append_record(&body, c);
	initStringInfo(&message);
	engage_sign(&message, ENGAGE_MAC_SCHEMA, GetTopTransactionId(), body.data, body.len);
	appendBinaryStringInfo(&message, body.data, body.len);
	(void) LogLogicalMessage(ENGAGE_SCHEMA_PREFIX, message.data, message.len, true);
}

/* Saves t in the registry, unless the registry's row old says the same. */
static void
save(const TableNow *t, const EngageRelName *old)
{
	EngageRelName row = {t->relid, t->nspname, t->relname, t->root, (char *) t->fingerprint};

	if (old && old->root == t->root && strcmp(old->nspname, t->nspname) == 0 &&
		strcmp(old->relname, t->relname) == 0 && strcmp(old->fingerprint, t->fingerprint) == 0)
		return;
	relnames_put(&row);
}

/* Announces root (if it is still an announced root) with change about partition. */
static void
announce_root(Oid root, const char *change, char *partition)
{
	EngageRelName old;
	bool		known;
	TableNow	now;
	SchemaChange c = {change, &now};

	if (!is_announced(root))
		return;
	table_now(root, &now);
	if (now.root != root)
		return;
	known = relnames_get(root, &old);
	c.partition = partition;
	write_message(&c);
	save(&now, known ? &old : NULL);
}

/* Announces what changed of a root table since the registry's row old (or NULL). */
static void
sync_root(TableNow *now, const EngageRelName *old, bool via_schema)
{
	SchemaChange c = {NULL, now};
	bool		renamed = old && strcmp(old->relname, now->relname) != 0;
	bool		moved = old && strcmp(old->nspname, now->nspname) != 0;

	if (old == NULL)
		c.change = "create";
	else if (old->root != now->relid)
	{
		c.change = "detach";
		c.partition_of = qualname_now(old->root);
		announce_root(old->root, "detach", psprintf("%s.%s", now->nspname, now->relname));
	}
	else if (renamed || moved)
		c.change = renamed || via_schema ? "rename" : "set_schema";
	else if (strcmp(old->fingerprint, now->fingerprint) != 0)
		c.change = "alter";
	else
		return;
	if (old && (renamed || moved))
	{
		c.old_nspname = old->nspname;
		c.old_relname = old->relname;
	}
	write_message(&c);
}

/*
 * Announces a partition that was not one of its root before: attached (or
 * created as a partition).  A table that was a root itself leaves its own
 * topic: announced as gone, with its new root.
 */
static void
sync_partition(TableNow *now, const EngageRelName *old)
{
	char	   *name = psprintf("%s.%s", now->nspname, now->relname);

	if (old && old->root == now->root)
		return;					/* nothing the root's stream shows */
	if (old && old->root == now->relid)
	{
		SchemaChange c = {"attach", now};

		c.partition_of = qualname_now(now->root);
		c.gone = true;
		write_message(&c);
	}
	announce_root(now->root, "attach", name);
}

/* Compares one table with the registry, announces what changed, saves it. */
static void
sync_table(Oid relid, bool via_schema)
{
	EngageRelName old;
	bool		known;
	TableNow	now;

	if (!is_announced(relid))
		return;
	known = relnames_get(relid, &old);
	table_now(relid, &now);
	if (now.root == relid)
		sync_root(&now, known ? &old : NULL, via_schema);
	else
		sync_partition(&now, known ? &old : NULL);
	save(&now, known ? &old : NULL);
}

/*
 * Tables whose root may have changed with a statement on the partitioned
 * table relid: its partitions now, and those the registry knows under its
 * root (a detached one is no longer a partition).
 */
static List *
partition_candidates(Oid relid)
{
	return relnames_oids("SELECT i.inhrelid FROM pg_catalog.pg_inherits AS i"
						 " WHERE i.inhparent OPERATOR(pg_catalog.=) $1"
						 " UNION "
						 "SELECT r.relid FROM engage_internal.relation_names AS r"
						 " WHERE r.root OPERATOR(pg_catalog.=)"
						 "       pg_catalog.pg_partition_root($1::pg_catalog.regclass)::pg_catalog.oid"
						 "   AND r.relid OPERATOR(pg_catalog.<>) r.root"
						 " ORDER BY 1",
						 relid);
}

/* SQL: the ddl_command_end trigger function. */
Datum
engage_schema_ddl_end(PG_FUNCTION_ARGS)
{
	List	   *relids;
	List	   *via_schema;
	ListCell   *lc;
	ListCell   *lv;

	check_event_trigger(fcinfo, "engage_internal.schema_ddl_end()");
	if (!relnames_present())
		PG_RETURN_NULL();
	SPI_connect();
	touched_tables(&relids, &via_schema);
	forboth(lc, relids, lv, via_schema)
	{
		Oid			relid = lfirst_oid(lc);
		ListCell   *lp;

		sync_table(relid, lfirst_int(lv));
		if (get_rel_relkind(relid) != RELKIND_PARTITIONED_TABLE)
			continue;
		foreach(lp, partition_candidates(relid))
			sync_table(lfirst_oid(lp), false);
	}
	SPI_finish();
	PG_RETURN_NULL();
}

/* SQL: the sql_drop trigger function: dropped tables, dropped partitions. */
Datum
engage_schema_sql_drop(PG_FUNCTION_ARGS)
{
	List	   *dropped;
	ListCell   *lc;

	check_event_trigger(fcinfo, "engage_internal.schema_sql_drop()");
	if (!relnames_present())
		PG_RETURN_NULL();
	SPI_connect();
	dropped = relnames_oids("SELECT d.objid FROM pg_catalog.pg_event_trigger_dropped_objects() AS d"
							" WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass"
							"   AND d.objsubid OPERATOR(pg_catalog.=) 0",
							InvalidOid);
	foreach(lc, dropped)
	{
		Oid			relid = lfirst_oid(lc);
		EngageRelName old;
		TableNow	gone = {relid};
		SchemaChange c = {"drop", &gone};

		if (!relnames_get(relid, &old))
			continue;
		gone.nspname = old.nspname;
		gone.relname = old.relname;
		c.gone = true;
		if (old.root == relid)
			write_message(&c);
		else
			announce_root(old.root, "detach", psprintf("%s.%s", old.nspname, old.relname));
		relnames_delete(relid);
	}
	SPI_finish();
	PG_RETURN_NULL();
}

/* SQL: engage_internal.register_relations(): fills the registry; returns the tables. */
Datum
engage_register_relations(PG_FUNCTION_ARGS)
{
	List	   *relids;
	ListCell   *lc;
	int64		count = 0;

	SPI_connect();
	relids = relnames_oids("SELECT c.oid FROM pg_catalog.pg_class AS c"
						   " WHERE c.relkind OPERATOR(pg_catalog.=) ANY ('{r,p}'::pg_catalog.\"char\"[])"
						   " ORDER BY c.oid",
						   InvalidOid);
	foreach(lc, relids)
	{
		Oid			relid = lfirst_oid(lc);
		EngageRelName old;
		bool		known;
		TableNow	now;

		if (!is_announced(relid))
			continue;
		known = relnames_get(relid, &old);
		table_now(relid, &now);
		save(&now, known ? &old : NULL);
		count++;
	}
	SPI_finish();
	PG_RETURN_INT64(count);
}
