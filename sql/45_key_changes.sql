-- Updates that change the row's key (README, "Key changes"): a delete under
-- the old key, then an insert under the new one, both "key_changed":true,
-- at two consecutive positions of the transaction.

SELECT 'init' FROM pg_create_logical_replication_slot('regress_keys', 'engage_decoder');
\set tables 'engage.kc, engage.kc_parted'

-- A composite key and an out-of-line TOASTed column.
CREATE TABLE engage.kc (
    a    int,
    b    text,
    note text,
    big  text,
    PRIMARY KEY (a, b)
);
ALTER TABLE engage.kc ALTER COLUMN big SET STORAGE EXTERNAL;
INSERT INTO engage.kc VALUES (1, 'x', 'one', NULL), (2, 'y', 'two', repeat('0123456789', 300));
SELECT count(*) FILTER (WHERE data::jsonb->>'op' = 'insert') AS inserts
  FROM pg_logical_slot_get_changes('regress_keys', NULL, NULL);

-- 1. REPLICA IDENTITY DEFAULT: PostgreSQL logs the old key only.  The delete
--    carries it as "old" and says where the row went ("new_pk"); the insert
--    has the new row and says where it came from ("old_pk").  Exact text:
BEGIN;
UPDATE engage.kc SET note = 'one!' WHERE a = 1;       -- position 1: not a key change
UPDATE engage.kc SET b = 'x2' WHERE a = 1;            -- positions 2 (delete) and 3 (insert)
UPDATE engage.kc SET a = 3, note = 'uno' WHERE a = 1; -- positions 4 and 5
UPDATE engage.kc SET note = 'one?' WHERE a = 3;       -- position 6
COMMIT;
SELECT engage_test.raw(data)
  FROM pg_logical_slot_peek_changes('regress_keys', NULL, NULL, 'tables', :'tables');
SELECT * FROM engage_test.get('regress_keys', 'tables', :'tables', 'transactions', 'on');

-- 2. A key change of a row with an unchanged TOASTed value, under DEFAULT:
--    WAL does not carry the value, so the insert lists it in
--    "unchanged_toast"; a consumer of the new key takes it from the old key's
--    state (the delete's "new_pk" and the insert's "old_pk" link the two).
UPDATE engage.kc SET a = 4 WHERE a = 2;
SELECT r->>'id' AS id, r->>'op' AS op, r->'pk' AS pk, r->'old' AS old,
       r->'new' AS new, r->'unchanged_toast' AS unchanged_toast,
       r->'new_pk' AS new_pk, r->'old_pk' AS old_pk
  FROM engage_test.get('regress_keys', 'tables', :'tables') r;

-- 3. REPLICA IDENTITY FULL: the old row is whole (TOASTed value included), so
--    the delete's "old" is the whole row and the insert is complete: the value
--    the update left alone comes from the old row.
ALTER TABLE engage.kc REPLICA IDENTITY FULL;
UPDATE engage.kc SET b = 'z' WHERE a = 4;
-- an update that keeps the key, under FULL: one update record, as before
UPDATE engage.kc SET note = 'four' WHERE a = 4;
-- setting a key column to the value it has is no key change
UPDATE engage.kc SET a = a, b = b WHERE a = 4;
SELECT r->>'id' AS id, r->>'op' AS op, r->'pk' AS pk, r->'key_changed' AS key_changed,
       r->'unchanged_toast' AS unchanged_toast,
       (r->'new') - 'big'::text AS new_without_big,
       r->'new'->>'big' = repeat('0123456789', 300) AS new_big_exact,
       (r->'old') - 'big'::text AS old_without_big,
       r->'old'->>'big' = repeat('0123456789', 300) AS old_big_exact
  FROM engage_test.get('regress_keys', 'tables', :'tables') r;
ALTER TABLE engage.kc REPLICA IDENTITY DEFAULT;

