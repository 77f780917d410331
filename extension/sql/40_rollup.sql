-- Campaign rates: live totals, and an hourly rollup maintained incrementally.
--
-- Every change of campaign_audience that matters to the rates (a first touch
-- appearing, moving or going away, a member joining or leaving) is written by
-- triggers into engage_internal.rollup_journal.  engage.rollup_rates() consumes the
-- journal: it deletes the entries its snapshot sees and folds them into
-- engage.campaign_rates_hourly.  Entries of transactions still in progress are
-- invisible to it, so they stay for the next run: a late commit is never lost,
-- and every run leaves the hourly table equal to what a from-scratch
-- computation over its snapshot would give.  The journal is read through an
-- index on the writing transaction id, from a low-water mark below which every
-- entry is known to be consumed, so a run costs what is new, not the history.
-- User documentation: docs/campaign_api.md.

-- Rate changes not yet rolled up: a work queue written by triggers.
-- No primary key: entries are only ever read by the xid range and deleted in
-- bulk, and an identity plus its index would cost every engagement event.
CREATE TABLE engage_internal.rollup_journal (
    xid           xid8   NOT NULL DEFAULT pg_current_xact_id(),
    campaign_id   bigint NOT NULL,
    hour          timestamptz,            -- NULL: membership changed
    d_opens       bigint NOT NULL DEFAULT 0,
    d_clicks      bigint NOT NULL DEFAULT 0,
    d_conversions bigint NOT NULL DEFAULT 0
);

CREATE INDEX rollup_journal_xid_idx ON engage_internal.rollup_journal (xid);

COMMENT ON TABLE engage_internal.rollup_journal IS
'Changes of first touches (hour, deltas) and of membership (hour NULL) per campaign, consumed by engage.rollup_rates()';

-- The rollup's own state: a single row, inserted here.  The mark is a
-- transaction id of this cluster, meaningless in another one, so the table is
-- not dumped (90_dump.sql): a restored database has this row, whose mark 0
-- makes the first rollup rebuild (engage_internal.rollup_rebuild_journal).
CREATE TABLE engage_internal.rollup_state (
    singleton       boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    processed_below xid8 NOT NULL DEFAULT '0'
);

INSERT INTO engage_internal.rollup_state DEFAULT VALUES;

COMMENT ON TABLE engage_internal.rollup_state IS
'State of engage.rollup_rates(): every journal entry of a transaction below processed_below has been consumed; 0: no rollup has run in this database yet, the next one rebuilds';

-- Audience size per campaign as of the last rollup: the rates' denominator.
CREATE TABLE engage_internal.rollup_audience_sizes (
    campaign_id   bigint PRIMARY KEY REFERENCES engage.campaigns ON DELETE CASCADE,
    audience_size bigint NOT NULL
);

COMMENT ON TABLE engage_internal.rollup_audience_sizes IS
'Campaign audience sizes as counted by the last engage.rollup_rates() that saw a membership change';

-- Per campaign and UTC hour: new first touches and cumulative counts and rates.
CREATE TABLE engage.campaign_rates_hourly (
    campaign_id        bigint NOT NULL REFERENCES engage.campaigns ON DELETE CASCADE,
    hour               timestamptz NOT NULL,
    new_opens          bigint NOT NULL DEFAULT 0,
    new_clicks         bigint NOT NULL DEFAULT 0,
    new_conversions    bigint NOT NULL DEFAULT 0,
    cum_opens          bigint NOT NULL DEFAULT 0,
    cum_clicks         bigint NOT NULL DEFAULT 0,
    cum_conversions    bigint NOT NULL DEFAULT 0,
    audience_size      bigint NOT NULL DEFAULT 0,
    open_rate          numeric GENERATED ALWAYS AS
                           (cum_opens::numeric / nullif(audience_size, 0)) STORED,
    click_rate         numeric GENERATED ALWAYS AS
                           (cum_clicks::numeric / nullif(audience_size, 0)) STORED,
    click_to_open_rate numeric GENERATED ALWAYS AS
                           (cum_clicks::numeric / nullif(cum_opens, 0)) STORED,
    conversion_rate    numeric GENERATED ALWAYS AS
                           (cum_conversions::numeric / nullif(audience_size, 0)) STORED,
    PRIMARY KEY (campaign_id, hour)
);

COMMENT ON TABLE engage.campaign_rates_hourly IS
'Per campaign and UTC hour with activity: first opens/clicks/conversions in the hour, cumulative counts to its end and cumulative rates over the audience size; maintained by engage.rollup_rates()';

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
CREATE FUNCTION engage.journal_engagement_update()
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
CREATE FUNCTION engage.journal_membership_change()
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

CREATE TRIGGER campaign_audience_journal_insert
    AFTER INSERT ON engage.campaign_audience
    REFERENCING NEW TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION engage.journal_membership_change();

