-- pg_engage 0.2.0 -> 0.3.0: trust (issue 8) and lost slots (issue 9, detection).
\echo Use "ALTER EXTENSION pg_engage UPDATE TO '0.3.0'" to load this file. \quit

-- engage.shipper_status(): quarantined, last_quarantined_at (issue 8), slot_losses,
-- last_gap_from, last_gap_to, retained_bytes, safe_wal_size (issue 9); as in
-- extension/sql/50_shipper.sql.
DROP VIEW engage.shipper;
DROP FUNCTION engage.shipper_status();

CREATE FUNCTION engage.shipper_status(
    OUT state text,
    OUT pid integer,
    OUT started_at timestamptz,
    OUT confirmed_lsn pg_lsn,
    OUT lag_bytes bigint,
    OUT events_shipped bigint,
    OUT bytes_shipped bigint,
    OUT in_flight bigint,
    OUT broker_reachable boolean,
    OUT last_error text,
    OUT last_error_at timestamptz,
    OUT error_resolved_at timestamptz,
    OUT slot_name text,
    OUT sessions bigint,
    OUT quarantined bigint,
    OUT last_quarantined_at timestamptz,
    OUT slot_losses bigint,
    OUT last_gap_from pg_lsn,
    OUT last_gap_to pg_lsn,
    OUT retained_bytes bigint,
    OUT safe_wal_size bigint)
RETURNS record
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'engage_shipper_status';

COMMENT ON FUNCTION engage.shipper_status() IS
'State, confirmed position, lag, counters and last error of the pg_engage Kafka shipper';

CREATE VIEW engage.shipper AS SELECT * FROM engage.shipper_status();

COMMENT ON VIEW engage.shipper IS 'The pg_engage Kafka shipper, one row';

REVOKE ALL ON FUNCTION engage.shipper_status() FROM PUBLIC;
REVOKE ALL ON engage.shipper FROM PUBLIC;

-- engage.build_campaign_audience(): a comment corrected (issue 8); as in
-- extension/sql/30_campaign.sql.
CREATE OR REPLACE FUNCTION engage.build_campaign_audience(
    campaign_id bigint,
    max_members bigint DEFAULT NULL,
    OUT added bigint,
    OUT skipped_duplicates bigint,
    OUT skipped_invalid bigint)
RETURNS record
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_campaign bigint := build_campaign_audience.campaign_id;
    v_audience bigint;
    v_sent     boolean;
    v_present  bigint;            -- members already in the campaign (no cap: 0 or 1, whether any)
    v_need     bigint;            -- members still to add; NULL: no limit
    v_last     text;              -- highest dedupe key added
BEGIN
    IF v_campaign IS NULL THEN
        RAISE EXCEPTION 'campaign_id must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF max_members < 0 THEN
        RAISE EXCEPTION 'max_members must not be negative: %', max_members
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass NULL (the default) to add every deduped member of the audience.';
    END IF;

    -- Serializes builders of this campaign until commit.  NO KEY UPDATE does not
    -- conflict with the KEY SHARE locks of foreign key checks, so engagement
    -- tracking and other campaigns go on meanwhile.
    SELECT c.audience_id, c.sent INTO v_audience, v_sent
    FROM engage.campaigns AS c
    WHERE c.campaign_id = v_campaign
    FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'campaign % does not exist', v_campaign
            USING ERRCODE = 'no_data_found',
                  HINT = 'Create the campaign in engage.campaigns first.';
    END IF;
    IF v_sent THEN
        RAISE EXCEPTION 'campaign % has already been sent', v_campaign
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'The audience of a sent campaign is what it was sent to and cannot grow.',
                  HINT = 'Create a new campaign for the members that were not reached.';
    END IF;

    -- Read after the lock: in READ COMMITTED this statement sees everything a
    -- builder we waited for has committed.
    IF max_members IS NOT NULL THEN
        SELECT count(*) INTO v_present
        FROM engage.campaign_audience AS ca
        WHERE ca.campaign_id = v_campaign;
        v_need := greatest(max_members - v_present, 0);
    ELSE
        SELECT count(*) INTO v_present
        FROM (SELECT FROM engage.campaign_audience AS ca
              WHERE ca.campaign_id = v_campaign
              LIMIT 1) AS any_row;
    END IF;

    IF v_need = 0 THEN
        -- Full already: nothing added, no row walked, and no step called.
        added := 0;
        skipped_duplicates := 0;
        skipped_invalid := 0;
        RETURN;
    END IF;

    IF v_present = 0 THEN
        SELECT b.added, b.last_key INTO added, v_last
        FROM engage_internal.audience_first_build(v_campaign, v_audience, v_need) AS b;
    ELSE
        SELECT t.added, t.last_key INTO added, v_last
        FROM engage_internal.audience_top_up(v_campaign, v_audience, v_need) AS t;
    END IF;

    SELECT s.skipped_duplicates, s.skipped_invalid INTO skipped_duplicates, skipped_invalid
    FROM engage_internal.audience_skip_counts(v_audience, v_need, added, v_last) AS s;
