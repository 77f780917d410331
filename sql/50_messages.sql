-- Application events: engage.emit() and logical messages with the prefix
-- engage (README, "Transactional application events").

SELECT 'init' FROM pg_create_logical_replication_slot('regress_msg', 'engage_decoder');
\set SHOW_CONTEXT never

-- emit returns the LSN of its message, which is the record's "lsn".
SELECT pg_typeof(engage.emit('campaign.sent', '7', '{"campaign_id": 7, "audience": 100}'));
SELECT engage.emit('campaign.sent', '8', '{"campaign_id": 8}') AS emitted_lsn \gset
SELECT count(*) FILTER (WHERE (data::jsonb->>'lsn')::pg_lsn = :'emitted_lsn') AS records_at_emitted_lsn
  FROM pg_logical_slot_peek_changes('regress_msg', NULL, NULL);
SELECT * FROM engage_test.get('regress_msg');

-- Committed with the rows of its transaction, in order; the same id scheme.
CREATE TABLE engage.msg (id int PRIMARY KEY);
BEGIN;
INSERT INTO engage.msg VALUES (1);
SELECT engage.emit('Aa0._-', NULL, 'null') IS NOT NULL AS emitted;
SELECT engage.emit(repeat('t', 200), E'k\\"ey\n', '[1, "two", {"3": null}]') IS NOT NULL AS emitted;
SELECT engage.emit('scalars', '', '"é 😀 \u0001"') IS NOT NULL AS emitted;
INSERT INTO engage.msg VALUES (2);
COMMIT;
SELECT * FROM engage_test.peek('regress_msg');
SELECT engage_test.raw(data) FROM pg_logical_slot_get_changes('regress_msg', NULL, NULL);

-- Rolled back: no record (the row neither).
BEGIN;
INSERT INTO engage.msg VALUES (3);
SELECT engage.emit('rolled.back', 'k', '{}') IS NOT NULL AS emitted;
ROLLBACK;
SELECT count(*) AS after_rollback FROM pg_logical_slot_peek_changes('regress_msg', NULL, NULL);

-- A big payload (larger than logical_decoding_work_mem) arrives whole.
SELECT engage.emit('big', 'k', jsonb_build_object('blob', repeat('b', 200000))) IS NOT NULL AS emitted;
SELECT r->>'topic' AS topic, length(r->'payload'->>'blob') AS blob_length,
       r->'payload'->>'blob' = repeat('b', 200000) AS blob_exact
  FROM engage_test.get('regress_msg') r;

-- A non-transactional message is decoded at once, even when the transaction
-- that wrote it rolls back, so it is never an application event: it is
-- quarantined (op "quarantine" with the reason).  It is named by its own LSN,
-- has no commit time ("ts":null) and "transactional":false, and takes no
-- position in the transaction around it.
SELECT pg_logical_emit_message(false, 'engage', '{"topic": "nt.alone", "key": null, "payload": 1}') IS NOT NULL AS emitted;
BEGIN;
INSERT INTO engage.msg VALUES (4);
SELECT pg_logical_emit_message(false, 'engage', '{"topic": "nt.in_rolled_back", "key": "k", "payload": 2}') IS NOT NULL AS emitted;
ROLLBACK;
BEGIN;
INSERT INTO engage.msg VALUES (5);
SELECT pg_logical_emit_message(false, 'engage', '{"topic": "nt.in_committed", "key": "k", "payload": 3}') IS NOT NULL AS emitted;
INSERT INTO engage.msg VALUES (6);
COMMIT;
SELECT * FROM engage_test.peek('regress_msg');
SELECT engage_test.raw(data) FROM pg_logical_slot_peek_changes('regress_msg', NULL, NULL);
SELECT data::jsonb->>'op' AS op, data::jsonb->'transactional' AS transactional, data::jsonb->'ts' AS ts,
       data::jsonb->>'lsn' = split_part(data::jsonb->>'id', ':', 1) AS id_is_own_lsn,
       data::jsonb->>'lsn' = lsn::text AS lsn_is_row_lsn
  FROM pg_logical_slot_get_changes('regress_msg', NULL, NULL)
 WHERE data::jsonb->>'op' = 'quarantine';

