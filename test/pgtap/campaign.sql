-- engage.build_campaign_audience: dedupe, member choice, skip counts, limits,
-- idempotence, errors, and that a limited build does not read the audience.
-- (Two sessions building at once: concurrency.sql.)
BEGIN;
SELECT plan(41);

SELECT has_function('engage', 'build_campaign_audience', ARRAY['bigint', 'bigint']);
SELECT volatility_is('engage', 'build_campaign_audience', ARRAY['bigint', 'bigint'], 'volatile');
SELECT isnt(obj_description('engage.build_campaign_audience(bigint, bigint)'::regprocedure, 'pg_proc'),
            NULL, 'build_campaign_audience has a comment');
SELECT is(pg_get_indexdef('engage.audience_members_dedupe_idx'::regclass),
          'CREATE INDEX audience_members_dedupe_idx ON engage.audience_members USING btree '
          || '(audience_id, engage.normalize_email(email), member_id) INCLUDE (email)',
          'the dedupe index covers email, for index-only walks');

-- Fixtures.  Audience 910001 (14 rows), by normalized email:
--   alice@example.com  910101 (lowest), 910102, 910112
--   bob@example.org    910103 (lowest), 910104
--   carol@example.net  910107
--   dave@example.com   910109 (lowest, added to the audience after 910110), 910110
--   erin@example.io    910111
--   invalid            910105 NULL, 910106 no '@', 910108 blank, 910113 inner
--                      space, 910114 domain without a dot
-- => 5 keys, 4 duplicate rows, 5 invalid rows.
INSERT INTO engage.users (user_id, username) VALUES (910001, 'pgtap-campaign');
INSERT INTO engage.templates (template_id, name, type) VALUES (910001, 'pgtap-campaign', 'html');
INSERT INTO engage.audiences (audience_id, name) VALUES
    (910001, 'mixed'), (910002, 'empty'), (910003, 'all invalid'), (910004, 'big');
INSERT INTO engage.members (member_id, email) VALUES
    (910101, '  ALICE@Example.COM '), (910102, 'alice@example.com'),
    (910103, 'bob@example.org'),      (910104, E'\tBob@Example.org\n'),
    (910105, NULL),                   (910106, 'not-an-email'),
    (910107, 'carol@example.net'),    (910108, '   '),
    (910109, 'Dave@Example.com'),     (910110, 'dave@example.com'),
    (910111, 'erin@example.io'),      (910112, 'ALICE@EXAMPLE.COM'),
    (910113, 'a b@example.com'),      (910114, 'frank@localhost'),
    (910115, 'gina@example.com');
INSERT INTO engage.audience_members (audience_id, member_id, email)
SELECT 910001, m.member_id, m.email FROM engage.members AS m
WHERE m.member_id BETWEEN 910101 AND 910114 AND m.member_id <> 910109
ORDER BY m.member_id DESC;
INSERT INTO engage.audience_members (audience_id, member_id, email)
SELECT 910001, m.member_id, m.email FROM engage.members AS m WHERE m.member_id = 910109;
INSERT INTO engage.audience_members (audience_id, member_id, email)
SELECT 910003, m.member_id, m.email FROM engage.members AS m WHERE m.member_id IN (910105, 910106);

INSERT INTO engage.campaigns (campaign_id, template_id, user_id, audience_id, name, sent) VALUES
    (910001, 910001, 910001, 910001, 'full', false),
    (910002, 910001, 910001, 910001, 'limited', false),
    (910003, 910001, 910001, 910001, 'member already in', false),
    (910004, 910001, 910001, 910001, 'sent', true),
    (910005, 910001, 910001, 910002, 'empty audience', false),
    (910006, 910001, 910001, 910003, 'invalid audience', false),
    (910007, 910001, 910001, 910001, 'zero', false),
    (910008, 910001, 910001, 910004, 'big', false);

-- Full build.
SELECT results_eq(
    'SELECT * FROM engage.build_campaign_audience(910001)',
    $$VALUES (5::bigint, 4::bigint, 5::bigint)$$,
    'full build: 5 added, 4 duplicate rows and 5 invalid rows skipped');
SELECT results_eq(
    'SELECT member_id, email FROM engage.campaign_audience WHERE campaign_id = 910001 ORDER BY email',
    $$VALUES (910101::bigint, 'alice@example.com'), (910103, 'bob@example.org'),
             (910107, 'carol@example.net'), (910109, 'dave@example.com'),
             (910111, 'erin@example.io')$$,
    'one row per normalized email, the lowest member_id, the email stored normalized');
SELECT results_eq(
    $$SELECT count(*) FILTER (WHERE opened OR clicked OR converted), count(*)
      FROM engage.campaign_audience WHERE campaign_id = 910001$$,
    $$VALUES (0::bigint, 5::bigint)$$,
    'new campaign members start without engagement');

