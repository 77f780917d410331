-- The role model (extension/sql/80_privileges.sql) under attack.  As a role
-- with no grants and as each shipped role, try to read what the role may not
-- read, to forge rates or events, to stop the rollups, and to hijack the
-- functions that run as the owner; every attempt must fail, and what each role
-- is there for must work.  Then the declared model: the exact privileges of
-- every object, the security attributes of every function.
--
-- The attempts run in a transaction that is rolled back; one check holds an
-- advisory lock from a second session (dblink, as concurrency.sql), which
-- runs as an existing role only, since the roles created here are not
-- committed.
SET client_min_messages = warning;
SELECT NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'dblink') AS create_dblink \gset
CREATE EXTENSION IF NOT EXISTS dblink;

BEGIN;
SELECT plan(245);

SET LOCAL lock_timeout = '10s';

-- A second session, as an existing role (the roles created here are not
-- committed), holds the advisory lock the rollups used to take, as any role
-- can, from before the first rollup here; lock waits time out, so a rollup
-- it stops fails this suite instead of hanging it.  Its backend is a
-- superuser's session, as the shipper's is.
CREATE FUNCTION pg_temp.connstr()
RETURNS text
LANGUAGE sql AS $$
    SELECT format('dbname=%s user=%s port=%s host=%s application_name=engage_pgtap_privileges',
                  current_database(), current_user, current_setting('port'),
                  coalesce(nullif(split_part(current_setting('unix_socket_directories'), ',', 1), ''),
                           'localhost'))
$$;
SELECT dblink_connect('squatter', pg_temp.connstr()) AS connected \gset
SELECT dblink_exec('squatter', 'SET ROLE engage_monitor') AS set_role \gset
SELECT pid AS squatter_pid FROM dblink('squatter', 'SELECT pg_backend_pid()') AS t(pid integer) \gset
SELECT is((SELECT locked FROM dblink('squatter',
              format('SELECT pg_try_advisory_lock(%s)', 'engage_internal.rollup_journal'::regclass::oid))
              AS t(locked boolean)), true,
          'another session takes the advisory lock a rollup used to take');

-- Fixtures (ids 97xxxx): campaign 970001 with four members, engagement and
-- a rollup; campaign 970002, not built yet.
INSERT INTO engage.users (user_id, username) VALUES (970001, 'pgtap-privileges');
INSERT INTO engage.templates (template_id, name, type) VALUES (970001, 'pgtap-privileges', 'html');
INSERT INTO engage.audiences (audience_id, name) VALUES (970001, 'pgtap-privileges');
INSERT INTO engage.members (member_id, email)
SELECT 970100 + g, 'p' || g || '@privileges.example.com' FROM generate_series(1, 6) AS g;
INSERT INTO engage.audience_members (audience_id, member_id, email)
SELECT 970001, m.member_id, m.email FROM engage.members AS m WHERE m.member_id BETWEEN 970101 AND 970106;
INSERT INTO engage.campaigns (campaign_id, template_id, user_id, audience_id, name) VALUES
    (970001, 970001, 970001, 970001, 'attacked'), (970002, 970001, 970001, 970001, 'built by the writer');
SELECT * FROM engage.build_campaign_audience(970001, 4);
SELECT engage.record_engagement(970001, 970101, 'click', '2026-05-01 10:15+00');
SELECT engage.record_engagement(970001, 970102, 'open', '2026-05-01 11:40+00');
SELECT engage.rollup_rates();
\ir lib/hourly.sql

CREATE ROLE pgtap_nobody;                              -- no grant at all
CREATE ROLE pgtap_app LOGIN IN ROLE engage_writer;     -- a backend's login role

