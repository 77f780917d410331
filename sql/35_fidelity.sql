-- The record contract's fidelity (README, "Event records"): cases where the
-- records once lost or blurred information.  Each case failed before its fix.

SELECT 'init' FROM pg_create_logical_replication_slot('regress_fid', 'engage_decoder');

-- 1. An update that keeps a TOASTed primary key: the new tuple holds only a
--    pointer to the unchanged key, PostgreSQL logs the old key in full, and
--    "pk" (the Kafka key) must come from it: never {} and no undocumented
--    old_unchanged_toast.
CREATE TABLE engage.fid_toastkey (k text PRIMARY KEY, v int);
ALTER TABLE engage.fid_toastkey ALTER COLUMN k SET STORAGE EXTERNAL;
INSERT INTO engage.fid_toastkey VALUES (repeat('k', 2560), 1);
UPDATE engage.fid_toastkey SET v = 2;
DELETE FROM engage.fid_toastkey;
SELECT r->>'op' AS op, length(r->'pk'->>'k') AS pk_key_length,
       r->'pk'->>'k' = repeat('k', 2560) AS pk_exact,
       r->'unchanged_toast' AS unchanged_toast, r->'new'->'v' AS new_v,
       r ? 'old_unchanged_toast' AS has_old_unchanged_toast,
       length(r->'old'->>'k') AS old_key_length
  FROM engage_test.get('regress_fid') r;

-- 2. ALTER SCHEMA ... RENAME sends no relcache invalidation: a long-lived
--    decoding session (here one get_changes call) must still see the new
--    schema name, and decide capture again.
CREATE SCHEMA fid_a;
CREATE TABLE fid_a.t (id int PRIMARY KEY);
CREATE TABLE engage.fid_other (id int PRIMARY KEY);
INSERT INTO fid_a.t VALUES (1);
INSERT INTO engage.fid_other VALUES (1);
ALTER SCHEMA fid_a RENAME TO fid_b;
INSERT INTO fid_b.t VALUES (2);
ALTER SCHEMA engage RENAME TO fid_engage_renamed;
INSERT INTO fid_engage_renamed.fid_other VALUES (2);
ALTER SCHEMA fid_engage_renamed RENAME TO engage;
INSERT INTO engage.fid_other VALUES (3);
SELECT r->>'table' AS "table", r->'pk' AS pk
  FROM engage_test.get('regress_fid', 'tables', 'fid_a.*, fid_b.t, engage.fid_other') r;
DROP SCHEMA fid_b CASCADE;

-- 3. JSON null and SQL NULL in json and jsonb columns: the value is null for
--    both, and "json_null" lists the columns holding the JSON value null
--    ("old_json_null" for the old row under REPLICA IDENTITY FULL).
CREATE TABLE engage.fid_json (id int PRIMARY KEY, j json, jb jsonb, jn jsonb[]);
ALTER TABLE engage.fid_json REPLICA IDENTITY FULL;
INSERT INTO engage.fid_json VALUES (1, 'null', NULL, NULL), (2, NULL, 'null', ARRAY['null'::jsonb, NULL]),
    (3, ' null ', '{"a": null}', NULL);
UPDATE engage.fid_json SET jb = 'null' WHERE id = 1;
DELETE FROM engage.fid_json WHERE id = 2;
SELECT engage_test.raw(data) FROM pg_logical_slot_get_changes('regress_fid', NULL, NULL);

-- 4. The topic_prefix option (for the shipper) changes nothing in the records.
INSERT INTO engage.fid_json VALUES (4, '[1]', '{"b": 2}', NULL);
SELECT pg_logical_emit_message(true, 'engage', '{"topic": "t", "key": "k", "payload": 1}') IS NOT NULL AS emitted;
SELECT (SELECT array_agg(data) FROM pg_logical_slot_peek_changes('regress_fid', NULL, NULL))
     = (SELECT array_agg(data) FROM pg_logical_slot_peek_changes('regress_fid', NULL, NULL,
                                                                  'topic_prefix', 'engage'))
       AS same_records;
SELECT count(*) FROM pg_logical_slot_get_changes('regress_fid', NULL, NULL);
SELECT v AS topic_prefix,
       engage_test.error_of(format('SELECT count(*) FROM pg_logical_slot_peek_changes(%L, NULL, NULL, %L, %L)',
                                   'regress_fid', 'topic_prefix', v)) AS error
  FROM (VALUES ('engage'), (''), ('a b'), ('.'), ('..'), (repeat('p', 200)), (repeat('p', 201))) AS t(v);

-- 5. A message whose topic is not a string or whose key is neither a string
--    nor null is not what engage.emit() writes: kept whole under "message".
SELECT pg_logical_emit_message(true, 'engage', m) IS NOT NULL AS emitted
  FROM (VALUES ('{"topic": 1, "key": null, "payload": 1}'), ('{"topic": "t", "key": 7, "payload": 1}'),
               ('{"topic": "t", "key": {"a": 1}, "payload": 1}'), ('{"topic": "t", "payload": 1}')) AS t(m);
SELECT engage_test.raw(data) FROM pg_logical_slot_get_changes('regress_fid', NULL, NULL);

SELECT pg_drop_replication_slot('regress_fid');
DROP TABLE engage.fid_toastkey, engage.fid_other, engage.fid_json;
