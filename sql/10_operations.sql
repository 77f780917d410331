-- Every operation (insert, update, delete, truncate) on every table of the
-- engage schema, so every column type the schema uses (bigint, text, text[],
-- boolean, timestamptz, NULL) goes through the plugin; and a partitioned
-- table in schema engage (table = root, partition = leaf).
-- Timestamps are given explicitly: no record depends on now().
-- The tables option names the tables under test, so that rows written by the
-- extension's own triggers (rollup journal, ...) do not show here; they still
-- count in the positions (they come after the rows here).

SELECT 'init' FROM pg_create_logical_replication_slot('regress_ops', 'engage_decoder');
\set tables 'engage.users, engage.templates, engage.audiences, engage.members, engage.audience_members, engage.campaigns, engage.campaign_audience, engage.events'

-- Inserts into every engage table, one transaction each.
INSERT INTO engage.users (user_id, username, department, contact, created_at) VALUES
    (1, 'ann', 'marketing', 'ann@example.com', '2026-11-25 09:00:00.123456+00'),
    (2, 'bob', NULL, NULL, '2026-11-25 10:00:00+01');
INSERT INTO engage.templates (template_id, name, type, created_at)
    VALUES (1, 'welcome', 'html', '2026-11-25 09:00:02+00');
INSERT INTO engage.audiences (audience_id, name, segment_types, location_type, created_at) VALUES
    (1, 'newsletter', '{vip,"new member"}', 'city', '2026-11-25 09:00:03+00'),
    (2, 'nobody', '{}', NULL, '2026-11-25 09:00:04+00');
INSERT INTO engage.members (member_id, name, email, contact, created_at) VALUES
    (1, 'Ann', ' Ann@Example.com ', 'phone', '2026-11-25 09:00:05+00'),
    (2, 'Bob', 'bob@example.com', NULL, '2026-11-25 09:00:06+00');
INSERT INTO engage.audience_members (audience_id, member_id, email, contact, added_at) VALUES
    (1, 1, ' Ann@Example.com ', 'phone', '2026-11-25 09:00:07+00'),
    (1, 2, 'bob@example.com', NULL, '2026-11-25 09:00:08+00');
INSERT INTO engage.campaigns (campaign_id, template_id, user_id, audience_id, name, type,
                              send_at, sent, created_at, expires_at)
    VALUES (7, 1, 1, 1, 'Launch', 'email', '2026-12-01 10:00:00+00', false,
            '2026-11-25 09:00:09+00', '2026-12-31 23:59:59.999999+00');
INSERT INTO engage.campaign_audience (campaign_id, member_id, email) VALUES
    (7, 1, 'ann@example.com'),
    (7, 2, 'bob@example.com');
SELECT * FROM engage_test.get('regress_ops', 'tables', :'tables');

-- Updates, including an upsert that updates and one that does nothing.
UPDATE engage.campaign_audience
   SET opened = true, opened_at = '2026-12-01 10:05:00+00',
       clicked = true, clicked_at = '2026-12-01 10:06:00.5+00'
 WHERE campaign_id = 7 AND member_id = 1;
UPDATE engage.campaigns SET sent = true, send_at = NULL WHERE campaign_id = 7;
UPDATE engage.audiences SET segment_types = '{}', location_type = NULL WHERE audience_id = 1;
INSERT INTO engage.users (user_id, username, created_at)
    VALUES (2, 'bob', '2026-11-25 09:00:00+00')
    ON CONFLICT (user_id) DO UPDATE SET department = 'sales';
INSERT INTO engage.users (user_id, username, created_at)
    VALUES (1, 'ann', '2026-11-25 09:00:00+00')
    ON CONFLICT DO NOTHING;
-- An update that changes nothing is still a change.
UPDATE engage.templates SET name = name;
SELECT * FROM engage_test.get('regress_ops', 'tables', :'tables');

-- Deletes; ON DELETE CASCADE deletes in the same transaction, after the row.
DELETE FROM engage.campaigns WHERE campaign_id = 7;
DELETE FROM engage.audience_members WHERE member_id = 2;
SELECT * FROM engage_test.get('regress_ops', 'tables', :'tables');

-- Truncates: one record per truncated table with the options of the TRUNCATE.
TRUNCATE engage.audience_members;
INSERT INTO engage.campaigns (campaign_id, template_id, user_id, audience_id, name, created_at)
    VALUES (8, 1, 2, 2, 'Again', '2026-11-25 09:00:10+00');
TRUNCATE engage.users, engage.templates RESTART IDENTITY CASCADE;
TRUNCATE engage.members CONTINUE IDENTITY CASCADE;
SELECT * FROM engage_test.get('regress_ops', 'tables', :'tables');

-- A partitioned table in schema engage, partitioned two levels deep, with one
-- leaf in another schema and with its columns in another order.
CREATE TABLE engage.events (
    campaign_id bigint,
    event_id    bigint,
    kind        text,
    PRIMARY KEY (campaign_id, event_id)
) PARTITION BY LIST (campaign_id);
CREATE TABLE engage.events_7 PARTITION OF engage.events FOR VALUES IN (7);
CREATE TABLE engage.events_other PARTITION OF engage.events DEFAULT PARTITION BY RANGE (event_id);
CREATE TABLE engage.events_other_low PARTITION OF engage.events_other
    FOR VALUES FROM (MINVALUE) TO (100);
CREATE SCHEMA regress_ops;
CREATE TABLE regress_ops.events_high (kind text, event_id bigint NOT NULL, campaign_id bigint NOT NULL);
ALTER TABLE engage.events_other ATTACH PARTITION regress_ops.events_high
    FOR VALUES FROM (100) TO (MAXVALUE);
INSERT INTO engage.events VALUES (7, 1, 'open'), (8, 2, 'click'), (8, 200, 'click');
-- moving a row to another partition is a delete and an insert
UPDATE engage.events SET campaign_id = 9 WHERE event_id = 1;
UPDATE engage.events SET kind = 'bounce' WHERE event_id = 200;
DELETE FROM engage.events WHERE event_id = 2;
-- writing a leaf directly still names the root
INSERT INTO engage.events_7 VALUES (7, 3, 'open');
SELECT * FROM engage_test.get('regress_ops', 'tables', :'tables');
-- Truncating a leaf, then the whole partitioned table: every truncated table
-- has its record, the partitioned tables (that hold no rows) included.
TRUNCATE engage.events_7;
TRUNCATE engage.events;
SELECT * FROM engage_test.get('regress_ops', 'tables', :'tables');

-- Nothing is left over.
SELECT count(*) FROM pg_logical_slot_get_changes('regress_ops', NULL, NULL);
SELECT pg_drop_replication_slot('regress_ops');
DROP TABLE engage.events;
DROP SCHEMA regress_ops;
DELETE FROM engage.audiences;