END
$$;

-- engage.emit(): application topics registered, collisions refused (issue 8);
-- identical to extension/sql/35_app_topics.sql.

-- The application topics engage.emit() has written to.  Kafka takes "." and
-- "_" in topic names for the same character: once "campaign.sent" exists it
-- refuses to create "campaign_sent", and events sent there would never be
-- delivered.  emit() registers each topic here on first use (in the emitting
-- transaction) and refuses a topic that collides with a registered one, up
-- front, instead of the shipper meeting the refusal later.

CREATE TABLE engage_internal.app_topics (
    topic            text PRIMARY KEY,
    -- The name as Kafka compares it: "." read as "_".
    kafka_name       text NOT NULL UNIQUE,
    first_emitted_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);

COMMENT ON TABLE engage_internal.app_topics IS
'Topics of engage.emit() events, registered on first use; a topic colliding with one of them in Kafka is refused';

-- Registers topic (or finds it registered); returns the registered topic
-- with the same Kafka name, which differs from topic when they collide.
-- Called by engage.emit() only: SECURITY DEFINER so that emitting roles need
-- no rights on engage_internal, and not executable by anyone else.
CREATE FUNCTION engage_internal.register_app_topic(topic text)
RETURNS text
LANGUAGE plpgsql VOLATILE STRICT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_kafka_name text := pg_catalog.translate(topic, '.', '_');
    v_registered text;
BEGIN
    INSERT INTO engage_internal.app_topics AS t (topic, kafka_name)
    VALUES (register_app_topic.topic, v_kafka_name)
    ON CONFLICT DO NOTHING;
    SELECT t.topic INTO v_registered
    FROM engage_internal.app_topics AS t
    WHERE t.kafka_name OPERATOR(pg_catalog.=) v_kafka_name;
    RETURN v_registered;
END
$$;

REVOKE ALL ON FUNCTION engage_internal.register_app_topic(text) FROM PUBLIC;

COMMENT ON FUNCTION engage_internal.register_app_topic(text) IS
'Called by engage.emit(): registers an application topic and returns the registered topic Kafka would take it for';

SELECT pg_catalog.pg_extension_config_dump('engage_internal.app_topics', '');

-- ======================================================================
-- Trust, SQL part (issue 8).  Roles engage_reader, engage_writer and
-- engage_monitor with their privileges; the journal triggers,
-- build_campaign_audience and rollup_rates run as the owner with a pinned
-- search_path; rollups lock a table instead of an advisory key; dump and
-- restore keep the rates (engage_internal is not dumped, the first rollup
-- rebuilds).  Definitions identical to those of extension/sql/30_campaign.sql,
-- 40_rollup.sql, 80_privileges.sql and 90_dump.sql.
-- ======================================================================

-- The journal triggers run as the extension's owner (SECURITY DEFINER): the
-- roles that write campaign_audience have no privilege on engage_internal, so
-- they cannot write journal entries of their own (forged rates).  Whoever fires
-- them chooses the search_path, so each pins its own (pg_catalog first, pg_temp
-- last) and also names every function and operator with its schema: a trigger
-- running as a superuser must not resolve a name in a schema someone else can
-- create objects in.

