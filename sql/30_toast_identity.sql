-- Unchanged TOAST values and replica identities: what "pk", "old" and
-- "unchanged_toast" hold for each (README, "Event records").

SELECT 'init' FROM pg_create_logical_replication_slot('regress_toast', 'engage_decoder');
\set tables 'engage.members, engage.toasty, engage.by_index, engage.no_identity, engage.keyless'

-- engage.members.contact stored out of line without compression: a 3000-byte
-- value is always a TOAST pointer in the heap.
ALTER TABLE engage.members ALTER COLUMN contact SET STORAGE EXTERNAL;
INSERT INTO engage.members (member_id, name, email, contact, created_at)
    VALUES (1, 'Ann', 'ann@example.com', repeat('0123456789', 300), '2026-11-25 09:00:00+00');
-- The insert has the whole value.
SELECT r->>'op' AS op, r->'pk' AS pk, length(r->'new'->>'contact') AS contact_length,
       r->'new'->>'contact' = repeat('0123456789', 300) AS contact_exact,
       r ? 'unchanged_toast' AS has_unchanged_toast
  FROM engage_test.get('regress_toast', 'tables', :'tables') r;

-- An update of another column: WAL does not carry the unchanged value, so it
-- is left out of "new" and named in "unchanged_toast".
UPDATE engage.members SET name = 'Ann B' WHERE member_id = 1;
SELECT engage_test.raw(data) FROM pg_logical_slot_peek_changes('regress_toast', NULL, NULL, 'tables', :'tables');
SELECT * FROM engage_test.get('regress_toast', 'tables', :'tables');

-- An update of the TOASTed column itself carries the new value.
UPDATE engage.members SET contact = repeat('abcdefghij', 300) WHERE member_id = 1;
SELECT r->>'op' AS op, length(r->'new'->>'contact') AS contact_length,
       r->'new'->>'contact' = repeat('abcdefghij', 300) AS contact_exact,
       r ? 'unchanged_toast' AS has_unchanged_toast, r ? 'old' AS has_old
  FROM engage_test.get('regress_toast', 'tables', :'tables') r;

-- Key change under the default identity: a delete under the old key ("old"
-- has it), then an insert under the new one; the TOASTed column is still
-- unchanged.
UPDATE engage.members SET member_id = 2 WHERE member_id = 1;
SELECT * FROM engage_test.get('regress_toast', 'tables', :'tables');

-- REPLICA IDENTITY FULL: "old" is the whole old row, TOASTed value included
-- (PostgreSQL logs it in full), while "new" still leaves it out.
ALTER TABLE engage.members REPLICA IDENTITY FULL;
UPDATE engage.members SET name = 'Ann C' WHERE member_id = 2;
SELECT r->>'op' AS op, r->'pk' AS pk, r->'new' AS new, r->'unchanged_toast' AS unchanged_toast,
       (r->'old') - 'contact'::text AS old_without_contact,
       r->'old'->>'contact' = repeat('abcdefghij', 300) AS old_contact_exact
  FROM engage_test.get('regress_toast', 'tables', :'tables') r;
-- key change under FULL: a delete under the old key with the whole old row,
-- then an insert under the new key, complete: the unchanged TOASTed value
-- comes from the old row (45_key_changes.sql)
UPDATE engage.members SET member_id = 3 WHERE member_id = 2;
DELETE FROM engage.members WHERE member_id = 3;
SELECT r->>'op' AS op, r->'pk' AS pk, (r->'new') - 'contact'::text AS new_without_contact,
       r->'new'->>'contact' = repeat('abcdefghij', 300) AS new_contact_exact,
       r->'unchanged_toast' AS unchanged_toast,
       (r->'old') - 'contact'::text AS old_without_contact,
       r->'old'->>'contact' = repeat('abcdefghij', 300) AS old_contact_exact
  FROM engage_test.get('regress_toast', 'tables', :'tables') r;