-- Messages with another prefix are ignored, but count in the positions.
BEGIN;
SELECT pg_logical_emit_message(true, 'other', '{"topic": "ignored"}') IS NOT NULL AS emitted;
SELECT pg_logical_emit_message(true, 'Engage', '{"topic": "ignored"}') IS NOT NULL AS emitted;
SELECT pg_logical_emit_message(true, 'engage.x', '{"topic": "ignored"}') IS NOT NULL AS emitted;
SELECT pg_logical_emit_message(true, 'engag', '{"topic": "ignored"}') IS NOT NULL AS emitted;
SELECT pg_logical_emit_message(true, '', '{"topic": "ignored"}') IS NOT NULL AS emitted;
INSERT INTO engage.msg VALUES (7);
COMMIT;
SELECT pg_logical_emit_message(false, 'other', 'ignored') IS NOT NULL AS emitted;
SELECT * FROM engage_test.get('regress_msg');

-- Messages with the engage prefix written by other means (anyone can call
-- pg_logical_emit_message) are quarantined, their content kept whole and
-- never spliced: a JSON object under "message", other text under "raw",
-- invalid text as base64 under "raw_base64".
BEGIN;
SELECT pg_logical_emit_message(true, 'engage', '{"topic": "manual", "key": "k", "payload": [1]}') IS NOT NULL AS emitted;
SELECT pg_logical_emit_message(true, 'engage', '{}') IS NOT NULL AS emitted;
SELECT pg_logical_emit_message(true, 'engage', ' {"spaced" : true} ') IS NOT NULL AS emitted;
SELECT pg_logical_emit_message(true, 'engage', 'not json') IS NOT NULL AS emitted;
SELECT pg_logical_emit_message(true, 'engage', '[1, 2]') IS NOT NULL AS emitted;
SELECT pg_logical_emit_message(true, 'engage', '"a string"') IS NOT NULL AS emitted;
SELECT pg_logical_emit_message(true, 'engage', '42') IS NOT NULL AS emitted;
SELECT pg_logical_emit_message(true, 'engage', 'null') IS NOT NULL AS emitted;
SELECT pg_logical_emit_message(true, 'engage', '{"truncated": ') IS NOT NULL AS emitted;
SELECT pg_logical_emit_message(true, 'engage', '{"a": 1} trailing') IS NOT NULL AS emitted;
SELECT pg_logical_emit_message(true, 'engage', '') IS NOT NULL AS emitted;
SELECT pg_logical_emit_message(true, 'engage', E'quote " backslash \\ tab \t newline \n ctrl \x01 é 😀') IS NOT NULL AS emitted;
SELECT pg_logical_emit_message(true, 'engage', convert_to('bytes é', 'UTF8')) IS NOT NULL AS emitted;
-- Content over 64 kB is not copied, only its size (a 1 GB message must not stop decoding).
SELECT pg_logical_emit_message(true, 'engage', repeat('x', 65537)) IS NOT NULL AS emitted;
SELECT pg_logical_emit_message(true, 'engage', repeat('x', 65536)) IS NOT NULL AS emitted;
COMMIT;
SELECT r->>'id' AS id, r->'content_bytes' AS content_bytes, length(r->>'raw') AS raw_length
  FROM engage_test.peek('regress_msg') r WHERE r ? 'content_bytes' OR length(r->>'raw') > 1000;
SELECT * FROM engage_test.peek('regress_msg') r WHERE NOT r ? 'content_bytes' AND coalesce(length(r->>'raw'), 0) <= 1000;
SELECT engage_test.raw(data) FROM pg_logical_slot_get_changes('regress_msg', NULL, NULL)
 WHERE length(data) < 1000;

-- Forgeries.  The authenticator binds an event to the transaction that wrote
-- it: the exact bytes of a genuine event (read here with test_decoding, which
-- needs REPLICATION), written again by another transaction, are quarantined.
SELECT 'init' FROM pg_create_logical_replication_slot('regress_msg_raw', 'test_decoding');
SELECT engage.emit('replayed', 'k', '{"genuine": true}') IS NOT NULL AS emitted;
SELECT substring(data FROM 'content:(.*)$') AS genuine_bytes
  FROM pg_logical_slot_get_changes('regress_msg_raw', NULL, NULL)
 WHERE data LIKE 'message:%' \gset
SELECT pg_drop_replication_slot('regress_msg_raw');
SELECT length(:'genuine_bytes') > 64 AS has_authenticator,
       left(:'genuine_bytes', 64) ~ '^[0-9a-f]{64}$' AS authenticator_is_hex;
