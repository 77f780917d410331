-- engage.campaign_rates, engage.rollup_rates / campaign_rates_hourly against
-- hand-computed expectations, incrementality, and engage.schedule_rollups.
-- (A transaction held open across a rollup, concurrent rollups: concurrency.sql.)
BEGIN;
SELECT plan(70);

SELECT has_function('engage', 'campaign_rates', ARRAY['bigint']);
SELECT volatility_is('engage', 'campaign_rates', ARRAY['bigint'], 'stable');
SELECT has_function('engage', 'rollup_rates', ARRAY[]::text[]);
SELECT has_function('engage', 'schedule_rollups', ARRAY['text']);
SELECT has_table('engage', 'campaign_rates_hourly', 'campaign_rates_hourly exists');
SELECT is((SELECT count(*) FROM pg_proc
           WHERE pronamespace = 'engage'::regnamespace
             AND proname IN ('build_campaign_audience', 'record_engagement', 'campaign_rates',
                             'rollup_rates', 'schedule_rollups', 'unschedule_rollups')
             AND obj_description(oid, 'pg_proc') IS NOT NULL),
          6::bigint, 'every API function has a comment');

INSERT INTO engage.users (user_id, username) VALUES (940001, 'pgtap-rollup');
INSERT INTO engage.templates (template_id, name, type) VALUES (940001, 'pgtap-rollup', 'html');
INSERT INTO engage.audiences (audience_id, name) VALUES (940001, 'pgtap-rollup');
INSERT INTO engage.members (member_id, email)
SELECT 940100 + g, 'm' || g || '@rollup.example.com' FROM generate_series(1, 400) AS g;
INSERT INTO engage.campaigns (campaign_id, template_id, user_id, audience_id, name) VALUES
    (940001, 940001, 940001, 940001, 'hand computed'),
    (940002, 940001, 940001, 940001, 'empty'),
    (940003, 940001, 940001, 940001, 'nobody opened'),
    (940004, 940001, 940001, 940001, 'random');
INSERT INTO engage.campaign_audience (campaign_id, member_id, email)
SELECT 940001, m.member_id, m.email FROM engage.members AS m WHERE m.member_id BETWEEN 940101 AND 940104;
INSERT INTO engage.campaign_audience (campaign_id, member_id, email)
SELECT 940003, m.member_id, m.email FROM engage.members AS m WHERE m.member_id = 940101;

-- The hourly rows of a campaign, and the same computed from scratch.
\ir lib/hourly.sql

-- Live rates.
SELECT ok(engage.record_engagement(940001, 940101, 'open', '2024-04-01 10:05+00'), 'm1 opens at 10:05');
SELECT ok(engage.record_engagement(940001, 940101, 'click', '2024-04-01 10:20+00'), 'm1 clicks at 10:20');
SELECT ok(engage.record_engagement(940001, 940101, 'conversion', '2024-04-01 11:10+00'), 'm1 converts at 11:10');
SELECT ok(engage.record_engagement(940001, 940102, 'open', '2024-04-01 10:40+00'), 'm2 opens at 10:40');
SELECT ok(engage.record_engagement(940001, 940102, 'click', '2024-04-01 12:15+00'), 'm2 clicks at 12:15');
SELECT ok(engage.record_engagement(940001, 940103, 'open', '2024-04-01 11:30+00'), 'm3 opens at 11:30');

SELECT results_eq('SELECT * FROM engage.campaign_rates(940001)',
    $$VALUES (4::bigint, 3::bigint, 2::bigint, 1::bigint, 0.75::numeric, 0.5::numeric, 2::numeric / 3, 0.25::numeric)$$,
    'campaign_rates: 4 members, 3 opens, 2 clicks, 1 conversion and their rates');
SELECT results_eq('SELECT * FROM engage.campaign_rates(940002)',
    $$VALUES (0::bigint, 0::bigint, 0::bigint, 0::bigint, NULL::numeric, NULL::numeric, NULL::numeric, NULL::numeric)$$,
    'campaign_rates of an empty audience: counts 0, rates NULL');
SELECT results_eq('SELECT * FROM engage.campaign_rates(940003)',
    $$VALUES (1::bigint, 0::bigint, 0::bigint, 0::bigint, 0::numeric, 0::numeric, NULL::numeric, 0::numeric)$$,
    'campaign_rates without opens: click-to-open rate NULL, the others 0');
SELECT throws_ok('SELECT * FROM engage.campaign_rates(949999)', 'P0002', 'campaign 949999 does not exist',
                 'campaign_rates of an unknown campaign: no_data_found');
