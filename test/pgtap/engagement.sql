-- engage.record_engagement: first touches, implications, idempotence, order
-- independence and errors.  (Two sessions on one member: concurrency.sql.)
BEGIN;
SELECT plan(44);

SELECT has_function('engage', 'record_engagement', ARRAY['bigint', 'bigint', 'text', 'timestamp with time zone']);
SELECT volatility_is('engage', 'record_engagement', ARRAY['bigint', 'bigint', 'text', 'timestamp with time zone'], 'volatile');
SELECT isnt(obj_description('engage.record_engagement(bigint, bigint, text, timestamptz)'::regprocedure, 'pg_proc'),
            NULL, 'record_engagement has a comment');

INSERT INTO engage.users (user_id, username) VALUES (930001, 'pgtap-engagement');
INSERT INTO engage.templates (template_id, name, type) VALUES (930001, 'pgtap-engagement', 'html');
INSERT INTO engage.audiences (audience_id, name) VALUES (930001, 'pgtap-engagement');
INSERT INTO engage.members (member_id, email)
SELECT 930100 + g, 'm' || g || '@engagement.example.com' FROM generate_series(1, 8) AS g;
INSERT INTO engage.campaigns (campaign_id, template_id, user_id, audience_id, name) VALUES
    (930001, 930001, 930001, 930001, 'engagement'),
    (930002, 930001, 930001, 930001, 'other');
INSERT INTO engage.campaign_audience (campaign_id, member_id, email)
SELECT 930001, m.member_id, m.email FROM engage.members AS m WHERE m.member_id BETWEEN 930101 AND 930107;
INSERT INTO engage.campaign_audience (campaign_id, member_id, email)
SELECT 930002, m.member_id, m.email FROM engage.members AS m WHERE m.member_id = 930108;

-- The engagement of one member as one row, for comparisons.
CREATE FUNCTION pg_temp.touch(member bigint)
RETURNS TABLE (opened boolean, opened_at timestamptz, clicked boolean, clicked_at timestamptz,
               converted boolean, converted_at timestamptz)
LANGUAGE sql AS $$
    SELECT ca.opened, ca.opened_at, ca.clicked, ca.clicked_at, ca.converted, ca.converted_at
    FROM engage.campaign_audience AS ca WHERE ca.campaign_id = 930001 AND ca.member_id = member
$$;

-- Opens: the first touch is kept, an earlier one replaces it.
SELECT is(engage.record_engagement(930001, 930101, 'open', '2024-03-01 10:15+00'), true,
          'a first open changes the member');
SELECT results_eq('SELECT * FROM pg_temp.touch(930101)',
    $$VALUES (true, '2024-03-01 10:15+00'::timestamptz, false, NULL::timestamptz, false, NULL::timestamptz)$$,
    'the open is recorded with its time');
SELECT is(engage.record_engagement(930001, 930101, 'open', '2024-03-01 10:15+00'), false,
          'the same open again (a repeated pixel) changes nothing');
SELECT is(engage.record_engagement(930001, 930101, 'open', '2024-03-01 12:00+00'), false,
          'a later open changes nothing');
SELECT results_eq('SELECT * FROM pg_temp.touch(930101)',
    $$VALUES (true, '2024-03-01 10:15+00'::timestamptz, false, NULL::timestamptz, false, NULL::timestamptz)$$,
    'the first open time is kept');
SELECT is(engage.record_engagement(930001, 930101, 'open', '2024-03-01 09:40+00'), true,
          'an earlier open arriving late changes the member');
SELECT results_eq('SELECT opened_at FROM pg_temp.touch(930101)',
    $$VALUES ('2024-03-01 09:40+00'::timestamptz)$$,
    'the first-touch time moves to the earlier open');

-- A click implies an open at the same time.
SELECT is(engage.record_engagement(930001, 930102, 'click', '2024-03-01 11:00+00'), true,
          'a click without an open changes the member');
SELECT results_eq('SELECT * FROM pg_temp.touch(930102)',
    $$VALUES (true, '2024-03-01 11:00+00'::timestamptz, true, '2024-03-01 11:00+00'::timestamptz,
              false, NULL::timestamptz)$$,
    'a click records the open it implies, at the click time');