-- Idempotence.
SELECT results_eq(
    'SELECT * FROM engage.build_campaign_audience(910001)',
    $$VALUES (0::bigint, 9::bigint, 5::bigint)$$,
    'building again adds nothing: every valid row is now a duplicate');
SELECT is((SELECT count(*) FROM engage.campaign_audience WHERE campaign_id = 910001), 5::bigint,
          'still 5 members after the second build');

-- A member joining the audience later is added by the next build, alone.
INSERT INTO engage.audience_members (audience_id, member_id, email)
VALUES (910001, 910115, ' Gina@Example.com');
SELECT results_eq(
    'SELECT * FROM engage.build_campaign_audience(910001)',
    $$VALUES (1::bigint, 9::bigint, 5::bigint)$$,
    'a new audience member is added by the next build');
SELECT results_eq(
    'SELECT member_id, email FROM engage.campaign_audience WHERE campaign_id = 910001 AND member_id = 910115',
    $$VALUES (910115::bigint, 'gina@example.com')$$,
    'the new member is stored with its normalized email');
DELETE FROM engage.audience_members WHERE member_id = 910115;

-- Limited builds take keys in order and cap the campaign's total size.
SELECT results_eq(
    'SELECT * FROM engage.build_campaign_audience(910002, 2)',
    $$VALUES (2::bigint, 3::bigint, 0::bigint)$$,
    'max_members 2: the 2 first keys; the walk passed 3 duplicates and no invalid row');
SELECT results_eq(
    'SELECT member_id FROM engage.campaign_audience WHERE campaign_id = 910002 ORDER BY member_id',
    $$VALUES (910101::bigint), (910103)$$,
    'the limited build chose alice (910101) and bob (910103)');
SELECT results_eq(
    'SELECT * FROM engage.build_campaign_audience(910002, 2)',
    $$VALUES (0::bigint, 0::bigint, 0::bigint)$$,
    'the same limited build again adds nothing and walks nothing');
SELECT results_eq(
    'SELECT * FROM engage.build_campaign_audience(910002, 3)',
    $$VALUES (1::bigint, 5::bigint, 0::bigint)$$,
    'raising max_members to 3 adds exactly the next key');
SELECT results_eq(
    'SELECT member_id FROM engage.campaign_audience WHERE campaign_id = 910002 ORDER BY member_id',
    $$VALUES (910101::bigint), (910103), (910107)$$,
    'the third member is carol (910107)');
SELECT results_eq(
    'SELECT * FROM engage.build_campaign_audience(910002, 1000)',
    $$VALUES (2::bigint, 7::bigint, 5::bigint)$$,
    'a limit above the audience walks it all and adds the rest');
SELECT set_eq(
    'SELECT member_id, email FROM engage.campaign_audience WHERE campaign_id = 910002',
    'SELECT member_id, email FROM engage.campaign_audience WHERE campaign_id = 910001 AND member_id <> 910115',
    'limited builds in steps end with the same members as one full build');
SELECT results_eq(
    'SELECT * FROM engage.build_campaign_audience(910007, 0)',
    $$VALUES (0::bigint, 0::bigint, 0::bigint)$$,
    'max_members 0 adds nothing');
SELECT is((SELECT count(*) FROM engage.campaign_audience WHERE campaign_id = 910007), 0::bigint,
          'max_members 0 wrote nothing');

-- A member already in the campaign (under another email) is not added again;
-- its key goes to the next lowest member_id.
INSERT INTO engage.campaign_audience (campaign_id, member_id, email)
VALUES (910003, 910101, 'zed@example.com');
SELECT results_eq(
    'SELECT * FROM engage.build_campaign_audience(910003)',
    $$VALUES (5::bigint, 4::bigint, 5::bigint)$$,
    'build next to a member already present');
SELECT results_eq(
    'SELECT member_id, email FROM engage.campaign_audience WHERE campaign_id = 910003 ORDER BY member_id',
    $$VALUES (910101::bigint, 'zed@example.com'), (910102, 'alice@example.com'),
             (910103, 'bob@example.org'), (910107, 'carol@example.net'),
             (910109, 'dave@example.com'), (910111, 'erin@example.io')$$,
    'alice goes to 910102 because 910101 is already in the campaign');

-- Empty and all-invalid audiences.
SELECT results_eq(
    'SELECT * FROM engage.build_campaign_audience(910005)',
    $$VALUES (0::bigint, 0::bigint, 0::bigint)$$,
    'an empty audience adds nothing');
SELECT results_eq(
    'SELECT * FROM engage.build_campaign_audience(910006)',
    $$VALUES (0::bigint, 0::bigint, 2::bigint)$$,
    'an audience of invalid emails: both rows skipped and counted as invalid');
SELECT results_eq(
    'SELECT * FROM engage.build_campaign_audience(910006, 10)',
    $$VALUES (0::bigint, 0::bigint, 2::bigint)$$,
    'a limited build that runs out of keys walks into the invalid rows and counts them');

