"""Shared fixtures of the pipeline's tests: a Kafka broker, an s3proxy, unique topics and buckets.

Session-scoped and lazy: the broker (scripts/kafka.sh, port 19492, controller 20492) starts only
when a test asks for `kafka_bootstrap`, the s3proxy (scripts/s3proxy.sh, port 19580) only when one
asks for `s3_endpoint`; both stop at the end of the session. PIPELINE_TEST_BOOTSTRAP and
PIPELINE_TEST_S3_ENDPOINT use already running servers instead (handy while developing).
`s3_endpoint` sets AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY to the s3proxy's test identity.

    new_topic(partitions=1, name=None) -> str  a fresh topic (default engage.test_<n>_<random>),
                                              retention.ms=-1 (tests use old record timestamps)
    produce(topic, [Msg(...), ...])           produce and flush (explicit partition, timestamp)
    new_bucket() -> str                       a fresh bucket on the s3proxy
"""
from __future__ import annotations

import itertools
import os
import secrets
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

KAFKA_PORT, KAFKA_CONTROLLER_PORT, S3_PORT = 19492, 20492, 19580
S3_IDENTITY, S3_CREDENTIAL = "pg_engage", "pg_engage-secret"
_topic_numbers = itertools.count(1)


def _script(name: str, *args: str, env: dict | None = None) -> str:
    """Run scripts/<name> with args; return its stdout; fail the session setup on error."""
    res = subprocess.run([str(ROOT / "scripts" / name), *args], capture_output=True, text=True,
                         env={**os.environ, **(env or {})})
    if res.returncode != 0:
        raise RuntimeError(f"scripts/{name} {' '.join(args)} failed:\n{res.stderr}")
    return res.stdout.strip()


@pytest.fixture(scope="session")
def servers_dir(tmp_path_factory) -> Path:
    """A session directory for the servers' data and logs."""
    return tmp_path_factory.mktemp("servers")


@pytest.fixture(scope="session")
def kafka_bootstrap(servers_dir):
    """Bootstrap address of a single-node Kafka 4.x broker (started on first use)."""
    if os.environ.get("PIPELINE_TEST_BOOTSTRAP"):
        yield os.environ["PIPELINE_TEST_BOOTSTRAP"]
        return
    d = servers_dir / "kafka"
    bootstrap = _script("kafka.sh", "start", str(d), str(KAFKA_PORT),
                        env={"KAFKA_CONTROLLER_PORT": str(KAFKA_CONTROLLER_PORT)})
    try:
        yield bootstrap
    finally:
        _script("kafka.sh", "stop", str(d))


@pytest.fixture(scope="session")
def s3_endpoint(servers_dir):
    """Endpoint URL of an s3proxy (started on first use); sets the AWS credential variables."""
    os.environ["AWS_ACCESS_KEY_ID"] = S3_IDENTITY
    os.environ["AWS_SECRET_ACCESS_KEY"] = S3_CREDENTIAL
    if os.environ.get("PIPELINE_TEST_S3_ENDPOINT"):
        yield os.environ["PIPELINE_TEST_S3_ENDPOINT"]
        return
    d = servers_dir / "s3proxy"
    endpoint = _script("s3proxy.sh", "start", str(d), str(S3_PORT),
                       env={"S3PROXY_IDENTITY": S3_IDENTITY, "S3PROXY_CREDENTIAL": S3_CREDENTIAL})
    try:
        yield endpoint
    finally:
        _script("s3proxy.sh", "stop", str(d))


@pytest.fixture
def new_bucket(s3_endpoint):
    """Return a function creating a fresh bucket on the s3proxy."""
    from pipeline.lander.targets import S3Target

    def make() -> str:
        """Create and return a bucket name."""
        name = f"test-{secrets.token_hex(6)}"
        S3Target(name, endpoint=s3_endpoint).create_bucket()
        return name
    return make


@pytest.fixture
def new_topic(kafka_bootstrap):
    """Return a function creating a fresh topic engage.test_<n>_<hex> with N partitions."""
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})

    def make(partitions: int = 1, name: str | None = None) -> str:
        """Create the topic (without time retention) and wait until it exists."""
        name = name or f"engage.test_{next(_topic_numbers)}_{secrets.token_hex(3)}"
        # Tests use record timestamps in the past: the 7-day default retention would delete them
        # at the broker's next retention check (every 5 minutes), in the middle of a test.
        topic = NewTopic(name, partitions, 1, config={"retention.ms": "-1"})
        for fut in admin.create_topics([topic]).values():
            fut.result(timeout=30)
        return name
    return make


@dataclass
class Msg:
    """A message to produce: value/key bytes (or None), headers, timestamp ms, partition."""

    value: bytes | None
    key: bytes | None = None
    headers: list = field(default_factory=list)
    timestamp: int = 0
    partition: int = 0


@pytest.fixture
def produce(kafka_bootstrap):
    """Return a function producing Msg objects to a topic and flushing them."""
    from confluent_kafka import Producer
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True,
                         "linger.ms": 5})

    def send(topic: str, msgs: list[Msg]) -> None:
        """Produce msgs in order and wait until all are acknowledged."""
        errors = []
        for m in msgs:
            producer.produce(topic, m.value, m.key, partition=m.partition, headers=m.headers or None,
                             timestamp=m.timestamp,
                             on_delivery=lambda err, _m: errors.append(err) if err else None)
        assert producer.flush(30) == 0, "messages not delivered within 30 s"
        assert not errors, errors
    return send