SELECT is(engage.record_engagement(930001, 930102, 'open', '2024-03-01 11:30+00'), false,
          'an open after the click changes nothing');
SELECT is(engage.record_engagement(930001, 930102, 'open', '2024-03-01 10:30+00'), true,
          'an open before the click changes the member');
SELECT results_eq('SELECT * FROM pg_temp.touch(930102)',
    $$VALUES (true, '2024-03-01 10:30+00'::timestamptz, true, '2024-03-01 11:00+00'::timestamptz,
              false, NULL::timestamptz)$$,
    'the earlier open moves opened_at only');
SELECT is(engage.record_engagement(930001, 930102, 'click', '2024-03-01 10:00+00'), true,
          'a click before the open changes the member');
SELECT results_eq('SELECT * FROM pg_temp.touch(930102)',
    $$VALUES (true, '2024-03-01 10:00+00'::timestamptz, true, '2024-03-01 10:00+00'::timestamptz,
              false, NULL::timestamptz)$$,
    'an earlier click moves both the click and the open it implies');

-- A conversion implies a click and an open.
SELECT is(engage.record_engagement(930001, 930103, 'conversion', '2024-03-01 14:05+00'), true,
          'a conversion without anything before changes the member');
SELECT results_eq('SELECT * FROM pg_temp.touch(930103)',
    $$VALUES (true, '2024-03-01 14:05+00'::timestamptz, true, '2024-03-01 14:05+00'::timestamptz,
              true, '2024-03-01 14:05+00'::timestamptz)$$,
    'a conversion records the click and open it implies, at its time');
SELECT is(engage.record_engagement(930001, 930103, 'conversion', '2024-03-01 14:05+00'), false,
          'a retried conversion changes nothing');
SELECT is(engage.record_engagement(930001, 930103, 'click', '2024-03-01 15:00+00'), false,
          'a click after the conversion changes nothing');
SELECT is(engage.record_engagement(930001, 930104, 'open', '2024-03-01 08:00+00'), true,
          'member 4 opens');
SELECT is(engage.record_engagement(930001, 930104, 'click', '2024-03-01 09:00+00'), true,
          'member 4 clicks');
SELECT is(engage.record_engagement(930001, 930104, 'conversion', '2024-03-01 08:30+00'), true,
          'member 4 converts, reported before the click');
SELECT results_eq('SELECT * FROM pg_temp.touch(930104)',
    $$VALUES (true, '2024-03-01 08:00+00'::timestamptz, true, '2024-03-01 08:30+00'::timestamptz,
              true, '2024-03-01 08:30+00'::timestamptz)$$,
    'the conversion pulls the click back to its time and keeps the earlier open');

-- Order independence: the same events in two orders give the same row.
SELECT results_eq(
    $$SELECT engage.record_engagement(930001, 930105, e.kind, e.at)
      FROM (VALUES (1, 'open', '2024-03-02 12:00+00'::timestamptz), (2, 'click', '2024-03-02 13:00+00'),
                   (3, 'conversion', '2024-03-02 16:00+00'), (4, 'open', '2024-03-02 09:00+00'),
                   (5, 'click', '2024-03-02 15:00+00')) AS e(n, kind, at)
      ORDER BY e.n$$,
    $$VALUES (true), (true), (true), (true), (false)$$,
    'five events in one order: only the late click changes nothing');
SELECT results_eq(
    $$SELECT engage.record_engagement(930001, 930106, e.kind, e.at)
      FROM (VALUES (1, 'open', '2024-03-02 12:00+00'::timestamptz), (2, 'click', '2024-03-02 13:00+00'),
                   (3, 'conversion', '2024-03-02 16:00+00'), (4, 'open', '2024-03-02 09:00+00'),
                   (5, 'click', '2024-03-02 15:00+00')) AS e(n, kind, at)
      ORDER BY e.n DESC$$,
    $$VALUES (true), (true), (true), (true), (false)$$,
    'the same events in the opposite order: only the late open changes nothing');
