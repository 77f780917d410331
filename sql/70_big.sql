-- Big transactions, spilled to disk (logical_decoding_work_mem is 64kB in
-- test/regress.conf): checked with aggregates, not printed.

-- Registered before the slot exists: the event's position is not shifted by
-- the row emit() writes on a topic's first use.
SELECT engage_internal.register_app_topic('big.loaded');
-- Created before the slot too: its schema record (75_schema_changes) is not
-- part of the one transaction checked here.
CREATE TABLE engage.big (id int PRIMARY KEY, note text);
SELECT 'init' FROM pg_create_logical_replication_slot('regress_big', 'engage_decoder');

-- 100000 inserts, a message, 10 updates and 10 deletes in one transaction.
BEGIN;
INSERT INTO engage.big SELECT g, 'row ' || g FROM generate_series(1, 100000) g;
SELECT engage.emit('big.loaded', NULL, '{"rows": 100000}') IS NOT NULL AS emitted;
UPDATE engage.big SET note = 'updated' WHERE id % 10000 = 0;
DELETE FROM engage.big WHERE id > 99990;
COMMIT;

CREATE TEMP TABLE big AS
    SELECT o, lsn, data FROM pg_logical_slot_get_changes('regress_big', NULL, NULL, 'transactions', 'on')
                             WITH ORDINALITY AS c(lsn, xid, data, o);
-- every record is one line of valid JSON with a well-formed header
SELECT count(*) AS records, count(*) FILTER (WHERE engage_test.check(data) IS NOT NULL) AS malformed
  FROM big;
-- one transaction: one xid and one commit LSN; ids unique, positions 1..100021
-- in the order of the records
WITH e AS (
    SELECT o, data::jsonb AS j, split_part(data::jsonb->>'id', ':', 2)::int AS pos
      FROM big WHERE data::jsonb ? 'id'
)
SELECT count(*) AS events, count(DISTINCT j->>'id') AS distinct_ids,
       min(pos) AS min_position, max(pos) AS max_position,
       count(DISTINCT split_part(j->>'id', ':', 1)) AS commit_lsns,
       count(DISTINCT j->'xid') AS xids,
       bool_and(pos = rn) AS positions_in_order,
       count(*) FILTER (WHERE j->>'op' = 'insert') AS inserts,
       count(*) FILTER (WHERE j->>'op' = 'update') AS updates,
       count(*) FILTER (WHERE j->>'op' = 'delete') AS deletes,
       count(*) FILTER (WHERE j->>'op' = 'message') AS messages
  FROM (SELECT *, row_number() OVER (ORDER BY o) AS rn FROM e) s;
-- the rows themselves: every id once, the right values, the message and the
-- later changes at their positions
SELECT count(DISTINCT (j->'new'->>'id')::int) AS distinct_rows,
       sum((j->'new'->>'id')::bigint) AS id_sum,
       bool_and(j->'new'->>'note' = 'row ' || (j->'new'->>'id')) AS notes_match,
       bool_and(j->'pk'->'id' = j->'new'->'id') AS pk_matches
  FROM (SELECT data::jsonb AS j FROM big) s WHERE j->>'op' = 'insert';
SELECT split_part(j->>'id', ':', 2)::int AS position, j->>'op' AS op,
       coalesce(j->'pk', to_jsonb(j->>'topic')) AS key, j->'new'->'note' AS note
  FROM (SELECT o, data::jsonb AS j FROM big) s
 WHERE j->>'op' NOT IN ('insert', 'begin', 'commit')
 ORDER BY o;
-- the frame: begin first, commit last, with the commit LSN of the ids and the count
SELECT (SELECT data::jsonb->>'op' FROM big ORDER BY o LIMIT 1) AS first,
       (SELECT data::jsonb->>'op' FROM big ORDER BY o DESC LIMIT 1) AS last,
       (SELECT data::jsonb->'events' FROM big ORDER BY o DESC LIMIT 1) AS events,
       (SELECT data::jsonb->>'lsn' FROM big ORDER BY o DESC LIMIT 1)
       = (SELECT split_part(data::jsonb->>'id', ':', 1) FROM big WHERE o = 2) AS commit_lsn_is_id_lsn;
DROP TABLE big;

-- The transaction was spilled to disk while decoding.
SELECT spill_txns > 0 AS spilled, spill_bytes > 0 AS spill_bytes
  FROM pg_stat_replication_slots WHERE slot_name = 'regress_big';

-- Spilled TOAST values come back whole, and unchanged ones stay out of "new".
ALTER TABLE engage.big ALTER COLUMN note SET STORAGE EXTERNAL;
TRUNCATE engage.big;
SELECT count(*) AS truncate_records FROM pg_logical_slot_get_changes('regress_big', NULL, NULL);
BEGIN;
INSERT INTO engage.big SELECT g, repeat(md5(g::text), 200) FROM generate_series(1, 300) g;
UPDATE engage.big SET id = id + 1000;
COMMIT;
SELECT data::jsonb->>'op' AS op, count(*) AS records,
       count(*) FILTER (WHERE data::jsonb->'new'->>'note'
                              = repeat(md5(((data::jsonb->'new'->>'id')::int)::text), 200)) AS exact_notes,
       count(*) FILTER (WHERE data::jsonb->'unchanged_toast' = '["note"]') AS unchanged_toast,
       count(*) FILTER (WHERE engage_test.check(data) IS NOT NULL) AS malformed
  FROM pg_logical_slot_get_changes('regress_big', NULL, NULL)
 GROUP BY 1 ORDER BY 1;

-- Thousands of subtransactions in one transaction, half of them rolled back:
-- only the committed ones are decoded, numbered without gaps.
TRUNCATE engage.big;
SELECT count(*) AS truncate_records FROM pg_logical_slot_get_changes('regress_big', NULL, NULL);
DO $$
BEGIN
    FOR i IN 1..4000 LOOP
        BEGIN
            INSERT INTO engage.big VALUES (i, 'subtransaction ' || i);
            IF i % 2 = 0 THEN
                RAISE EXCEPTION 'roll back %', i;
            END IF;
        EXCEPTION WHEN raise_exception THEN
            NULL;
        END;
    END LOOP;
END
$$;
SELECT count(*) AS records, count(DISTINCT data::jsonb->>'id') AS distinct_ids,
       min(split_part(data::jsonb->>'id', ':', 2)::int) AS min_position,
       max(split_part(data::jsonb->>'id', ':', 2)::int) AS max_position,
       bool_and((data::jsonb->'new'->>'id')::int % 2 = 1) AS only_committed,
       count(DISTINCT data::jsonb->'xid') AS xids
  FROM pg_logical_slot_get_changes('regress_big', NULL, NULL);

SELECT pg_drop_replication_slot('regress_big');
DROP TABLE engage.big;