-- Errors, and nothing written.
SELECT throws_ok('SELECT engage.build_campaign_audience(919999)', 'P0002',
                 'campaign 919999 does not exist', 'unknown campaign: no_data_found');
SELECT throws_ok('SELECT engage.build_campaign_audience(910004)', '55000',
                 'campaign 910004 has already been sent', 'sent campaign: object_not_in_prerequisite_state');
SELECT throws_ok('SELECT engage.build_campaign_audience(910004, 10)', '55000',
                 'campaign 910004 has already been sent', 'sent campaign refused with a limit too');
SELECT is((SELECT count(*) FROM engage.campaign_audience WHERE campaign_id = 910004), 0::bigint,
          'nothing written for the sent campaign');
SELECT throws_ok('SELECT engage.build_campaign_audience(NULL)', '22004',
                 'campaign_id must not be NULL', 'NULL campaign: null_value_not_allowed');
SELECT throws_ok('SELECT engage.build_campaign_audience(910007, -1)', '22023',
                 'max_members must not be negative: -1', 'negative max_members: invalid_parameter_value');
SELECT is((SELECT count(*) FROM engage.campaign_audience WHERE campaign_id = 910007), 0::bigint,
          'nothing written for a refused limit');

-- Sending a campaign closes its audience (the check sees committed state of
-- the row it locks).
UPDATE engage.campaigns SET sent = true WHERE campaign_id = 910002;
SELECT throws_ok('SELECT engage.build_campaign_audience(910002)', '55000', NULL,
                 'a campaign marked sent after a build is refused');
SELECT is((SELECT count(*) FROM engage.campaign_audience WHERE campaign_id = 910002), 5::bigint,
          'its audience is left as it was');

-- Scale behaviour: a limited build reads about as many index entries as it
-- adds, whatever the audience size (20,000 rows here, 1 in 5 a duplicate).
INSERT INTO engage.members (member_id, email)
SELECT 920000 + g,
       CASE WHEN g % 5 = 0 THEN upper('user' || (g - 1) || '@big.example.com')
            ELSE 'user' || g || '@big.example.com' END
FROM generate_series(1, 20000) AS g;
INSERT INTO engage.audience_members (audience_id, member_id, email)
SELECT 910004, m.member_id, m.email FROM engage.members AS m WHERE m.member_id > 920000;
ANALYZE engage.audience_members;
ANALYZE engage.campaign_audience;
CREATE TEMP TABLE scan_before AS
SELECT pg_stat_get_xact_numscans('engage.audience_members'::regclass) AS table_scans,
       pg_stat_get_xact_tuples_returned('engage.audience_members'::regclass) AS seq_rows,
       pg_stat_get_xact_tuples_returned('engage.audience_members_dedupe_idx'::regclass) AS index_rows;
SELECT results_eq(
    'SELECT added FROM engage.build_campaign_audience(910008, 100)',
    $$VALUES (100::bigint)$$,
    'a limited build on a 20,000-row audience adds 100 members');
SELECT is((SELECT pg_stat_get_xact_tuples_returned('engage.audience_members'::regclass) - seq_rows
           FROM scan_before), 0::bigint,
          'no sequential scan of audience_members');
SELECT cmp_ok((SELECT pg_stat_get_xact_tuples_returned('engage.audience_members_dedupe_idx'::regclass)
                      - index_rows FROM scan_before), '<=', 1000::bigint,
              'the dedupe index entries read stay proportional to the limit (<= 1,000 of 20,000)');
SELECT results_eq(
    $$SELECT count(*), count(DISTINCT lower(email)) FROM engage.campaign_audience WHERE campaign_id = 910008$$,
    $$VALUES (100::bigint, 100::bigint)$$,
    'the 100 members have 100 different emails');
SELECT set_eq(
    $$SELECT member_id, email FROM engage.campaign_audience WHERE campaign_id = 910008$$,
    $$SELECT DISTINCT ON (engage.normalize_email(email)) member_id, engage.normalize_email(email)
      FROM engage.audience_members WHERE audience_id = 910004
      ORDER BY engage.normalize_email(email), member_id LIMIT 100$$,
    'they are the first 100 keys of the audience, lowest member_id each');
SELECT results_eq(
    'SELECT * FROM engage.build_campaign_audience(910008)',
    $$VALUES (15900::bigint, 4100::bigint, 0::bigint)$$,
    'completing the big audience: 16,000 keys in all; the rows of the 100 present keys count as duplicates');

-- The writes are ordinary: the rollup journal saw the new members.
SELECT ok(EXISTS (SELECT FROM engage_internal.rollup_journal WHERE campaign_id = 910001 AND hour IS NULL),
          'building journals a membership change for the rollup');

SELECT * FROM finish();
ROLLBACK;
