-- pgTAP: engage.emit() (extension/sql/20_emit.sql): it returns the LSN of
-- its message, refuses bad topics (SQLSTATE 22023) and NULL payloads
-- (22004), and its event is decoded through an engage_decoder slot only when
-- the transaction commits.
-- Run with: pg_prove -d DB test/pgtap/*.sql  (DB has pgtap and pg_engage).
--
-- A logical slot cannot be created in a transaction that has written, so the
-- slot and the committed and rolled-back events are made first, outside the
-- test transaction; the tests themselves run in a transaction that is rolled
-- back, and the slot is dropped at the end.

-- emit() registers a topic on first use (a row in engage_internal.app_topics,
-- which takes a position in the transaction): registered before the slot.
SELECT engage_internal.register_app_topic('pgtap.committed') IS NOT NULL AS registered \gset
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_replication_slots WHERE slot_name = 'pgtap_emit') THEN
        PERFORM pg_drop_replication_slot('pgtap_emit');
    END IF;
    PERFORM pg_create_logical_replication_slot('pgtap_emit', 'engage_decoder');
END
$$;
SELECT engage.emit('pgtap.committed', 'k1', '{"n": 1, "text": "é \" \\"}') AS committed_lsn \gset
BEGIN;
SELECT engage.emit('pgtap.rolled_back', 'k2', '{"n": 2}') AS rolled_back_lsn \gset
ROLLBACK;
BEGIN;
SAVEPOINT s;
SELECT engage.emit('pgtap.rolled_back_savepoint', 'k3', '{"n": 3}') AS savepoint_lsn \gset
ROLLBACK TO SAVEPOINT s;
SELECT engage.emit('pgtap.committed_after_savepoint', NULL, 'null') AS after_savepoint_lsn \gset
COMMIT;

BEGIN;
SELECT plan(33);

-- The function -----------------------------------------------------------------

SELECT has_function('engage', 'emit', ARRAY['text', 'text', 'jsonb']);
SELECT function_returns('engage', 'emit', ARRAY['text', 'text', 'jsonb'], 'pg_lsn');
SELECT volatility_is('engage', 'emit', ARRAY['text', 'text', 'jsonb'], 'volatile');
SELECT isa_ok(engage.emit('pgtap.typed', NULL, '{}'), 'pg_lsn', 'the value emit returns');
SELECT cmp_ok(engage.emit('pgtap.later', NULL, '{}'), '>', :'committed_lsn'::pg_lsn,
              'each emit returns a later LSN');
SELECT cmp_ok(engage.emit('pgtap.written', NULL, '{}'), '<=', pg_current_wal_insert_lsn(),
              'the LSN is within the WAL written so far');

-- Bad arguments ----------------------------------------------------------------

SELECT throws_ok($$SELECT engage.emit('bad topic', 'k', '{}')$$, '22023',
                 $$invalid engage event topic: 'bad topic'$$, 'a topic with a space is refused (22023)');
SELECT throws_ok($$SELECT engage.emit(NULL, 'k', '{}')$$, '22023',
                 'invalid engage event topic: NULL', 'a NULL topic is refused (22023)');
SELECT throws_ok($$SELECT engage.emit('', 'k', '{}')$$, '22023',
                 $$invalid engage event topic: ''$$, 'an empty topic is refused (22023)');
SELECT throws_ok(format('SELECT engage.emit(%L, %L, %L)', repeat('t', 239), 'k', '{}'), '22023', NULL,
                 'a topic whose Kafka name (engage-app.<topic>) exceeds 249 characters is refused (22023)');
SELECT throws_ok($$SELECT engage.emit('a/b', 'k', '{}')$$, '22023', NULL, 'a slash in a topic is refused (22023)');
SELECT throws_ok($$SELECT engage.emit('café', 'k', '{}')$$, '22023', NULL, 'a non-ASCII topic is refused (22023)');
SELECT throws_ok($$SELECT engage.emit(E'topic\n', 'k', '{}')$$, '22023', NULL,
                 'a trailing newline in a topic is refused (22023)');
SELECT lives_ok(format('SELECT engage.emit(%L, %L, %L)', repeat('t', 238), 'k', '{}'),
                'a topic whose Kafka name has 249 characters is accepted');
SELECT lives_ok($$SELECT engage.emit('AZaz09._-', NULL, '{}')$$,
                'every allowed character, and a NULL key, are accepted');
SELECT throws_ok($$SELECT engage.emit('t', 'k', NULL)$$, '22004',
                 'engage event payload must not be NULL', 'a NULL payload is refused (22004)');
SELECT lives_ok($$SELECT engage.emit('t', 'k', 'null')$$, 'a JSON null payload is accepted');

-- Decoding: only committed events ------------------------------------------------

CREATE TEMP TABLE emitted AS
    SELECT data::jsonb AS j, data
      FROM pg_logical_slot_peek_changes('pgtap_emit', NULL, NULL)
     WHERE data::jsonb->>'op' = 'message';

SELECT is((SELECT count(*)::int FROM emitted WHERE j->>'topic' = 'pgtap.committed'), 1,
          'the committed event is decoded once');
SELECT is((SELECT j - ARRAY['v', 'id', 'lsn', 'xid', 'ts'] FROM emitted WHERE j->>'topic' = 'pgtap.committed'),
          '{"op": "message", "topic": "pgtap.committed", "key": "k1", "payload": {"n": 1, "text": "é \" \\"}}'::jsonb,
          'its record carries op, topic, key and payload');
SELECT is((SELECT j->'v' FROM emitted WHERE j->>'topic' = 'pgtap.committed'), '1'::jsonb,
          'its record has format version 1');
SELECT is((SELECT (j->>'lsn')::pg_lsn FROM emitted WHERE j->>'topic' = 'pgtap.committed'),
          :'committed_lsn'::pg_lsn, 'its lsn is the one emit returned');
SELECT matches((SELECT j->>'id' FROM emitted WHERE j->>'topic' = 'pgtap.committed'),
               '^[0-9A-F]+/[0-9A-F]+:1$', 'its id is <commit LSN>:1');
SELECT cmp_ok((SELECT split_part(j->>'id', ':', 1)::pg_lsn FROM emitted WHERE j->>'topic' = 'pgtap.committed'),
              '>=', :'committed_lsn'::pg_lsn, 'the commit LSN in its id is not before the message');
SELECT is((SELECT count(*)::int FROM emitted WHERE j->>'topic' = 'pgtap.rolled_back'), 0,
          'the event of a rolled back transaction is not decoded');
SELECT is((SELECT count(*)::int FROM emitted WHERE j->>'topic' = 'pgtap.rolled_back_savepoint'), 0,
          'the event of a rolled back savepoint is not decoded');
SELECT is((SELECT j - ARRAY['v', 'id', 'lsn', 'xid', 'ts'] FROM emitted
            WHERE j->>'topic' = 'pgtap.committed_after_savepoint'),
          '{"op": "message", "topic": "pgtap.committed_after_savepoint", "key": null, "payload": null}'::jsonb,
          'the event committed after a rolled back savepoint is decoded');
SELECT is((SELECT count(*)::int FROM emitted
            WHERE j->>'topic' IN ('pgtap.typed', 'pgtap.later', 'pgtap.written', 't', 'AZaz09._-')), 0,
          'events of the open transaction are not decoded before it commits');
SELECT is((SELECT count(*)::int FROM emitted WHERE data ~ '[\n\r]' OR j->>'id' IS NULL), 0,
          'every record is one line with an id');

-- The topic registration: emit()'s gate, not anyone's function ------------------

SELECT is_definer('engage_internal', 'register_app_topic', ARRAY['text'],
                  'register_app_topic is SECURITY DEFINER (emitting roles need no rights on engage_internal)');
SELECT ok((SELECT proconfig @> ARRAY['search_path=pg_catalog, pg_temp'] FROM pg_proc
            WHERE oid = 'engage_internal.register_app_topic(text)'::regprocedure),
          'register_app_topic pins search_path = pg_catalog, pg_temp');
SELECT function_privs_are('engage_internal', 'register_app_topic', ARRAY['text'], 'public', ARRAY[]::text[],
                          'PUBLIC cannot execute register_app_topic');
SELECT throws_ok($$SELECT engage.emit('pgtap_committed', 'k', '{}')$$, '42710', NULL,
                 'a topic colliding in Kafka with a registered one is refused (42710)');
SELECT throws_ok($$SELECT engage.emit('pgtap.big', 'k', jsonb_build_object('b', repeat('x', 1000000)))$$,
                 '54000', NULL, 'an event larger than message.max.bytes is refused (54000)');

SELECT * FROM finish();
ROLLBACK;

DO $$
BEGIN
    PERFORM pg_drop_replication_slot('pgtap_emit');
END
$$;
