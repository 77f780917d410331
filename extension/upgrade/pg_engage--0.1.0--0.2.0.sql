-- pg_engage 0.1.0 -> 0.2.0.  Each section names the change it brings.

\echo Use "ALTER EXTENSION pg_engage UPDATE TO '0.2.0'" to load this file. \quit

-- engage.emit(): in C, checking its topic with the shipper's own rule (issue 7)
CREATE OR REPLACE FUNCTION engage.emit(topic text, key text, payload jsonb)
RETURNS pg_lsn
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'engage_emit';

-- engage.shipper_status(): error_resolved_at and sessions (issue 7)
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
    OUT sessions bigint)
RETURNS record
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'engage_shipper_status';

COMMENT ON FUNCTION engage.shipper_status() IS
'State, confirmed position, lag, counters and last error of the pg_engage Kafka shipper';

CREATE VIEW engage.shipper AS SELECT * FROM engage.shipper_status();

COMMENT ON VIEW engage.shipper IS 'The pg_engage Kafka shipper, one row';

REVOKE ALL ON FUNCTION engage.shipper_status() FROM PUBLIC;
REVOKE ALL ON engage.shipper FROM PUBLIC;

-- campaign API: named steps (issue 7)
--
-- engage.build_campaign_audience and engage.rollup_rates call named steps in
-- engage_internal (new functions, EXECUTE kept for PUBLIC: see the privilege
-- note in extension/sql/30_campaign.sql); engage.journal_membership_change is
-- one statement for inserts and deletes, so both membership triggers now name
-- their transition table changed_rows.  Definitions identical to those of
-- extension/sql/30_campaign.sql and 40_rollup.sql.

COMMENT ON SCHEMA engage_internal IS
'pg_engage internals (steps of the API functions, rollup journal and state); not shipped';