SELECT throws_ok('SELECT * FROM engage.campaign_rates(NULL)', '22004', 'campaign_id must not be NULL',
                 'campaign_rates of NULL: null_value_not_allowed');

-- The journal: one entry per hour a change touches.
SELECT results_eq(
    $$SELECT hour, d_opens, d_clicks, d_conversions FROM engage_internal.rollup_journal
      WHERE campaign_id = 940001 AND hour IS NOT NULL
      ORDER BY hour, d_opens DESC, d_clicks DESC, d_conversions DESC$$,
    $$VALUES ('2024-04-01 10:00+00'::timestamptz, 1::bigint, 0::bigint, 0::bigint), ('2024-04-01 10:00+00', 1, 0, 0),
             ('2024-04-01 10:00+00', 0, 1, 0), ('2024-04-01 11:00+00', 1, 0, 0),
             ('2024-04-01 11:00+00', 0, 0, 1), ('2024-04-01 12:00+00', 0, 1, 0)$$,
    'the journal holds one delta per first touch, in its hour');
SELECT is(engage.record_engagement(940001, 940101, 'open', '2024-04-01 10:01+00'), true,
          'an open moved earlier within its hour changes the member');
SELECT is((SELECT count(*) FROM engage_internal.rollup_journal WHERE campaign_id = 940001 AND hour IS NOT NULL),
          6::bigint, '... but journals nothing: the hourly counts do not change');

-- First rollup.
SELECT results_eq('SELECT processed_entries > 0, changed_campaigns >= 2 FROM engage.rollup_rates()',
                  $$VALUES (true, true)$$, 'the first rollup processes the pending entries');
SELECT results_eq('SELECT * FROM pg_temp.hourly(940001)',
    $$VALUES ('2024-04-01 10:00+00'::timestamptz, 2::bigint, 1::bigint, 0::bigint, 2::bigint, 1::bigint, 0::bigint, 4::bigint,
              0.5::numeric, 0.25::numeric, 0.5::numeric, 0::numeric),
             ('2024-04-01 11:00+00', 1, 0, 1, 3, 1, 1, 4, 0.75, 0.25, 1::numeric / 3, 0.25),
             ('2024-04-01 12:00+00', 0, 1, 0, 3, 2, 1, 4, 0.75, 0.5, 2::numeric / 3, 0.25)$$,
    'hourly rows: new first touches per hour, cumulative counts and rates (hand computed)');
SELECT is((SELECT count(*) FROM engage_internal.rollup_journal WHERE campaign_id IN (940001, 940002, 940003)),
          0::bigint, 'the rollup consumed the journal');
SELECT is((SELECT count(*) FROM engage.campaign_rates_hourly WHERE campaign_id IN (940002, 940003)),
          0::bigint, 'campaigns without engagement have no hourly rows');

-- Nothing new: nothing changes.
CREATE TEMP TABLE hourly_before AS SELECT * FROM engage.campaign_rates_hourly;
SELECT results_eq('SELECT * FROM engage.rollup_rates()', $$VALUES (0::bigint, 0::bigint, 0::bigint)$$,
                  'a rollup right after a rollup processes nothing');
SELECT set_eq('SELECT * FROM engage.campaign_rates_hourly', 'SELECT * FROM hourly_before',
              'and leaves the hourly table as it was');

-- Out of order: an earlier open moves a member to another hour; a click on a
-- member who had not opened.
SELECT ok(engage.record_engagement(940001, 940103, 'open', '2024-04-01 09:50+00'), 'm3 opened earlier: 09:50');
SELECT ok(engage.record_engagement(940001, 940104, 'click', '2024-04-01 12:30+00'), 'm4 clicks at 12:30');
SELECT results_eq('SELECT * FROM engage.rollup_rates()', $$VALUES (3::bigint, 1::bigint, 4::bigint)$$,
                  'the rollup processes only the 3 new entries, of 1 campaign, changing 4 hours');
SELECT results_eq('SELECT * FROM pg_temp.hourly(940001)',
    $$VALUES ('2024-04-01 09:00+00'::timestamptz, 1::bigint, 0::bigint, 0::bigint, 1::bigint, 0::bigint, 0::bigint, 4::bigint,
              0.25::numeric, 0::numeric, 0::numeric, 0::numeric),
             ('2024-04-01 10:00+00', 2, 1, 0, 3, 1, 0, 4, 0.75, 0.25, 1::numeric / 3, 0),
             ('2024-04-01 11:00+00', 0, 0, 1, 3, 1, 1, 4, 0.75, 0.25, 1::numeric / 3, 0.25),
             ('2024-04-01 12:00+00', 1, 2, 0, 4, 3, 1, 4, 1, 0.75, 0.75, 0.25)$$,
    'the open moved from 11:00 to 09:00 and every later cumulative value followed');