ALTER TABLE engage.members REPLICA IDENTITY DEFAULT;
ALTER TABLE engage.members ALTER COLUMN contact SET STORAGE EXTENDED;

-- Several TOASTed columns of several types; a compressed value kept inline
-- is in the WAL and written in full.
CREATE TABLE engage.toasty (
    id    int PRIMARY KEY,
    doc   jsonb,
    tags  text[],
    packed text,
    note  text
);
ALTER TABLE engage.toasty ALTER COLUMN doc SET STORAGE EXTERNAL;
ALTER TABLE engage.toasty ALTER COLUMN tags SET STORAGE EXTERNAL;
INSERT INTO engage.toasty
    SELECT 1, jsonb_build_object('text', repeat('d', 3000)),
           array_fill('tag'::text, ARRAY[1000]), repeat('p', 100000), 'first';
UPDATE engage.toasty SET note = 'second';
UPDATE engage.toasty SET note = 'third', tags = ARRAY['small'];
SELECT r->>'op' AS op, r->'unchanged_toast' AS unchanged_toast,
       (SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(r->'new') k) AS new_columns,
       length(r->'new'->'doc'->>'text') AS doc_length,
       jsonb_array_length(r->'new'->'tags') AS tags_length,
       length(r->'new'->>'packed') AS packed_length,
       r->'new'->'note' AS note
  FROM engage_test.get('regress_toast', 'tables', :'tables') r;
SELECT pg_column_compression(packed) AS packed_compression FROM engage.toasty;

-- REPLICA IDENTITY USING INDEX: the key is the identity index, not the
-- primary key.
CREATE TABLE engage.by_index (
    id    int PRIMARY KEY,
    email text NOT NULL UNIQUE,
    name  text
);
ALTER TABLE engage.by_index REPLICA IDENTITY USING INDEX by_index_email_key;
INSERT INTO engage.by_index VALUES (1, 'a@example.com', 'A');
UPDATE engage.by_index SET name = 'B';
UPDATE engage.by_index SET email = 'b@example.com';
UPDATE engage.by_index SET id = 2;
DELETE FROM engage.by_index;
SELECT * FROM engage_test.get('regress_toast', 'tables', :'tables');

-- REPLICA IDENTITY NOTHING: no old values are logged, so an update has no
-- "old" even when its key changes, and a delete has neither key nor old row.
CREATE TABLE engage.no_identity (id int PRIMARY KEY, name text);
ALTER TABLE engage.no_identity REPLICA IDENTITY NOTHING;
INSERT INTO engage.no_identity VALUES (1, 'a');
UPDATE engage.no_identity SET id = 2;
DELETE FROM engage.no_identity;
SELECT * FROM engage_test.get('regress_toast', 'tables', :'tables');

-- A table without primary key: "pk" is null; updates and deletes carry no
-- old values under the default identity ("old":null on deletes), the whole old
-- row under REPLICA IDENTITY FULL (and "pk" stays null).
CREATE TABLE engage.keyless (a int, b text);
INSERT INTO engage.keyless VALUES (1, 'x');
UPDATE engage.keyless SET b = 'y';
DELETE FROM engage.keyless;
ALTER TABLE engage.keyless REPLICA IDENTITY FULL;
INSERT INTO engage.keyless VALUES (1, 'x');
UPDATE engage.keyless SET b = 'y';
DELETE FROM engage.keyless;
SELECT * FROM engage_test.get('regress_toast', 'tables', :'tables');
-- the raw form of the keyless delete
DELETE FROM engage.keyless;
ALTER TABLE engage.keyless REPLICA IDENTITY DEFAULT;
INSERT INTO engage.keyless VALUES (1, 'x');
DELETE FROM engage.keyless;
SELECT engage_test.raw(data) FROM pg_logical_slot_get_changes('regress_toast', NULL, NULL, 'tables', :'tables');

SELECT pg_drop_replication_slot('regress_toast');
DROP TABLE engage.toasty, engage.by_index, engage.no_identity, engage.keyless;
DELETE FROM engage.members;
