-- The internal steps of engage.build_campaign_audience and engage.rollup_rates
-- (schema engage_internal): what they are, how they are declared, what a step
-- returns on its own, and the privilege design (see 30_campaign.sql): the
-- steps run with the caller's rights, no role but the owner may run them, and
-- the API functions that call them run as the owner.
BEGIN;
SELECT plan(34);

SELECT functions_are('engage_internal', ARRAY[
    'audience_first_build', 'audience_top_up', 'audience_skip_counts',
    'rollup_rebuild_journal', 'rollup_take_journal', 'rollup_refresh_sizes', 'rollup_drop_idle_hours',
    'rollup_recompute_cumulative', 'register_app_topic',
    'table_is_captured', 'captured_tables', 'snapshot_key', 'request_snapshots',
    'register_relations', 'schema_ddl_end', 'schema_sql_drop'],
    'engage_internal holds the steps of the API functions, the topic registration of emit(), '
    'the snapshot requests and the schema-change triggers'' functions (schema_changes.sql)');

-- Declarations: a comment, a fixed search_path, not SECURITY DEFINER, honest volatility.
SELECT is((SELECT count(*) FROM pg_proc AS p
           WHERE p.pronamespace = 'engage_internal'::regnamespace
             AND obj_description(p.oid, 'pg_proc') IS NOT NULL
             AND p.proconfig @> ARRAY['search_path=pg_catalog, pg_temp']
             AND NOT p.prosecdef),
          11::bigint, 'every step has a comment, SET search_path = pg_catalog, pg_temp, and is SECURITY INVOKER');
SELECT volatility_is('engage_internal', 'audience_first_build', ARRAY['bigint', 'bigint', 'bigint'], 'volatile');
SELECT volatility_is('engage_internal', 'audience_top_up', ARRAY['bigint', 'bigint', 'bigint'], 'volatile');
SELECT volatility_is('engage_internal', 'audience_skip_counts', ARRAY['bigint', 'bigint', 'bigint', 'text'], 'stable');
SELECT volatility_is('engage_internal', 'rollup_rebuild_journal', ARRAY[]::text[], 'volatile');
SELECT is((SELECT array_agg(c ORDER BY c) FROM pg_proc AS p, unnest(p.proconfig) AS c
           WHERE p.oid = 'engage_internal.rollup_rebuild_journal()'::regprocedure),
          ARRAY['enable_seqscan=on', 'search_path=pg_catalog, pg_temp'],
          'rollup_rebuild_journal reads whole tables: sequential scans allowed');
SELECT volatility_is('engage_internal', 'rollup_take_journal', ARRAY['xid8'], 'volatile');
SELECT volatility_is('engage_internal', 'rollup_refresh_sizes', ARRAY['bigint[]', 'boolean[]'], 'volatile');
SELECT volatility_is('engage_internal', 'rollup_drop_idle_hours', ARRAY['bigint[]', 'timestamp with time zone[]'], 'volatile');
SELECT volatility_is('engage_internal', 'rollup_recompute_cumulative',
                     ARRAY['bigint[]', 'timestamp with time zone[]', 'bigint[]', 'timestamp with time zone[]'], 'volatile');
SELECT is((SELECT array_agg(DISTINCT c) FROM pg_proc AS p, unnest(p.proconfig) AS c
           WHERE p.oid = 'engage.rollup_rates()'::regprocedure),
          ARRAY['enable_seqscan=off', 'jit=off', 'search_path=pg_catalog, pg_temp'],
          'rollup_rates (and so its steps) runs without sequential scans and JIT');

-- The privilege design.
SELECT ok(NOT has_schema_privilege('public', 'engage_internal', 'USAGE'), 'PUBLIC has no USAGE on engage_internal');
SELECT is((SELECT count(*) FROM pg_proc AS p
           WHERE p.pronamespace = 'engage_internal'::regnamespace
             AND has_function_privilege('public', p.oid, 'EXECUTE')),
          0::bigint, 'no step is executable by PUBLIC');
SELECT is((SELECT array_agg(p.oid::regprocedure::text ORDER BY p.oid::regprocedure::text) FROM pg_proc AS p
           WHERE p.pronamespace = 'engage'::regnamespace AND p.prosecdef),
          ARRAY['engage.build_campaign_audience(bigint,bigint)', 'engage.cancel_snapshot(bigint)',
                'engage.journal_engagement_update()', 'engage.journal_membership_change()',
                'engage.rollup_rates()', 'engage.snapshot(regclass[])'],
          'the API functions that reach engage_internal, and the journal triggers, run as the owner');

-- Fixtures: audience 960001 by normalized email: a@x.com 960101 (lowest), 960102;
-- b@x.com 960103; c@x.com 960104; invalid 960105.
INSERT INTO engage.users (user_id, username) VALUES (960001, 'pgtap-steps');
INSERT INTO engage.templates (template_id, name, type) VALUES (960001, 'pgtap-steps', 'html');
INSERT INTO engage.audiences (audience_id, name) VALUES (960001, 'steps');
INSERT INTO engage.members (member_id, email) VALUES
    (960101, 'A@x.com'), (960102, ' a@x.com'), (960103, 'b@x.com'), (960104, 'c@x.com'), (960105, 'nope');