-- Membership: a new member changes every rate; a removed member takes its
-- touches with it, and an hour left without activity disappears.
INSERT INTO engage.campaign_audience (campaign_id, member_id, email)
SELECT 940001, m.member_id, m.email FROM engage.members AS m WHERE m.member_id = 940105;
SELECT results_eq('SELECT * FROM engage.rollup_rates()', $$VALUES (1::bigint, 1::bigint, 4::bigint)$$,
                  'a new member: one entry, all 4 hours of the campaign change');
SELECT results_eq('SELECT hour, audience_size, open_rate FROM pg_temp.hourly(940001)',
    $$VALUES ('2024-04-01 09:00+00'::timestamptz, 5::bigint, 0.2::numeric), ('2024-04-01 10:00+00', 5, 0.6),
             ('2024-04-01 11:00+00', 5, 0.6), ('2024-04-01 12:00+00', 5, 0.8)$$,
    'the rates are over the new audience size');
DELETE FROM engage.campaign_audience WHERE campaign_id = 940001 AND member_id = 940101;
SELECT results_eq('SELECT processed_entries, changed_campaigns FROM engage.rollup_rates()',
                  $$VALUES (3::bigint, 1::bigint)$$, 'a removed engaged member: membership and 2 hours of deltas');
SELECT results_eq('SELECT * FROM pg_temp.hourly(940001)',
    $$VALUES ('2024-04-01 09:00+00'::timestamptz, 1::bigint, 0::bigint, 0::bigint, 1::bigint, 0::bigint, 0::bigint, 4::bigint,
              0.25::numeric, 0::numeric, 0::numeric, 0::numeric),
             ('2024-04-01 10:00+00', 1, 0, 0, 2, 0, 0, 4, 0.5, 0, 0, 0),
             ('2024-04-01 12:00+00', 1, 2, 0, 3, 2, 0, 4, 0.75, 0.5, 2::numeric / 3, 0)$$,
    'its open, click and conversion are gone, and so is the 11:00 hour');
SELECT results_eq('SELECT * FROM pg_temp.hourly(940001)', 'SELECT * FROM pg_temp.hourly_from_scratch(940001)',
                  'the incremental result equals a computation from scratch');
SELECT results_eq(
    $$SELECT cum_opens, cum_clicks, cum_conversions, audience_size FROM engage.campaign_rates_hourly
      WHERE campaign_id = 940001 ORDER BY hour DESC LIMIT 1$$,
    'SELECT opens, clicks, conversions, audience_size FROM engage.campaign_rates(940001)',
    'the last hour agrees with campaign_rates');

-- Many members, random events in random order, rolled up in three batches.
DO $$ BEGIN PERFORM setseed(0.4); END $$;
INSERT INTO engage.campaign_audience (campaign_id, member_id, email)
SELECT 940004, m.member_id, m.email FROM engage.members AS m WHERE m.member_id BETWEEN 940101 AND 940400;
CREATE TEMP TABLE random_events AS
SELECT n, 940100 + 1 + floor(random() * 300)::bigint AS member_id,
       (ARRAY['open', 'open', 'open', 'click', 'click', 'conversion'])[1 + floor(random() * 6)::int] AS kind,
       timestamptz '2024-05-01 00:00+00' + random() * interval '30 hours' AS at
FROM generate_series(1, 1500) AS n;
SELECT is((SELECT count(*) FROM (SELECT engage.record_engagement(940004, member_id, kind, at)
                                 FROM random_events WHERE n <= 500 ORDER BY n) AS s),
          500::bigint, 'first 500 random events recorded');
SELECT ok((SELECT processed_entries > 0 FROM engage.rollup_rates()), 'rolled up');
SELECT is((SELECT count(*) FROM (SELECT engage.record_engagement(940004, member_id, kind, at)
                                 FROM random_events WHERE n BETWEEN 501 AND 1000 ORDER BY n) AS s),
          500::bigint, 'next 500 recorded');
DELETE FROM engage.campaign_audience WHERE campaign_id = 940004 AND member_id % 37 = 0;
SELECT ok((SELECT processed_entries > 0 FROM engage.rollup_rates()), 'rolled up again');
SELECT is((SELECT count(*) FROM (SELECT engage.record_engagement(940004, member_id, kind, at)
                                 FROM random_events WHERE n > 1000 AND member_id % 37 <> 0 ORDER BY n) AS s),
          (SELECT count(*) FROM random_events WHERE n > 1000 AND member_id % 37 <> 0),
          'last events recorded');
