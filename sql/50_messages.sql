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
-- that wrote it rolls back; it is named by its own LSN, has no commit time
-- ("ts":null) and "transactional":false, and takes no position in the
-- transaction around it.
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
 WHERE data::jsonb->>'op' = 'message';

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

-- Messages with the engage prefix written by other means: a JSON object has
-- its members spliced into the record; anything else keeps its text in "raw".
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
COMMIT;
SELECT * FROM engage_test.peek('regress_msg');
SELECT engage_test.raw(data) FROM pg_logical_slot_get_changes('regress_msg', NULL, NULL);

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

SELECT pg_drop_replication_slot('regress_msg');
DROP TABLE engage.msg;