-- Runs sql as role who and answers 'ok' or the SQLSTATE of its error.  The
-- statement runs in a subtransaction: what fails leaves nothing behind.
CREATE FUNCTION pg_temp.try_as(who name, sql text)
RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('SET ROLE %I', who);
    BEGIN
        EXECUTE sql;
    EXCEPTION WHEN OTHERS THEN
        RESET ROLE;
        RETURN SQLSTATE;
    END;
    RESET ROLE;
    RETURN 'ok';
END
$$;

-- The attempts: what each role gets ('ok' or the SQLSTATE expected).  42501 is
-- insufficient_privilege.  The shipper's status answers where pg_engage is
-- preloaded (scripts/test.sh does), and says it is not loaded (55000) where
-- it is not: either way, the permission check has passed.
SELECT CASE WHEN current_setting('shared_preload_libraries') ~ '\mpg_engage\M' THEN 'ok' ELSE '55000' END AS status \gset
CREATE TEMP TABLE attempt (
    ord serial, what text, sql text, nobody text, reader text, writer text, monitor text);
INSERT INTO attempt (what, sql, nobody, reader, writer, monitor) VALUES
    -- Reading.
    ('read members', 'SELECT * FROM engage.members', '42501', 'ok', 'ok', '42501'),
    ('read campaign_audience', 'SELECT * FROM engage.campaign_audience', '42501', 'ok', 'ok', '42501'),
    ('read campaign_rates_hourly', 'SELECT * FROM engage.campaign_rates_hourly', '42501', 'ok', 'ok', '42501'),
    ('read campaign_rates()', 'SELECT * FROM engage.campaign_rates(970001)', '42501', 'ok', 'ok', '42501'),
    ('read the shipper view', 'SELECT * FROM engage.shipper', '42501', '42501', '42501', :'status'),
    ('read shipper_status()', 'SELECT * FROM engage.shipper_status()', '42501', '42501', '42501', :'status'),
    ('read the snapshots', 'SELECT * FROM engage.snapshots', '42501', '42501', '42501', 'ok'),
    ('request a snapshot', 'SELECT * FROM engage.snapshot()', '42501', '42501', '42501', '42501'),
    ('cancel a snapshot', 'SELECT engage.cancel_snapshot(1)', '42501', '42501', '42501', '42501'),
    ('forge snapshot progress', 'UPDATE engage_internal.snapshots SET state = ''done''',
     '42501', '42501', '42501', '42501'),
    ('read the journal', 'SELECT * FROM engage_internal.rollup_journal', '42501', '42501', '42501', '42501'),
    ('read the rollup state', 'SELECT * FROM engage_internal.rollup_state', '42501', '42501', '42501', '42501'),
    ('read the audience sizes', 'SELECT * FROM engage_internal.rollup_audience_sizes', '42501', '42501', '42501', '42501'),
    ('read through a step', 'SELECT * FROM engage_internal.audience_skip_counts(970001, NULL, 0, NULL)',
     '42501', '42501', '42501', '42501'),
    -- Forging rates.
    ('write a journal entry',
     $$INSERT INTO engage_internal.rollup_journal (campaign_id, hour, d_opens) VALUES (970001, '2026-05-01 10:00+00', 1000)$$,
     '42501', '42501', '42501', '42501'),
    ('delete the journal', 'DELETE FROM engage_internal.rollup_journal', '42501', '42501', '42501', '42501'),
    ('change an audience size', 'UPDATE engage_internal.rollup_audience_sizes SET audience_size = 1',
     '42501', '42501', '42501', '42501'),
    ('write an hourly row',
     $$INSERT INTO engage.campaign_rates_hourly (campaign_id, hour, new_opens, cum_opens, audience_size)
       VALUES (970001, '2026-05-01 09:00+00', 500, 500, 4)$$, '42501', '42501', '42501', '42501'),
    ('change hourly rates', 'UPDATE engage.campaign_rates_hourly SET cum_opens = cum_opens * 10',
     '42501', '42501', '42501', '42501'),
    ('delete hourly rates', 'DELETE FROM engage.campaign_rates_hourly', '42501', '42501', '42501', '42501'),
    ('truncate hourly rates', 'TRUNCATE engage.campaign_rates_hourly', '42501', '42501', '42501', '42501'),
    ('truncate campaign_audience (not journaled)', 'TRUNCATE engage.campaign_audience',
     '42501', '42501', '42501', '42501'),
    ('run a rollup step', $$SELECT engage_internal.rollup_take_journal('0')$$, '42501', '42501', '42501', '42501'),
    ('run the rebuild step', 'SELECT engage_internal.rollup_rebuild_journal()', '42501', '42501', '42501', '42501'),
    ('recompute cumulative counts',
     $$SELECT engage_internal.rollup_recompute_cumulative('{970001}', '{-infinity}', '{}', '{}')$$,
     '42501', '42501', '42501', '42501'),
    ('call a journal trigger function', 'SELECT engage.journal_engagement_update()', '42501', '42501', '42501', '42501'),
    ('disable the journal triggers', 'ALTER TABLE engage.campaign_audience DISABLE TRIGGER USER',
     '42501', '42501', '42501', '42501'),
    ('turn triggers off for the session', 'SET session_replication_role = replica',
     '42501', '42501', '42501', '42501'),
    ('add a trigger',
     'CREATE TRIGGER pgtap_evil AFTER INSERT ON engage.campaign_audience EXECUTE FUNCTION engage.journal_membership_change()',
     '42501', '42501', '42501', '42501'),
    ('replace a journal trigger function',
     $$CREATE OR REPLACE FUNCTION engage.journal_engagement_update() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NULL; END'$$,
     '42501', '42501', '42501', '42501'),
    ('make rollup_rates run as its caller', 'ALTER FUNCTION engage.rollup_rates() SECURITY INVOKER',
     '42501', '42501', '42501', '42501'),
    ('create a function in engage', $$CREATE FUNCTION engage.normalize_email(varchar) RETURNS text LANGUAGE sql AS 'SELECT NULL'$$,
     '42501', '42501', '42501', '42501'),
    ('create a table in engage_internal', 'CREATE TABLE engage_internal.evil (x int)', '42501', '42501', '42501', '42501'),
    -- Skipping or forging schema records (extension/sql/60_schema_changes.sql).
    ('rewrite the table-name registry', 'UPDATE engage_internal.relation_names SET relname = ''evil''',
     '42501', '42501', '42501', '42501'),
    ('empty the table-name registry', 'DELETE FROM engage_internal.relation_names', '42501', '42501', '42501', '42501'),
    ('disable the schema-change trigger', 'ALTER EVENT TRIGGER engage_schema_ddl_end DISABLE',
     '42501', '42501', '42501', '42501'),
    ('drop the schema-change trigger', 'DROP EVENT TRIGGER engage_schema_sql_drop', '42501', '42501', '42501', '42501'),
    ('run a schema-change trigger function', 'SELECT engage_internal.schema_ddl_end()',
     '42501', '42501', '42501', '42501'),
    -- Forging events.
    ('emit an event', $$SELECT engage.emit('pgtap.privileges', 'k', '{}')$$, '42501', '42501', 'ok', '42501'),
    -- Stopping the rollups.
    ('move the rollup mark', $$UPDATE engage_internal.rollup_state SET processed_below = '999999999'$$,
     '42501', '42501', '42501', '42501'),
    ('delete the rollup state', 'DELETE FROM engage_internal.rollup_state', '42501', '42501', '42501', '42501'),
    ('lock the rollup state', 'LOCK TABLE engage_internal.rollup_state', '42501', '42501', '42501', '42501'),
    ('lock the hourly table against writes', 'LOCK TABLE engage.campaign_rates_hourly IN SHARE MODE',
     '42501', '42501', '42501', '42501'),
    ('lock hourly rows', 'SELECT * FROM engage.campaign_rates_hourly FOR SHARE', '42501', '42501', '42501', '42501'),
    ('run a rollup (the owner''s)', 'SELECT engage.rollup_rates()', '42501', '42501', '42501', '42501'),
    ('unschedule the rollups', 'SELECT engage.unschedule_rollups()', '42501', '42501', '42501', '42501'),
    ('reschedule the rollups', $$SELECT engage.schedule_rollups('0 0 1 1 *')$$, '42501', '42501', '42501', '42501'),
    ('stop a superuser''s backend (as the shipper''s)', format('SELECT pg_terminate_backend(%s)', :squatter_pid),
     '42501', '42501', '42501', '42501'),
    ('cancel a superuser''s query', format('SELECT pg_cancel_backend(%s)', :squatter_pid),
     '42501', '42501', '42501', '42501'),
    -- What the roles are for (the writer's changes go through the journal).
    ('build an audience', 'SELECT * FROM engage.build_campaign_audience(970002)', '42501', '42501', 'ok', '42501'),
    ('record engagement', $$SELECT engage.record_engagement(970001, 970103, 'conversion', '2026-05-01 12:05+00')$$,
     '42501', '42501', 'ok', '42501'),
    ('write campaign_audience directly',
     $$UPDATE engage.campaign_audience SET opened = true, opened_at = '2026-05-01 09:59+00' WHERE campaign_id = 970001 AND member_id = 970104$$,
     '42501', '42501', 'ok', '42501'),
    ('add a member with touches',
     $$INSERT INTO engage.campaign_audience (campaign_id, member_id, email, opened, opened_at, clicked, clicked_at)
       VALUES (970001, 970105, 'p5@privileges.example.com', true, '2026-05-01 13:00+00', true, '2026-05-01 13:30+00')$$,
     '42501', '42501', 'ok', '42501'),
    ('remove a member', 'DELETE FROM engage.campaign_audience WHERE campaign_id = 970001 AND member_id = 970102',
     '42501', '42501', 'ok', '42501'),
    ('add a campaign (identity column, no sequence privilege)',
     $$INSERT INTO engage.campaigns (template_id, user_id, audience_id, name) VALUES (970001, 970001, 970001, 'new')$$,
     '42501', '42501', 'ok', '42501');

-- Every attempt as every role.
CREATE FUNCTION pg_temp.attempts()
RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
    a record;
    r record;
BEGIN
    FOR a IN SELECT * FROM attempt ORDER BY ord LOOP
        FOR r IN SELECT * FROM (VALUES (1, 'pgtap_nobody'::name, a.nobody), (2, 'engage_reader', a.reader),
                                       (3, 'engage_writer', a.writer), (4, 'engage_monitor', a.monitor)) AS v(o, who, want)
                 ORDER BY o LOOP
            RETURN NEXT is(pg_temp.try_as(r.who, a.sql), r.want,
                           format('%s as %s: %s', a.what, r.who, CASE r.want WHEN 'ok' THEN 'allowed' ELSE 'refused (' || r.want || ')' END));
        END LOOP;
    END LOOP;
END
$$;
SELECT * FROM pg_temp.attempts();

-- A login role member of engage_writer has its rights.
SELECT is(pg_temp.try_as('pgtap_app', $$SELECT engage.record_engagement(970001, 970101, 'open', '2026-05-01 10:01+00')$$),
          'ok', 'a login role in engage_writer records engagement');
SELECT is(pg_temp.try_as('pgtap_app', 'SELECT * FROM engage_internal.rollup_journal'), '42501',
          'and cannot read the journal');

-- Nothing was forged: after all the writer did, a rollup leaves the hourly
-- rates equal to a computation from scratch, though another session holds the
-- old advisory lock (it did not halt the rollup).
SELECT lives_ok('SELECT engage.rollup_rates()', 'a rollup runs while another role holds the advisory lock');
SELECT results_eq('SELECT * FROM pg_temp.hourly(970001)', 'SELECT * FROM pg_temp.hourly_from_scratch(970001)',
                  'the rates follow campaign_audience: the attempts forged nothing');
SELECT results_eq('SELECT * FROM pg_temp.hourly(970002)', 'SELECT * FROM pg_temp.hourly_from_scratch(970002)',
                  'nor for the campaign the writer built');
SELECT ok((SELECT processed_below <> '0' FROM engage_internal.rollup_state), 'the rollup mark stayed a rollup''s');
SELECT is(dblink_disconnect('squatter'), 'OK', 'the second session ends');

-- Logical messages.  PostgreSQL lets every role write one with
-- pg_logical_emit_message(), with the prefix engage.emit() uses; the README
-- tells DBAs to revoke that from PUBLIC.  With that done, only engage.emit()
-- writes engage events, and it still works (it does not go through that
-- function).
REVOKE EXECUTE ON FUNCTION pg_logical_emit_message(boolean, text, text),
                           pg_logical_emit_message(boolean, text, bytea) FROM PUBLIC;
SELECT is(pg_temp.try_as('pgtap_nobody',
                         $$SELECT pg_logical_emit_message(true, 'engage', '{"topic":"x","key":null,"payload":{}}')$$),
          '42501', 'with the README''s REVOKE, a role cannot write an engage message itself');
SELECT is(pg_temp.try_as('engage_writer',
                         $$SELECT pg_logical_emit_message(true, 'engage', '{"topic":"x","key":null,"payload":{}}')$$),
          '42501', 'not even engage_writer, bypassing emit()''s topic check');
SELECT is(pg_temp.try_as('engage_writer', $$SELECT engage.emit('pgtap.privileges', 'k', '{}')$$), 'ok',
          'engage.emit() still works for engage_writer');

-- Hijacking.  A role that may create objects in public (the default before
-- PostgreSQL 15) shadows date_trunc and the operators the journal triggers
-- use, with functions that log who ran them.  A superuser whose search_path
-- puts public before pg_catalog then writes campaign_audience directly and
-- calls the API; the attacker calls the API with that search_path too.  The
-- functions running as the owner, and the triggers, must never run them.
CREATE ROLE pgtap_attacker IN ROLE engage_writer;
GRANT CREATE ON SCHEMA public TO pgtap_attacker;
CREATE TABLE public.pgtap_hijacked (who name, what text);
GRANT INSERT ON public.pgtap_hijacked TO PUBLIC;
SET ROLE pgtap_attacker;
CREATE FUNCTION public.date_trunc(text, timestamptz, text) RETURNS timestamptz
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.pgtap_hijacked VALUES (current_user, 'date_trunc');
    RETURN pg_catalog.date_trunc($1, $2, $3);
END
$$;
CREATE FUNCTION public.pgtap_int8eq(bigint, bigint) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.pgtap_hijacked VALUES (current_user, 'bigint =');
    RETURN $1 OPERATOR(pg_catalog.=) $2;
END
$$;
CREATE OPERATOR public.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = public.pgtap_int8eq);
CREATE FUNCTION public.pgtap_int8ne(bigint, integer) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.pgtap_hijacked VALUES (current_user, 'bigint <> integer');
    RETURN $1 OPERATOR(pg_catalog.<>) $2;
