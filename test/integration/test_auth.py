"""Kafka credentials against a real SASL/PLAIN listener: they come from engage.kafka_credentials_file
and never reach the server log, a setting or the status; a wrong one is shown as such."""
import os
import pwd
import uuid

import psycopg
import pytest

from support import wait_until

SASL = "security.protocol=SASL_PLAINTEXT;sasl.mechanism=PLAIN"
RIGHT = "engage-secret"  # scripts/kafka.sh's default user engage


def write_credentials(path, password, mode=0o600):
    """Writes the credentials file as the server's user would own it."""
    path.write_text(f"# Kafka credentials of the shipper\nsasl.username=engage\n\nsasl.password={password}\n")
    pg = pwd.getpwnam("postgres")
    os.chown(path, pg.pw_uid, pg.pw_gid)
    os.chmod(path, mode)


def readable_text(cluster):
    """Everything a monitoring role and the superuser can read about the settings and the status."""
    cluster.query("DROP ROLE IF EXISTS watcher")
    cluster.query("CREATE ROLE watcher LOGIN IN ROLE pg_monitor")
    with psycopg.connect(host="127.0.0.1", port=cluster.port, user="watcher", dbname="postgres") as conn:
        settings = conn.execute("SELECT pg_settings::text FROM pg_settings").fetchall()
        shown = conn.execute("SHOW ALL").fetchall()
    files = cluster.query("SELECT pg_file_settings::text FROM pg_file_settings")
    status = cluster.query("SELECT shipper::text FROM engage.shipper")
    activity = cluster.query("SELECT query FROM pg_stat_activity WHERE query IS NOT NULL")
    return "\n".join(str(r) for r in settings + shown + files + status + activity)


@pytest.fixture(scope="module")
def auth(make_cluster, broker, request):
    """A cluster whose shipper talks SASL to the broker, with a credentials file in its data directory."""
    c = make_cluster("auth", f"engage.brokers = '127.0.0.1:{broker.sasl_port}'",
                     f"engage.kafka_properties = '{SASL}'",
                     wait_slot=False, request=request)  # no credentials yet: no session, no slot
    c.credentials = c.dir / "data" / "kafka.credentials"
    return c


def test_wrong_password_then_right(auth, broker):
    """Wrong password: 'authentication failed'; right one: running, delivered; no password anywhere."""
    wrong = f"wrong-{uuid.uuid4().hex}"
    write_credentials(auth.credentials, wrong)
    auth.restart_session(running=False, kafka_credentials_file="kafka.credentials")
    auth.query("INSERT INTO engage.members (name) VALUES ('waits-for-auth')")
    s = wait_until(lambda: (s := auth.status())["state"] == "authentication failed" and s, 60,
                   "state 'authentication failed'")
    assert "authentication" in s["last_error"].lower(), s
    assert s["error_resolved_at"] is None and s["broker_reachable"] is False, s
    assert "Kafka authentication failed" in auth.log()
    failed_at = s["last_error_at"]

    # The file is read again at every reload.
    write_credentials(auth.credentials, RIGHT)
    auth.restart_session(running=False)
    auth.wait_shipped(60)
    s = wait_until(lambda: (s := auth.status())["error_resolved_at"] and s, 30, "the error to be marked resolved")
    assert s["state"] == "running" and s["broker_reachable"] is True, s
    assert s["last_error_at"] == failed_at and s["error_resolved_at"] > failed_at, s
    names = {e.record["new"]["name"] for e in broker.read_prefix(auth.prefix)
             if e.topic == f"{auth.prefix}.members"}
    assert "waits-for-auth" in names

    for secret in (wrong, RIGHT):
        assert secret not in auth.log(), "a password is in the server log"
        assert secret not in readable_text(auth), "a password is readable in a view"


def test_unsafe_credentials_file_is_refused(auth):
    """A file group or others can read is refused, naming the file and never its content."""
    secret = f"never-used-{uuid.uuid4().hex}"
    write_credentials(auth.credentials, secret, mode=0o644)
    offset = auth.log_size()
    try:
        auth.reload()
        s = wait_until(lambda: (s := auth.status())["state"] == "stopped on error" and s, 30,
                       "state 'stopped on error'")
        assert "kafka.credentials" in s["last_error"] and "0644" in s["last_error"], s
        assert secret not in auth.log_since(offset) and secret not in readable_text(auth)
    finally:
        write_credentials(auth.credentials, RIGHT)
        auth.restart_session()


def test_malformed_credentials_name_the_line_not_the_value(auth):
    """librdkafka refusing a value, or a line without '=', is reported by line, without the value."""
    offset = auth.log_size()
    secret = f"bad-{uuid.uuid4().hex}"
    try:
        for content, expect in ((f"sasl.username=engage\nsocket.timeout.ms={secret}\n",
                                 'property "socket.timeout.ms" on line 2'),
                                ("sasl.username=engage\nsasl.password=x\nenable.idempotence=false\n",
                                 '"enable.idempotence" on line 3'),
                                (f"sasl.username=engage\n{secret}\n", "is not name=value")):
            auth.credentials.write_text(content)
            auth.reload()
            s = wait_until(lambda: (s := auth.status())["state"] == "stopped on error"
                           and expect in (s["last_error"] or "") and s, 30, f"an error naming {expect}")
            assert secret not in s["last_error"], s
        assert secret not in auth.log_since(offset)
    finally:
        write_credentials(auth.credentials, RIGHT)
        auth.restart_session()


def test_secret_in_kafka_properties_is_refused(auth):
    """engage.kafka_properties refuses secrets (readable by pg_read_all_settings, logged on change)."""
    decoy = f"decoy-{uuid.uuid4().hex}"
    with auth.connect() as conn:
        with pytest.raises(psycopg.errors.InvalidParameterValue) as err:
            conn.execute(f"ALTER SYSTEM SET engage.kafka_properties = '{SASL};sasl.password={decoy}'")
    assert "engage.kafka_credentials_file" in str(err.value.diag.message_detail), err.value.diag.message_detail
    assert auth.status()["state"] == "running"