SELECT pg_logical_emit_message(true, 'engage', :'genuine_bytes') IS NOT NULL AS replayed;
-- A guessed authenticator, and a genuine one with the event changed.
SELECT pg_logical_emit_message(true, 'engage', repeat('0', 64) || '{"topic":"replayed","key":"k","payload":{}}')
       IS NOT NULL AS guessed;
SELECT pg_logical_emit_message(true, 'engage', left(:'genuine_bytes', 64) || '{"topic":"replayed","key":"k","payload":{"genuine": false}}')
       IS NOT NULL AS altered;
-- Inside a savepoint the event belongs to the top-level transaction: genuine
-- when the savepoint is released, gone when it is rolled back.
BEGIN;
SAVEPOINT s1;
SELECT engage.emit('sub.released', 'k', '1') IS NOT NULL AS emitted;
RELEASE SAVEPOINT s1;
SAVEPOINT s2;
SELECT engage.emit('sub.rolled_back', 'k', '2') IS NOT NULL AS emitted;
ROLLBACK TO SAVEPOINT s2;
COMMIT;
SELECT r->>'op' AS op, r->>'topic' AS topic, r->>'reason' AS reason, r->'payload' AS payload
  FROM engage_test.get('regress_msg') r;

-- engage.emit() refuses a bad topic (22023) and a NULL payload (22004).  The
-- topic's Kafka name, engage-app.<topic> here, is at most 249 characters: 238
-- for the topic itself; "." and "_" are both allowed (Kafka's collision rule is
-- about other topics).
SELECT engage.emit('bad topic', 'k', '{}');
SELECT engage.emit('t', 'k', NULL);
SELECT coalesce(quote_literal(left(replace(t, E'\n', '<LF>'), 12)), 'NULL') AS topic, length(t) AS length,
       split_part(engage_test.error_of(format('SELECT engage.emit(%L, %L, %L)', t, 'k', '{}')), ':', 1) AS sqlstate
  FROM (VALUES (NULL), (''), ('has space'), ('slash/'), ('colon:'), ('ü'), (E'nl\n'),
               (repeat('t', 239)), ('ok.topic'), (repeat('t', 238)), ('.'), ('..'), ('a._-b')) AS v(t);
SELECT engage_test.error_of($$SELECT engage.emit(NULL, 'k', '{}')$$) AS null_topic;
SELECT engage_test.error_of($$SELECT engage.emit('t', 'k', NULL)$$) AS null_payload;
SELECT engage_test.error_of($$SELECT engage.emit(NULL, 'k', NULL)$$) AS both_bad;
SELECT engage_test.error_of($$SELECT engage.emit('t', NULL, 'null')$$) AS json_null_payload;
-- The failed calls wrote nothing; the calls that passed wrote their events.
SELECT * FROM engage_test.get('regress_msg');

-- A topic Kafka would take for a registered one ("." and "_" are the same
-- to it) is refused (42710) before anything is written; the registered
-- spelling still works, also from a transaction that registered nothing.
SELECT engage.emit('campaign_sent', 'k', '{}');
SELECT engage_test.error_of($$SELECT engage.emit('ok_topic', 'k', '{}')$$) AS collides;
SELECT engage.emit('ok.topic', 'k', '{}') IS NOT NULL AS registered_spelling;
-- A registration rolled back is no registration.
BEGIN;
SELECT engage.emit('only.rolled_back', 'k', '{}') IS NOT NULL AS emitted;
ROLLBACK;
SELECT engage.emit('only_rolled_back', 'k', '{}') IS NOT NULL AS other_spelling_free;
SELECT topic, kafka_name FROM engage_internal.app_topics
 WHERE topic LIKE 'only%' OR topic LIKE 'ok%' ORDER BY topic;

-- An event the producer would refuse as larger than message.max.bytes
-- (1,000,000 by default) is refused up front (54000); just below passes.
SELECT engage_test.error_of($$SELECT engage.emit('big', 'k', jsonb_build_object('blob', repeat('b', 999500)))$$) AS too_large;
SELECT engage.emit('big', 'k', jsonb_build_object('blob', repeat('b', 999400))) IS NOT NULL AS just_fits;
SELECT r->>'op' AS op, r->>'topic' AS topic, length(r->'payload'->>'blob') AS blob_length
  FROM engage_test.get('regress_msg') r;

SELECT pg_drop_replication_slot('regress_msg');
DROP TABLE engage.msg;
