-- pg_engage 0.3.0 -> 0.4.0: a complete stream (issue 9): snapshots, schema
-- changes in stream order.
\echo Use "ALTER EXTENSION pg_engage UPDATE TO '0.4.0'" to load this file. \quit

-- Section: snapshots (issue 9, part 1).
-- As in extension/sql/55_snapshots.sql, with the privileges of 80_privileges.sql.
-- Snapshots: the rows that already exist, shipped by the shipper as records
-- with op "read" while it streams (README.md, "Snapshots").  A snapshot is
-- requested here; the shipper reads the table in chunks by key, each in a
-- short transaction of its own, and places each chunk in the stream with a
-- watermark (a logical message only it can write), dropping the chunk's rows
-- that the stream changed meanwhile.  Its progress is kept in this table, so
-- that a restart resumes at the chunk where it stopped.

CREATE TABLE engage_internal.snapshots (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    relid         oid NOT NULL,
    table_name    text NOT NULL,
    reason        text NOT NULL CHECK (reason IN ('initial', 'requested', 'slot loss')),
    requested_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    requested_by  name NOT NULL DEFAULT SESSION_USER,
    state         text NOT NULL DEFAULT 'pending'
                  CHECK (state IN ('pending', 'running', 'done', 'failed', 'cancelled')),
    -- The key of the last row shipped and acknowledged by Kafka (as text, in
    -- key column order); NULL: from the start.
    last_key      text[],
    rows_read     bigint NOT NULL DEFAULT 0,
    chunks        bigint NOT NULL DEFAULT 0,
    rows_estimate bigint,
    started_at    timestamptz,
    finished_at   timestamptz,
    error         text
);

CREATE INDEX snapshots_open ON engage_internal.snapshots (id)
    WHERE state IN ('pending', 'running');

COMMENT ON TABLE engage_internal.snapshots IS
'Snapshots requested from the pg_engage shipper and their progress (see the view engage.snapshots)';