SELECT ok((SELECT processed_entries > 0 FROM engage.rollup_rates()), 'rolled up a third time');
SELECT results_eq('SELECT * FROM pg_temp.hourly(940004)', 'SELECT * FROM pg_temp.hourly_from_scratch(940004)',
                  'after three incremental rollups the hourly rows equal a computation from scratch');
SELECT cmp_ok((SELECT count(*) FROM engage.campaign_rates_hourly WHERE campaign_id = 940004), '>=', 25::bigint,
              'the random campaign spans many hours');

-- A deleted campaign takes its rows with it; its last journal entries are dropped.
DELETE FROM engage.campaigns WHERE campaign_id = 940004;
SELECT ok((SELECT processed_entries > 0 FROM engage.rollup_rates()), 'the rollup after a campaign deletion runs');
SELECT is((SELECT count(*) FROM engage.campaign_rates_hourly WHERE campaign_id = 940004), 0::bigint,
          'the deleted campaign has no hourly rows');
SELECT is((SELECT count(*) FROM engage_internal.rollup_journal WHERE campaign_id = 940004), 0::bigint,
          'and no journal entries left');

-- A restored database: its mark is 0 (rollup_state is not dumped), its hourly
-- rows are the source's, and reloading campaign_audience journaled every row
-- again.  The first rollup must count nothing twice, rewrite no hour that is
-- right, and move the mark.  (test/dump/run.sh does it with pg_dump.)
CREATE TEMP TABLE reloaded AS SELECT * FROM engage.campaign_audience WHERE campaign_id = 940001;
ALTER TABLE engage.campaign_audience DISABLE TRIGGER campaign_audience_journal_delete;
DELETE FROM engage.campaign_audience WHERE campaign_id = 940001;
ALTER TABLE engage.campaign_audience ENABLE TRIGGER campaign_audience_journal_delete;
INSERT INTO engage.campaign_audience SELECT * FROM reloaded;
UPDATE engage_internal.rollup_state SET processed_below = '0';
CREATE TEMP TABLE rows_before AS
SELECT hour, ctid AS tid FROM engage.campaign_rates_hourly WHERE campaign_id = 940001;
SELECT results_eq('SELECT changed_hours FROM engage.rollup_rates()', $$VALUES (0::bigint)$$,
                  'mark 0 after a reload of rolled-up rows: the rollup changes no hour');
SELECT results_eq('SELECT * FROM pg_temp.hourly(940001)', 'SELECT * FROM pg_temp.hourly_from_scratch(940001)',
                  'the reloaded rows are not counted twice');
SELECT is((SELECT count(*) FROM engage.campaign_rates_hourly AS h JOIN rows_before AS b USING (hour)
           WHERE h.campaign_id = 940001 AND h.ctid = b.tid),
          (SELECT count(*) FROM rows_before), 'no hourly row was rewritten');
SELECT ok((SELECT processed_below <> '0' FROM engage_internal.rollup_state),
          'the mark moved: the next rollups are incremental');

-- Mark 0 with changes the source had not rolled up, and hourly rows that
-- campaign_audience does not support: the first rollup corrects them.
UPDATE engage_internal.rollup_state SET processed_below = '0';
INSERT INTO engage.campaign_rates_hourly (campaign_id, hour, new_opens, cum_opens, audience_size)
VALUES (940001, '2024-03-01 00:00+00', 7, 7, 4);
UPDATE engage.campaign_rates_hourly SET new_clicks = new_clicks + 5, cum_clicks = cum_clicks + 5
 WHERE campaign_id = 940001 AND hour = '2024-04-01 10:00+00';
SELECT ok(engage.record_engagement(940001, 940105, 'open', '2024-04-01 12:45+00'), 'a change not rolled up yet');
SELECT lives_ok('SELECT engage.rollup_rates()', 'the first rollup');
SELECT results_eq('SELECT * FROM pg_temp.hourly(940001)', 'SELECT * FROM pg_temp.hourly_from_scratch(940001)',
                  'leaves the hourly rows as campaign_audience says: pending change in, wrong rows out');

-- The state row gone: an error that says how to fix it, not a silent no-op.
CREATE FUNCTION pg_temp.error_of(sql text)
RETURNS TABLE (state text, message text, hint text)
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    RETURN QUERY SELECT NULL::text, NULL::text, NULL::text;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT, hint = PG_EXCEPTION_HINT;
    RETURN NEXT;
