-- Real concurrent sessions (dblink): two builders of one campaign, engagement
-- of one member from two sessions, a transaction held open across a rollup,
-- and rollups running at once.  The sessions only see committed data, so this
-- suite runs in autocommit mode on fixtures it commits, and deletes them at the
-- end (and at the start, should an earlier run have stopped half-way).
-- Waits poll with deadlines; nothing sleeps for a fixed time.
SET client_min_messages = warning;
SELECT NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'dblink') AS create_dblink \gset
CREATE EXTENSION IF NOT EXISTS dblink;

SELECT plan(46);

-- Fixtures (ids 95xxxx), removed first if left over.
CREATE FUNCTION pg_temp.cleanup()
RETURNS void
LANGUAGE sql AS $$
    DELETE FROM engage.campaigns WHERE campaign_id BETWEEN 950000 AND 950999;
    DELETE FROM engage.audience_members WHERE audience_id BETWEEN 950000 AND 950999;
    DELETE FROM engage.members WHERE member_id BETWEEN 950000 AND 950999;
    DELETE FROM engage.audiences WHERE audience_id BETWEEN 950000 AND 950999;
    DELETE FROM engage.templates WHERE template_id BETWEEN 950000 AND 950999;
    DELETE FROM engage.users WHERE user_id BETWEEN 950000 AND 950999;
$$;
SELECT pg_temp.cleanup() AS cleaned \gset
SELECT engage.rollup_rates() IS NOT NULL AS drained \gset

INSERT INTO engage.users (user_id, username) VALUES (950001, 'pgtap-concurrency');
INSERT INTO engage.templates (template_id, name, type) VALUES (950001, 'pgtap-concurrency', 'html');
INSERT INTO engage.audiences (audience_id, name) VALUES (950001, 'pgtap-concurrency');
-- 5 keys, 4 duplicates, 5 invalid (as in campaign.sql), plus 200 plain members.
INSERT INTO engage.members (member_id, email) VALUES
    (950101, '  ALICE@Example.COM '), (950102, 'alice@example.com'), (950103, 'bob@example.org'),
    (950104, E'\tBob@Example.org\n'), (950105, NULL), (950106, 'not-an-email'),
    (950107, 'carol@example.net'), (950108, '   '), (950109, 'Dave@Example.com'),
    (950110, 'dave@example.com'), (950111, 'erin@example.io'), (950112, 'ALICE@EXAMPLE.COM'),
    (950113, 'a b@example.com'), (950114, 'frank@localhost');
INSERT INTO engage.members (member_id, email)
SELECT 950200 + g, 'member' || g || '@concurrency.example.com' FROM generate_series(1, 200) AS g;
INSERT INTO engage.audience_members (audience_id, member_id, email)
SELECT 950001, m.member_id, m.email FROM engage.members AS m WHERE m.member_id BETWEEN 950101 AND 950114;
INSERT INTO engage.campaigns (campaign_id, template_id, user_id, audience_id, name)
SELECT 950000 + n, 950001, 950001, 950001, 'concurrency ' || n FROM generate_series(1, 6) AS n;
INSERT INTO engage.campaign_audience (campaign_id, member_id, email)
SELECT c, m.member_id, m.email
FROM engage.members AS m, (VALUES (950005::bigint), (950006)) AS c(c)
WHERE m.member_id > 950200;

-- Sessions.
CREATE FUNCTION pg_temp.connstr()
RETURNS text
LANGUAGE sql AS $$
    SELECT format('dbname=%s user=%s port=%s host=%s application_name=engage_pgtap_concurrency',
                  current_database(), current_user, current_setting('port'),
                  coalesce(nullif(split_part(current_setting('unix_socket_directories'), ',', 1), ''),
                           'localhost'))
$$;
SELECT dblink_connect('s1', pg_temp.connstr()), dblink_connect('s2', pg_temp.connstr()),
       dblink_connect('s3', pg_temp.connstr()) \gset
SELECT (SELECT pid FROM dblink('s1', 'SELECT pg_backend_pid()') AS t(pid integer)) AS s1_pid,
       (SELECT pid FROM dblink('s2', 'SELECT pg_backend_pid()') AS t(pid integer)) AS s2_pid,
       (SELECT pid FROM dblink('s3', 'SELECT pg_backend_pid()') AS t(pid integer)) AS s3_pid \gset