SELECT results_eq('SELECT * FROM pg_temp.touch(930105)', 'SELECT * FROM pg_temp.touch(930106)',
                  'the same events in opposite orders give the same first touches');
SELECT results_eq('SELECT * FROM pg_temp.touch(930105)',
    $$VALUES (true, '2024-03-02 09:00+00'::timestamptz, true, '2024-03-02 13:00+00'::timestamptz,
              true, '2024-03-02 16:00+00'::timestamptz)$$,
    'each first touch is the earliest event implying it');

-- The default time is the transaction's.
SELECT is(engage.record_engagement(930001, 930107, 'open'), true, 'an open without a time');
SELECT results_eq('SELECT opened_at FROM pg_temp.touch(930107)', 'SELECT now()',
                  'is recorded at now()');

-- Errors: SQLSTATE, message, and nothing written.
CREATE TEMP TABLE before_errors AS SELECT * FROM engage.campaign_audience WHERE campaign_id IN (930001, 930002);
SELECT throws_ok($$SELECT engage.record_engagement(930001, 930101, 'bounce', '2024-03-01 07:00+00')$$,
                 '22023', 'unknown engagement kind: ''bounce''', 'unknown kind: invalid_parameter_value');
SELECT throws_ok($$SELECT engage.record_engagement(930001, 930101, 'Open', '2024-03-01 07:00+00')$$,
                 '22023', 'unknown engagement kind: ''Open''', 'kinds are exact: ''Open'' is unknown');
SELECT throws_ok($$SELECT engage.record_engagement(930001, 930108, 'open', '2024-03-01 07:00+00')$$,
                 'P0002', 'member 930108 is not in the audience of campaign 930001',
                 'a member of another campaign: no_data_found');
SELECT throws_ok($$SELECT engage.record_engagement(939999, 930101, 'open', '2024-03-01 07:00+00')$$,
                 'P0002', 'member 930101 is not in the audience of campaign 939999',
                 'an unknown campaign: no_data_found');
SELECT throws_ok($$SELECT engage.record_engagement(930001, 939999, 'click', '2024-03-01 07:00+00')$$,
                 'P0002', 'member 939999 is not in the audience of campaign 930001',
                 'an unknown member: no_data_found');
SELECT throws_ok($$SELECT engage.record_engagement(930001, 930101, 'open', NULL)$$,
                 '22004', 'campaign_id, member_id, kind and at must not be NULL', 'NULL time: null_value_not_allowed');
SELECT throws_ok($$SELECT engage.record_engagement(930001, 930101, NULL, now())$$,
                 '22004', NULL, 'NULL kind: null_value_not_allowed');
SELECT throws_ok($$SELECT engage.record_engagement(NULL, 930101, 'open', now())$$,
                 '22004', NULL, 'NULL campaign: null_value_not_allowed');
SELECT throws_ok($$SELECT engage.record_engagement(930001, NULL, 'open', now())$$,
                 '22004', NULL, 'NULL member: null_value_not_allowed');
SELECT throws_ok($$SELECT engage.record_engagement(930001, 930101, 'open', '-infinity')$$,
                 '22023', 'engagement time must be finite: -infinity', 'infinite time: invalid_parameter_value');
SELECT set_eq('SELECT * FROM engage.campaign_audience WHERE campaign_id IN (930001, 930002)',
              'SELECT * FROM before_errors', 'the refused calls wrote nothing');

-- The table's own rules hold for everything recorded.
SELECT is((SELECT count(*) FROM engage.campaign_audience
           WHERE campaign_id = 930001
             AND NOT (coalesce(opened_at <= clicked_at, true) AND coalesce(clicked_at <= converted_at, true))),
          0::bigint, 'first touches are ordered: open <= click <= conversion');
SELECT results_eq(
    $$SELECT count(*) FILTER (WHERE opened), count(*) FILTER (WHERE clicked), count(*) FILTER (WHERE converted)
      FROM engage.campaign_audience WHERE campaign_id = 930001$$,
    $$VALUES (7::bigint, 5::bigint, 4::bigint)$$,
    '7 opened, 5 clicked, 4 converted');

SELECT * FROM finish();
ROLLBACK;
