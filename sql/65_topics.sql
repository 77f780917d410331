-- Kafka topic names (README, "Topic names"): the topic of a table depends on
-- its own schema and name only; hostile names get a deterministic escaped
-- topic; application events and the dead-letter topic live apart from row
-- topics.  The rules are the ones engage_decoder hands the shipper
-- (plugin/topicname.c), called here through test functions of the pg_engage
-- library.

CREATE FUNCTION engage_test.table_topic(prefix text, schema text, tab text) RETURNS text
LANGUAGE C STRICT IMMUTABLE AS '$libdir/pg_engage', 'engage_table_topic_sql';
CREATE FUNCTION engage_test.message_topic(prefix text, topic text) RETURNS text
LANGUAGE C STRICT IMMUTABLE AS '$libdir/pg_engage', 'engage_message_topic_sql';
CREATE FUNCTION engage_test.dead_letter_conflict(prefix text, topic text) RETURNS text
LANGUAGE C STRICT IMMUTABLE AS '$libdir/pg_engage', 'engage_dead_letter_conflict_sql';

-- The escaped form written again in SQL, independently: every byte outside
-- A-Za-z0-9_- becomes "_"; the hash is 16 hex digits of SHA-256 over schema,
-- a NUL byte and table.
CREATE FUNCTION engage_test.escaped(name text) RETURNS text
LANGUAGE sql IMMUTABLE
RETURN (SELECT coalesce(string_agg(CASE WHEN b >= 128 THEN '_'
                                        WHEN chr(b) ~ '^[A-Za-z0-9_-]$' THEN chr(b)
                                        ELSE '_' END, '' ORDER BY i), '')
          FROM generate_series(0, octet_length(textsend(name)) - 1) AS i,
               LATERAL get_byte(textsend(name), i) AS b);
CREATE FUNCTION engage_test.name_hash(schema text, tab text) RETURNS text
LANGUAGE sql IMMUTABLE
RETURN left(encode(sha256(textsend(schema) || '\x00'::bytea || textsend(tab)), 'hex'), 16);

