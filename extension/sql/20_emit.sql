-- Transactional application events: the outbox pattern without an outbox table.

-- Writes an application event into the WAL as a transactional logical message
-- (prefix 'engage'): it is decoded, and shipped, if and only if the calling
-- transaction commits.  Returns the LSN of the message.
CREATE FUNCTION engage.emit(topic text, key text, payload jsonb)
RETURNS pg_lsn
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF topic IS NULL OR topic !~ '^[A-Za-z0-9._-]{1,200}$' THEN
        RAISE EXCEPTION 'invalid engage event topic: %', coalesce(quote_literal(topic), 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A topic is 1 to 200 characters from A-Z, a-z, 0-9, ".", "_" and "-".',
                  HINT = 'Events go to the Kafka topic "<engage.topic_prefix>.<topic>", so the topic must be a valid Kafka topic name.';
    END IF;
    IF payload IS NULL THEN
        RAISE EXCEPTION 'engage event payload must not be NULL'
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'Pass ''null''::jsonb to send a JSON null on purpose.';
    END IF;
    RETURN pg_logical_emit_message(true, 'engage',
        jsonb_build_object('topic', topic, 'key', key, 'payload', payload)::text);
END
$$;

COMMENT ON FUNCTION engage.emit(text, text, jsonb) IS
'Emit an application event that is published only if the current transaction commits';
