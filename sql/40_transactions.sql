-- Transactions: only committed work is decoded (rollbacks and rolled-back
-- savepoints produce nothing, committed subtransactions do), event ids
-- (commit LSN and position, deterministic, distinct for COPY and multi-row
-- inserts), the transactions option (begin and commit records), and schema
-- changes in the middle of the stream.

-- emit() registers a topic on its first use with a row in
-- engage_internal.app_topics; registered before the slot exists, 'tx.fourth'
-- writes no such row below, where all tables are captured.
SELECT engage_internal.register_app_topic('tx.fourth');
SELECT 'init' FROM pg_create_logical_replication_slot('regress_tx', 'engage_decoder');
CREATE EXTENSION pg_walinspect;
CREATE TABLE engage.tx (id int PRIMARY KEY, note text);
CREATE TABLE public.regress_tx_other (id int PRIMARY KEY);

-- A rolled-back transaction produces nothing: no row, no message.
BEGIN;
INSERT INTO engage.tx VALUES (1, 'rolled back');
SELECT engage.emit('tx.rolled_back', NULL, '{}') IS NOT NULL AS emitted;
ROLLBACK;
SELECT count(*) AS after_rollback FROM pg_logical_slot_peek_changes('regress_tx', NULL, NULL);

-- Savepoints: rolled back ones vanish, released ones and committed
-- subtransactions (PL/pgSQL exception blocks) stay, all under the top-level
-- xid, and the positions count only what committed.
BEGIN;
INSERT INTO engage.tx VALUES (1, 'before savepoint');
SAVEPOINT s1;
INSERT INTO engage.tx VALUES (2, 'in a rolled back savepoint');
SELECT engage.emit('tx.rolled_back', NULL, '{}') IS NOT NULL AS emitted;
ROLLBACK TO SAVEPOINT s1;
SAVEPOINT s2;
INSERT INTO engage.tx VALUES (3, 'in a released savepoint');
SAVEPOINT s3;
UPDATE engage.tx SET note = 'updated in a nested savepoint' WHERE id = 3;
RELEASE SAVEPOINT s2;
DO $$
BEGIN
    BEGIN
        INSERT INTO engage.tx VALUES (4, 'in a committed exception block');
    END;
    BEGIN
        INSERT INTO engage.tx VALUES (5, 'in a failed exception block');
        RAISE EXCEPTION 'undo block';
    EXCEPTION WHEN raise_exception THEN
        NULL;
    END;
END
$$;
SELECT engage.emit('tx.committed', 'k', '{"in": "savepoint transaction"}') IS NOT NULL AS emitted;
INSERT INTO engage.tx VALUES (6, 'after');
COMMIT;
SELECT count(DISTINCT data::jsonb->'xid') AS xids,
       count(DISTINCT split_part(data::jsonb->>'id', ':', 1)) AS commit_lsns,
       bool_and((data::jsonb->>'xid')::xid = xid) AS xid_is_top_level
  FROM pg_logical_slot_peek_changes('regress_tx', NULL, NULL);
SELECT * FROM engage_test.get('regress_tx');

-- Positions count every change, captured or not: here the row of a table
-- outside engage is position 2 whether it is captured or not.
BEGIN;
INSERT INTO engage.tx VALUES (10, 'first');
INSERT INTO public.regress_tx_other VALUES (1);
UPDATE engage.tx SET note = 'third' WHERE id = 10;
SELECT engage.emit('tx.fourth', NULL, '4') IS NOT NULL AS emitted;
COMMIT;
SELECT * FROM engage_test.peek('regress_tx');
SELECT * FROM engage_test.peek('regress_tx', 'tables', '*');
-- the same ids either way
SELECT (SELECT array_agg(r->>'id') FROM engage_test.peek('regress_tx') r)
     = (SELECT array_agg(r->>'id') FROM engage_test.peek('regress_tx', 'tables', '*') r
         WHERE r->>'table' IS DISTINCT FROM 'public.regress_tx_other') AS same_ids;

-- Determinism: decoding the same WAL again gives byte-identical records
-- (ids included), also when the records are finally consumed.
CREATE TEMP TABLE first_peek AS
    SELECT o, data FROM pg_logical_slot_peek_changes('regress_tx', NULL, NULL) WITH ORDINALITY AS p(lsn, xid, data, o);
