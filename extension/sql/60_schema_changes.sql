-- Schema changes in stream order (README, "Schema records"): after every DDL
-- statement, a schema message for each table whose name, columns, types,
-- nullability, key or partitions it changed, written in the statement's
-- transaction (extension/schema.c).  After the tables of 10_schema.sql and
-- engage_internal (30_campaign.sql) exist; before 80_privileges.sql, which
-- revokes PUBLIC's EXECUTE on these functions; not dumped (90_dump.sql): the
-- registry holds OIDs, and a restore's CREATE TABLE statements fill it again.

-- What the triggers last saw of every table (temporary and system tables
-- aside): a rename knows the previous name, a statement that changed nothing
-- of the description writes nothing.  Written only by the trigger functions,
-- which run as the owner.
CREATE TABLE engage_internal.relation_names (
    relid       oid PRIMARY KEY,
    nspname     text NOT NULL,
    relname     text NOT NULL,
    -- The topmost partitioned table above a partition, or relid itself.
    root        oid NOT NULL,
    -- The fingerprint of a root table's description; '' for a partition.
    fingerprint text NOT NULL
);

COMMENT ON TABLE engage_internal.relation_names IS
'What the schema-change triggers last saw of each table: name, root, fingerprint (OIDs of this cluster: not dumped)';

-- Fills relation_names with every table there is (at CREATE EXTENSION and
-- at the update to 0.4.0); returns how many.
CREATE FUNCTION engage_internal.register_relations()
RETURNS bigint
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'engage_register_relations';

COMMENT ON FUNCTION engage_internal.register_relations() IS
'Fills engage_internal.relation_names with every ordinary and partitioned table (install and update)';

-- The trigger functions.  SECURITY DEFINER: they write relation_names for
-- whoever ran the DDL, who needs no right on it; search_path pinned (their
-- queries are qualified anyway).
CREATE FUNCTION engage_internal.schema_ddl_end()
RETURNS event_trigger
LANGUAGE c SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'engage_schema_ddl_end';

COMMENT ON FUNCTION engage_internal.schema_ddl_end() IS
'Event trigger (ddl_command_end): a schema message for each table the statement created, renamed, moved or changed';

CREATE FUNCTION engage_internal.schema_sql_drop()
RETURNS event_trigger
LANGUAGE c SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'engage_schema_sql_drop';

COMMENT ON FUNCTION engage_internal.schema_sql_drop() IS
'Event trigger (sql_drop): a schema message for each table the statement dropped';

-- ENABLE ALWAYS: they fire whatever session_replication_role says (a role
-- that may set it to replica must not skip them); only a superuser can
-- disable or drop an event trigger.
CREATE EVENT TRIGGER engage_schema_ddl_end ON ddl_command_end
    EXECUTE FUNCTION engage_internal.schema_ddl_end();
ALTER EVENT TRIGGER engage_schema_ddl_end ENABLE ALWAYS;

CREATE EVENT TRIGGER engage_schema_sql_drop ON sql_drop
    EXECUTE FUNCTION engage_internal.schema_sql_drop();
ALTER EVENT TRIGGER engage_schema_sql_drop ENABLE ALWAYS;

SELECT engage_internal.register_relations() >= 0 AS registered;
