"""A broker that refuses the shipper's credentials: the status says authentication failed, then recovers."""
from support import wait_until

SASL = "security.protocol=SASL_PLAINTEXT;sasl.mechanism=PLAIN;sasl.username=engage;sasl.password={}"


def test_wrong_password_then_right(make_cluster, broker, request):
    """Wrong password: 'authentication failed' with the reason; right one: running, error resolved."""
    c = make_cluster("auth", f"engage.brokers = '127.0.0.1:{broker.sasl_port}'",
                     "engage.kafka_properties = '" + SASL.format("wrong") + "'",
                     wait_slot=True, request=request)
    c.query("INSERT INTO engage.members (name) VALUES ('waits-for-auth')")
    s = wait_until(lambda: (s := c.status())["state"] == "authentication failed" and s, 60,
                   "state 'authentication failed'")
    assert "authentication" in s["last_error"].lower(), s
    assert s["error_resolved_at"] is None and s["broker_reachable"] is False, s
    assert "Kafka authentication failed" in c.log()
    failed_at = s["last_error_at"]

    c.restart_session(running=False, kafka_properties=SASL.format("engage-secret"))
    c.wait_shipped(60)
    s = wait_until(lambda: (s := c.status())["error_resolved_at"] and s, 30, "the error to be marked resolved")
    assert s["state"] == "running" and s["broker_reachable"] is True, s
    assert s["last_error_at"] == failed_at and s["error_resolved_at"] > failed_at, s
    names = {e.record["new"]["name"] for e in broker.read_prefix(c.prefix)
             if e.topic == f"{c.prefix}.members"}
    assert "waits-for-auth" in names