CREATE TRIGGER campaign_audience_journal_delete
    AFTER DELETE ON engage.campaign_audience
    REFERENCING OLD TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION engage.journal_membership_change();

CREATE TRIGGER campaign_audience_journal_update
    AFTER UPDATE ON engage.campaign_audience
    FOR EACH ROW
    WHEN (OLD.opened_at IS DISTINCT FROM NEW.opened_at
          OR OLD.clicked_at IS DISTINCT FROM NEW.clicked_at
          OR OLD.converted_at IS DISTINCT FROM NEW.converted_at
          OR OLD.campaign_id IS DISTINCT FROM NEW.campaign_id)
    EXECUTE FUNCTION engage.journal_engagement_update();

-- Live rates of one campaign, computed from campaign_audience now.
CREATE FUNCTION engage.campaign_rates(campaign_id bigint)
RETURNS TABLE (
    audience_size      bigint,
    opens              bigint,
    clicks             bigint,
    conversions        bigint,
    open_rate          numeric,
    click_rate         numeric,
    click_to_open_rate numeric,
    conversion_rate    numeric)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF campaign_rates.campaign_id IS NULL THEN
        RAISE EXCEPTION 'campaign_id must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM FROM engage.campaigns AS c WHERE c.campaign_id = campaign_rates.campaign_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'campaign % does not exist', campaign_rates.campaign_id
            USING ERRCODE = 'no_data_found';
    END IF;

    RETURN QUERY
    SELECT n.size, n.o, n.c, n.v,
           n.o::numeric / nullif(n.size, 0),
           n.c::numeric / nullif(n.size, 0),
           n.c::numeric / nullif(n.o, 0),
           n.v::numeric / nullif(n.size, 0)
    FROM (SELECT count(*) AS size,
                 count(*) FILTER (WHERE ca.opened) AS o,
                 count(*) FILTER (WHERE ca.clicked) AS c,
                 count(*) FILTER (WHERE ca.converted) AS v
          FROM engage.campaign_audience AS ca
          WHERE ca.campaign_id = campaign_rates.campaign_id) AS n;
END
$$;

COMMENT ON FUNCTION engage.campaign_rates(bigint) IS
'Audience size, opens, clicks, conversions and open, click, click-to-open and conversion rates of a campaign, live (rates NULL when their denominator is 0)';

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
CREATE FUNCTION engage.rollup_rates(
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

-- Register the hourly pg_cron job running engage.rollup_rates().
CREATE FUNCTION engage.schedule_rollups(schedule text DEFAULT '0 * * * *')
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_job bigint;
BEGIN
    IF schedule IS NULL THEN
        RAISE EXCEPTION 'schedule must not be NULL'
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'The default, ''0 * * * *'', runs the rollup at the start of every hour.';
    END IF;
    IF NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_cron') THEN
        RAISE EXCEPTION 'pg_cron is not installed in database %', current_database()
            USING ERRCODE = 'undefined_object',
                  DETAIL = 'engage.schedule_rollups() registers its job with pg_cron, which runs jobs of one database, the one named by cron.database_name.',
                  HINT = 'Install the Debian package postgresql-15-cron, set shared_preload_libraries = ''pg_cron'' and '
                      || format('cron.database_name = %L', current_database())
                      || ' in postgresql.conf, restart PostgreSQL, run CREATE EXTENSION pg_cron, then call engage.schedule_rollups() again.'
                      || ' Without pg_cron, run SELECT engage.rollup_rates() every hour from any other scheduler.';
    END IF;
    -- Named job: scheduling again updates it instead of adding a second one.
    EXECUTE 'SELECT cron.schedule($1, $2, $3)'
        INTO v_job
        USING 'engage-rollup-rates', schedule, 'SELECT engage.rollup_rates()';
    RETURN v_job;
END
$$;

COMMENT ON FUNCTION engage.schedule_rollups(text) IS
'Register (or update) the pg_cron job "engage-rollup-rates" running engage.rollup_rates() on the given schedule, hourly by default; explains the setup when pg_cron is missing';

-- Remove the pg_cron job registered by engage.schedule_rollups().
CREATE FUNCTION engage.unschedule_rollups()
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_found boolean;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_cron') THEN
        RETURN false;
    END IF;
    EXECUTE 'SELECT EXISTS (SELECT FROM cron.job WHERE jobname = $1 AND username = current_user)'
        INTO v_found USING 'engage-rollup-rates';
    IF v_found THEN
        EXECUTE 'SELECT cron.unschedule($1)' USING 'engage-rollup-rates';
    END IF;
    RETURN v_found;
END
$$;

COMMENT ON FUNCTION engage.unschedule_rollups() IS
'Remove the pg_cron job of engage.schedule_rollups(); false when there was none';
