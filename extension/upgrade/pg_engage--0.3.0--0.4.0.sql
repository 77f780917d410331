-- pg_engage 0.3.0 -> 0.4.0: a complete stream (issue 9): snapshots, schema
-- changes in stream order.
\echo Use "ALTER EXTENSION pg_engage UPDATE TO '0.4.0'" to load this file. \quit

-- Section: snapshots (issue 9, part 1).

-- Section: schema changes (issue 9, part 3).