-- True once backend pid waits for a lock held by another; false at the deadline.
CREATE FUNCTION pg_temp.await_lock_wait(pid integer, deadline interval DEFAULT '60 s')
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    t_end timestamptz := clock_timestamp() + deadline;
BEGIN
    WHILE clock_timestamp() < t_end LOOP
        IF cardinality(pg_blocking_pids(pid)) > 0 THEN
            RETURN true;
        END IF;
        PERFORM pg_sleep(0.01);
    END LOOP;
    RETURN false;
END
$$;
-- True once the query sent on conn has finished; false at the deadline.
CREATE FUNCTION pg_temp.await_done(conn text, deadline interval DEFAULT '60 s')
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    t_end timestamptz := clock_timestamp() + deadline;
BEGIN
    WHILE clock_timestamp() < t_end LOOP
        IF dblink_is_busy(conn) = 0 THEN
            RETURN true;
        END IF;
        PERFORM pg_sleep(0.01);
    END LOOP;
    RETURN false;
END
$$;
-- The one-row result of a build sent on conn (then the end of its results).
CREATE FUNCTION pg_temp.build_result(conn text)
RETURNS TABLE (added bigint, skipped_duplicates bigint, skipped_invalid bigint)
LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY SELECT * FROM dblink_get_result(conn) AS t(a bigint, d bigint, i bigint);
    PERFORM * FROM dblink_get_result(conn) AS t(a bigint, d bigint, i bigint);
END
$$;
CREATE FUNCTION pg_temp.bool_result(conn text)
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    v boolean;
BEGIN
    SELECT t.v INTO v FROM dblink_get_result(conn) AS t(v boolean);
    PERFORM * FROM dblink_get_result(conn) AS t(v boolean);
    RETURN v;
END
$$;
CREATE FUNCTION pg_temp.rollup_result(conn text)
RETURNS TABLE (processed_entries bigint, changed_campaigns bigint, changed_hours bigint)
LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY SELECT * FROM dblink_get_result(conn) AS t(p bigint, c bigint, h bigint);
    PERFORM * FROM dblink_get_result(conn) AS t(p bigint, c bigint, h bigint);
END
$$;

-- The hourly rows of a campaign, and the same computed from scratch.
\ir lib/hourly.sql

------------------------------------------------------------------------------
-- Two builders of one campaign, the second while the first holds its lock.
SELECT dblink_exec('s1', 'BEGIN') AS begun \gset
SELECT results_eq($$SELECT * FROM dblink('s1', 'SELECT * FROM engage.build_campaign_audience(950001)')
                                  AS t(a bigint, d bigint, i bigint)$$,
                  $$VALUES (5::bigint, 4::bigint, 5::bigint)$$,
                  'session 1 builds the audience (not committed yet)');
SELECT is(dblink_send_query('s2', 'SELECT * FROM engage.build_campaign_audience(950001)'), 1,
          'session 2 starts building the same campaign');
SELECT ok(pg_temp.await_lock_wait(:s2_pid), 'session 2 waits for session 1');
SELECT is(dblink_exec('s1', 'COMMIT'), 'COMMIT', 'session 1 commits');
SELECT ok(pg_temp.await_done('s2'), 'session 2 finishes');
SELECT results_eq($$SELECT * FROM pg_temp.build_result('s2')$$,
                  $$VALUES (0::bigint, 9::bigint, 5::bigint)$$,
                  'session 2 adds nothing: everything was there when it got the lock');
SELECT results_eq($$SELECT count(*), count(DISTINCT email), count(DISTINCT member_id)
                    FROM engage.campaign_audience WHERE campaign_id = 950001$$,
                  $$VALUES (5::bigint, 5::bigint, 5::bigint)$$,
                  'no duplicates: 5 rows, 5 emails, 5 members');

-- Two builders started together, unlimited and limited.
SELECT is(dblink_send_query('s1', 'SELECT * FROM engage.build_campaign_audience(950002)')
          + dblink_send_query('s2', 'SELECT * FROM engage.build_campaign_audience(950002)'), 2,
          'two sessions build campaign 950002 at once');
SELECT ok(pg_temp.await_done('s1') AND pg_temp.await_done('s2'), 'both finish');
SELECT results_eq($$SELECT sum(added)::bigint, min(added), max(added)
                    FROM (SELECT * FROM pg_temp.build_result('s1')
                          UNION ALL SELECT * FROM pg_temp.build_result('s2')) AS r$$,
                  $$VALUES (5::bigint, 0::bigint, 5::bigint)$$,
                  'one added the 5 members, the other none');
SELECT results_eq($$SELECT count(*), count(DISTINCT email) FROM engage.campaign_audience WHERE campaign_id = 950002$$,
                  $$VALUES (5::bigint, 5::bigint)$$, 'and there are 5 distinct rows');
