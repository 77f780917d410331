-- Last part of the install script: what pg_dump dumps the data of (the data
-- of an extension's tables is otherwise left out).
--
-- Dumped: every table and sequence the script created in engage, the
-- product's data, and with it campaign_rates_hourly, so that a restored
-- database shows the source's rates from the start.
--
-- Not dumped: the rollup's bookkeeping in engage_internal.  Its transaction
-- ids (the journal's xid, rollup_state's mark) mean nothing in another
-- cluster; the journal is rebuilt anyway, since reloading campaign_audience
-- fires its triggers; rollup_state's row is inserted by this script (dumping
-- it too made every restore fail); the audience sizes are recounted.  The
-- first rollup after a restore sees the mark 0 of that row and checks
-- campaign_rates_hourly against campaign_audience, folding in what the source
-- had not rolled up yet (engage_internal.rollup_rebuild_journal).
--
-- Dumped from engage_internal: app_topics, emit()'s registry of topic names
-- (no transaction ids, no row from this script), so that a restored database
-- still refuses the spellings Kafka would take for existing topics.

DO $$
DECLARE
    rel regclass;
BEGIN
    FOR rel IN
        SELECT c.oid::regclass
        FROM pg_catalog.pg_class AS c
        JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
        WHERE n.nspname = 'engage' AND c.relkind IN ('r', 'S')
        ORDER BY c.oid
    LOOP
        -- One call per statement: each one updates the pg_extension row.
        PERFORM pg_catalog.pg_extension_config_dump(rel, '');
    END LOOP;
END
$$;

SELECT pg_catalog.pg_extension_config_dump('engage_internal.app_topics', '');