-- Journals the first-touch changes of one updated campaign_audience row.
-- Runs for every engagement event: one INSERT on the common path.  (Running as
-- the owner with its own search_path costs about 2 us a call, some 4% of a
-- record_engagement() call.)
CREATE OR REPLACE FUNCTION engage.journal_engagement_update()
RETURNS trigger
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_hour timestamptz := pg_catalog.date_trunc('hour', NEW.opened_at, 'UTC');
BEGIN
    -- The common case: a member's first touches, all in one hour.
    IF OLD.campaign_id OPERATOR(pg_catalog.=) NEW.campaign_id
       AND OLD.opened_at IS NULL AND NEW.opened_at IS NOT NULL
       AND (NEW.clicked_at IS NULL
            OR pg_catalog.date_trunc('hour', NEW.clicked_at, 'UTC') OPERATOR(pg_catalog.=) v_hour)
       AND (NEW.converted_at IS NULL
            OR pg_catalog.date_trunc('hour', NEW.converted_at, 'UTC') OPERATOR(pg_catalog.=) v_hour)
    THEN
        INSERT INTO engage_internal.rollup_journal (campaign_id, hour, d_opens, d_clicks, d_conversions)
        VALUES (NEW.campaign_id, v_hour, 1,
                (NEW.clicked_at IS NOT NULL)::integer, (NEW.converted_at IS NOT NULL)::integer);
        RETURN NULL;
    END IF;

    -- In general: -1 in the old hour of each touch, +1 in the new one; a touch
    -- that stays in its hour nets to nothing and writes nothing.
    INSERT INTO engage_internal.rollup_journal (campaign_id, hour, d_opens, d_clicks, d_conversions)
    SELECT t.campaign_id, t.hour, pg_catalog.sum(t.o), pg_catalog.sum(t.c), pg_catalog.sum(t.v)
    FROM (VALUES
        (OLD.campaign_id, pg_catalog.date_trunc('hour', OLD.opened_at, 'UTC'),    -1,  0,  0),
        (OLD.campaign_id, pg_catalog.date_trunc('hour', OLD.clicked_at, 'UTC'),    0, -1,  0),
        (OLD.campaign_id, pg_catalog.date_trunc('hour', OLD.converted_at, 'UTC'),  0,  0, -1),
        (NEW.campaign_id, pg_catalog.date_trunc('hour', NEW.opened_at, 'UTC'),     1,  0,  0),
        (NEW.campaign_id, pg_catalog.date_trunc('hour', NEW.clicked_at, 'UTC'),    0,  1,  0),
        (NEW.campaign_id, pg_catalog.date_trunc('hour', NEW.converted_at, 'UTC'),  0,  0,  1)
    ) AS t(campaign_id, hour, o, c, v)
    WHERE t.hour IS NOT NULL
    GROUP BY t.campaign_id, t.hour
    HAVING pg_catalog.sum(t.o) OPERATOR(pg_catalog.<>) 0
        OR pg_catalog.sum(t.c) OPERATOR(pg_catalog.<>) 0
        OR pg_catalog.sum(t.v) OPERATOR(pg_catalog.<>) 0;

    IF NOT (OLD.campaign_id OPERATOR(pg_catalog.=) NEW.campaign_id) THEN
        -- A row moved between campaigns: both memberships changed.
        INSERT INTO engage_internal.rollup_journal (campaign_id)
        VALUES (OLD.campaign_id), (NEW.campaign_id);
    END IF;
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION engage.journal_engagement_update() IS
'Trigger: journal the first-touch changes of an updated campaign_audience row for engage.rollup_rates()';

