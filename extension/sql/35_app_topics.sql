-- The application topics engage.emit() has written to.  Kafka takes "." and
-- "_" in topic names for the same character: once "campaign.sent" exists it
-- refuses to create "campaign_sent", and events sent there would never be
-- delivered.  emit() registers each topic here on first use (in the emitting
-- transaction) and refuses a topic that collides with a registered one, up
-- front, instead of the shipper meeting the refusal later.

CREATE TABLE engage_internal.app_topics (
    topic            text PRIMARY KEY,
    -- The name as Kafka compares it: "." read as "_".
    kafka_name       text NOT NULL UNIQUE,
    first_emitted_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);

COMMENT ON TABLE engage_internal.app_topics IS
'Topics of engage.emit() events, registered on first use; a topic colliding with one of them in Kafka is refused';

-- Registers topic (or finds it registered); returns the registered topic
-- with the same Kafka name, which differs from topic when they collide.
-- Called by engage.emit() only: SECURITY DEFINER so that emitting roles need
-- no rights on engage_internal, and not executable by anyone else.
CREATE FUNCTION engage_internal.register_app_topic(topic text)
RETURNS text
LANGUAGE plpgsql VOLATILE STRICT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_kafka_name text := pg_catalog.translate(topic, '.', '_');
    v_registered text;
BEGIN
    INSERT INTO engage_internal.app_topics AS t (topic, kafka_name)
    VALUES (register_app_topic.topic, v_kafka_name)
    ON CONFLICT DO NOTHING;
    SELECT t.topic INTO v_registered
    FROM engage_internal.app_topics AS t
    WHERE t.kafka_name OPERATOR(pg_catalog.=) v_kafka_name;
    RETURN v_registered;
END
$$;

REVOKE ALL ON FUNCTION engage_internal.register_app_topic(text) FROM PUBLIC;

COMMENT ON FUNCTION engage_internal.register_app_topic(text) IS
'Called by engage.emit(): registers an application topic and returns the registered topic Kafka would take it for';
