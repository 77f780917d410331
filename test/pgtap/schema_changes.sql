-- pgTAP: the schema-change triggers (extension/sql/60_schema_changes.sql):
-- they exist, fire always, run as the owner, cannot be called or skipped by
-- anyone else; the registry is seeded with every table and nobody else may
-- write it; a DDL statement of a role without rights writes a schema message.
-- Run with: pg_prove -d DB test/pgtap/*.sql  (DB has pgtap and pg_engage).
-- Everything happens in one transaction that is rolled back.

BEGIN;
SELECT plan(27);

-- The triggers: on ddl_command_end and sql_drop, ENABLE ALWAYS, the extension's.
SELECT is((SELECT evtevent || ' ' || evtenabled::text || ' ' || evtfoid::regproc::text
             FROM pg_event_trigger WHERE evtname = 'engage_schema_ddl_end'),
          'ddl_command_end A engage_internal.schema_ddl_end',
          'engage_schema_ddl_end fires at ddl_command_end, always (whatever session_replication_role)');
SELECT is((SELECT evtevent || ' ' || evtenabled::text || ' ' || evtfoid::regproc::text
             FROM pg_event_trigger WHERE evtname = 'engage_schema_sql_drop'),
          'sql_drop A engage_internal.schema_sql_drop',
          'engage_schema_sql_drop fires at sql_drop, always');
SELECT is((SELECT count(*) FROM pg_depend AS d JOIN pg_extension AS e ON e.oid = d.refobjid
            WHERE d.classid = 'pg_event_trigger'::regclass AND d.deptype = 'e' AND e.extname = 'pg_engage'),
          2::bigint, 'both belong to the extension (DROP EXTENSION drops them; pg_dump leaves them to CREATE EXTENSION)');
SELECT is((SELECT count(*) FROM pg_event_trigger AS t JOIN pg_roles AS r ON r.oid = t.evtowner
            WHERE t.evtname LIKE 'engage_schema_%' AND r.rolsuper),
          2::bigint, 'owned by a superuser: only a superuser can disable or drop them');

-- The functions: C, SECURITY DEFINER with search_path pinned, EXECUTE for nobody else.
SELECT is_definer('engage_internal', f, ARRAY[]::name[], f || ' runs as the owner (writes the registry for any role)')
  FROM unnest(ARRAY['schema_ddl_end', 'schema_sql_drop']) AS f;
SELECT isnt_definer('engage_internal', 'register_relations', ARRAY[]::name[],
                    'register_relations runs as its caller (the owner, at install and update)');
SELECT is((SELECT proconfig FROM pg_proc WHERE oid = format('engage_internal.%s()', f)::regprocedure),
          ARRAY['search_path=pg_catalog, pg_temp'], f || ' pins search_path')
  FROM unnest(ARRAY['schema_ddl_end', 'schema_sql_drop']) AS f;
SELECT function_privs_are('engage_internal', f, ARRAY[]::name[], r, ARRAY[]::text[],
                          format('%s cannot run %s directly', r, f))
  FROM unnest(ARRAY['schema_ddl_end', 'schema_sql_drop', 'register_relations']) AS f,
       unnest(ARRAY['public', 'engage_writer']) AS r;
SELECT throws_ok('SELECT engage_internal.schema_ddl_end()', '39P01',
                 'engage_internal.schema_ddl_end() can only be called as an event trigger',
                 'not even the owner calls a trigger function directly');

-- The registry: every table, the owner's alone.
SELECT table_privs_are('engage_internal', 'relation_names', r, ARRAY[]::text[],
                       format('%s has no privilege on relation_names', r))
  FROM unnest(ARRAY['public', 'engage_writer', 'engage_reader', 'engage_monitor']) AS r;
SELECT set_eq($$SELECT c.oid FROM pg_class AS c
                 WHERE c.relkind IN ('r', 'p') AND c.relpersistence <> 't'
                   AND c.relnamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace,
                                              'pg_toast'::regnamespace)$$,
              'SELECT relid FROM engage_internal.relation_names',
              'the registry knows every ordinary and partitioned table');
SELECT is((SELECT r.nspname || '.' || r.relname || ' ' || (r.root = r.relid) || ' ' || length(r.fingerprint)
             FROM engage_internal.relation_names AS r WHERE r.relid = 'engage.campaign_audience'::regclass),
          'engage.campaign_audience true 16', 'a root table: its name, itself as root, a fingerprint');
SELECT is((SELECT count(*) FROM pg_extension AS e, unnest(e.extconfig) AS c
            WHERE e.extname = 'pg_engage' AND c = 'engage_internal.relation_names'::regclass),
          0::bigint, 'the registry is not dumped (its OIDs mean nothing elsewhere)');

-- A role with no rights, on its own table: the message is written all the same.
CREATE ROLE pgtap_ddl_user;
CREATE SCHEMA pgtap_ddl AUTHORIZATION pgtap_ddl_user;
SET LOCAL ROLE pgtap_ddl_user;
CREATE TABLE pgtap_ddl.t (id int PRIMARY KEY);
ALTER TABLE pgtap_ddl.t RENAME TO t2;
RESET ROLE;
SELECT is((SELECT r.nspname || '.' || r.relname FROM engage_internal.relation_names AS r
            WHERE r.relid = 'pgtap_ddl.t2'::regclass),
          'pgtap_ddl.t2', 'its table is registered under its new name, though it may not write the registry');
SELECT throws_ok($$SET LOCAL ROLE pgtap_ddl_user; ALTER EVENT TRIGGER engage_schema_ddl_end DISABLE$$, '42501',
                 NULL, 'it cannot disable the trigger');
RESET ROLE;
SELECT throws_ok($$SET LOCAL ROLE pgtap_ddl_user; SET session_replication_role = replica$$, '42501',
                 NULL, 'nor turn triggers off for its session');
RESET ROLE;
DROP TABLE pgtap_ddl.t2;
SELECT is((SELECT count(*) FROM engage_internal.relation_names WHERE nspname = 'pgtap_ddl'), 0::bigint,
          'a dropped table leaves the registry');

SELECT * FROM finish();
ROLLBACK;