-- Journals the rows a statement inserted into or deleted from campaign_audience.
-- Both triggers name their transition table changed_rows, so one statement
-- serves both: the rows count +1 when inserted, -1 when deleted.
CREATE OR REPLACE FUNCTION engage.journal_membership_change()
RETURNS trigger
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_sign bigint := CASE WHEN TG_OP OPERATOR(pg_catalog.=) 'INSERT' THEN 1 ELSE -1 END;
BEGIN
    INSERT INTO engage_internal.rollup_journal (campaign_id, hour, d_opens, d_clicks, d_conversions)
    SELECT r.campaign_id, NULL, 0, 0, 0 FROM changed_rows AS r GROUP BY r.campaign_id
    UNION ALL
    SELECT r.campaign_id, t.hour,
           v_sign OPERATOR(pg_catalog.*) pg_catalog.sum(t.o),
           v_sign OPERATOR(pg_catalog.*) pg_catalog.sum(t.c),
           v_sign OPERATOR(pg_catalog.*) pg_catalog.sum(t.v)
    FROM changed_rows AS r
    CROSS JOIN LATERAL (VALUES
        (pg_catalog.date_trunc('hour', r.opened_at, 'UTC'),    1, 0, 0),
        (pg_catalog.date_trunc('hour', r.clicked_at, 'UTC'),   0, 1, 0),
        (pg_catalog.date_trunc('hour', r.converted_at, 'UTC'), 0, 0, 1)) AS t(hour, o, c, v)
    WHERE r.opened_at IS NOT NULL AND t.hour IS NOT NULL
    GROUP BY r.campaign_id, t.hour;
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION engage.journal_membership_change() IS
'Trigger: journal the campaign_audience rows a statement inserted or deleted (membership and first touches) for engage.rollup_rates()';

ALTER FUNCTION engage.build_campaign_audience(bigint, bigint) SECURITY DEFINER;

COMMENT ON TABLE engage_internal.rollup_state IS
'State of engage.rollup_rates(): every journal entry of a transaction below processed_below has been consumed; 0: no rollup has run in this database yet, the next one rebuilds';

-- Step 0 of engage.rollup_rates, run while the mark is 0: no rollup has
-- consumed this database's journal yet (a new install, a restored dump, an
-- update from 0.1.0), so nothing says that campaign_rates_hourly matches it.
-- After a restore it does not: the hourly rows are the source's, and the
-- reloaded campaign_audience rows were journaled again by the triggers (while
-- the source's own journal, written under another cluster's transaction ids,
-- is not dumped).
--
-- The step replaces the journal entries it can see (their changes are in the
-- campaign_audience rows it sees) with the difference between
-- campaign_audience counted from scratch and the new counts of
-- campaign_rates_hourly, plus a membership entry for every campaign: the other
-- steps then fold these as usual, recounting every audience and writing only
-- the hours that differ (after a restore, those of the changes not rolled up
-- in the source).  Entries of transactions in progress are invisible to it,
-- as are their rows: they stay for the next rollup.  One statement, so that
-- the journal and campaign_audience are read with one snapshot.  Reads whole
-- tables, once: sequential scans allowed.  Returns the entries written.
CREATE FUNCTION engage_internal.rollup_rebuild_journal()
RETURNS bigint LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = on
AS $$
DECLARE
    v_written bigint;
BEGIN
    WITH dropped AS (
        DELETE FROM engage_internal.rollup_journal
    ), scratch AS (
        SELECT ca.campaign_id, t.hour, sum(t.o) AS o, sum(t.c) AS c, sum(t.v) AS v
        FROM engage.campaign_audience AS ca
        CROSS JOIN LATERAL (VALUES
            (date_trunc('hour', ca.opened_at, 'UTC'),    1, 0, 0),
            (date_trunc('hour', ca.clicked_at, 'UTC'),   0, 1, 0),
            (date_trunc('hour', ca.converted_at, 'UTC'), 0, 0, 1)) AS t(hour, o, c, v)
        WHERE ca.opened_at IS NOT NULL AND t.hour IS NOT NULL
        GROUP BY ca.campaign_id, t.hour
    ), diff AS (
        SELECT coalesce(s.campaign_id, h.campaign_id) AS campaign_id,
               coalesce(s.hour, h.hour) AS hour,
               coalesce(s.o, 0) - coalesce(h.new_opens, 0) AS d_opens,
               coalesce(s.c, 0) - coalesce(h.new_clicks, 0) AS d_clicks,
               coalesce(s.v, 0) - coalesce(h.new_conversions, 0) AS d_conversions
        FROM scratch AS s
        FULL JOIN engage.campaign_rates_hourly AS h
          ON h.campaign_id = s.campaign_id AND h.hour = s.hour
    ), campaigns AS (
        SELECT ca.campaign_id FROM engage.campaign_audience AS ca
        UNION
        SELECT h.campaign_id FROM engage.campaign_rates_hourly AS h
        UNION
        SELECT z.campaign_id FROM engage_internal.rollup_audience_sizes AS z
    )
    INSERT INTO engage_internal.rollup_journal (campaign_id, hour, d_opens, d_clicks, d_conversions)
    SELECT c.campaign_id, NULL, 0, 0, 0 FROM campaigns AS c
    UNION ALL
    SELECT d.campaign_id, d.hour, d.d_opens, d.d_clicks, d.d_conversions FROM diff AS d
    WHERE d.d_opens <> 0 OR d.d_clicks <> 0 OR d.d_conversions <> 0;
    GET DIAGNOSTICS v_written = ROW_COUNT;
    RETURN v_written;