-- Is schema.name selected by engage.tables (the shipper's own rule)?
CREATE FUNCTION engage_internal.table_is_captured(schema_name text, table_name text)
RETURNS boolean
LANGUAGE c STABLE STRICT
AS 'MODULE_PATHNAME', 'engage_table_is_captured';

COMMENT ON FUNCTION engage_internal.table_is_captured(text, text) IS
'Is schema.table selected by engage.tables?';

-- The tables the shipper captures: permanent tables and partitioned tables
-- (not their partitions, which are captured under their root) selected by
-- engage.tables.
CREATE FUNCTION engage_internal.captured_tables()
RETURNS SETOF regclass
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.oid::regclass
    FROM pg_catalog.pg_class AS c
    JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND c.relpersistence = 'p'
      AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname !~ '^pg_toast'
      AND engage_internal.table_is_captured(n.nspname, c.relname)
    ORDER BY c.oid
$$;

COMMENT ON FUNCTION engage_internal.captured_tables() IS
'The tables the pg_engage shipper captures (engage.tables): permanent and partitioned tables, not partitions';

-- The columns a snapshot orders a table by: those of the key its records
-- carry as "pk" (the replica identity index, else the primary key); NULL
-- when it has none.
CREATE FUNCTION engage_internal.snapshot_key(rel regclass)
RETURNS name[]
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.array_agg(a.attname ORDER BY k.ord)
    FROM (SELECT i.indkey, i.indnkeyatts
          FROM pg_catalog.pg_index AS i
          JOIN pg_catalog.pg_class AS c ON c.oid = i.indrelid
          WHERE i.indrelid = rel
            AND ((c.relreplident = 'i' AND i.indisreplident) OR i.indisprimary)
          ORDER BY (c.relreplident = 'i' AND i.indisreplident) DESC
          LIMIT 1) AS x
    CROSS JOIN LATERAL pg_catalog.unnest(x.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
    JOIN pg_catalog.pg_attribute AS a ON a.attrelid = rel AND a.attnum = k.attnum
    WHERE k.ord <= x.indnkeyatts
$$;

COMMENT ON FUNCTION engage_internal.snapshot_key(regclass) IS
'The key columns a snapshot reads a table by (those of its records'' pk); NULL when it has none';

-- Requests a snapshot of each table of tables (NULL: every captured table)
-- for reason; a table with an open (pending or running) snapshot keeps it.
-- A table that is not captured is refused.  A table without a key is
-- refused when strict, else recorded as a failed snapshot (with a WARNING):
-- never silently left out.  Returns the open snapshots of those tables.
-- Called by engage.snapshot() (SECURITY DEFINER) and by the shipper.
-- (Column names are qualified below: the output columns are variables.)
CREATE FUNCTION engage_internal.request_snapshots(reason text, tables regclass[], strict boolean)
RETURNS TABLE (snapshot_id bigint, table_name text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_rel regclass;
    v_id bigint;
    v_estimate bigint;
BEGIN
    IF pg_catalog.current_database() OPERATOR(pg_catalog.<>) pg_catalog.current_setting('engage.database') THEN
        RAISE EXCEPTION 'the pg_engage shipper ships database "%", not "%"',
            pg_catalog.current_setting('engage.database'), pg_catalog.current_database()
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Request snapshots in the database named by engage.database.';
    END IF;
    -- One request at a time: two callers never open two snapshots of a table.
    LOCK TABLE engage_internal.snapshots IN SHARE ROW EXCLUSIVE MODE;
    FOR v_rel IN
        SELECT t FROM pg_catalog.unnest(COALESCE(tables,
            ARRAY(SELECT engage_internal.captured_tables()))) AS t
    LOOP
        IF NOT EXISTS (SELECT FROM engage_internal.captured_tables() AS c WHERE c OPERATOR(pg_catalog.=) v_rel) THEN
            RAISE EXCEPTION 'table % is not captured by the pg_engage shipper', v_rel
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = pg_catalog.format('engage.tables is %L; add the table to it and reload the configuration first.',
                                               pg_catalog.current_setting('engage.tables'));
        END IF;
        SELECT s.id INTO v_id FROM engage_internal.snapshots AS s
        WHERE s.relid OPERATOR(pg_catalog.=) v_rel AND s.state IN ('pending', 'running');
        IF FOUND THEN
            snapshot_id := v_id;
            table_name := v_rel::text;
            RETURN NEXT;
            CONTINUE;
        END IF;
        IF engage_internal.snapshot_key(v_rel) IS NULL THEN
            IF strict THEN
                RAISE EXCEPTION 'table % has no primary key or replica identity index', v_rel
                    USING ERRCODE = 'object_not_in_prerequisite_state',
                          HINT = 'A snapshot reads a table in chunks by key and needs the key to match the rows with the changes made meanwhile; add a primary key.';
            END IF;
            RAISE WARNING 'pg_engage: no snapshot of table %: it has no primary key or replica identity index', v_rel
                USING HINT = 'Its rows that existed before are not shipped; add a primary key and call engage.snapshot().';
            INSERT INTO engage_internal.snapshots (relid, table_name, reason, state, finished_at, error)
            VALUES (v_rel, v_rel::text, reason, 'failed', pg_catalog.now(),
                    'the table has no primary key or replica identity index');
            CONTINUE;
        END IF;
        -- The planner's estimate (-1: never analyzed), over the partitions of a partitioned table.
        SELECT pg_catalog.sum(c.reltuples) FILTER (WHERE c.reltuples >= 0)::bigint INTO v_estimate
        FROM pg_catalog.pg_class AS c
        WHERE c.oid = v_rel
           OR c.oid IN (SELECT p.relid FROM pg_catalog.pg_partition_tree(v_rel) AS p WHERE p.isleaf);
        INSERT INTO engage_internal.snapshots AS s (relid, table_name, reason, rows_estimate)
        VALUES (v_rel, v_rel::text, reason, v_estimate)
        RETURNING s.id INTO v_id;
        snapshot_id := v_id;
        table_name := v_rel::text;
        RETURN NEXT;
    END LOOP;
END
$$;

COMMENT ON FUNCTION engage_internal.request_snapshots(text, regclass[], boolean) IS
'Requests snapshots of tables (NULL: every captured table) from the pg_engage shipper; the open one of a table is kept';

-- Asks the shipper for a snapshot of tables (by default every captured
-- table), shipped as "read" records while it streams.  Returns one row per
-- table: the snapshot, new or already open.  Follow it in engage.snapshots.
CREATE FUNCTION engage.snapshot(tables regclass[] DEFAULT NULL)
RETURNS TABLE (snapshot_id bigint, table_name text)
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT r.snapshot_id, r.table_name
    FROM engage_internal.request_snapshots('requested', tables, true) AS r
$$;

COMMENT ON FUNCTION engage.snapshot(regclass[]) IS
'Requests a snapshot of the given tables (default: every captured table) from the pg_engage shipper';

-- Cancels an open snapshot; the shipper stops it before its next chunk.
-- Returns whether one was open.
CREATE FUNCTION engage.cancel_snapshot(snapshot_id bigint)
RETURNS boolean
LANGUAGE sql VOLATILE STRICT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    WITH c AS (
        UPDATE engage_internal.snapshots AS s
        SET state = 'cancelled', finished_at = pg_catalog.now()
        WHERE s.id OPERATOR(pg_catalog.=) cancel_snapshot.snapshot_id AND s.state IN ('pending', 'running')
        RETURNING 1)
    SELECT EXISTS (SELECT FROM c)
$$;

COMMENT ON FUNCTION engage.cancel_snapshot(bigint) IS
'Cancels an open snapshot of the pg_engage shipper';

-- Snapshots and their progress: rows shipped (acknowledged by Kafka), the
-- planner's estimate of the table's rows when requested, and from them a
-- percentage and an estimated time of arrival.
CREATE VIEW engage.snapshots AS
SELECT s.id, s.table_name, s.reason, s.state, s.rows_read, s.rows_estimate,
       CASE WHEN s.state = 'done' THEN 100::numeric
            WHEN s.rows_estimate > 0
            THEN LEAST(99.9, pg_catalog.round(100.0 * s.rows_read / s.rows_estimate, 1))
       END AS percent,
       s.chunks, s.requested_at, s.requested_by, s.started_at,
       CASE WHEN s.state = 'running' AND s.rows_read > 0 AND s.rows_estimate > s.rows_read
            THEN pg_catalog.now() + (pg_catalog.now() - s.started_at)
                 * ((s.rows_estimate - s.rows_read)::float8 / s.rows_read)
       END AS eta,
       s.finished_at, s.error
FROM engage_internal.snapshots AS s;

COMMENT ON VIEW engage.snapshots IS 'Snapshots of the pg_engage shipper and their progress';

REVOKE ALL ON engage_internal.snapshots FROM PUBLIC;
REVOKE ALL ON SEQUENCE engage_internal.snapshots_id_seq FROM PUBLIC;
REVOKE ALL ON engage.snapshots FROM PUBLIC;
REVOKE ALL ON FUNCTION engage_internal.table_is_captured(text, text),
                       engage_internal.captured_tables(),
                       engage_internal.snapshot_key(regclass),
                       engage_internal.request_snapshots(text, regclass[], boolean),
                       engage.snapshot(regclass[]),
                       engage.cancel_snapshot(bigint)
    FROM PUBLIC;
GRANT SELECT ON engage.snapshots TO engage_monitor;

-- Section: schema changes (issue 9, part 3).
-- As extension/sql/60_schema_changes.sql; the tables that exist are
-- registered at the end, so that their first change is told apart.

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

-- As 80_privileges.sql does for a fresh install: nothing for PUBLIC.
REVOKE ALL ON TABLE engage_internal.relation_names FROM PUBLIC;
REVOKE ALL ON FUNCTION engage_internal.register_relations(),
                       engage_internal.schema_ddl_end(),
                       engage_internal.schema_sql_drop() FROM PUBLIC;

SELECT engage_internal.register_relations() >= 0 AS registered;
