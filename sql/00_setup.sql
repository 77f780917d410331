-- Test helpers shared by every regression file (schema engage_test), and the
-- settings the suite relies on.  Each later file creates its own slot and
-- drops it at the end, so the files do not depend on each other's data.

SHOW wal_level;
SHOW logical_decoding_work_mem;
SHOW timezone;
SELECT extname FROM pg_extension WHERE extname = 'pg_engage';

CREATE SCHEMA engage_test;

-- Regular expressions for the volatile fields.
CREATE FUNCTION engage_test.lsn_re() RETURNS text
LANGUAGE sql IMMUTABLE RETURN '^[0-9A-F]+/[0-9A-F]+$';
CREATE FUNCTION engage_test.id_re() RETURNS text
LANGUAGE sql IMMUTABLE RETURN '^[0-9A-F]+/[0-9A-F]+:[1-9][0-9]*$';
CREATE FUNCTION engage_test.ts_re() RETURNS text
LANGUAGE sql IMMUTABLE RETURN '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z$';

-- What is wrong with one record of the plugin's output, or NULL when nothing
-- is: checks what the normalized form below no longer shows (one line, valid
-- JSON, the shape of id, lsn, xid, ts and end_lsn, the order of LSNs).
CREATE FUNCTION engage_test.check(data text) RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    j jsonb;
    op text;
    commit_lsn pg_lsn;
