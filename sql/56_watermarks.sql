-- Snapshot watermarks (README, "Snapshots"): logical messages with the prefix
-- engage.watermark that only the shipper can write (authenticated like
-- engage.emit()'s events).  Anyone else's is quarantined, never taken for a
-- watermark; other prefixes starting with "engage" are not ours and ignored.

SELECT 'init' FROM pg_create_logical_replication_slot('regress_wm', 'engage_decoder');
CREATE ROLE regress_wm_nobody;
SET ROLE regress_wm_nobody;
-- A made-up authenticator, transactional and not.
SELECT pg_logical_emit_message(true, 'engage.watermark',
       repeat('0', 64) || '{"snapshot":1,"chunk":1,"nonce":"0123456789abcdef","rows":1}') IS NOT NULL AS written;
SELECT pg_logical_emit_message(false, 'engage.watermark', '{"snapshot":1}') IS NOT NULL AS written;
-- Not a prefix of ours: no record at all.
SELECT pg_logical_emit_message(true, 'engage.watermarks', 'x') IS NOT NULL AS written;
SELECT pg_logical_emit_message(true, 'engage-watermark', 'x') IS NOT NULL AS written;
RESET ROLE;
SELECT data::jsonb->>'op' AS op, data::jsonb->>'prefix' AS prefix, data::jsonb->>'reason' AS reason,
       data::jsonb ? 'raw' AS content_kept, data::jsonb->>'transactional' AS transactional
  FROM pg_logical_slot_get_changes('regress_wm', NULL, NULL);
SELECT 'stop' FROM pg_drop_replication_slot('regress_wm');
DROP ROLE regress_wm_nobody;