INSERT INTO engage.audience_members (audience_id, member_id, email)
SELECT 960001, m.member_id, m.email FROM engage.members AS m WHERE m.member_id BETWEEN 960101 AND 960105;
INSERT INTO engage.campaigns (campaign_id, template_id, user_id, audience_id, name) VALUES
    (960001, 960001, 960001, 960001, 'steps'),
    (960002, 960001, 960001, 960001, 'as an ordinary role');

-- The audience steps on their own.
SELECT results_eq($$SELECT * FROM engage_internal.audience_first_build(960001, 960001, 2)$$,
                  $$VALUES (2::bigint, 'b@x.com'::text)$$,
                  'audience_first_build: limit reached, returns the highest key added');
SELECT results_eq($$SELECT * FROM engage_internal.audience_skip_counts(960001, 2, 2, 'b@x.com')$$,
                  $$VALUES (1::bigint, 0::bigint)$$,
                  'audience_skip_counts of a walk stopped by the limit: rows up to its last key, no invalid');
SELECT results_eq($$SELECT * FROM engage_internal.audience_top_up(960001, 960001, NULL)$$,
                  $$VALUES (1::bigint, 'c@x.com'::text)$$,
                  'audience_top_up: adds the missing key only');
SELECT results_eq($$SELECT * FROM engage_internal.audience_skip_counts(960001, NULL, 1, 'c@x.com')$$,
                  $$VALUES (3::bigint, 1::bigint)$$,
                  'audience_skip_counts of a whole walk: the other valid rows, and the invalid one');
SELECT results_eq($$SELECT member_id, email FROM engage.campaign_audience WHERE campaign_id = 960001 ORDER BY email$$,
                  $$VALUES (960101::bigint, 'a@x.com'::text), (960103, 'b@x.com'), (960104, 'c@x.com')$$,
                  'the steps add the lowest member_id per key');
SELECT results_eq($$SELECT * FROM engage_internal.audience_first_build(960002, 960001, NULL)$$,
                  $$VALUES (3::bigint, NULL::text)$$,
                  'audience_first_build without a limit: no key returned (the skip counts walk everything)');
DELETE FROM engage.campaign_audience WHERE campaign_id = 960002;
SELECT throws_ok($$SELECT * FROM engage_internal.audience_first_build(960001, 960001, NULL)$$,
                 '40001', 'campaign 960001 audience changed concurrently',
                 'audience_first_build on a campaign that is not empty: serialization_failure');

-- The rollup steps, called in rollup_rates()'s order on this transaction's
-- journal: the result equals a computation from scratch.
\ir lib/hourly.sql
SELECT engage.record_engagement(960001, 960101, 'click', '2026-03-01 10:15+00');
SELECT engage.record_engagement(960001, 960103, 'open', '2026-03-01 12:40+00');
CREATE TEMP TABLE take AS SELECT * FROM engage_internal.rollup_take_journal('0');
SELECT ok((SELECT processed_entries > 0 AND 960001 = ANY (campaigns) FROM take),
          'rollup_take_journal consumes the journal and names the affected campaigns');
SELECT is((SELECT count(*) FROM engage_internal.rollup_journal WHERE campaign_id = 960001), 0::bigint,
          'rollup_take_journal leaves none of their entries');
SELECT lives_ok($$SELECT engage_internal.rollup_refresh_sizes(campaigns, resized) FROM take$$,
                'rollup_refresh_sizes');
SELECT is((SELECT audience_size FROM engage_internal.rollup_audience_sizes WHERE campaign_id = 960001), 3::bigint,
          'rollup_refresh_sizes counts the resized campaign');
SELECT lives_ok($$SELECT engage_internal.rollup_drop_idle_hours(campaigns, from_hours) FROM take$$,
                'rollup_drop_idle_hours');
SELECT ok((SELECT engage_internal.rollup_recompute_cumulative(campaigns, from_hours, delta_campaigns, delta_hours)
           FROM take) >= 2, 'rollup_recompute_cumulative writes (at least) the two hours');
SELECT results_eq($$SELECT * FROM pg_temp.hourly(960001)$$, $$SELECT * FROM pg_temp.hourly_from_scratch(960001)$$,
                  'the steps leave the hourly rows equal to a computation from scratch');

-- engage_writer, with no privilege on engage_internal, builds through the
-- steps (the API function runs as the owner) but cannot call one itself.
SET ROLE engage_writer;
SELECT results_eq($$SELECT * FROM engage.build_campaign_audience(960002, 2)$$,
                  $$VALUES (2::bigint, 1::bigint, 0::bigint)$$,
                  'engage_writer builds a limited audience');
SELECT results_eq($$SELECT * FROM engage.build_campaign_audience(960002)$$,
                  $$VALUES (1::bigint, 3::bigint, 1::bigint)$$,
                  'and tops it up');
SELECT results_eq($$SELECT * FROM engage.build_campaign_audience(960002, 3)$$,
                  $$VALUES (0::bigint, 0::bigint, 0::bigint)$$,
                  'a build with nothing to add answers zeros');
SELECT throws_ok($$SELECT * FROM engage_internal.audience_skip_counts(960001, NULL, 0, NULL)$$,
                 '42501', NULL, 'engage_writer cannot call a step directly');
SELECT throws_ok($$SELECT engage.rollup_rates()$$, '42501', NULL, 'nor run a rollup (the owner''s, unless granted)');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