-- 4. REPLICA IDENTITY NOTHING: no old values in WAL, so a key change cannot be
--    told: one update under the new key, no "old" (README).
ALTER TABLE engage.kc REPLICA IDENTITY NOTHING;
UPDATE engage.kc SET a = 5 WHERE a = 4;
SELECT * FROM engage_test.get('regress_keys', 'tables', :'tables');
ALTER TABLE engage.kc REPLICA IDENTITY DEFAULT;

-- 5. A TOASTed key column left alone while another key column changes: the
--    new tuple holds only a pointer to it, the old key has it in full, and
--    both keys are written whole.
CREATE TABLE engage.kc_toastkey (k text, n int, v int, PRIMARY KEY (k, n));
ALTER TABLE engage.kc_toastkey ALTER COLUMN k SET STORAGE EXTERNAL;
INSERT INTO engage.kc_toastkey VALUES (repeat('k', 2560), 1, 1);
UPDATE engage.kc_toastkey SET n = 2;
UPDATE engage.kc_toastkey SET v = 2;   -- the old key is logged (TOASTed), unchanged
SELECT r->>'id' AS id, r->>'op' AS op, r->'key_changed' AS key_changed,
       r->'pk'->'n' AS pk_n, r->'pk'->>'k' = repeat('k', 2560) AS pk_k_exact,
       coalesce(r->'new_pk', r->'old_pk')->'n' AS other_n,
       coalesce(r->'new_pk', r->'old_pk')->>'k' = repeat('k', 2560) AS other_k_exact,
       r->'unchanged_toast' AS unchanged_toast
  FROM engage_test.get('regress_keys', 'tables', 'engage.kc_toastkey') r;

-- 6. Ids do not depend on the filter: a key change takes two positions also
--    in a table that is not captured.
CREATE TABLE public.kc_outside (id int PRIMARY KEY, v text);
INSERT INTO public.kc_outside VALUES (1, 'a');
SELECT count(*) >= 0 AS drained FROM pg_logical_slot_get_changes('regress_keys', NULL, NULL);
BEGIN;
UPDATE public.kc_outside SET id = 2;                  -- positions 1 and 2
INSERT INTO engage.kc VALUES (7, 'q', 'after', NULL); -- position 3
UPDATE public.kc_outside SET v = 'b';                 -- position 4
UPDATE engage.kc SET a = 8 WHERE a = 7;               -- positions 5 and 6
COMMIT;
SELECT f AS tables, string_agg((r->>'op') || ' ' || (r->>'table') || ' ' || (r->>'id'), ', '
                               ORDER BY split_part(r->>'id', ':', 2)::int) AS records
  FROM unnest(ARRAY['engage.kc', '*']) WITH ORDINALITY AS t(f, n),
       LATERAL engage_test.peek('regress_keys', 'tables', f) r
 GROUP BY f, n ORDER BY n;
SELECT count(*) >= 0 AS drained FROM pg_logical_slot_get_changes('regress_keys', NULL, NULL);

-- 7. Partitioned tables: a key change inside one partition is split by the
--    plugin; one that moves the row to another partition is a delete and an
--    insert in WAL already (no "key_changed": PostgreSQL does not say it was
--    one update), each at its own position.
CREATE TABLE engage.kc_parted (region text, id int, v text, PRIMARY KEY (region, id))
    PARTITION BY LIST (region);
CREATE TABLE engage.kc_parted_eu PARTITION OF engage.kc_parted FOR VALUES IN ('eu');
CREATE TABLE engage.kc_parted_us PARTITION OF engage.kc_parted FOR VALUES IN ('us');
INSERT INTO engage.kc_parted VALUES ('eu', 1, 'a');
BEGIN;
UPDATE engage.kc_parted SET id = 2 WHERE id = 1;        -- same partition: positions 1 and 2
UPDATE engage.kc_parted SET region = 'us' WHERE id = 2; -- moves: positions 3 and 4
COMMIT;
SELECT * FROM engage_test.get('regress_keys', 'tables', :'tables');

SELECT pg_drop_replication_slot('regress_keys');
DROP TABLE engage.kc, engage.kc_toastkey, engage.kc_parted, public.kc_outside;
