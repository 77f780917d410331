-- engage_decoder against its contract in README.md ("Event records"), on the
-- cases where the plugin once broke it: shortest exact floats whatever
-- extra_float_digits, one record per line, UTC designator on timestamptz
-- beyond year 9999, message fields that cannot replace the record's own,
-- empty entries in the tables option refused, stored generated columns in
-- "new".  The expected output is what the contract says, which is what the
-- plugin does now: a diff here is a regression.  Each case is independent
-- and minimal.

SELECT 'init' FROM pg_create_logical_replication_slot('regress_bugs', 'engage_decoder');
CREATE TABLE engage.bugs (
    id   int PRIMARY KEY,
    f8   float8,
    f4   float4,
    j    json,
    tstz timestamptz
);

-- 1. float4/float8 must be written in their shortest exact form whatever
--    the session's extra_float_digits (README: "number (shortest exact
--    form)"): with extra_float_digits = 0, 0.1 + 0.2 must still be
--    0.30000000000000004, not 0.3 (another number).
INSERT INTO engage.bugs (id, f8, f4) VALUES (1, 0.1::float8 + 0.2::float8, 1e-40);
SET extra_float_digits = 0;
SELECT substring(data FROM '"f8":[^,}]*') AS f8, substring(data FROM '"f4":[^,}]*') AS f4
  FROM pg_logical_slot_peek_changes('regress_bugs', NULL, NULL);
RESET extra_float_digits;
SELECT count(*) FROM pg_logical_slot_get_changes('regress_bugs', NULL, NULL);

-- 2. One record per line (README: "one per line of the plugin's output"):
--    a json value or an engage message object containing a line break must
--    not put a line break into the record.
INSERT INTO engage.bugs (id, j) VALUES (2, E'{"a":\n1}');
SELECT pg_logical_emit_message(true, 'engage', E'{"topic": "t",\n"key": null, "payload": 1}') IS NOT NULL AS emitted;
SELECT data::jsonb->>'op' AS op, engage_test.check(data) AS problem
  FROM pg_logical_slot_get_changes('regress_bugs', NULL, NULL);

-- 3. timestamptz is UTC and marked as such (README: timestamptz "UTC";
--    "years outside 1-9999 use the XSD form"): a timestamptz after year 9999
--    must keep its UTC designator, or it cannot be told from a timestamp.
INSERT INTO engage.bugs (id, tstz) VALUES (3, '12000-06-01 01:02:03.000001+00');
SELECT data::jsonb->'new'->>'tstz' ~ '(Z|[+-]00:00)$' AS tstz_has_utc_designator
  FROM pg_logical_slot_get_changes('regress_bugs', NULL, NULL);

-- 4. A message object written with the engage prefix by other means must
--    not be able to replace the record's own fields ("v", "id", "op", ...):
--    the record must keep v 1 and its event id, and is quarantined (op
--    quarantine): engage.emit() did not write it.
SELECT pg_logical_emit_message(true, 'engage',
    '{"topic": "t", "v": 2, "id": "spoofed", "op": "insert", "lsn": "0/0"}') IS NOT NULL AS emitted;
SELECT data::jsonb->'v' AS v, data::jsonb->>'op' AS op,
       data::jsonb->>'id' ~ engage_test.id_re() AS id_is_event_id,
       data::jsonb->>'lsn' <> '0/0' AS lsn_is_real
  FROM pg_logical_slot_get_changes('regress_bugs', NULL, NULL);

-- 5. "An unknown option or a bad value is an error that names it": a tables
--    list with an empty entry is refused with the hint "Remove the empty
--    entry from the list." -- also when the empty entry has no blank in it.
SELECT v AS tables,
       engage_test.error_of(format('SELECT count(*) FROM pg_logical_slot_peek_changes(%L, NULL, NULL, %L, %L)',
                                   'regress_bugs', 'tables', v)) AS error
  FROM (VALUES ('engage.bugs,'), (',engage.bugs'), ('engage.bugs,,engage.x')) AS t(v);

-- 6. "new: the new row, every column": a stored generated column is a column
--    of the row (its value is in the WAL) and must be in "new".
CREATE TABLE engage.bugs_generated (id int PRIMARY KEY, a int, doubled int GENERATED ALWAYS AS (a * 2) STORED);
INSERT INTO engage.bugs_generated (id, a) VALUES (1, 5);
SELECT r->'new' AS new FROM engage_test.get('regress_bugs') r;

SELECT pg_drop_replication_slot('regress_bugs');
DROP TABLE engage.bugs, engage.bugs_generated;