-- First build of an empty campaign: one member per dedupe key, at most need.
--
-- Nothing to skip, and no other builder can interfere (the caller holds the
-- campaign's row lock).  The big statement is EXECUTEd so that it is always
-- planned for the actual audience and limit (a cached generic plan cannot
-- know whether 100 or all rows are wanted); plan_cache_mode is not changed for
-- the whole function, which would re-plan every foreign key check.
CREATE FUNCTION engage_internal.audience_first_build(
    campaign bigint, audience bigint, need bigint, OUT added bigint, OUT last_key text)
RETURNS record LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    BEGIN
        EXECUTE $sql$
            INSERT INTO engage.campaign_audience (campaign_id, member_id, email)
            SELECT DISTINCT ON (engage.normalize_email(am.email))
                   $1, am.member_id, engage.normalize_email(am.email)
            FROM engage.audience_members AS am
            WHERE am.audience_id = $2
              AND engage.normalize_email(am.email) IS NOT NULL
            ORDER BY engage.normalize_email(am.email), am.member_id
            LIMIT $3                        -- NULL: LIMIT ALL
        $sql$ USING campaign, audience, need;
        GET DIAGNOSTICS added = ROW_COUNT;
        -- The campaign was empty: its highest key is the last one added.
        -- Only a walk stopped by the limit needs it (audience_skip_counts).
        IF added = need THEN
            SELECT max(ca.email) INTO last_key
            FROM engage.campaign_audience AS ca
            WHERE ca.campaign_id = campaign;
        END IF;
    EXCEPTION WHEN unique_violation THEN
        -- Only possible when another transaction added members since our
        -- snapshot (REPEATABLE READ, or a writer not using this function).
        RAISE EXCEPTION 'campaign % audience changed concurrently', campaign
            USING ERRCODE = 'serialization_failure',
                  HINT = 'Retry the transaction.';
    END;
END
$$;

COMMENT ON FUNCTION engage_internal.audience_first_build(bigint, bigint, bigint) IS
'Step of engage.build_campaign_audience: fill an empty campaign with one member per dedupe key, at most need (NULL: all); returns members added and, when the limit was reached, the highest key added';

-- Top-up or repeat of a campaign that has members: skip members and keys
-- already in the campaign, add at most need.
--
-- EXECUTEd for the same reason as the first build.  OFFSET 0 keeps each check
-- a per-row index probe; as a join, lagging statistics right after a bulk
-- build could make the planner loop over a materialized scan of the whole
-- campaign for every row.
CREATE FUNCTION engage_internal.audience_top_up(
    campaign bigint,
    audience bigint,
    need bigint,
    OUT added bigint,
    OUT last_key text)
RETURNS record LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    EXECUTE $sql$
        WITH ins AS (
            INSERT INTO engage.campaign_audience AS ca (campaign_id, member_id, email)
            SELECT $1, pick.member_id, pick.email
            FROM (
                SELECT DISTINCT ON (engage.normalize_email(am.email))
                       engage.normalize_email(am.email) AS email, am.member_id
                FROM engage.audience_members AS am
                WHERE am.audience_id = $2
                  AND engage.normalize_email(am.email) IS NOT NULL
                  AND NOT EXISTS (SELECT FROM engage.campaign_audience AS x
                                  WHERE x.campaign_id = $1
                                    AND x.member_id = am.member_id
                                  OFFSET 0)
                ORDER BY engage.normalize_email(am.email), am.member_id
            ) AS pick
            WHERE NOT EXISTS (SELECT FROM engage.campaign_audience AS x
                              WHERE x.campaign_id = $1
                                AND x.email = pick.email
                              OFFSET 0)
            ORDER BY pick.email
            LIMIT $3                    -- NULL: LIMIT ALL
            ON CONFLICT DO NOTHING      -- writers not using this function
            RETURNING ca.email
        )
        SELECT count(*), max(ins.email) FROM ins
    $sql$ INTO added, last_key USING campaign, audience, need;
END
$$;

COMMENT ON FUNCTION engage_internal.audience_top_up(bigint, bigint, bigint) IS
'Step of engage.build_campaign_audience: add to a campaign that has members at most need (NULL: all) members whose member and key are not in it yet; returns members added and the highest key added';

-- The skip counts of a build that added members (need > 0 or NULL).
--
-- They cover the rows the walk went through.  A walk stopped by the limit went
-- through the valid rows up to the last key it added; the invalid ones, which
-- have no key, sit after all of them in the index.  A walk not stopped went
-- through the whole audience.
CREATE FUNCTION engage_internal.audience_skip_counts(
    audience bigint,
    need bigint,
    added bigint,
    last_key text,
    OUT skipped_duplicates bigint,
    OUT skipped_invalid bigint)
RETURNS record LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_walked bigint;              -- valid audience rows the walk went through
BEGIN
    IF need IS NOT NULL AND added = need THEN
        SELECT count(*) INTO v_walked
        FROM engage.audience_members AS am
        WHERE am.audience_id = audience
          AND engage.normalize_email(am.email) IS NOT NULL
          AND engage.normalize_email(am.email) <= last_key;
        skipped_invalid := 0;
    ELSE
        SELECT count(*) INTO skipped_invalid
        FROM engage.audience_members AS am
        WHERE am.audience_id = audience
          AND engage.normalize_email(am.email) IS NULL;
        SELECT count(*) - skipped_invalid INTO v_walked
        FROM engage.audience_members AS am
        WHERE am.audience_id = audience;
    END IF;
    skipped_duplicates := greatest(v_walked - added, 0);
END
$$;

COMMENT ON FUNCTION engage_internal.audience_skip_counts(bigint, bigint, bigint, text) IS
'Step of engage.build_campaign_audience: audience rows the build went through that were skipped as duplicates or as invalid';

-- Fill a campaign's audience from its audience, one member per normalized email.
--
-- Dedupe key: engage.normalize_email(email) (trimmed, lower-cased; NULL when
-- missing or malformed, and then skipped).  Per key, the member with the lowest
-- member_id among the audience rows whose member is not yet in the campaign is
-- chosen; a key already in the campaign is skipped.  Keys are taken in
-- ascending order (database collation), the order of audience_members_dedupe_idx,
-- so a limited build walks that index and stops: it never reads the whole
-- audience.  max_members caps the total size of the campaign audience, so a
-- repeated call with the same arguments adds nothing.  Concurrent builders of a
-- campaign are serialized by a row lock on the campaign.
--
-- Steps: check the arguments, lock the campaign and see how much room is left
-- (here), then the first build of an empty campaign (audience_first_build) or
-- a top-up (audience_top_up), then the skip counts (audience_skip_counts).
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
        -- Full already: nothing added, no row walked, and no step called (so,
        -- as before the split, a caller without USAGE on engage_internal gets
        -- its zero counts).
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

COMMENT ON FUNCTION engage.build_campaign_audience(bigint, bigint) IS
'Fill a campaign''s audience with one member (lowest member_id) per normalized email, up to max_members in total; returns members added and rows skipped as duplicates or invalid';

-- Journals the rows a statement inserted into or deleted from campaign_audience.
-- Both triggers name their transition table changed_rows, so one statement
-- serves both: the rows count +1 when inserted, -1 when deleted.
CREATE OR REPLACE FUNCTION engage.journal_membership_change()
RETURNS trigger
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_sign integer := CASE TG_OP WHEN 'INSERT' THEN 1 ELSE -1 END;
BEGIN
    INSERT INTO engage_internal.rollup_journal (campaign_id, hour, d_opens, d_clicks, d_conversions)
    SELECT r.campaign_id, NULL, 0, 0, 0 FROM changed_rows AS r GROUP BY r.campaign_id
    UNION ALL
    SELECT r.campaign_id, t.hour, v_sign * sum(t.o), v_sign * sum(t.c), v_sign * sum(t.v)
    FROM changed_rows AS r
    CROSS JOIN LATERAL (VALUES
        (date_trunc('hour', r.opened_at, 'UTC'),    1, 0, 0),
        (date_trunc('hour', r.clicked_at, 'UTC'),   0, 1, 0),
        (date_trunc('hour', r.converted_at, 'UTC'), 0, 0, 1)) AS t(hour, o, c, v)
    WHERE r.opened_at IS NOT NULL AND t.hour IS NOT NULL
    GROUP BY r.campaign_id, t.hour;
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION engage.journal_membership_change() IS
'Trigger: journal the campaign_audience rows a statement inserted or deleted (membership and first touches) for engage.rollup_rates()';

CREATE OR REPLACE TRIGGER campaign_audience_journal_insert
    AFTER INSERT ON engage.campaign_audience
    REFERENCING NEW TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION engage.journal_membership_change();

CREATE OR REPLACE TRIGGER campaign_audience_journal_delete
    AFTER DELETE ON engage.campaign_audience
    REFERENCING OLD TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION engage.journal_membership_change();

-- Step 1 of engage.rollup_rates: consume the journal entries this statement
-- can see (in-progress transactions' entries stay) from the mark low on, and
-- add their deltas to the new counts of the hourly rows.
--
-- Returns what the other steps need: the entries consumed; per affected
-- campaign (campaigns), the earliest hour whose cumulative values changed
-- (from_hours) and whether its membership may have changed (resized); and the
-- (campaign, hour) keys whose new counts changed (delta_campaigns,
-- delta_hours).
--
-- EXECUTEd so that it is planned for the actual mark every time (a generic
-- plan could prefer reading the whole journal).  Every statement of the
-- rollup reads what changed through an index.  A sequential scan of the
-- journal, which the planner may prefer when most live entries are new, would
-- also read the space of entries consumed before (dead until vacuumed): its
-- cost would grow with history.  The penalty that enable_seqscan = off puts on
-- plans would also trigger JIT compilation, which costs more than these
-- statements: hence the settings of this function and of the other rollup
-- steps, the same as engage.rollup_rates's.
CREATE FUNCTION engage_internal.rollup_take_journal(
    low xid8,
    OUT processed_entries bigint,
    OUT campaigns bigint[],
    OUT from_hours timestamptz[],
    OUT resized boolean[],
    OUT delta_campaigns bigint[],
    OUT delta_hours timestamptz[])
RETURNS record LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    EXECUTE $sql$
        WITH taken AS (
            DELETE FROM engage_internal.rollup_journal AS j
            WHERE j.xid >= $1
            RETURNING j.campaign_id, j.hour, j.d_opens, j.d_clicks, j.d_conversions
        ), live AS (
            SELECT t.* FROM taken AS t
            WHERE EXISTS (SELECT FROM engage.campaigns AS c WHERE c.campaign_id = t.campaign_id)
        ), delta AS (
            SELECT l.campaign_id, l.hour,
                   sum(l.d_opens) AS o, sum(l.d_clicks) AS c, sum(l.d_conversions) AS v
            FROM live AS l
            WHERE l.hour IS NOT NULL
            GROUP BY l.campaign_id, l.hour
            HAVING sum(l.d_opens) <> 0 OR sum(l.d_clicks) <> 0 OR sum(l.d_conversions) <> 0
        ), upsert AS (
            INSERT INTO engage.campaign_rates_hourly AS h
                (campaign_id, hour, new_opens, new_clicks, new_conversions)
            SELECT d.campaign_id, d.hour, d.o, d.c, d.v FROM delta AS d
            ON CONFLICT (campaign_id, hour) DO UPDATE SET
                new_opens       = h.new_opens + EXCLUDED.new_opens,
                new_clicks      = h.new_clicks + EXCLUDED.new_clicks,
                new_conversions = h.new_conversions + EXCLUDED.new_conversions
        ), affected AS (
            -- Per campaign: the earliest hour whose cumulative values changed, and
            -- whether its membership (the rates' denominator) may have changed.
            SELECT a.campaign_id, min(a.from_hour) AS from_hour, bool_or(a.resized) AS resized
            FROM (SELECT d.campaign_id, d.hour AS from_hour, false AS resized FROM delta AS d
                  UNION ALL
                  SELECT l.campaign_id, '-infinity', true FROM live AS l WHERE l.hour IS NULL) AS a
            GROUP BY a.campaign_id
        )
        SELECT (SELECT count(*) FROM taken),
               array_agg(af.campaign_id), array_agg(af.from_hour), array_agg(af.resized),
               (SELECT array_agg(d.campaign_id) FROM delta AS d),
               (SELECT array_agg(d.hour) FROM delta AS d)
        FROM affected AS af
    $sql$ INTO processed_entries, campaigns, from_hours, resized, delta_campaigns, delta_hours
    USING low;
END
$$;

COMMENT ON FUNCTION engage_internal.rollup_take_journal(xid8) IS
'Step of engage.rollup_rates: delete the visible journal entries from the mark on and add their deltas to the hourly new counts; returns the entries consumed, the affected campaigns with their first changed hour and whether they were resized, and the hours whose new counts changed';

-- Step 2 of engage.rollup_rates: count the audience of the campaigns whose
-- membership changed (or that have no size yet); the rates of all their hours
-- follow.
CREATE FUNCTION engage_internal.rollup_refresh_sizes(campaigns bigint[], resized boolean[])
RETURNS void LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO engage_internal.rollup_audience_sizes AS s (campaign_id, audience_size)
    SELECT a.campaign_id,
           (SELECT count(*) FROM engage.campaign_audience AS ca
            WHERE ca.campaign_id = a.campaign_id)
    FROM unnest(campaigns, resized) AS a(campaign_id, is_resized)
    WHERE a.is_resized
       OR NOT EXISTS (SELECT FROM engage_internal.rollup_audience_sizes AS x
                      WHERE x.campaign_id = a.campaign_id)
    ON CONFLICT (campaign_id) DO UPDATE SET audience_size = EXCLUDED.audience_size
    WHERE s.audience_size IS DISTINCT FROM EXCLUDED.audience_size;
END
$$;

COMMENT ON FUNCTION engage_internal.rollup_refresh_sizes(bigint[], boolean[]) IS
'Step of engage.rollup_rates: recount the audience size of the resized campaigns and of those without a size yet';

-- Step 3 of engage.rollup_rates: drop the hours left with no activity, from
-- each campaign's first changed hour on.
CREATE FUNCTION engage_internal.rollup_drop_idle_hours(campaigns bigint[], from_hours timestamptz[])
RETURNS void LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM engage.campaign_rates_hourly AS h
    USING unnest(campaigns, from_hours) AS a(campaign_id, from_hour)
    WHERE h.campaign_id = a.campaign_id
      AND h.hour >= a.from_hour
      AND h.new_opens = 0 AND h.new_clicks = 0 AND h.new_conversions = 0;
END
$$;

COMMENT ON FUNCTION engage_internal.rollup_drop_idle_hours(bigint[], timestamptz[]) IS
'Step of engage.rollup_rates: delete the hourly rows left without activity from each campaign''s first changed hour on';

-- Step 4 of engage.rollup_rates: the cumulative counts and audience size of
-- every hour from each campaign's first changed hour on, continuing from the
-- hour before it.  Returns the hours written: those whose new counts changed
-- (delta_campaigns, delta_hours; kept or dropped) and those whose cumulative
-- values changed.
CREATE FUNCTION engage_internal.rollup_recompute_cumulative(
    campaigns bigint[],
    from_hours timestamptz[],
    delta_campaigns bigint[],
    delta_hours timestamptz[])
RETURNS bigint LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_changed bigint;
BEGIN
    WITH a AS (
        SELECT u.campaign_id, u.from_hour, s.audience_size,
               coalesce(b.cum_opens, 0) AS o,
               coalesce(b.cum_clicks, 0) AS c,
               coalesce(b.cum_conversions, 0) AS v
        FROM unnest(campaigns, from_hours) AS u(campaign_id, from_hour)
        JOIN engage_internal.rollup_audience_sizes AS s ON s.campaign_id = u.campaign_id
        LEFT JOIN LATERAL (
            SELECT p.cum_opens, p.cum_clicks, p.cum_conversions
            FROM engage.campaign_rates_hourly AS p
            WHERE p.campaign_id = u.campaign_id AND p.hour < u.from_hour
            ORDER BY p.hour DESC
            LIMIT 1) AS b ON true
    ), calc AS (
        SELECT h.campaign_id, h.hour, a.audience_size,
               a.o + sum(h.new_opens) OVER w AS cum_opens,
               a.c + sum(h.new_clicks) OVER w AS cum_clicks,
               a.v + sum(h.new_conversions) OVER w AS cum_conversions
        FROM a
        JOIN engage.campaign_rates_hourly AS h
          ON h.campaign_id = a.campaign_id AND h.hour >= a.from_hour
        WINDOW w AS (PARTITION BY h.campaign_id ORDER BY h.hour
                     ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
    ), upd AS (
        UPDATE engage.campaign_rates_hourly AS h SET
            cum_opens       = calc.cum_opens,
            cum_clicks      = calc.cum_clicks,
            cum_conversions = calc.cum_conversions,
            audience_size   = calc.audience_size
        FROM calc
        WHERE h.campaign_id = calc.campaign_id AND h.hour = calc.hour
          AND (h.cum_opens, h.cum_clicks, h.cum_conversions, h.audience_size)
              IS DISTINCT FROM
              (calc.cum_opens, calc.cum_clicks, calc.cum_conversions, calc.audience_size)
        RETURNING h.campaign_id, h.hour
    )
    SELECT count(*) INTO v_changed
    FROM (SELECT upd.campaign_id, upd.hour FROM upd
          UNION
          SELECT d.campaign_id, d.hour FROM unnest(delta_campaigns, delta_hours) AS d(campaign_id, hour)) AS w;
    RETURN v_changed;
END
$$;

COMMENT ON FUNCTION engage_internal.rollup_recompute_cumulative(bigint[], timestamptz[], bigint[], timestamptz[]) IS
'Step of engage.rollup_rates: recompute cumulative counts and audience sizes from each campaign''s first changed hour on; returns the hours written';

-- Fold the journal into campaign_rates_hourly: only what changed since the last run.
--
-- Steps: take the lock and the mark (here), consume the journal into the new
-- counts (rollup_take_journal), then for the affected campaigns refresh the
-- audience sizes (rollup_refresh_sizes), drop idle hours
-- (rollup_drop_idle_hours) and recompute the cumulative values
-- (rollup_recompute_cumulative), and finally move the mark (here).
CREATE OR REPLACE FUNCTION engage.rollup_rates(
    OUT processed_entries bigint,
    OUT changed_campaigns bigint,
    OUT changed_hours bigint)
RETURNS record
LANGUAGE plpgsql VOLATILE
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
    -- One rollup at a time.  An advisory lock (keyed on the journal's oid)
    -- rather than a row lock: a rollup with nothing to do writes nothing.
    PERFORM pg_advisory_xact_lock('engage_internal.rollup_journal'::regclass::oid::bigint);
    SELECT s.processed_below INTO v_low FROM engage_internal.rollup_state AS s;

    -- Taken before the journal is read: every transaction below this xmin had
    -- ended before that, so the read below sees all of its entries.  (Taken
    -- after the read, it could pass a transaction committed in between.)
    v_high := greatest(v_low, pg_snapshot_xmin(pg_current_snapshot()));

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
