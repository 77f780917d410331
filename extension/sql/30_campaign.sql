-- Campaign audiences and engagement tracking: the SQL API the Engage backend
-- calls to fill a campaign's audience and to record what its members did.
-- User documentation: docs/campaign_api.md.

-- The internals of the API functions live outside the engage schema: the
-- shipper captures engage.* by default, and the rollup's bookkeeping rows
-- (40_rollup.sql) are not product data.
--
-- Privileges (granted in 80_privileges.sql).  No role but the extension's
-- owner has any privilege on engage_internal, not even USAGE: its tables are
-- the rollup's bookkeeping, and a role that could write them could forge
-- rates.  The steps there run with their caller's rights and keep no EXECUTE
-- for PUBLIC; the API functions that call them (build_campaign_audience here,
-- rollup_rates in 40_rollup.sql) are SECURITY DEFINER, so they, and the steps,
-- run as the owner, with search_path pinned to pg_catalog, pg_temp (no other
-- schema's function, operator or type can stand in for a built-in one) and
-- every table named with its schema.  record_engagement touches nothing there
-- and runs with its caller's rights: the journal triggers it fires are
-- SECURITY DEFINER themselves.  (test/pgtap/steps.sql and privileges.sql check
-- this design.)
CREATE SCHEMA engage_internal;
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
--
-- SECURITY DEFINER, for its steps in engage_internal (see above): a role
-- granted EXECUTE builds audiences without any privilege on the tables.
CREATE FUNCTION engage.build_campaign_audience(
    campaign_id bigint,
    max_members bigint DEFAULT NULL,
    OUT added bigint,
    OUT skipped_duplicates bigint,
    OUT skipped_invalid bigint)
RETURNS record
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
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

COMMENT ON FUNCTION engage.build_campaign_audience(bigint, bigint) IS
'Fill a campaign''s audience with one member (lowest member_id) per normalized email, up to max_members in total; returns members added and rows skipped as duplicates or invalid';

-- Record an open, click or conversion of a campaign member, keeping first touches.
--
-- Idempotent: a touch only ever moves a first-touch timestamp earlier, so a
-- repeated or late event changes nothing.  A click implies an open and a
-- conversion implies a click: the implied touches are recorded with the same
-- timestamp (again only if earlier than what is there).  Returns true when the
-- call changed the member's engagement, false when it was already known.
CREATE FUNCTION engage.record_engagement(
    campaign_id bigint,
    member_id bigint,
    kind text,
    at timestamptz DEFAULT now())
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_campaign bigint := record_engagement.campaign_id;
    v_member   bigint := record_engagement.member_id;
    v_at       timestamptz := record_engagement.at;
    v_level    integer;   -- 1 open, 2 click, 3 conversion
BEGIN
    IF v_campaign IS NULL OR v_member IS NULL OR kind IS NULL OR v_at IS NULL THEN
        RAISE EXCEPTION 'campaign_id, member_id, kind and at must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    v_level := CASE kind WHEN 'open' THEN 1 WHEN 'click' THEN 2 WHEN 'conversion' THEN 3 END;
    IF v_level IS NULL THEN
        RAISE EXCEPTION 'unknown engagement kind: %', quote_literal(kind)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'The kind is one of ''open'', ''click'' or ''conversion''.';
    END IF;
    IF NOT isfinite(v_at) THEN
        RAISE EXCEPTION 'engagement time must be finite: %', v_at
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- Writes only when a first touch appears or moves earlier.  Concurrent
    -- calls for one member queue on its row lock and re-check the condition
    -- against the row the previous one left.
    UPDATE engage.campaign_audience AS ca SET
        opened       = true,
        opened_at    = least(ca.opened_at, v_at),
        clicked      = ca.clicked OR v_level >= 2,
        clicked_at   = CASE WHEN v_level >= 2 THEN least(ca.clicked_at, v_at) ELSE ca.clicked_at END,
        converted    = ca.converted OR v_level >= 3,
        converted_at = CASE WHEN v_level >= 3 THEN least(ca.converted_at, v_at) ELSE ca.converted_at END
    WHERE ca.campaign_id = v_campaign
      AND ca.member_id = v_member
      AND (ca.opened_at IS NULL OR ca.opened_at > v_at
           OR (v_level >= 2 AND (ca.clicked_at IS NULL OR ca.clicked_at > v_at))
           OR (v_level >= 3 AND (ca.converted_at IS NULL OR ca.converted_at > v_at)));
    IF FOUND THEN
        RETURN true;
    END IF;

    PERFORM FROM engage.campaign_audience AS ca
    WHERE ca.campaign_id = v_campaign AND ca.member_id = v_member;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'member % is not in the audience of campaign %', v_member, v_campaign
            USING ERRCODE = 'no_data_found',
                  DETAIL = 'Engagement is only recorded for rows of engage.campaign_audience.',
                  HINT = 'Check the campaign and member ids, or build the campaign audience first.';
    END IF;
    RETURN false;
END
$$;

COMMENT ON FUNCTION engage.record_engagement(bigint, bigint, text, timestamptz) IS
'Record an open, click or conversion (a click implies an open, a conversion a click), keeping the earliest time of each; true when something changed';