SELECT (SELECT array_agg(data ORDER BY o) FROM first_peek)
     = (SELECT array_agg(data) FROM pg_logical_slot_peek_changes('regress_tx', NULL, NULL)) AS second_peek_identical;
SELECT (SELECT array_agg(data ORDER BY o) FROM first_peek)
     = (SELECT array_agg(data) FROM pg_logical_slot_get_changes('regress_tx', NULL, NULL)) AS get_identical;
-- Resuming after consuming part of the stream gives the same ids: consume
-- the first transaction only, then decode the rest again.
BEGIN;
INSERT INTO engage.tx VALUES (20, 'first transaction');
COMMIT;
INSERT INTO engage.tx VALUES (21, 'second transaction');
UPDATE engage.tx SET note = 'third transaction' WHERE id = 21;
TRUNCATE first_peek;
INSERT INTO first_peek
    SELECT o, data FROM pg_logical_slot_peek_changes('regress_tx', NULL, NULL) WITH ORDINALITY AS p(lsn, xid, data, o);
SELECT count(*) AS consumed FROM pg_logical_slot_get_changes('regress_tx', NULL, 1);
SELECT (SELECT array_agg(data ORDER BY o) FROM first_peek WHERE o > 1)
     = (SELECT array_agg(data) FROM pg_logical_slot_get_changes('regress_tx', NULL, NULL)) AS resumed_identical;
DROP TABLE first_peek;

-- COPY and multi-row inserts: rows that share a WAL record still get
-- distinct ids, positions 1..n in order.
COPY engage.tx (id, note) FROM stdin;
100	copy a
101	copy b
102	copy c
\.
INSERT INTO engage.tx SELECT g, 'copy ' || g FROM generate_series(103, 1099) g;
BEGIN;
COPY engage.tx (id, note) FROM stdin;
2000	one
2001	two
\.
INSERT INTO engage.tx SELECT g, 'select ' || g FROM generate_series(2002, 2499) g;
INSERT INTO engage.tx VALUES (2500, 'values a'), (2501, 'values b');
COMMIT;
-- a big COPY whose rows share WAL records (heap multi-insert)
CREATE TABLE engage.tx_copy (id int PRIMARY KEY, note text);
COPY engage.tx_copy FROM PROGRAM 'seq 1 1000 | sed "s/$/\tbulk/"';
WITH r AS (
    SELECT lsn, data::jsonb AS j FROM pg_logical_slot_peek_changes('regress_tx', NULL, NULL)
)
SELECT j->>'table' AS table, count(*) AS records, count(DISTINCT j->>'id') AS distinct_ids,
       count(DISTINCT split_part(j->>'id', ':', 1)) AS transactions,
       min(split_part(j->>'id', ':', 2)::int) AS min_position,
       max(split_part(j->>'id', ':', 2)::int) AS max_position,
       count(DISTINCT j->>'lsn') < count(*) AS records_share_lsns
  FROM r GROUP BY 1, split_part(j->>'id', ':', 1) ORDER BY min(lsn);
-- the positions follow the order of the records
SELECT bool_and(pos = o) AS positions_in_order
  FROM (SELECT split_part(data::jsonb->>'id', ':', 2)::int AS pos,
               row_number() OVER (PARTITION BY split_part(data::jsonb->>'id', ':', 1) ORDER BY o) AS o
          FROM pg_logical_slot_peek_changes('regress_tx', NULL, NULL) WITH ORDINALITY AS p(lsn, xid, data, o)) s;
SELECT count(*) FILTER (WHERE engage_test.check(data) IS NOT NULL) AS malformed
  FROM pg_logical_slot_get_changes('regress_tx', NULL, NULL);

-- The transactions option frames each transaction that has events with
-- begin and commit records; a transaction without events has neither.
BEGIN;
INSERT INTO engage.tx VALUES (3000, 'a');
INSERT INTO public.regress_tx_other VALUES (2);
UPDATE engage.tx SET note = 'b' WHERE id = 3000;
SELECT engage.emit('tx.framed', 'key', '{"n": 1}') IS NOT NULL AS emitted;
COMMIT;
INSERT INTO public.regress_tx_other VALUES (3);
DELETE FROM engage.tx WHERE id = 3000;
SELECT * FROM engage_test.peek('regress_tx', 'transactions', 'on');
SELECT * FROM engage_test.peek('regress_tx', 'transactions', 'off');
SELECT count(*) AS records_with_bare_option FROM pg_logical_slot_peek_changes('regress_tx', NULL, NULL, 'transactions', 'true');
SELECT engage_test.raw(data) FROM pg_logical_slot_peek_changes('regress_tx', NULL, NULL, 'transactions', 'on');

