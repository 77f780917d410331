-- Transactional application events: the outbox pattern without an outbox table.

-- Writes an application event into the WAL as a transactional logical message
-- (prefix 'engage'): it is decoded, and shipped, if and only if the calling
-- transaction commits.  Returns the LSN of the message.  The topic is checked
-- with the shipper's own rule against its Kafka name, <topic_prefix>.<topic>.
CREATE FUNCTION engage.emit(topic text, key text, payload jsonb)
RETURNS pg_lsn
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'engage_emit';

COMMENT ON FUNCTION engage.emit(text, text, jsonb) IS
'Emit an application event that is published only if the current transaction commits';
