-- Observability of the Kafka shipper (needs pg_engage in shared_preload_libraries).

-- One row describing the shipper: its state, the slot position confirmed to
-- PostgreSQL after Kafka acknowledged it, how far that is behind the WAL, what
-- was shipped, the last error and whether it is resolved, how many sessions
-- (starts, reloads, retries) the shipper has had, and how many messages with
-- the engage prefix it quarantined because engage.emit() did not write them,
-- and how many gaps it announced after its slot was lost (the last one's range).
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
