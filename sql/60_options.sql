-- Plugin options (README, "Plugin options"): bad ones are errors that name
-- the option and hint at the fix; the tables filter selects what is captured
-- without changing ids.

SELECT 'init' FROM pg_create_logical_replication_slot('regress_opt', 'engage_decoder');
CREATE SCHEMA regress_opt;
CREATE TABLE engage.opt_a (id int PRIMARY KEY);
CREATE TABLE engage.opt_b (id int PRIMARY KEY);
CREATE TABLE engage."Opt_Mixed" (id int PRIMARY KEY);
CREATE TABLE regress_opt.outside (id int PRIMARY KEY);
CREATE TABLE public.opt_public (id int PRIMARY KEY);
CREATE TABLE engage.opt_parted (id int PRIMARY KEY) PARTITION BY RANGE (id);
CREATE TABLE regress_opt.opt_leaf PARTITION OF engage.opt_parted FOR VALUES FROM (0) TO (100);
BEGIN;
INSERT INTO engage.opt_a VALUES (1);
INSERT INTO engage.opt_b VALUES (2);
INSERT INTO engage."Opt_Mixed" VALUES (3);
INSERT INTO regress_opt.outside VALUES (4);
INSERT INTO public.opt_public VALUES (5);
INSERT INTO engage.opt_parted VALUES (6);
COMMIT;

-- Bad options: an error naming the option, with a hint.
SELECT * FROM pg_logical_slot_peek_changes('regress_opt', NULL, NULL, 'bogus', '1');
SELECT * FROM pg_logical_slot_peek_changes('regress_opt', NULL, NULL, 'Tables', '*');
SELECT * FROM pg_logical_slot_peek_changes('regress_opt', NULL, NULL, 'tables', 'engage');
SELECT * FROM pg_logical_slot_peek_changes('regress_opt', NULL, NULL, 'tables', '');
SELECT * FROM pg_logical_slot_peek_changes('regress_opt', NULL, NULL, 'tables', 'engage.opt_a, ,engage.opt_b');
SELECT * FROM pg_logical_slot_peek_changes('regress_opt', NULL, NULL, 'transactions', 'maybe');
SELECT * FROM pg_logical_slot_peek_changes('regress_opt', NULL, NULL, 'format_version', '2');
-- every bad value, by SQLSTATE, message and hint
SELECT o AS option, v AS value,
       engage_test.error_of(format('SELECT count(*) FROM pg_logical_slot_peek_changes(%L, NULL, NULL, %L, %L)',
                                   'regress_opt', o, v)) AS error
  FROM (VALUES ('tables', ' '), ('tables', '.opt_a'), ('tables', 'engage.'), ('tables', 'a.b.c'),
               ('tables', 'engage.opt_a,opt_b'),
               ('transactions', ''), ('transactions', 'onn'),
               ('format_version', ''), ('format_version', '1.0'), ('format_version', '0'),
               ('unknown', 'x')) AS t(o, v);
-- a bad option does not consume anything
SELECT count(*) AS still_there FROM pg_logical_slot_peek_changes('regress_opt', NULL, NULL);

-- Good values of transactions and format_version.
SELECT v AS transactions,
       count(*) FILTER (WHERE data::jsonb->>'op' IN ('begin', 'commit')) AS frame_records
  FROM (VALUES ('on'), ('off'), ('true'), ('false'), ('1'), ('0'), ('yes'), ('no')) AS t(v),
       LATERAL pg_logical_slot_peek_changes('regress_opt', NULL, NULL, 'transactions', v)
 GROUP BY v ORDER BY v;
SELECT count(*) AS format_1 FROM pg_logical_slot_peek_changes('regress_opt', NULL, NULL, 'format_version', '1');

-- The tables filter: which records each value captures, with their ids
-- (positions are the same whatever the filter).
SELECT f AS tables,
       coalesce(string_agg((r->>'table') || coalesce(' (' || (r->>'partition') || ')', '')
                           || ' ' || (r->>'id'), ', ' ORDER BY r->>'id'), '(nothing)') AS captured
  FROM unnest(ARRAY['default', '*', 'engage.*', ' engage.opt_a , engage.opt_b ',
                    'engage.opt_a,engage.opt_a', 'regress_opt.*', 'regress_opt.outside',
                    'engage.opt_a,regress_opt.outside', 'engage.*,public.opt_public',
                    'engage.Opt_Mixed', 'engage.opt_mixed', 'engage."Opt_Mixed"',
                    'engage.opt_parted', 'regress_opt.opt_leaf', 'nosuch.*', 'engage.nosuch'])
       WITH ORDINALITY AS t(f, n)
  LEFT JOIN LATERAL (
      SELECT r FROM engage_test.peek('regress_opt', VARIADIC CASE WHEN f = 'default' THEN '{}'::text[]
                                                                 ELSE ARRAY['tables', f] END) r
  ) p ON true
 GROUP BY f, n ORDER BY n;

-- Options are per decoding session: the slot keeps no filter.
SELECT count(*) AS engage_records FROM pg_logical_slot_peek_changes('regress_opt', NULL, NULL);

SELECT pg_drop_replication_slot('regress_opt');

-- max_record_bytes: a row record larger than it keeps its key and loses its
-- values ("oversized_bytes" instead); the size is known before the values
-- are written (stored sizes) or, when escaping makes them larger, after.
SELECT 'init' FROM pg_create_logical_replication_slot('regress_big_rec', 'engage_decoder');
CREATE TABLE engage.opt_big (id int PRIMARY KEY, body text);
ALTER TABLE engage.opt_big ALTER COLUMN body SET STORAGE EXTERNAL;
INSERT INTO engage.opt_big VALUES (1, repeat('a', 5000));       -- stored size over 1024
INSERT INTO engage.opt_big VALUES (2, repeat(E'\x01', 900));     -- 900 stored, 5400 escaped
INSERT INTO engage.opt_big VALUES (3, repeat('c', 600));          -- fits
UPDATE engage.opt_big SET id = 4 WHERE id = 1;                    -- key change, body unchanged: not counted
SELECT r->>'op' AS op, r->'pk' AS pk, r->'oversized_bytes' AS oversized_bytes,
       length(r->'new'->>'body') AS body_length
  FROM engage_test.peek('regress_big_rec', 'max_record_bytes', '1024') r;
SELECT count(*) FILTER (WHERE data::jsonb ? 'oversized_bytes') AS oversized_by_default
  FROM pg_logical_slot_peek_changes('regress_big_rec', NULL, NULL);
SELECT v AS max_record_bytes,
       split_part(engage_test.error_of(format(
           'SELECT count(*) FROM pg_logical_slot_peek_changes(%L, NULL, NULL, %L, %L)',
           'regress_big_rec', 'max_record_bytes', v)), E'\n', 1) AS error
  FROM (VALUES ('1023'), ('67108865'), ('x'), (''), ('1024'), ('67108864')) AS t(v);
SELECT pg_drop_replication_slot('regress_big_rec');
DROP TABLE engage.opt_big;

DROP TABLE engage.opt_a, engage.opt_b, engage."Opt_Mixed", engage.opt_parted, public.opt_public;
DROP SCHEMA regress_opt CASCADE;
