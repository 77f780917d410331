-- Schema changes in stream order (README, "Schema records"): every DDL
-- statement that changes a table's name, columns, types, nullability, key or
-- partitions gives a schema record at its place in the stream, in its
-- transaction, before any row written under the new shape; every row record
-- carries the fingerprint ("schema") of the shape it was written under,
-- equal to that of the table's latest schema record.

SELECT 'init' FROM pg_create_logical_replication_slot('regress_ddl', 'engage_decoder');
\set SHOW_CONTEXT never

-- The stream, one line per record: schema records with their change and
-- columns, rows with their values, and whether a row's fingerprint is the one
-- its table's latest schema record announced.
CREATE TEMP TABLE ddl_announced (tname text PRIMARY KEY, fp text NOT NULL);
CREATE FUNCTION pg_temp.stream(slot name, VARIADIC options text[] DEFAULT '{}')
RETURNS TABLE (id text, op text, tbl text, detail text, fingerprint text)
LANGUAGE plpgsql AS $$
DECLARE
    r jsonb;
BEGIN
    FOR r IN SELECT * FROM engage_test.get(slot, VARIADIC options) LOOP
        id := r->>'id';
        op := r->>'op';
        tbl := r->>'table';
        fingerprint := NULL;
        IF op = 'schema' THEN
            detail := concat_ws(' ', r->>'change',
                'old_table=' || (r->>'old_table'), 'partition=' || (r->>'partition'),
                'partition_of=' || (r->>'partition_of'), 'captured=' || (r->>'captured'),
                (SELECT '(' || string_agg((c->>'name') || ' ' || (c->>'type')
                                          || CASE WHEN (c->>'nullable')::boolean THEN '' ELSE ' not null' END,
                                          ', ') || ')'
                   FROM jsonb_array_elements(r->'columns') AS c),
                'key=' || (r->'key')::text);
            IF r ? 'schema' THEN
                INSERT INTO ddl_announced VALUES (tbl, r->>'schema')
                ON CONFLICT (tname) DO UPDATE SET fp = excluded.fp;
                fingerprint := 'announced';
            END IF;
        ELSIF op IN ('insert', 'update', 'delete', 'truncate') THEN
            detail := coalesce((r->'new')::text, (r->'old')::text, '');
            fingerprint := CASE WHEN r->>'schema' = (SELECT a.fp FROM ddl_announced AS a WHERE a.tname = tbl)
                                THEN 'as announced' ELSE 'NOT AS ANNOUNCED' END;
        ELSE
            detail := coalesce(r->>'reason', '');
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;

-- CREATE TABLE, then each ALTER TABLE between writes.
CREATE TABLE engage.ddl (id int PRIMARY KEY, a text);
INSERT INTO engage.ddl VALUES (1, 'one');
ALTER TABLE engage.ddl ADD COLUMN b int;
INSERT INTO engage.ddl VALUES (2, 'two', 2);
ALTER TABLE engage.ddl RENAME COLUMN a TO a2;
UPDATE engage.ddl SET a2 = 'zwei' WHERE id = 2;
ALTER TABLE engage.ddl ALTER COLUMN b TYPE bigint;
INSERT INTO engage.ddl VALUES (3, 'three', 3000000000);
UPDATE engage.ddl SET b = 1 WHERE b IS NULL;
ALTER TABLE engage.ddl ALTER COLUMN b SET NOT NULL;
INSERT INTO engage.ddl VALUES (4, 'four', 4);
ALTER TABLE engage.ddl ALTER COLUMN b DROP NOT NULL;
ALTER TABLE engage.ddl ALTER COLUMN a2 TYPE varchar(20);
ALTER TABLE engage.ddl DROP COLUMN a2;
INSERT INTO engage.ddl VALUES (5, NULL);
DELETE FROM engage.ddl WHERE id = 1;
SELECT * FROM pg_temp.stream('regress_ddl');

-- Statements that change nothing a record shows write nothing.
GRANT SELECT ON engage.ddl TO PUBLIC;
REVOKE SELECT ON engage.ddl FROM PUBLIC;
COMMENT ON TABLE engage.ddl IS 'a comment';
ALTER TABLE engage.ddl ADD CONSTRAINT ddl_b_check CHECK (b > 0);
CREATE INDEX ddl_b_idx ON engage.ddl (b);
ALTER TABLE engage.ddl ALTER COLUMN b SET DEFAULT 7;
SELECT count(*) AS records FROM pg_logical_slot_peek_changes('regress_ddl', NULL, NULL);

-- Key changes: a keyless table gets a primary key, then another replica
-- identity index.
CREATE TABLE engage.ddl_keys (id int NOT NULL, code text NOT NULL);
INSERT INTO engage.ddl_keys VALUES (1, 'a');
ALTER TABLE engage.ddl_keys ADD PRIMARY KEY (id);
INSERT INTO engage.ddl_keys VALUES (2, 'b');
CREATE UNIQUE INDEX ddl_keys_code ON engage.ddl_keys (code);
ALTER TABLE engage.ddl_keys REPLICA IDENTITY USING INDEX ddl_keys_code;
UPDATE engage.ddl_keys SET id = 20 WHERE code = 'b';
ALTER TABLE engage.ddl_keys REPLICA IDENTITY DEFAULT;
DELETE FROM engage.ddl_keys WHERE id = 1;
SELECT * FROM pg_temp.stream('regress_ddl');