-- Names to map: plain ones keep their topic; everything else is escaped.
CREATE TABLE engage_test.names (n int PRIMARY KEY, schema text, tab text);
INSERT INTO engage_test.names VALUES
    (1, 'engage', 'members'), (2, 'engage', 'campaign_audience'), (3, 'public', 'orders'),
    (4, 'Sales-EU', 'Big_Table-2'), (5, 'engage', 'a_b'), (6, 'a', 'b'),
    (7, 'mallory', 'Bad Name'), (8, 'mallory', 'Bad_Name'), (9, 'mallory', 'Bad!Name'),
    (10, 'mallory', 'say "hi"'), (11, 'mallory', 'it''s'), (12, 'mallory', 'dot.ted'),
    (13, 'dot.ted', 'x'), (14, 'dot_ted', 'x'), (15, 'mallory', 'ünïcödé'), (16, 'mallory', '日本'),
    (17, 'mallory', 'tab	and
newline'), (18, 'engage', 'has space'), (19, 'mallory', 'a.b.c.d'), (20, 'a b', 'c'),
    (21, 'a', 'b c'), (22, 'mallory', '-'), (23, 'mallory', '.'), (24, 'mallory', '..');

-- Each table's topic under prefix engage, plain or escaped, checked against
-- the SQL rule above.
SELECT n, schema, replace(replace(tab, E'\t', '<TAB>'), E'\n', '<LF>') AS tab,
       engage_test.table_topic('engage', schema, tab) AS topic,
       CASE WHEN engage_test.table_topic('engage', schema, tab)
                 = 'engage.' || engage_test.escaped(schema) || '.' || engage_test.escaped(tab)
                   || '.' || engage_test.name_hash(schema, tab) THEN 'escaped'
            WHEN engage_test.table_topic('engage', schema, tab)
                 = 'engage.' || CASE WHEN schema = 'engage' THEN '' ELSE schema || '.' END || tab
            THEN 'plain' ELSE 'WRONG' END AS form
  FROM engage_test.names ORDER BY n;

-- No two of these topics are equal or collide in Kafka ("." and "_" taken as
-- the same), except the plain pair engage.a_b / a.b, whose topics are the
-- ones a user chose (Kafka creates the first and refuses the second).
SELECT a.n, b.n, engage_test.table_topic('engage', a.schema, a.tab) AS topic_a,
       engage_test.table_topic('engage', b.schema, b.tab) AS topic_b
  FROM engage_test.names a JOIN engage_test.names b ON a.n < b.n
 WHERE translate(engage_test.table_topic('engage', a.schema, a.tab), '.', '_')
     = translate(engage_test.table_topic('engage', b.schema, b.tab), '.', '_');

-- Escaped topics have exactly three dots after the prefix, plain ones at most
-- two: they can never be equal.
SELECT form, min(dots) AS min_dots, max(dots) AS max_dots
  FROM (SELECT length(t) - length(replace(t, '.', '')) AS dots,
               CASE WHEN t ~ '\.[0-9a-f]{16}$' THEN 'escaped' ELSE 'plain' END AS form
          FROM engage_test.names, LATERAL engage_test.table_topic('engage', schema, tab) AS t) s
 GROUP BY form ORDER BY form;

-- Lengths: 63-character schema and table names under long prefixes.  A plain
-- name whose topic would pass 249 characters is escaped and shortened, each
-- part keeping at least half the room; every topic is a valid Kafka name.
SELECT p AS prefix_length, s AS schema_length, t AS table_length, length(topic) AS topic_length,
       CASE WHEN topic ~ '\.[0-9a-f]{16}$' THEN 'escaped' ELSE 'plain' END AS form,
       length(split_part(substr(topic, p + 2), '.', 1)) AS kept_schema,
       length(split_part(substr(topic, p + 2), '.', 2)) AS kept_table,
       topic ~ '^[A-Za-z0-9._-]{1,249}$' AS valid
  FROM (VALUES (6, 63, 63), (100, 63, 63), (121, 63, 63), (122, 63, 63), (130, 63, 63),
               (200, 63, 63), (200, 5, 63), (200, 63, 5), (200, 1, 1)) AS v(p, s, t),
       LATERAL engage_test.table_topic(repeat('p', p), repeat('s', s), repeat('t', t)) AS topic
 ORDER BY p, s, t;
-- Hostile 63-byte names under a 200-character prefix: still distinct, valid.
SELECT count(DISTINCT translate(topic, '.', '_')) AS distinct_topics, max(length(topic)) AS longest,
       bool_and(topic ~ '^[A-Za-z0-9._-]{1,249}$') AS all_valid
  FROM (VALUES (repeat('ü', 31), repeat('x', 63)), (repeat('ü', 31) || 'a', repeat('x', 63)),
               (repeat('s', 63), repeat('"', 63)), (repeat('s', 63), repeat('''', 63)),
               (repeat('s', 62) || '.', repeat('t', 63)), (repeat('s', 62) || '_', repeat('t', 63)))
       AS v(s, t),
       LATERAL engage_test.table_topic(repeat('p', 200), s, t) AS topic;
-- The topic of a table never depends on the prefix's other tables, nor on the
-- order of calls: the same name gives the same topic.
SELECT engage_test.table_topic('engage', 'mallory', 'Bad Name')
     = engage_test.table_topic('engage', 'mallory', 'Bad Name') AS same_again;

-- Application events: <prefix>-app.<topic>, apart from every row topic.
SELECT t AS event_topic, engage_test.message_topic('engage', t) AS topic
  FROM (VALUES ('wl'), ('members'), ('a.b'), ('a_b'), ('dead_letter')) AS v(t);
SELECT count(*) AS app_topics_colliding_with_row_topics
  FROM engage_test.names, (VALUES ('members'), ('a.b'), ('a_b'), ('mallory.Bad_Name')) AS v(t)
 WHERE translate(engage_test.message_topic('engage', t), '.', '_')
     = translate(engage_test.table_topic('engage', schema, tab), '.', '_');
SELECT engage_test.error_of($$SELECT engage_test.message_topic('engage', repeat('t', 239))$$) AS too_long;
SELECT length(engage_test.message_topic('engage', repeat('t', 238))) AS longest;
SELECT length(engage_test.message_topic(repeat('p', 200), repeat('t', 44))) AS longest_under_200;

-- Prefixes: at most 200 characters, so that every form fits.
SELECT engage_test.error_of($$SELECT engage_test.table_topic(repeat('p', 201), 'engage', 'members')$$) AS long_prefix;
SELECT engage_test.error_of($$SELECT engage_test.table_topic('a b', 'engage', 'members')$$) AS bad_prefix;

-- The dead-letter topic: refused when it is in, or collides with, the row or
-- application namespace of the prefix, or the control topic of gap records,
-- or the progress topic of exactly_once.
SELECT p AS prefix, t AS dead_letter_topic, coalesce(engage_test.dead_letter_conflict(p, t), 'ok') AS verdict
  FROM (VALUES ('engage', 'engage-dead_letter'), ('engage', 'engage.dead_letter'),
               ('engage', 'engage_dead_letter'), ('engage', 'engage.'), ('engage', 'engage'),
               ('engage', 'engage-app.dead'), ('engage', 'engage-app_dead'), ('engage', 'engage-appdead'),
               ('engage', 'dead_letters'), ('my.app', 'my_app.dlq'), ('my.app', 'my.app-dlq'),
               ('my.app', 'my_app-app_dlq'), ('engage', 'engage-control'), ('my.app', 'my_app-control'),
               ('engage', 'engage-controls'), ('engage', 'engage-progress'), ('my.app', 'my_app-progress'))
       AS v(p, t);

DROP TABLE engage_test.names;