BEGIN
    IF data IS NULL THEN
        RETURN 'record is NULL';
    END IF;
    IF position(E'\n' IN data) > 0 OR position(E'\r' IN data) > 0 THEN
        RETURN 'record is not one line';
    END IF;
    BEGIN
        j := data::jsonb;
    EXCEPTION WHEN OTHERS THEN
        RETURN 'record is not valid JSON: ' || SQLERRM;
    END;
    IF jsonb_typeof(j) IS DISTINCT FROM 'object' THEN
        RETURN 'record is not a JSON object';
    END IF;
    IF j->'v' IS DISTINCT FROM '1'::jsonb THEN
        RETURN 'v is not 1';
    END IF;
    op := j->>'op';
    IF jsonb_typeof(j->'xid') IS DISTINCT FROM 'number' OR (j->>'xid') !~ '^[0-9]+$' THEN
        RETURN 'xid is not an unsigned integer';
    END IF;
    IF (j->>'lsn') IS NULL OR (j->>'lsn') !~ engage_test.lsn_re() THEN
        RETURN 'lsn is not an LSN';
    END IF;

    IF op IN ('begin', 'commit') THEN
        IF j ? 'id' THEN
            RETURN op || ' record has an id';
        END IF;
        IF (j->>'ts') IS NULL OR (j->>'ts') !~ engage_test.ts_re() THEN
            RETURN 'ts is not ISO 8601 UTC with microseconds';
        END IF;
        IF (j->>'xid')::bigint = 0 THEN
            RETURN op || ' record without xid';
        END IF;
        IF op = 'commit' THEN
            IF (j->>'end_lsn') IS NULL OR (j->>'end_lsn') !~ engage_test.lsn_re() THEN
                RETURN 'end_lsn is not an LSN';
            END IF;
            IF (j->>'end_lsn')::pg_lsn <= (j->>'lsn')::pg_lsn THEN
                RETURN 'end_lsn is not after lsn';
            END IF;
            IF jsonb_typeof(j->'events') IS DISTINCT FROM 'number'
               OR (j->>'events') !~ '^[1-9][0-9]*$' THEN
                RETURN 'events is not a positive integer';
            END IF;
        END IF;
        RETURN NULL;
    END IF;

    IF op NOT IN ('insert', 'update', 'delete', 'truncate', 'message', 'quarantine', 'schema') OR op IS NULL THEN
        RETURN 'unknown op ' || coalesce(op, 'NULL');
    END IF;
    IF (j->>'id') IS NULL OR (j->>'id') !~ engage_test.id_re() THEN
        RETURN 'id is not <commit lsn>:<position>';
    END IF;
    commit_lsn := split_part(j->>'id', ':', 1)::pg_lsn;
    IF op = 'quarantine' AND coalesce(j->>'reason', '') = '' THEN
        RETURN 'quarantine record without a reason';
    END IF;
    IF op = 'message' AND j ? 'transactional' THEN
        RETURN 'an application event is always transactional';
    END IF;
    IF op = 'quarantine' AND j->'transactional' = 'false'::jsonb THEN
        -- a non-transactional message is named by its own LSN and has no commit
        IF commit_lsn <> (j->>'lsn')::pg_lsn THEN
            RETURN 'non-transactional message id is not its own lsn';
        END IF;
        IF j->'ts' IS DISTINCT FROM 'null'::jsonb THEN
            RETURN 'non-transactional message has a commit time';
        END IF;
        RETURN NULL;
    END IF;
    IF (j->>'xid')::bigint = 0 THEN
        RETURN 'transactional record without xid';
    END IF;
    IF (j->>'lsn')::pg_lsn > commit_lsn THEN
        RETURN 'change lsn is after the commit lsn of its id';
    END IF;
    IF (j->>'ts') IS NULL OR (j->>'ts') !~ engage_test.ts_re() THEN
        RETURN 'ts is not ISO 8601 UTC with microseconds';
    END IF;
    IF (j->>'ts')::timestamptz > clock_timestamp()
       OR (j->>'ts')::timestamptz < clock_timestamp() - interval '1 day' THEN
        RETURN 'ts is not a recent commit time';
    END IF;
    IF op NOT IN ('message', 'quarantine') THEN
        IF jsonb_typeof(j->'table') IS DISTINCT FROM 'string' THEN
            RETURN 'table is not a string';
        END IF;
    END IF;
    IF op IN ('insert', 'update', 'delete', 'truncate')
       AND coalesce(j->>'schema', '') !~ '^[0-9a-f]{16}$' THEN
        RETURN 'schema is not a fingerprint';
    END IF;
    IF op = 'schema' THEN
        -- a table's shape after a DDL statement (README, "Schema records")
        IF coalesce(j->>'change', '') NOT IN ('create', 'alter', 'rename', 'set_schema', 'drop', 'attach', 'detach') THEN
            RETURN 'unknown schema change ' || coalesce(j->>'change', 'NULL');
        END IF;
        IF jsonb_typeof(j->'captured') IS DISTINCT FROM 'boolean' THEN
            RETURN 'captured is not a boolean';
        END IF;
        IF (j ? 'old_table') AND j->>'change' NOT IN ('rename', 'set_schema') THEN
            RETURN 'old_table without a rename';
        END IF;
        IF j->>'change' = 'drop' OR j ? 'partition_of' AND j->>'change' = 'attach' THEN
            IF j ? 'columns' OR j->'captured' = 'true'::jsonb THEN
                RETURN 'a table that is gone has columns or is captured';
            END IF;
            RETURN NULL;
        END IF;
        IF jsonb_typeof(j->'columns') IS DISTINCT FROM 'array' OR jsonb_typeof(j->'key') IS DISTINCT FROM 'array'
           OR coalesce(j->>'schema', '') !~ '^[0-9a-f]{16}$' THEN
            RETURN 'schema record without columns, key and fingerprint';
        END IF;
        RETURN NULL;
    END IF;
    IF op IN ('insert', 'update', 'delete') THEN
        IF NOT j ? 'pk' OR jsonb_typeof(j->'pk') NOT IN ('object', 'null') THEN
            RETURN 'pk is neither an object nor null';
        END IF;
    END IF;
    IF j ? 'oversized_bytes' THEN
        -- a row too large for max_record_bytes: the key, no values
        IF jsonb_typeof(j->'oversized_bytes') IS DISTINCT FROM 'number' OR j ? 'new' OR j ? 'old' THEN
            RETURN 'oversized record with values';
        END IF;
        RETURN NULL;
    END IF;
    IF op IN ('insert', 'update') AND jsonb_typeof(j->'new') IS DISTINCT FROM 'object' THEN
        RETURN 'new is not an object';
    END IF;
    IF op = 'delete' AND (NOT j ? 'old' OR jsonb_typeof(j->'old') NOT IN ('object', 'null')) THEN
        RETURN 'old is neither an object nor null';
    END IF;
    IF op = 'truncate' AND (jsonb_typeof(j->'cascade') IS DISTINCT FROM 'boolean'
                            OR jsonb_typeof(j->'restart_identity') IS DISTINCT FROM 'boolean') THEN
        RETURN 'truncate flags are not booleans';
    END IF;
    RETURN NULL;