-- DDL and rows in one transaction: each schema record between the rows of
-- the old and of the new shape; a savepoint rolled back takes its record.
BEGIN;
INSERT INTO engage.ddl VALUES (10, 10);
ALTER TABLE engage.ddl ADD COLUMN c text;
INSERT INTO engage.ddl VALUES (11, 11, 'eleven');
SAVEPOINT s;
ALTER TABLE engage.ddl ADD COLUMN rolled_back int;
ROLLBACK TO SAVEPOINT s;
ALTER TABLE engage.ddl RENAME COLUMN c TO c2;
UPDATE engage.ddl SET c2 = 'elf' WHERE id = 11;
COMMIT;
-- ... and a transaction rolled back has none.
BEGIN;
ALTER TABLE engage.ddl ADD COLUMN never int;
INSERT INTO engage.ddl VALUES (12, 12);
ROLLBACK;
SELECT * FROM pg_temp.stream('regress_ddl');

-- RENAME: the record goes to the old name's topic too (the same record, the
-- same id), so that its consumers learn where the table went.
ALTER TABLE engage.ddl RENAME TO ddl_renamed;
INSERT INTO engage.ddl_renamed VALUES (20, 20);
SELECT * FROM pg_temp.stream('regress_ddl');

-- SET SCHEMA out of the captured set: announced on the old topic, with
-- "captured": false; its rows are no longer in the stream.
CREATE SCHEMA regress_ddl_out;
ALTER TABLE engage.ddl_renamed SET SCHEMA regress_ddl_out;
INSERT INTO regress_ddl_out.ddl_renamed VALUES (21, 21);
-- ... and back into it: announced on the new topic only.
ALTER TABLE regress_ddl_out.ddl_renamed SET SCHEMA engage;
INSERT INTO engage.ddl_renamed VALUES (22, 22);
-- A rename of a table outside the captured set into it, and a schema renamed.
CREATE TABLE regress_ddl_out.outside (id int PRIMARY KEY);
INSERT INTO regress_ddl_out.outside VALUES (1);
ALTER TABLE regress_ddl_out.outside RENAME TO inside;
ALTER TABLE regress_ddl_out.inside SET SCHEMA engage;
INSERT INTO engage.inside VALUES (2);
SELECT * FROM pg_temp.stream('regress_ddl');
-- With the schema captured too, a schema rename renames its tables.
CREATE TABLE regress_ddl_out.moved (id int PRIMARY KEY);
ALTER SCHEMA regress_ddl_out RENAME TO regress_ddl_out2;
INSERT INTO regress_ddl_out2.moved VALUES (1);
SELECT * FROM pg_temp.stream('regress_ddl', 'tables', 'engage.*,regress_ddl_out.*,regress_ddl_out2.*');

-- The records of a rename as written, and the topics of both.
ALTER TABLE engage.inside RENAME TO inside2;
SELECT engage_test.raw(data) FROM pg_logical_slot_peek_changes('regress_ddl', NULL, NULL);
SELECT count(DISTINCT data) AS distinct_records, count(*) AS records
  FROM pg_logical_slot_get_changes('regress_ddl', NULL, NULL);

-- CREATE TABLE AS and SELECT INTO: the statement writes its rows before it
-- ends, so they come before the create record, in the same transaction (the
-- one exception: the table did not exist before it).
CREATE TABLE engage.ddl_ctas AS SELECT g AS id, 'row ' || g AS note FROM generate_series(1, 2) g;
SELECT 3 AS id INTO engage.ddl_into;
INSERT INTO engage.ddl_ctas VALUES (3, 'three');
SELECT * FROM pg_temp.stream('regress_ddl');