SELECT is(dblink_send_query('s1', 'SELECT * FROM engage.build_campaign_audience(950003, 3)')
          + dblink_send_query('s2', 'SELECT * FROM engage.build_campaign_audience(950003, 3)'), 2,
          'two sessions build campaign 950003 with max_members 3 at once');
SELECT ok(pg_temp.await_done('s1') AND pg_temp.await_done('s2'), 'both finish');
SELECT results_eq($$SELECT sum(added)::bigint FROM (SELECT * FROM pg_temp.build_result('s1')
                                                   UNION ALL SELECT * FROM pg_temp.build_result('s2')) AS r$$,
                  $$VALUES (3::bigint)$$, 'together they added 3');
SELECT results_eq($$SELECT member_id FROM engage.campaign_audience WHERE campaign_id = 950003 ORDER BY member_id$$,
                  $$VALUES (950101::bigint), (950103), (950107)$$,
                  'the cap holds: the 3 first keys, once each');

-- Under REPEATABLE READ a builder whose snapshot predates another's commit
-- gets a serialization failure to retry, never a duplicate.
SELECT dblink_exec('s2', 'BEGIN ISOLATION LEVEL REPEATABLE READ') AS begun \gset
SELECT is((SELECT n FROM dblink('s2', 'SELECT count(*) FROM engage.campaign_audience WHERE campaign_id = 950004')
                          AS t(n bigint)), 0::bigint, 'session 2 takes its snapshot: campaign 950004 is empty');
SELECT results_eq($$SELECT * FROM dblink('s1', 'SELECT * FROM engage.build_campaign_audience(950004)')
                                  AS t(a bigint, d bigint, i bigint)$$,
                  $$VALUES (5::bigint, 4::bigint, 5::bigint)$$, 'session 1 builds it and commits');
SELECT throws_ok($$SELECT * FROM dblink('s2', 'SELECT * FROM engage.build_campaign_audience(950004)')
                                 AS t(a bigint, d bigint, i bigint)$$,
                 '40001', 'campaign 950004 audience changed concurrently',
                 'session 2 (REPEATABLE READ, older snapshot): serialization_failure');
SELECT dblink_exec('s2', 'ROLLBACK') AS rolled_back \gset
SELECT is((SELECT count(*) FROM engage.campaign_audience WHERE campaign_id = 950004), 5::bigint,
          'still 5 members');

------------------------------------------------------------------------------
-- One member's engagement from two sessions: the earliest time wins, whatever
-- the commit order.
SELECT dblink_exec('s1', 'BEGIN') AS begun \gset
SELECT is((SELECT v FROM dblink('s1', $$SELECT engage.record_engagement(950005, 950201, 'open', '2024-06-01 10:00+00')$$)
                         AS t(v boolean)), true, 'session 1 records an open at 10:00 (not committed)');
SELECT is(dblink_send_query('s2', $$SELECT engage.record_engagement(950005, 950201, 'open', '2024-06-01 09:00+00')$$), 1,
          'session 2 records an open at 09:00 for the same member');
SELECT ok(pg_temp.await_lock_wait(:s2_pid), 'session 2 waits for the row');
SELECT is(dblink_exec('s1', 'COMMIT'), 'COMMIT', 'session 1 commits');
SELECT ok(pg_temp.await_done('s2'), 'session 2 finishes');
SELECT is(pg_temp.bool_result('s2'), true, 'session 2 changed the member: its open is earlier');
SELECT dblink_exec('s1', 'BEGIN') AS begun \gset
SELECT is((SELECT v FROM dblink('s1', $$SELECT engage.record_engagement(950005, 950202, 'click', '2024-06-01 09:00+00')$$)
                         AS t(v boolean)), true, 'session 1 records a click at 09:00 (not committed)');
SELECT is(dblink_send_query('s2', $$SELECT engage.record_engagement(950005, 950202, 'click', '2024-06-01 10:00+00')$$), 1,
          'session 2 records a click at 10:00 for the same member');
SELECT ok(pg_temp.await_lock_wait(:s2_pid), 'session 2 waits for the row');
SELECT dblink_exec('s1', 'COMMIT') AS committed \gset
SELECT ok(pg_temp.await_done('s2'), 'session 2 finishes');
SELECT is(pg_temp.bool_result('s2'), false, 'session 2 changed nothing: its click is later');
SELECT results_eq($$SELECT member_id, opened_at, clicked_at FROM engage.campaign_audience
                    WHERE campaign_id = 950005 AND member_id IN (950201, 950202) ORDER BY member_id$$,
                  $$VALUES (950201::bigint, '2024-06-01 09:00+00'::timestamptz, NULL::timestamptz),
                           (950202, '2024-06-01 09:00+00', '2024-06-01 09:00+00')$$,
                  'both members keep the earliest touches');