END
$$;

-- A record as jsonb without its volatile fields: lsn, xid, ts and end_lsn are
-- removed, and the commit LSN part of id is replaced by '*' (the position is
-- kept).  Raises an error naming the problem when the record is malformed, so
-- every record a test prints has been checked.
CREATE FUNCTION engage_test.norm(data text) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    problem text := engage_test.check(data);
    j jsonb;
BEGIN
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION 'malformed engage record: %', problem
            USING DETAIL = left(data, 2000);
    END IF;
    j := data::jsonb - ARRAY['lsn', 'xid', 'ts', 'end_lsn'];
    IF j ? 'id' THEN
        j := jsonb_set(j, '{id}', to_jsonb('*:' || split_part(j->>'id', ':', 2)));
    END IF;
    RETURN j;
END
$$;

-- The raw text of a record with its volatile header replaced, to check
-- formatting that jsonb would hide (digits, escapes, order of members):
-- {"v":1,"id":"*:<position>",...,"op":... for changes and messages,
-- {"v":1,"op":"begin",...} and {"v":1,"op":"commit",...,"events":<n>} for
-- begin and commit records; the rest exactly as written.  A record whose
-- header does not have the exact expected form comes back unchanged, which
-- shows up in the test output.
CREATE FUNCTION engage_test.body(data text) RETURNS text
LANGUAGE sql IMMUTABLE
RETURN regexp_replace(regexp_replace(data,
    '^\{"v":1,"id":"[0-9A-F]+/[0-9A-F]+:([0-9]+)","lsn":"[0-9A-F]+/[0-9A-F]+","xid":[0-9]+,"ts":("[0-9T:.Z-]+"|null),"op":',
    '{"v":1,"id":"*:\1",...,"op":'),
    '^\{"v":1,"op":"(begin|commit)","xid":[1-9][0-9]*,"lsn":"[0-9A-F]+/[0-9A-F]+",(?:"end_lsn":"[0-9A-F]+/[0-9A-F]+",)?"ts":"[0-9T:.Z-]+"',
    '{"v":1,"op":"\1",...');

-- body() of a record that passed check(): what the tests print of raw records.
CREATE FUNCTION engage_test.raw(data text) RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    problem text := engage_test.check(data);
BEGIN
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION 'malformed engage record: %', problem
            USING DETAIL = left(data, 2000);
    END IF;
    RETURN engage_test.body(data);
END
$$;

-- The normalized records of a slot, consumed (get) or not (peek), in order.
CREATE FUNCTION engage_test.get(slot name, VARIADIC options text[] DEFAULT '{}')
RETURNS SETOF jsonb LANGUAGE sql VOLATILE
BEGIN ATOMIC
    SELECT engage_test.norm(data)
      FROM pg_logical_slot_get_changes(slot, NULL, NULL, VARIADIC options);
END;

CREATE FUNCTION engage_test.peek(slot name, VARIADIC options text[] DEFAULT '{}')
RETURNS SETOF jsonb LANGUAGE sql VOLATILE
BEGIN ATOMIC
    SELECT engage_test.norm(data)
      FROM pg_logical_slot_peek_changes(slot, NULL, NULL, VARIADIC options);
END;

-- The error a statement raises, as 'SQLSTATE: message' with its detail and
-- hint, or 'no error'.
CREATE FUNCTION engage_test.error_of(statement text) RETURNS text
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    state text;
    message text;
    detail text;
    hint text;
BEGIN
    EXECUTE statement;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT,
                            detail = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT;
    RETURN state || ': ' || message
        || CASE WHEN detail <> '' THEN E'\nDETAIL: ' || detail ELSE '' END
        || CASE WHEN hint <> '' THEN E'\nHINT: ' || hint ELSE '' END;
END
$$;

-- The helpers themselves: well-formed records pass, malformed ones are caught.
SELECT engage_test.norm('{"v":1,"id":"0/1A2B3C4:2","lsn":"0/1A2B300","xid":735,"ts":"'
       || to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
       || '","op":"update","table":"engage.t","schema":"0123456789abcdef","pk":{"id":7},"new":{"id":7}}');
SELECT engage_test.body(rec) FROM (VALUES
    ('{"v":1,"id":"0/1A2B3C4:2","lsn":"0/1A2B300","xid":735,"ts":"2026-11-25T09:00:00.123456Z","op":"insert","x":1}'),
    ('{"v":1,"id":"0/1A2B3C4:3","lsn":"0/1A2B300","xid":0,"ts":null,"op":"quarantine","transactional":false,"reason":"r"}'),
    ('{"v":1,"op":"begin","xid":735,"lsn":"0/1A2B3C4","ts":"2026-11-25T09:00:00.123456Z"}'),
    ('{"v":1,"op":"commit","xid":735,"lsn":"0/1A2B3C4","end_lsn":"0/1A2B3F4","ts":"2026-11-25T09:00:00.123456Z","events":2}'),
    ('{"v":1,"id":"0/1A2B3C4","lsn":"0/1A2B300","xid":735,"ts":"2026-11-25T09:00:00.123456Z","op":"insert"}')
  ) AS t(rec);
SELECT t.rec, engage_test.check(t.rec)
  FROM (VALUES
    ('{"v":1,"id":"0/1:1","lsn":"0/1","xid":1,"ts":null,"op":"insert"'),
    (E'{"v":1,\n"op":"begin"}'),
    ('[1]'),
    ('{"v":2,"op":"begin","xid":1,"lsn":"0/1","ts":"2026-11-25T09:00:00.123456Z"}'),
    ('{"v":1,"op":"begin","xid":1,"lsn":"0/1","ts":"2026-11-25T09:00:00.123Z"}'),
    ('{"v":1,"op":"commit","xid":1,"lsn":"0/2","end_lsn":"0/1","ts":"2026-11-25T09:00:00.123456Z","events":1}'),
    ('{"v":1,"op":"commit","xid":1,"lsn":"0/1","end_lsn":"0/2","ts":"2026-11-25T09:00:00.123456Z","events":0}'),
    ('{"v":1,"id":"0/1","lsn":"0/1","xid":1,"ts":"2026-11-25T09:00:00.123456Z","op":"insert"}'),
    ('{"v":1,"id":"0/1:0","lsn":"0/1","xid":1,"ts":"2026-11-25T09:00:00.123456Z","op":"insert"}'),
    ('{"v":1,"id":"0/1:1","lsn":"0/2","xid":1,"ts":"2026-11-25T09:00:00.123456Z","op":"insert"}'),
    ('{"v":1,"id":"0/1:1","lsn":"0/1","xid":"1","ts":"2026-11-25T09:00:00.123456Z","op":"insert"}'),
    ('{"v":1,"id":"0/1:1","lsn":"0/1","xid":0,"ts":null,"op":"quarantine","transactional":false,"reason":"r"}'),
    ('{"v":1,"id":"0/1:1","lsn":"0/1","xid":0,"ts":"2026-11-25T09:00:00.123456Z","op":"quarantine","transactional":false,"reason":"r"}'),
    ('{"v":1,"id":"0/1:1","lsn":"0/1","xid":0,"ts":null,"op":"message","transactional":false}'),
    ('{"v":1,"id":"0/1:1","lsn":"0/1","xid":1,"ts":"2026-11-25T09:00:00.123456Z","op":"quarantine"}'),
    ('{"v":1,"id":"0/1:1","lsn":"0/1","xid":1,"ts":"1999-11-25T09:00:00.123456Z","op":"message"}')
  ) AS t(rec);
SELECT engage_test.error_of('SELECT 1');
SELECT engage_test.error_of('SELECT 1/0');