END
$$;
DELETE FROM engage_internal.rollup_state;
SELECT ok(engage.record_engagement(940001, 940102, 'conversion', '2024-04-01 13:10+00'), 'a change');
SELECT results_eq($$SELECT state, message FROM pg_temp.error_of('SELECT engage.rollup_rates()')$$,
                  $$VALUES ('55000'::text, 'the state row of the rollup is missing'::text)$$,
                  'a rollup without its state row: object_not_in_prerequisite_state');
SELECT matches((SELECT hint FROM pg_temp.error_of('SELECT engage.rollup_rates()')),
               'INSERT INTO engage_internal\.rollup_state DEFAULT VALUES.*rebuilds',
               'the hint says how to restore the row and what happens next');
INSERT INTO engage_internal.rollup_state DEFAULT VALUES;
SELECT lives_ok('SELECT engage.rollup_rates()', 'with the row back, the rollup runs');
SELECT results_eq('SELECT * FROM pg_temp.hourly(940001)', 'SELECT * FROM pg_temp.hourly_from_scratch(940001)',
                  'and rebuilds: the change made meanwhile is counted');

-- Scheduling: the error without pg_cron, the job with it.
CREATE FUNCTION pg_temp.schedule_error()
RETURNS TABLE (state text, message text, hint text)
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM engage.schedule_rollups();
    RETURN QUERY SELECT NULL::text, NULL::text, NULL::text;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT, hint = PG_EXCEPTION_HINT;
    RETURN NEXT;
END
$$;
-- Whether pg_cron can be created here: preloaded, and this is its database.
CREATE FUNCTION pg_temp.cron_possible()
RETURNS boolean
LANGUAGE sql AS $$
    SELECT EXISTS (SELECT FROM pg_available_extensions WHERE name = 'pg_cron')
       AND current_setting('shared_preload_libraries') ~ '(^|[ ,])pg_cron($|[ ,])'
       AND current_setting('cron.database_name', true) = current_database()
$$;
SET LOCAL client_min_messages = warning;
DROP EXTENSION IF EXISTS pg_cron;     -- only within this transaction
RESET client_min_messages;
SELECT throws_ok('SELECT engage.schedule_rollups()', '42704',
                 'pg_cron is not installed in database ' || current_database(),
                 'without pg_cron: undefined_object');
SELECT matches((SELECT hint FROM pg_temp.schedule_error()),
               'postgresql-15-cron.*shared_preload_libraries.*cron\.database_name.*CREATE EXTENSION pg_cron.*engage\.rollup_rates\(\)',
               'the hint explains the pg_cron setup and the alternative');
SELECT is(engage.unschedule_rollups(), false, 'unschedule without pg_cron: nothing to remove');
SELECT throws_ok('SELECT engage.schedule_rollups(NULL)', '22004', 'schedule must not be NULL',
                 'a NULL schedule: null_value_not_allowed');

SELECT pg_temp.cron_possible() AS cron_possible \gset
\if :cron_possible
CREATE EXTENSION pg_cron;
SELECT is((SELECT count(*) FROM cron.job WHERE jobname = 'engage-rollup-rates'), 0::bigint,
          'no job before scheduling');
SELECT engage.schedule_rollups() AS jobid \gset
SELECT results_eq(
    $$SELECT jobid, schedule, command, database, username FROM cron.job WHERE jobname = 'engage-rollup-rates'$$,
    format($$VALUES (%s::bigint, '0 * * * *'::text, 'SELECT engage.rollup_rates()'::text, %L::text, %L::text)$$,
           :jobid, current_database(), current_user),
    'schedule_rollups registers an hourly job running rollup_rates in this database, and returns its id');
SELECT is(engage.schedule_rollups('*/15 * * * *'), :jobid::bigint, 'scheduling again returns the same job');
SELECT results_eq(
    $$SELECT count(*), min(schedule) FROM cron.job WHERE jobname = 'engage-rollup-rates'$$,
    $$VALUES (1::bigint, '*/15 * * * *'::text)$$,
    'and updates the one job');
SELECT throws_ok($$SELECT engage.schedule_rollups('every hour')$$, '22023', NULL,
                 'pg_cron refuses an invalid schedule');
SELECT is(engage.unschedule_rollups(), true, 'unschedule_rollups removes the job');
SELECT is((SELECT count(*) FROM cron.job WHERE jobname = 'engage-rollup-rates'), 0::bigint, 'no job left');
\else
SELECT skip('pg_cron is not preloaded for this database (shared_preload_libraries, cron.database_name)', 7);
\endif

SELECT * FROM finish();
ROLLBACK;