-- Partitions: the root is announced when one is created, attached or
-- detached (it is the table of their rows); a detached one becomes a table of
-- its own, announced too; a table attached leaves its own topic.
CREATE TABLE engage.ddl_parted (id int, region text, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
CREATE TABLE engage.ddl_part_eu PARTITION OF engage.ddl_parted FOR VALUES IN ('eu');
INSERT INTO engage.ddl_parted VALUES (1, 'eu');
CREATE TABLE engage.ddl_part_us (id int NOT NULL, region text NOT NULL, PRIMARY KEY (id, region));
INSERT INTO engage.ddl_part_us VALUES (2, 'us');
ALTER TABLE engage.ddl_parted ATTACH PARTITION engage.ddl_part_us FOR VALUES IN ('us');
INSERT INTO engage.ddl_parted VALUES (3, 'us');
ALTER TABLE engage.ddl_parted ADD COLUMN note text;
INSERT INTO engage.ddl_parted VALUES (4, 'eu', 'noted');
ALTER TABLE engage.ddl_parted DETACH PARTITION engage.ddl_part_eu;
INSERT INTO engage.ddl_part_eu VALUES (5, 'eu', 'alone');
DROP TABLE engage.ddl_part_us;
SELECT * FROM pg_temp.stream('regress_ddl');

-- DROP TABLE: a record without columns, "captured": false; one per table,
-- DROP SCHEMA ... CASCADE included.
CREATE TABLE regress_ddl_out2.dropped_with_schema (id int);
DROP TABLE engage.ddl_parted, engage.ddl_part_eu;
DROP SCHEMA regress_ddl_out2 CASCADE;
SELECT * FROM pg_temp.stream('regress_ddl', 'tables', 'engage.*,regress_ddl_out2.*');

-- Not announced: temporary tables.
CREATE TEMP TABLE ddl_temp (id int);
ALTER TABLE ddl_temp ADD COLUMN b int;
DROP TABLE ddl_temp;
SELECT count(*) AS records FROM pg_logical_slot_get_changes('regress_ddl', NULL, NULL, 'tables', '*')
 WHERE data::jsonb->>'op' = 'schema';

-- The triggers fire whatever session_replication_role says (ENABLE ALWAYS).
SELECT evtname, evtevent, evtenabled FROM pg_event_trigger WHERE evtname LIKE 'engage%' ORDER BY evtname;
SET session_replication_role = replica;
ALTER TABLE engage.ddl_renamed ADD COLUMN as_replica int;
RESET session_replication_role;
SELECT op, tbl, detail FROM pg_temp.stream('regress_ddl');

-- A role with no rights, doing DDL on its own tables, cannot skip the record
-- (the triggers are not its to disable), cannot write the registry, cannot
-- call the trigger functions, and cannot forge a schema record: its message
-- with the prefix is quarantined, also when it copies a genuine one's bytes.
CREATE ROLE regress_ddl_user;
CREATE SCHEMA regress_ddl_own AUTHORIZATION regress_ddl_user;
GRANT USAGE ON SCHEMA engage_test TO regress_ddl_user;   -- error_of() only
SELECT 'init' FROM pg_create_logical_replication_slot('regress_ddl_raw', 'test_decoding');
SET ROLE regress_ddl_user;
CREATE TABLE regress_ddl_own.mine (id int PRIMARY KEY);
INSERT INTO regress_ddl_own.mine VALUES (1);
ALTER TABLE regress_ddl_own.mine ADD COLUMN extra text;
INSERT INTO regress_ddl_own.mine VALUES (2, 'x');
SELECT engage_test.error_of('ALTER EVENT TRIGGER engage_schema_ddl_end DISABLE') AS disable;
SELECT engage_test.error_of('DROP EVENT TRIGGER engage_schema_sql_drop') AS drop_trigger;
SELECT engage_test.error_of('SET session_replication_role = replica') AS replica_role;
SELECT engage_test.error_of('DELETE FROM engage_internal.relation_names') AS write_registry;
SELECT engage_test.error_of('SELECT engage_internal.schema_ddl_end()') AS call_trigger_function;
SELECT engage_test.error_of('SELECT engage_internal.register_relations()') AS call_register;
SELECT pg_logical_emit_message(true, 'engage.schema',
    repeat('0', 64) || E'{"relid":1,"nspname":"engage","relname":"ddl_renamed","gone":true}\n'
    || '{"table":"engage.ddl_renamed","change":"drop"}') IS NOT NULL AS forged;
SELECT pg_logical_emit_message(false, 'engage.schema', 'not even close') IS NOT NULL AS forged_untied;
RESET ROLE;
SELECT substring(data FROM 'content:(.*)$') AS genuine_bytes
  FROM pg_logical_slot_get_changes('regress_ddl_raw', NULL, NULL)
 WHERE data LIKE 'message: transactional: 1 prefix: engage.schema%' LIMIT 1 \gset
SELECT pg_drop_replication_slot('regress_ddl_raw');
SET ROLE regress_ddl_user;
SELECT pg_logical_emit_message(true, 'engage.schema', :'genuine_bytes') IS NOT NULL AS replayed;
RESET ROLE;
SELECT op, tbl, detail, fingerprint
  FROM pg_temp.stream('regress_ddl', 'tables', 'engage.*,regress_ddl_own.*');
SET client_min_messages = warning;
DROP SCHEMA regress_ddl_own CASCADE;
RESET client_min_messages;
REVOKE USAGE ON SCHEMA engage_test FROM regress_ddl_user;
DROP ROLE regress_ddl_user;
DROP TABLE engage.ddl_keys, engage.ddl_renamed, engage.inside2, engage.ddl_ctas, engage.ddl_into;
SELECT op, tbl, detail FROM pg_temp.stream('regress_ddl', 'tables', 'engage.*,regress_ddl_own.*');
SELECT pg_drop_replication_slot('regress_ddl');
-- The registry forgot what was dropped.
SELECT count(*) AS left_behind FROM engage_internal.relation_names
 WHERE nspname LIKE 'regress_ddl%' OR relname LIKE 'ddl%' OR relname LIKE 'inside%';
