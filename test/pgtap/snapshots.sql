-- pgTAP: snapshot requests (extension/sql/55_snapshots.sql): which tables are
-- captured, by which key a snapshot reads them, engage.snapshot()'s answers
-- and refusals, cancelling, and the progress view.  The shipper is off here:
-- requests stay pending.  Runs in a transaction that is rolled back; needs
-- engage.database = this database (scripts/test.sh sets it).
BEGIN;
SELECT plan(21);

CREATE TABLE engage.pgtap_composite (b text, a int, note text, PRIMARY KEY (a, b));
CREATE TABLE engage.pgtap_identity (id int NOT NULL, code text NOT NULL, PRIMARY KEY (id));
CREATE UNIQUE INDEX pgtap_identity_code ON engage.pgtap_identity (code);
ALTER TABLE engage.pgtap_identity REPLICA IDENTITY USING INDEX pgtap_identity_code;
CREATE TABLE engage.pgtap_nokey (a int);
CREATE UNLOGGED TABLE engage.pgtap_unlogged (id int PRIMARY KEY);
CREATE TABLE engage.pgtap_parted (id int, at date, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE engage.pgtap_parted_2026 PARTITION OF engage.pgtap_parted FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE SCHEMA pgtap_elsewhere;
CREATE TABLE pgtap_elsewhere.t (id int PRIMARY KEY);

SELECT ok('engage.members'::regclass IN (SELECT engage_internal.captured_tables()),
          'the product''s tables are captured (engage.tables = engage.*)');
SELECT ok('pgtap_elsewhere.t'::regclass NOT IN (SELECT engage_internal.captured_tables()),
          'a table outside engage.tables is not');
SELECT ok('engage.pgtap_unlogged'::regclass NOT IN (SELECT engage_internal.captured_tables()),
          'an unlogged table is not (it has no WAL to decode)');
SELECT ok('engage.pgtap_parted'::regclass IN (SELECT engage_internal.captured_tables())
          AND 'engage.pgtap_parted_2026'::regclass NOT IN (SELECT engage_internal.captured_tables()),
          'a partitioned table is captured as a whole, not by partition');
SELECT is(engage_internal.snapshot_key('engage.pgtap_composite'), ARRAY['a', 'b']::name[],
          'the key is read in index order');
SELECT is(engage_internal.snapshot_key('engage.pgtap_identity'), ARRAY['code']::name[],
          'the replica identity index is the key, as in the records'' pk');
SELECT is(engage_internal.snapshot_key('engage.pgtap_nokey'), NULL, 'a table without a key has none');

SELECT throws_ok($$SELECT * FROM engage.snapshot(ARRAY['pgtap_elsewhere.t'::regclass])$$, '22023',
                 'table pgtap_elsewhere.t is not captured by the pg_engage shipper',
                 'a table that is not captured is refused');
SELECT throws_ok($$SELECT * FROM engage.snapshot(ARRAY['engage.pgtap_nokey'::regclass])$$, '55000',
                 'table engage.pgtap_nokey has no primary key or replica identity index',
                 'a table without a key is refused');
SELECT throws_ok($$SELECT * FROM engage.snapshot()$$, '55000', NULL,
                 'so is a request for every captured table while one has no key: never a silent partial snapshot');
SELECT is((SELECT count(*) FROM engage_internal.snapshots), 0::bigint, 'a refused request leaves nothing behind');
DROP TABLE engage.pgtap_nokey;

SELECT results_eq($$SELECT table_name FROM engage.snapshot(ARRAY['engage.pgtap_composite'::regclass,
                                                                  'engage.pgtap_parted'::regclass])$$,
                  ARRAY['engage.pgtap_composite', 'engage.pgtap_parted'],
                  'engage.snapshot() returns one open snapshot per table');
SELECT results_eq($$SELECT snapshot_id FROM engage.snapshot(ARRAY['engage.pgtap_composite'::regclass])$$,
                  $$SELECT id FROM engage.snapshots WHERE table_name = 'engage.pgtap_composite'$$,
                  'asking again returns the open one, not a second');
SELECT is((SELECT array_agg(DISTINCT state || '/' || reason || '/' || requested_by) FROM engage.snapshots),
          ARRAY['pending/requested/' || session_user], 'requests are pending, with their reason and requester');
SELECT ok((SELECT count(*) FROM engage.snapshot()) >= 8, 'by default every captured table');

SELECT ok(engage.cancel_snapshot((SELECT id FROM engage.snapshots WHERE table_name = 'engage.pgtap_parted')),
          'an open snapshot can be cancelled');
SELECT ok(NOT engage.cancel_snapshot((SELECT id FROM engage.snapshots WHERE table_name = 'engage.pgtap_parted')),
          'but only once');
SELECT is((SELECT state FROM engage.snapshots WHERE table_name = 'engage.pgtap_parted'), 'cancelled',
          'and shows as cancelled');

-- Progress as the shipper records it.
UPDATE engage_internal.snapshots
SET state = 'running', started_at = now() - interval '10 minutes', rows_read = 250, rows_estimate = 1000
WHERE table_name = 'engage.pgtap_composite';
SELECT is((SELECT percent FROM engage.snapshots WHERE table_name = 'engage.pgtap_composite'), 25.0,
          'the view shows the share of the estimate read');
SELECT ok((SELECT eta BETWEEN now() + interval '29 minutes' AND now() + interval '31 minutes'
           FROM engage.snapshots WHERE table_name = 'engage.pgtap_composite'),
          'and an estimated time of arrival at the same rate');

SELECT ok(NOT has_function_privilege('engage_writer', 'engage.snapshot(regclass[])', 'EXECUTE'),
          'requesting a snapshot is not granted to the backend');

SELECT * FROM finish();
ROLLBACK;
