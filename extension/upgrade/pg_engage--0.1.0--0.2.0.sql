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