END
$$;
CREATE OPERATOR public.<> (LEFTARG = bigint, RIGHTARG = integer, FUNCTION = public.pgtap_int8ne);
CREATE FUNCTION public.pgtap_tseq(timestamptz, timestamptz) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.pgtap_hijacked VALUES (current_user, 'timestamptz =');
    RETURN $1 OPERATOR(pg_catalog.=) $2;
END
$$;
CREATE OPERATOR public.= (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = public.pgtap_tseq);
CREATE FUNCTION public.pgtap_texteq(text, text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.pgtap_hijacked VALUES (current_user, 'text =');
    RETURN $1 OPERATOR(pg_catalog.=) $2;
END
$$;
CREATE OPERATOR public.= (LEFTARG = text, RIGHTARG = text, FUNCTION = public.pgtap_texteq);
CREATE FUNCTION public.pgtap_int8mul(bigint, bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.pgtap_hijacked VALUES (current_user, 'bigint *');
    RETURN $1 OPERATOR(pg_catalog.*) $2;
END
$$;
CREATE OPERATOR public.* (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = public.pgtap_int8mul);
RESET ROLE;

-- The shadows work where nothing pins the search_path.
SET search_path = public, pg_catalog;
SELECT 1::bigint = 1::bigint AS shadowed \gset
RESET search_path;
SELECT is((SELECT count(*) FROM public.pgtap_hijacked), 1::bigint,
          'the attacker''s operator is what an unqualified bigint = means with public first');
DELETE FROM public.pgtap_hijacked;

-- A superuser with public first: direct writes fire the journal triggers.
SET search_path = public, pg_catalog;
UPDATE engage.campaign_audience SET opened = true, opened_at = '2026-05-01 14:10+00',
                                    clicked = true, clicked_at = '2026-05-01 14:20+00'
 WHERE campaign_id = 970001 AND member_id = 970103;
UPDATE engage.campaign_audience SET opened_at = '2026-05-01 08:00+00'
 WHERE campaign_id = 970001 AND member_id = 970101;
INSERT INTO engage.campaign_audience (campaign_id, member_id, email, opened, opened_at)
VALUES (970001, 970106, 'p6@privileges.example.com', true, '2026-05-01 15:00+00');
DELETE FROM engage.campaign_audience WHERE campaign_id = 970001 AND member_id = 970105;
SELECT engage.record_engagement(970001, 970104, 'click', '2026-05-01 16:00+00') AS recorded \gset
DELETE FROM engage.campaign_audience WHERE campaign_id = 970002;
SELECT count(*) AS built FROM engage.build_campaign_audience(970002) \gset
SELECT count(*) AS rolled_up FROM engage.rollup_rates() \gset
SELECT count(*) AS rates FROM engage.campaign_rates(970001) \gset
RESET search_path;
SELECT is((SELECT count(*) FROM public.pgtap_hijacked), 0::bigint,
          'a superuser with public first in search_path runs none of the attacker''s functions (triggers, API, rollup)');

-- The attacker, with public first, through the API.
DELETE FROM engage.campaign_audience WHERE campaign_id = 970002;
SET ROLE pgtap_attacker;
SET search_path = public, pg_catalog;
SELECT engage.record_engagement(970001, 970106, 'conversion', '2026-05-01 15:30+00') AS recorded \gset
SELECT count(*) AS built FROM engage.build_campaign_audience(970002, 10) \gset
RESET search_path;
RESET ROLE;
SELECT is((SELECT count(*) FROM engage.campaign_audience WHERE campaign_id = 970002), 6::bigint,
          'the attacker, with public first, built an audience and recorded engagement');
SELECT is((SELECT count(*) FROM public.pgtap_hijacked), 0::bigint,
          'and ran none of its own functions through the triggers or the API, whose names do not go through its search_path');
SELECT lives_ok('SELECT engage.rollup_rates()', 'a rollup after it all');
SELECT results_eq('SELECT * FROM pg_temp.hourly(970001)', 'SELECT * FROM pg_temp.hourly_from_scratch(970001)',
                  'and the rates are right');

-- The declared model.  Roles: group roles that can do nothing by themselves.
SELECT is((SELECT count(*) FROM pg_roles
           WHERE rolname IN ('engage_reader', 'engage_writer', 'engage_monitor')
             AND NOT rolcanlogin AND NOT rolsuper AND NOT rolcreaterole AND NOT rolcreatedb
             AND NOT rolreplication AND NOT rolbypassrls),
          3::bigint, 'engage_reader, engage_writer and engage_monitor: NOLOGIN, no attribute');

-- Exactly these privileges on the extension's objects and schemas, for
-- anyone but the owner (a new object gets none until it is decided here).
SELECT set_eq($$
    WITH obj AS (
        SELECT 'schema ' || n.nspname AS object, n.nspacl AS acl, n.nspowner AS owner
          FROM pg_namespace AS n WHERE n.nspname IN ('engage', 'engage_internal')
        UNION ALL
        SELECT 'relation ' || c.oid::regclass, c.relacl, c.relowner
          FROM pg_class AS c WHERE c.relnamespace IN ('engage'::regnamespace, 'engage_internal'::regnamespace)
        UNION ALL
        SELECT 'function ' || p.oid::regprocedure, coalesce(p.proacl, acldefault('f', p.proowner)), p.proowner
          FROM pg_proc AS p WHERE p.pronamespace IN ('engage'::regnamespace, 'engage_internal'::regnamespace)
    )
    SELECT obj.object, CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END, a.privilege_type
      FROM obj, aclexplode(obj.acl) AS a
     WHERE a.grantee <> obj.owner$$,
    $$VALUES
        ('schema engage', 'engage_reader', 'USAGE'), ('schema engage', 'engage_writer', 'USAGE'),
        ('schema engage', 'engage_monitor', 'USAGE'),
        ('relation engage.users', 'engage_reader', 'SELECT'), ('relation engage.templates', 'engage_reader', 'SELECT'),
        ('relation engage.audiences', 'engage_reader', 'SELECT'), ('relation engage.members', 'engage_reader', 'SELECT'),
        ('relation engage.audience_members', 'engage_reader', 'SELECT'),
        ('relation engage.campaigns', 'engage_reader', 'SELECT'),
        ('relation engage.campaign_audience', 'engage_reader', 'SELECT'),
        ('relation engage.campaign_rates_hourly', 'engage_reader', 'SELECT'),
        ('function engage.campaign_rates(bigint)', 'engage_reader', 'EXECUTE'),
        ('relation engage.users', 'engage_writer', 'SELECT'), ('relation engage.users', 'engage_writer', 'INSERT'),
        ('relation engage.users', 'engage_writer', 'UPDATE'), ('relation engage.users', 'engage_writer', 'DELETE'),
        ('relation engage.templates', 'engage_writer', 'SELECT'), ('relation engage.templates', 'engage_writer', 'INSERT'),
        ('relation engage.templates', 'engage_writer', 'UPDATE'), ('relation engage.templates', 'engage_writer', 'DELETE'),
        ('relation engage.audiences', 'engage_writer', 'SELECT'), ('relation engage.audiences', 'engage_writer', 'INSERT'),
        ('relation engage.audiences', 'engage_writer', 'UPDATE'), ('relation engage.audiences', 'engage_writer', 'DELETE'),
        ('relation engage.members', 'engage_writer', 'SELECT'), ('relation engage.members', 'engage_writer', 'INSERT'),
        ('relation engage.members', 'engage_writer', 'UPDATE'), ('relation engage.members', 'engage_writer', 'DELETE'),
        ('relation engage.audience_members', 'engage_writer', 'SELECT'),
        ('relation engage.audience_members', 'engage_writer', 'INSERT'),
        ('relation engage.audience_members', 'engage_writer', 'UPDATE'),
        ('relation engage.audience_members', 'engage_writer', 'DELETE'),
        ('relation engage.campaigns', 'engage_writer', 'SELECT'), ('relation engage.campaigns', 'engage_writer', 'INSERT'),
        ('relation engage.campaigns', 'engage_writer', 'UPDATE'), ('relation engage.campaigns', 'engage_writer', 'DELETE'),
        ('relation engage.campaign_audience', 'engage_writer', 'SELECT'),
        ('relation engage.campaign_audience', 'engage_writer', 'INSERT'),
        ('relation engage.campaign_audience', 'engage_writer', 'UPDATE'),
        ('relation engage.campaign_audience', 'engage_writer', 'DELETE'),
        ('relation engage.campaign_rates_hourly', 'engage_writer', 'SELECT'),
        ('function engage.build_campaign_audience(bigint,bigint)', 'engage_writer', 'EXECUTE'),
        ('function engage.record_engagement(bigint,bigint,text,timestamp with time zone)', 'engage_writer', 'EXECUTE'),
        ('function engage.campaign_rates(bigint)', 'engage_writer', 'EXECUTE'),
        ('function engage.emit(text,text,jsonb)', 'engage_writer', 'EXECUTE'),
        ('relation engage.shipper', 'engage_monitor', 'SELECT'),
        ('relation engage.snapshots', 'engage_monitor', 'SELECT'),
        ('function engage.shipper_status()', 'engage_monitor', 'EXECUTE'),
        ('function engage.normalize_email(text)', 'PUBLIC', 'EXECUTE')$$,
    'the privileges of every object are exactly the model''s: nothing for PUBLIC but normalize_email, nothing in engage_internal');

-- Functions: a SQL-standard body (parsed once, at creation) or a pinned
-- search_path, pg_catalog first and pg_temp last; C functions resolve nothing.
SELECT is((SELECT array_agg(p.oid::regprocedure::text ORDER BY p.oid::regprocedure::text)
           FROM pg_proc AS p JOIN pg_language AS l ON l.oid = p.prolang
           WHERE p.pronamespace IN ('engage'::regnamespace, 'engage_internal'::regnamespace)
             AND l.lanname <> 'c' AND p.prosqlbody IS NULL
             AND NOT coalesce(p.proconfig @> ARRAY['search_path=pg_catalog, pg_temp'], false)),
          NULL, 'every SQL and PL/pgSQL function has a SQL-standard body or search_path = pg_catalog, pg_temp');
SELECT is((SELECT array_agg(p.oid::regprocedure::text)
           FROM pg_proc AS p
           WHERE p.pronamespace IN ('engage'::regnamespace, 'engage_internal'::regnamespace) AND p.prosecdef
             AND NOT coalesce(p.proconfig @> ARRAY['search_path=pg_catalog, pg_temp'], false)),
          NULL, 'every SECURITY DEFINER function pins search_path, pg_temp last');
SELECT is((SELECT array_agg(p.oid::regprocedure::text)
           FROM pg_proc AS p
           WHERE p.pronamespace = 'engage_internal'::regnamespace AND p.prosecdef
             AND p.oid <> ALL (ARRAY['engage_internal.register_app_topic(text)'::regprocedure,
                                     'engage_internal.schema_ddl_end()'::regprocedure,
                                     'engage_internal.schema_sql_drop()'::regprocedure])),
          NULL, 'no step in engage_internal is SECURITY DEFINER: only the API functions that call them are '
                '(and emit()''s topic registration, which only emit() calls, and the schema-change '
                'trigger functions, which only their event triggers call)');

-- DROP EXTENSION leaves the roles (other databases may use them); CREATE
-- EXTENSION reuses them.
DROP EXTENSION pg_engage;
SELECT is((SELECT count(*) FROM pg_roles WHERE rolname IN ('engage_reader', 'engage_writer', 'engage_monitor')),
          3::bigint, 'DROP EXTENSION keeps the roles');
SELECT lives_ok('CREATE EXTENSION pg_engage', 'CREATE EXTENSION with the roles present reuses them');
SELECT ok(has_function_privilege('engage_writer', 'engage.record_engagement(bigint,bigint,text,timestamptz)', 'EXECUTE')
          AND NOT has_function_privilege('engage_reader', 'engage.emit(text,text,jsonb)', 'EXECUTE'),
          'and grants them their privileges again');

SELECT * FROM finish();
ROLLBACK;

\if :create_dblink
DROP EXTENSION dblink;
\endif