------------------------------------------------------------------------------
-- A transaction holding engagement open across a rollup: its touch is
-- counted by the next rollup after it commits, though a later transaction
-- committed before the first rollup.
SELECT engage.rollup_rates() IS NOT NULL AS drained \gset
SELECT dblink_exec('s1', 'BEGIN') AS begun \gset
SELECT is((SELECT v FROM dblink('s1', $$SELECT engage.record_engagement(950006, 950201, 'open', '2024-06-01 10:10+00')$$)
                         AS t(v boolean)), true, 'session 1 records an open and stays open');
SELECT is((SELECT v FROM dblink('s2', $$SELECT engage.record_engagement(950006, 950202, 'click', '2024-06-01 11:20+00')$$)
                         AS t(v boolean)), true, 'session 2 records a click and commits');
SELECT is(dblink_send_query('s3', 'SELECT * FROM engage.rollup_rates()'), 1, 'session 3 rolls up meanwhile');
SELECT ok(pg_temp.await_done('s3'), 'the rollup does not wait for the open transaction');
SELECT results_eq($$SELECT processed_entries > 0 FROM pg_temp.rollup_result('s3')$$, $$VALUES (true)$$,
                  'it processed what was committed');
SELECT results_eq('SELECT * FROM pg_temp.hourly(950006)', 'SELECT * FROM pg_temp.hourly_from_scratch(950006)',
                  'the hourly rows match the committed data: the click and its open, not the pending open');
SELECT is(dblink_exec('s1', 'COMMIT'), 'COMMIT', 'session 1 commits after the rollup');
SELECT results_eq($$SELECT processed_entries > 0 FROM dblink('s3', 'SELECT * FROM engage.rollup_rates()')
                                                  AS t(processed_entries bigint, c bigint, h bigint)$$,
                  $$VALUES (true)$$, 'the next rollup finds the late entry');
SELECT results_eq($$SELECT hour, new_opens, new_clicks, cum_opens, cum_clicks FROM pg_temp.hourly(950006)$$,
                  $$VALUES ('2024-06-01 10:00+00'::timestamptz, 1::bigint, 0::bigint, 1::bigint, 0::bigint),
                           ('2024-06-01 11:00+00', 1, 1, 2, 1)$$,
                  'the late open is counted in its hour, and the cumulative counts after it');
SELECT results_eq('SELECT * FROM pg_temp.hourly(950006)', 'SELECT * FROM pg_temp.hourly_from_scratch(950006)',
                  'and the hourly rows match a computation from scratch');

-- Rollups at once: each entry is counted once.
SELECT is((SELECT count(*) FROM dblink('s1', $$
               SELECT engage.record_engagement(950006, m, (ARRAY['open', 'click', 'conversion'])[1 + m % 3],
                                               timestamptz '2024-06-02 00:00+00' + (m % 48) * interval '47 minutes')
               FROM generate_series(950203, 950400) AS m$$) AS t(v boolean)),
          198::bigint, '198 more members engage');
SELECT is(dblink_send_query('s2', 'SELECT * FROM engage.rollup_rates()')
          + dblink_send_query('s3', 'SELECT * FROM engage.rollup_rates()'), 2, 'two sessions roll up at once');
SELECT ok(pg_temp.await_done('s2') AND pg_temp.await_done('s3'), 'both finish');
SELECT results_eq($$SELECT count(*) FILTER (WHERE processed_entries > 0)
                    FROM (SELECT * FROM pg_temp.rollup_result('s2')
                          UNION ALL SELECT * FROM pg_temp.rollup_result('s3')) AS r$$,
                  $$VALUES (1::bigint)$$,
                  'one of them processed the entries, the other found nothing left');
SELECT results_eq('SELECT * FROM pg_temp.hourly(950006)', 'SELECT * FROM pg_temp.hourly_from_scratch(950006)',
                  'the hourly rows match a computation from scratch');

SELECT * FROM finish();

SELECT dblink_disconnect('s1'), dblink_disconnect('s2'), dblink_disconnect('s3') \gset
SELECT pg_temp.cleanup() AS cleaned \gset
SELECT engage.rollup_rates() IS NOT NULL AS drained \gset
\if :create_dblink
DROP EXTENSION dblink;
\endif