END
$$;

COMMENT ON FUNCTION engage_internal.rollup_rebuild_journal() IS
'Step of engage.rollup_rates while no rollup has consumed this database''s journal (new install, restore, update): replace the visible journal with the difference between campaign_audience and campaign_rates_hourly and a membership entry per campaign; returns the entries written';

-- Fold the journal into campaign_rates_hourly: only what changed since the last run.
--
-- Steps: take the lock and the mark (here); while the mark is 0, turn the
-- journal into the difference to a computation from scratch
-- (rollup_rebuild_journal); consume the journal into the new counts
-- (rollup_take_journal), then for the affected campaigns refresh the
-- audience sizes (rollup_refresh_sizes), drop idle hours
-- (rollup_drop_idle_hours) and recompute the cumulative values
-- (rollup_recompute_cumulative), and finally move the mark (here).
--
-- SECURITY DEFINER: the rollup's tables belong to the extension's owner and
-- no other role has privileges on them, so whoever is granted EXECUTE can
-- bring the rates up to date but cannot write them.  It takes no argument.
CREATE OR REPLACE FUNCTION engage.rollup_rates(
    OUT processed_entries bigint,
    OUT changed_campaigns bigint,
    OUT changed_hours bigint)
RETURNS record
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
-- No sequential scans and no JIT, for the reasons given at
-- engage_internal.rollup_take_journal; the steps set the same themselves.
SET enable_seqscan = off
SET jit = off
AS $$
DECLARE
    v_low  xid8;
    v_high xid8;
    v_take record;
BEGIN
    -- One rollup at a time.  The lock is on a table only the owner can lock:
    -- an advisory lock could be taken by any role, and held, to stop every
    -- rollup.  EXCLUSIVE mode lets reads of rollup_state through, and it
    -- takes no row lock: a rollup with nothing to do writes nothing.
    LOCK TABLE engage_internal.rollup_state IN EXCLUSIVE MODE;
    SELECT s.processed_below INTO v_low FROM engage_internal.rollup_state AS s;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'the state row of the rollup is missing'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'engage_internal.rollup_state must hold one row; CREATE EXTENSION inserts it.',
                  HINT = 'Run INSERT INTO engage_internal.rollup_state DEFAULT VALUES as the extension''s owner: '
                      || 'the next rollup then rebuilds the hourly rates from engage.campaign_audience.';
    END IF;

    -- Taken before the journal is read: every transaction below this xmin had
    -- ended before that, so the read below sees all of its entries.  (Taken
    -- after the read, it could pass a transaction committed in between.)
    v_high := greatest(v_low, pg_snapshot_xmin(pg_current_snapshot()));

    IF v_low = '0' THEN
        PERFORM engage_internal.rollup_rebuild_journal();
    END IF;

    SELECT * INTO v_take FROM engage_internal.rollup_take_journal(v_low);
    processed_entries := v_take.processed_entries;
    changed_campaigns := coalesce(cardinality(v_take.campaigns), 0);
    changed_hours := 0;

    IF changed_campaigns > 0 THEN
        PERFORM engage_internal.rollup_refresh_sizes(v_take.campaigns, v_take.resized);
        PERFORM engage_internal.rollup_drop_idle_hours(v_take.campaigns, v_take.from_hours);
        changed_hours := engage_internal.rollup_recompute_cumulative(
            v_take.campaigns, v_take.from_hours, v_take.delta_campaigns, v_take.delta_hours);
    END IF;

    -- Only a rollup that consumed something moves the mark, so that one
    -- with nothing to do writes nothing at all.
    IF processed_entries > 0 AND v_high > v_low THEN
        UPDATE engage_internal.rollup_state SET processed_below = v_high;
    END IF;
