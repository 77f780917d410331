-- The type matrix: how every kind of value is written (README, "Values are
-- JSON-native where JSON carries them exactly").  Each value is listed per
-- column, compared with an independent SQL rendering of the contract, and
-- the raw text of the records is checked where jsonb would hide the exact
-- formatting (digits kept, escapes, NaN as a string).

SELECT 'init' FROM pg_create_logical_replication_slot('regress_types', 'engage_decoder');

CREATE TYPE engage.mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN engage.positive AS int CHECK (VALUE > 0);
CREATE DOMAIN engage.address AS text;
CREATE DOMAIN engage.int_list AS int[];
CREATE TABLE engage.type_matrix (
    id          int PRIMARY KEY,
    i2          int2,
    i4          int4,
    i8          int8,
    o           oid,
    n           numeric,
    n_scaled    numeric(40, 20),
    f4          float4,
    f8          float8,
    b           bool,
    t           text,
    vc          varchar(20),
    c           char(5),
    by          bytea,
    d           date,
    ts          timestamp,
    tstz        timestamptz,
    iv          interval,
    u           uuid,
    j           json,
    jb          jsonb,
    a_int       int[],
    a_2d        int[],
    a_text      text[],
    a_num       numeric[],
    a_tstz      timestamptz[],
    a_bytea     bytea[],
    a_jsonb     jsonb[],
    a_enum      engage.mood[],
    a_dom       engage.positive[],
    e           engage.mood,
    dom         engage.positive,
    dom_text    engage.address,
    dom_arr     engage.int_list,
    ip          inet,
    "odd ""name"" \ col" text
);
-- Its schema record (75_schema_changes): the checks below are about rows.
SELECT r->>'op' AS op, r->>'change' AS change, r->>'table' AS table,
       jsonb_array_length(r->'columns') AS columns, r->'key' AS key
  FROM engage_test.get('regress_types') r;

INSERT INTO engage.type_matrix VALUES
-- 1: ordinary values
(1, 1, 2, 3, 4, 1.5, 2.25, 0.5, 0.25, true, 'plain', 'varying', 'ab',
 '\x00ff10', '2026-11-25', '2026-11-25 09:00:00.123456', '2026-11-25 10:00:00.5+01',
 '1 year 2 months 3 days 04:05:06.7', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
 '{"a": [1, 2.50, "x"], "b": null}', '{"b": {"c": true}, "a": 1.10}',
 '{1,NULL,3}', '{{1,2,3},{4,NULL,6}}', '{"a\"b",NULL,"c,d",""}', '{1.10,NaN}',
 '{"2026-11-25 09:00:00+00",NULL}', '{"\\x6869",NULL}', '{"{\"k\": 1}",null}',
 '{happy,sad}', '{1,2}', 'ok', 7, 'someone@example.com', '{5,6}', '192.168.0.1/24', 'x'),
-- 2: extremes and exact digits
(2, -32768, -2147483648, 9223372036854775807, 4294967295,
 '-12345678901234567890.123456789012345678901234567890', '1.50000000000000000000',
 3.4028235e38, 0.1::float8 + 0.2::float8, false, '', '', '',
 '', '0001-01-01', '9999-12-31 23:59:59.999999', '0001-01-01 00:00:00+00',
 '-1 year -2 months +3 days -04:05:06.7', '00000000-0000-0000-0000-000000000000',
 '[]', '[1e2, -0, "\u00e9"]', '{}', '{}', '{}', '{0.000000000000000000000001}',
 '{}', '{"\\x"}', '{}', '{}', '{}', 'sad', 2147483647, '', '[0:1]={8,9}', '::1', ''),
-- 3: what JSON numbers cannot carry, and infinities
(3, 0, 0, 0, 0, 'Infinity', 'NaN', 'NaN', '-Infinity', NULL, NULL, NULL, NULL,
 NULL, 'infinity', '-infinity', 'infinity', '0', NULL, 'null', '"str"',
 NULL, NULL, NULL, '{Infinity,-Infinity,NaN}', '{infinity,-infinity}', NULL, NULL, NULL,
 NULL, NULL, NULL, NULL, NULL, NULL, NULL),
-- 4: text that needs escaping, and non-ASCII
(4, NULL, NULL, NULL, NULL, '-Infinity', '0', '-0', '5e-324', NULL,
 E'q" b\\ s/ t\t n\n r\r bs\b ff\f c1\x01 c1f\x1f del\x7f é 😀',
 E'\\"\\', E'\x01', 'héllo', '1900-02-28', '1999-12-31 23:59:59.999999',
 '1969-07-20 20:17:40.123456+00', '-00:00:00.000001', NULL,
 E'{"k\\"": "\\u0001 \\\\ é 😀"}', E'{"k\\"": "\\u0001 \\\\ é 😀"}',
 NULL, NULL, E'{"\\"\\\\", "\x02", "😀"}', NULL, NULL, NULL, NULL,
 NULL, NULL, NULL, NULL, E'tab\there', NULL, NULL, E'"\\\n'),
-- 5: NULL in every column but the key
(5, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
 NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
 NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);

-- Every column is in "new", nothing else (the raw records below show the order).
SELECT r->'pk' AS pk,
       (SELECT array_agg(k) FROM jsonb_object_keys(r->'new') k)::text[] @>
       (SELECT array_agg(attname::text) FROM pg_attribute
         WHERE attrelid = 'engage.type_matrix'::regclass AND attnum > 0 AND NOT attisdropped)
       AND (SELECT count(*) FROM jsonb_object_keys(r->'new')) =
           (SELECT count(*) FROM pg_attribute
             WHERE attrelid = 'engage.type_matrix'::regclass AND attnum > 0 AND NOT attisdropped)
       AS every_column
  FROM engage_test.peek('regress_types') r;

-- The value of every column of every row, in column order.
SELECT (r->'pk'->>'id')::int AS id, a.attname AS column,
       jsonb_typeof(r->'new'->a.attname) AS json_type, r->'new'->a.attname AS value
  FROM engage_test.peek('regress_types') r
  JOIN pg_attribute a ON a.attrelid = 'engage.type_matrix'::regclass
                     AND a.attnum > 1 AND NOT a.attisdropped
 ORDER BY 1, a.attnum;

-- An independent rendering of the contract in SQL, compared with every value
-- the plugin wrote: no row means every value is as the contract says.
CREATE FUNCTION engage_test.ts_json(t timestamptz) RETURNS jsonb
LANGUAGE sql IMMUTABLE
RETURN CASE WHEN isfinite(t)
            THEN to_jsonb(to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
            ELSE to_jsonb(t::text) END;
CREATE FUNCTION engage_test.expected_type_matrix(m engage.type_matrix) RETURNS jsonb
LANGUAGE sql STABLE
RETURN jsonb_build_object(
    'id', m.id, 'i2', m.i2, 'i4', m.i4, 'i8', m.i8, 'o', m.o::text::bigint,
    -- to_jsonb writes NaN and the infinities of numeric and float as strings
    'n', to_jsonb(m.n), 'n_scaled', to_jsonb(m.n_scaled),
    'f4', to_jsonb(m.f4), 'f8', to_jsonb(m.f8), 'b', m.b,
    't', m.t, 'vc', m.vc, 'c', m.c,
    'by', to_jsonb(encode(m.by, 'base64')),
    'd', CASE WHEN isfinite(m.d) THEN to_jsonb(to_char(m.d, 'YYYY-MM-DD')) ELSE to_jsonb(m.d::text) END,
    'ts', CASE WHEN isfinite(m.ts) THEN to_jsonb(to_char(m.ts, 'YYYY-MM-DD"T"HH24:MI:SS.US'))
               ELSE to_jsonb(m.ts::text) END,
    'tstz', engage_test.ts_json(m.tstz),
    'iv', to_jsonb(m.iv::text COLLATE "C"),
    'u', m.u, 'j', m.j::jsonb, 'jb', m.jb,
    'a_int', to_jsonb(m.a_int), 'a_2d', to_jsonb(m.a_2d), 'a_text', to_jsonb(m.a_text),
    'a_num', to_jsonb(m.a_num),
    'a_tstz', (SELECT jsonb_agg(engage_test.ts_json(x) ORDER BY o) FROM unnest(m.a_tstz) WITH ORDINALITY AS u(x, o)),
    'a_bytea', (SELECT jsonb_agg(to_jsonb(encode(x, 'base64')) ORDER BY o) FROM unnest(m.a_bytea) WITH ORDINALITY AS u(x, o)),
    'a_jsonb', to_jsonb(m.a_jsonb), 'a_enum', to_jsonb(m.a_enum), 'a_dom', to_jsonb(m.a_dom::int[]),
    'e', m.e, 'dom', m.dom, 'dom_text', m.dom_text, 'dom_arr', to_jsonb(m.dom_arr::int[]),
    'ip', m.ip, 'odd "name" \ col', m."odd ""name"" \ col");
SET intervalstyle = iso_8601;
SELECT r->'pk'->>'id' AS id, k AS column, r->'new'->k AS plugin, x->k AS expected
  FROM engage_test.peek('regress_types') r
  JOIN engage.type_matrix m ON m.id = (r->'pk'->>'id')::int
 CROSS JOIN LATERAL engage_test.expected_type_matrix(m) AS x
 CROSS JOIN LATERAL jsonb_object_keys(x) AS k
 WHERE (r->'new'->k IS DISTINCT FROM x->k)
   -- empty arrays: unnest gives no rows, so the SQL side has NULL
   AND NOT (x->k = 'null'::jsonb AND r->'new'->k = '[]'::jsonb AND k IN ('a_tstz', 'a_bytea'))
   AND NOT (x->k IS NULL AND r->'new'->k = '[]'::jsonb AND k IN ('a_tstz', 'a_bytea'));
RESET intervalstyle;

-- The raw records: the exact text matters where jsonb would normalize it.
SELECT engage_test.raw(data) FROM pg_logical_slot_peek_changes('regress_types', NULL, NULL);

-- Raw fragments checked one by one.
WITH raw AS (
    SELECT (data::jsonb->'pk'->>'id')::int AS id, data
      FROM pg_logical_slot_peek_changes('regress_types', NULL, NULL)
)
SELECT id, check_name, position(fragment IN data) > 0 AS found
  FROM raw
  JOIN (VALUES
    (1, 'numeric 1.5 as a number',           '"n":1.5,'),
    (1, 'numeric(40,20) keeps its scale',    '"n_scaled":2.25000000000000000000,'),
    (1, 'json embedded as written',          '"j":{"a": [1, 2.50, "x"], "b": null},'),
    (1, 'char keeps its padding',            '"c":"ab   ",'),
    (1, 'bytea base64 padded',               '"by":"AP8Q",'),
    (1, 'timestamptz in UTC',                '"tstz":"2026-11-25T09:00:00.500000Z",'),
    (1, 'interval ISO 8601',                 '"iv":"P1Y2M3DT4H5M6.7S",'),
    (1, 'array nulls',                       '"a_int":[1,null,3],'),
    (1, 'array two dimensions',              '"a_2d":[[1,2,3],[4,null,6]],'),
    (1, 'numeric array NaN string',          '"a_num":[1.10,"NaN"],'),
    (1, 'bytea array base64',                '"a_bytea":["aGk=",null],'),
    (1, 'array lower bound dropped',         '"dom_arr":[5,6],'),
    (1, 'column name escaped',               '"odd \"name\" \\ col":"x"'),
    (2, 'numeric digits kept',               '"n":-12345678901234567890.123456789012345678901234567890,'),
    (2, 'numeric trailing zeros kept',       '"n_scaled":1.50000000000000000000,'),
    (2, 'int8 max exact',                    '"i8":9223372036854775807,'),
    (2, 'oid unsigned',                      '"o":4294967295,'),
    (2, 'float4 shortest exact',             '"f4":3.4028235e+38,'),
    (2, 'float8 shortest exact',             '"f8":0.30000000000000004,'),
    (2, 'tiny numeric digits kept',          '"a_num":[0.000000000000000000000001],'),
    (2, 'empty array',                       '"a_2d":[],'),
    (2, 'lower bound dropped',               '"dom_arr":[8,9],'),
    (3, 'numeric Infinity string',           '"n":"Infinity",'),
    (3, 'numeric NaN string',                '"n_scaled":"NaN",'),
    (3, 'float4 NaN string',                 '"f4":"NaN",'),
    (3, 'float8 -Infinity string',           '"f8":"-Infinity",'),
    (3, 'infinite date',                     '"d":"infinity",'),
    (3, 'infinite timestamp',                '"ts":"-infinity",'),
    (3, 'infinite timestamptz',              '"tstz":"infinity",'),
    (3, 'zero interval',                     '"iv":"PT0S",'),
    (3, 'numeric infinities in arrays',      '"a_num":["Infinity","-Infinity","NaN"],'),
    (3, 'json null embedded',                '"j":null,'),
    (4, 'text escapes',                      '"t":"q\" b\\ s/ t\t n\n r\r bs\b ff\f c1\u0001 c1f\u001f del' || chr(127) || ' é 😀",'),
    (4, 'backslashes and quotes',            '"vc":"\\\"\\",'),
    (4, 'control char in char(5)',           '"c":"\u0001    ",'),
    (4, 'numeric -Infinity string',          '"n":"-Infinity",'),
    (4, 'timestamptz before 1970',           '"tstz":"1969-07-20T20:17:40.123456Z",'),
    (4, 'negative microsecond interval',     '"iv":"PT-0.000001S",'),
    (4, 'float4 negative zero',              '"f4":-0,'),
    (4, 'float8 smallest denormal',          '"f8":5e-324,'),
    (4, 'text array escapes',                '"a_text":["\"\\","\u0002","😀"],'),
    (4, 'odd column, quote backslash LF',    '"odd \"name\" \\ col":"\"\\\n"}'),
    (5, 'NULL as null',                      '"i2":null,'),
    (5, 'NULL array as null',                '"a_2d":null,')
  ) AS c(row_id, check_name, fragment) ON c.row_id = raw.id
 ORDER BY id, check_name;

-- Under REPLICA IDENTITY FULL a DELETE writes the whole old row: its values
-- are written exactly as the same values in "new".
CREATE TEMP TABLE type_matrix_new AS SELECT r FROM engage_test.get('regress_types') r;
ALTER TABLE engage.type_matrix REPLICA IDENTITY FULL;
DELETE FROM engage.type_matrix;
SELECT d->'pk' AS pk, d->'old' = n.r->'new' AS old_equals_new
  FROM engage_test.get('regress_types') d
  JOIN type_matrix_new n ON n.r->'pk' = d->'pk';

-- A table whose name needs escaping.
CREATE TABLE engage."Odd ""Table"" \ Name" ("Key" int PRIMARY KEY);
INSERT INTO engage."Odd ""Table"" \ Name" VALUES (1);
SELECT engage_test.raw(data) FROM pg_logical_slot_get_changes('regress_types', NULL, NULL);

SELECT pg_drop_replication_slot('regress_types');
DROP FUNCTION engage_test.expected_type_matrix, engage_test.ts_json;
DROP TABLE engage.type_matrix, engage."Odd ""Table"" \ Name";
DROP DOMAIN engage.int_list;
DROP DOMAIN engage.address;
DROP DOMAIN engage.positive;
DROP TYPE engage.mood;