-- The commit LSN: in every transaction, begin and commit records carry it
-- as "lsn", every event id starts with it, it is the start of the COMMIT WAL
-- record of the xid (pg_walinspect), "end_lsn" is that record's end and the
-- LSN the SQL interface reports for the commit row; "events" counts the
-- events in between, and every record has the same xid and commit time.
CREATE TEMP TABLE framed AS
    SELECT o, lsn AS row_lsn, data::jsonb AS j
      FROM pg_logical_slot_peek_changes('regress_tx', NULL, NULL, 'transactions', 'on')
           WITH ORDINALITY AS p(lsn, xid, data, o);
WITH tx AS (
    SELECT b.j->>'xid' AS xid, b.o AS b_o, c.o AS c_o, b.j AS b, c.j AS c, c.row_lsn AS commit_row_lsn
      FROM framed b
      JOIN framed c ON c.j->>'op' = 'commit' AND c.j->'xid' = b.j->'xid'
     WHERE b.j->>'op' = 'begin'
), wal AS (
    SELECT xid::text AS xid, start_lsn, end_lsn, description
      FROM pg_get_wal_records_info(
               (SELECT min((j->>'lsn')::pg_lsn) FROM framed) - 100000,
               pg_current_wal_flush_lsn())
     WHERE resource_manager = 'Transaction' AND record_type = 'COMMIT'
)
SELECT row_number() OVER (ORDER BY tx.b_o) AS tx,
       tx.b->>'lsn' = tx.c->>'lsn' AS begin_commit_same_lsn,
       (SELECT bool_and(split_part(e.j->>'id', ':', 1) = tx.c->>'lsn'
                        AND e.j->'xid' = tx.c->'xid' AND e.j->'ts' = tx.c->'ts')
          FROM framed e WHERE e.o > tx.b_o AND e.o < tx.c_o) AS ids_start_with_commit_lsn,
       (tx.c->>'lsn')::pg_lsn = wal.start_lsn AS lsn_is_commit_record,
       (tx.c->>'end_lsn')::pg_lsn = wal.end_lsn AS end_lsn_is_record_end,
       (tx.c->>'end_lsn')::pg_lsn = tx.commit_row_lsn AS end_lsn_is_row_lsn,
       (tx.c->>'events')::int = tx.c_o - tx.b_o - 1 AS events_counted,
       tx.b->'ts' = tx.c->'ts' AS same_ts,
       (tx.c->>'ts')::timestamptz = btrim(substring(wal.description FROM '^[^;]+'))::timestamptz
           AS ts_is_commit_time
  FROM tx LEFT JOIN wal ON wal.xid = tx.xid
 ORDER BY tx.b_o;
DROP TABLE framed;
SELECT count(*) FILTER (WHERE engage_test.check(data) IS NOT NULL) AS malformed
  FROM pg_logical_slot_get_changes('regress_tx', NULL, NULL, 'transactions', 'on');

-- Schema changes between and inside transactions: each record has the
-- columns the table had when the change was made.
INSERT INTO engage.tx VALUES (4000, 'before');
ALTER TABLE engage.tx ADD COLUMN extra int DEFAULT 7;
INSERT INTO engage.tx VALUES (4001, 'after add', 8);
BEGIN;
INSERT INTO engage.tx VALUES (4002, 'same transaction, before drop', 9);
ALTER TABLE engage.tx DROP COLUMN note;
INSERT INTO engage.tx VALUES (4003, 10);
ALTER TABLE engage.tx RENAME COLUMN extra TO renamed;
UPDATE engage.tx SET renamed = 11 WHERE id = 4003;
COMMIT;
SELECT * FROM engage_test.get('regress_tx');

SELECT pg_drop_replication_slot('regress_tx');
DROP TABLE engage.tx, engage.tx_copy, public.regress_tx_other;
DROP EXTENSION pg_walinspect;