END
$$;

COMMENT ON FUNCTION engage.rollup_rates() IS
'Fold campaign activity committed since the last run into engage.campaign_rates_hourly (incremental, never misses late commits); returns journal entries processed, campaigns and hours changed';

-- The rollup's bookkeeping is no longer dumped (see 90_dump.sql): dropping a
-- table from the extension and adding it back clears its pg_dump mark.
ALTER EXTENSION pg_engage DROP TABLE engage_internal.rollup_journal;
ALTER EXTENSION pg_engage ADD TABLE engage_internal.rollup_journal;
ALTER EXTENSION pg_engage DROP TABLE engage_internal.rollup_state;
ALTER EXTENSION pg_engage ADD TABLE engage_internal.rollup_state;
ALTER EXTENSION pg_engage DROP TABLE engage_internal.rollup_audience_sizes;
ALTER EXTENSION pg_engage ADD TABLE engage_internal.rollup_audience_sizes;

-- The first rollup after the update checks campaign_rates_hourly against
-- campaign_audience and corrects it (a database restored under 0.1.0 counted
-- the reloaded rows twice); it writes only the hours that differ.
UPDATE engage_internal.rollup_state SET processed_below = '0';

-- Roles and privileges (80_privileges.sql).
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT * FROM (VALUES
            ('engage_reader', 'pg_engage: reads the engage tables and campaign rates'),
            ('engage_writer', 'pg_engage: the Engage backend (campaign API, engage.emit(), DML on the engage tables)'),
            ('engage_monitor', 'pg_engage: reads the Kafka shipper''s status (engage.shipper)')) AS v(name, what)
    LOOP
        CONTINUE WHEN EXISTS (SELECT FROM pg_catalog.pg_roles AS a WHERE a.rolname = r.name);
        BEGIN
            EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', r.name);
            EXECUTE pg_catalog.format('COMMENT ON ROLE %I IS %L', r.name, r.what);
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;   -- created meanwhile by CREATE EXTENSION in another database
        END;
    END LOOP;
END
$$;

-- Defaults: nothing for PUBLIC.  (Tables, views and schemas grant PUBLIC
-- nothing by default; functions grant it EXECUTE.)
REVOKE ALL ON SCHEMA engage, engage_internal FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA engage, engage_internal FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA engage, engage_internal FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA engage, engage_internal FROM PUBLIC;
GRANT EXECUTE ON FUNCTION engage.normalize_email(text) TO PUBLIC;

-- engage_reader: the product's data and its rates.
GRANT USAGE ON SCHEMA engage TO engage_reader;
GRANT SELECT ON engage.users, engage.templates, engage.audiences, engage.members,
                engage.audience_members, engage.campaigns, engage.campaign_audience,
                engage.campaign_rates_hourly
    TO engage_reader;
GRANT EXECUTE ON FUNCTION engage.campaign_rates(bigint) TO engage_reader;

-- engage_writer: what the backend calls and writes.  Identity columns need no
-- privilege on their sequences.  Its writes to campaign_audience are journaled
-- by the triggers; the rates follow.
GRANT USAGE ON SCHEMA engage TO engage_writer;
GRANT SELECT, INSERT, UPDATE, DELETE
    ON engage.users, engage.templates, engage.audiences, engage.members,
       engage.audience_members, engage.campaigns, engage.campaign_audience
    TO engage_writer;
GRANT SELECT ON engage.campaign_rates_hourly TO engage_writer;
GRANT EXECUTE ON FUNCTION engage.build_campaign_audience(bigint, bigint),
                          engage.record_engagement(bigint, bigint, text, timestamptz),
                          engage.campaign_rates(bigint),
                          engage.emit(text, text, jsonb)
    TO engage_writer;

-- engage_monitor: the shipper's status.  The view calls the function with the
-- reader's rights, so both are granted.
GRANT USAGE ON SCHEMA engage TO engage_monitor;
GRANT SELECT ON engage.shipper TO engage_monitor;
GRANT EXECUTE ON FUNCTION engage.shipper_status() TO engage_monitor;

-- ======================================================================
-- End of the trust, SQL part (issue 8).
-- ======================================================================
