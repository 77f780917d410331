-- Roles and privileges: who may do what with the engage schema.  User
-- documentation: README.md, "Roles and privileges".
--
-- Three group roles (NOLOGIN) are shipped; the login roles of applications
-- and people are made members of them (GRANT engage_writer TO app):
--
--   engage_reader   reads the product's tables and the rates;
--   engage_writer   the backend: the campaign API, engage.emit() and DML on
--                   the product's tables (reads included);
--   engage_monitor  reads the shipper's status (engage.shipper).
--
-- Nothing else is granted: PUBLIC has no privilege on either schema and may
-- execute no function but engage.normalize_email() (pure; the index
-- expressions and CHECK constraints of the tables call it, with the rights of
-- whoever writes them).  No role but the owner has any privilege on
-- engage_internal, the rollup's bookkeeping: the functions that must reach it
-- run as the owner (SECURITY DEFINER, search_path pinned), so that the rates
-- can only change through campaign_audience.  For the same reason nobody gets
-- TRUNCATE on campaign_audience (the journal triggers do not see a TRUNCATE)
-- nor any write on campaign_rates_hourly.  engage.rollup_rates() and the pg_cron
-- helpers are the owner's: a role allowed to run rollups could hold one open
-- in a transaction and stop all others, so that is the DBA's decision (GRANT
-- EXECUTE ON FUNCTION engage.rollup_rates() TO ...; it cannot forge either).
--
-- Roles belong to the cluster, not to a database: they are created here only
-- when missing (a second database with pg_engage, a restore into a cluster
-- that has them) and never dropped by DROP EXTENSION.  Privileges are granted
-- per database, by this script; pg_dump leaves them to CREATE EXTENSION and
-- dumps only later changes, while memberships travel with
-- pg_dumpall --globals-only.

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

-- engage_monitor: the shipper's status and its snapshots.  The view engage.shipper
-- calls the function with the reader's rights, so both are granted.
-- Requesting or cancelling a snapshot (engage.snapshot(), engage.cancel_snapshot())
-- loads the source and Kafka: the owner's, granted by the DBA.
GRANT USAGE ON SCHEMA engage TO engage_monitor;
GRANT SELECT ON engage.shipper TO engage_monitor;
GRANT EXECUTE ON FUNCTION engage.shipper_status() TO engage_monitor;
GRANT SELECT ON engage.snapshots TO engage_monitor;
