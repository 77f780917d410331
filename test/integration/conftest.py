"""Fixtures of the pg_engage integration suite: one Kafka broker, one PostgreSQL cluster per module,
and, for the modules that ask for it, a 3-broker Kafka cluster."""
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest

from support import Broker, BrokerCluster, Cluster, port_free, wait_until

# Overridable so that two checkouts can run the suite side by side.
KAFKA_PORT = int(os.environ.get("ENGAGE_TEST_KAFKA_PORT", "19392"))
KAFKA_SASL_PORT = int(os.environ.get("ENGAGE_TEST_KAFKA_SASL_PORT", str(KAFKA_PORT + 2)))
# A 3-broker cluster's client ports are KAFKA_CLUSTER_PORT..+2, its controllers' 1000 above.
KAFKA_CLUSTER_PORT = int(os.environ.get("ENGAGE_TEST_KAFKA_CLUSTER_PORT", "19500"))
FIRST_PG_PORT = int(os.environ.get("ENGAGE_TEST_PG_PORT", "55500"))
RUN_ID = uuid.uuid4().hex[:6]
_clusters = []


def _work_dir():
    """$PG_ENGAGE_WORK, or a new temporary directory; readable by the postgres user."""
    base = os.environ.get("PG_ENGAGE_WORK")
    if base:
        path = Path(base)
        path.mkdir(parents=True, exist_ok=True)
    else:
        path = Path(tempfile.mkdtemp(prefix="pg_engage_it."))
    os.chmod(path, 0o755)
    return path


@pytest.fixture(scope="session")
def work_dir():
    """The directory holding the broker and the clusters of this run."""
    path = _work_dir()
    yield path
    if not os.environ.get("PG_ENGAGE_WORK") and not os.environ.get("KEEP_TEST_DIR"):
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def broker(work_dir):
    """The Kafka broker of the session (KAFKA_PORT, SASL on KAFKA_SASL_PORT; start/stop/restart exposed)."""
    for port in (KAFKA_PORT, KAFKA_SASL_PORT):
        if not port_free(port):
            pytest.fail(f"port {port} is in use: cannot start the test broker")
    b = Broker(work_dir / "kafka", KAFKA_PORT, KAFKA_SASL_PORT)
    b.start()
    yield b
    b.stop()


@pytest.fixture(scope="module")
def kafka_cluster(work_dir):
    """A fresh 3-broker KRaft cluster for the module (BrokerCluster: bootstrap, kill9(i), restart(i),
    read_prefix(prefix, isolation=...)); stopped at the module's end."""
    ports = [KAFKA_CLUSTER_PORT + i for i in range(3)]
    busy = [p for p in ports + [p + 1000 for p in ports] if not port_free(p)]
    if busy:
        pytest.fail(f"ports {busy} are in use: cannot start the test Kafka cluster")
    c = BrokerCluster(work_dir / "kafka-cluster", KAFKA_CLUSTER_PORT, 3)
    shutil.rmtree(c.dir, ignore_errors=True)  # an earlier module's (stopped) cluster
    try:
        c.start()
    except BaseException:
        c.stop()  # the nodes that did start
        raise
    print(f"kafka cluster {c.bootstrap} started in {c.start_seconds:.1f} s")
    yield c
    c.stop()


@pytest.fixture(scope="session")
def make_cluster(work_dir, broker):
    """Factory of started clusters with pg_engage preloaded and pointed at the broker."""
    ports = iter(range(FIRST_PG_PORT, FIRST_PG_PORT + 400))

    def make(name, *conf, extension_db="postgres", wait_slot=True, request=None, brokers=None):
        """Creates and starts cluster name with extra conf lines; CREATE EXTENSION in extension_db.

        The shipper sends to brokers (engage.brokers; default: the session's broker).  With
        wait_slot, the extension is created only once the shipper's slot exists, so the
        extension's own rows are in the stream.
        """
        port = next(p for p in ports if port_free(p))
        conf_lines = ["shared_preload_libraries = 'pg_engage'",
                      f"engage.brokers = '{brokers or broker.bootstrap}'",
                      f"engage.topic_prefix = 'it-{RUN_ID}-{name}'",
                      "log_line_prefix = '%m [%p] %b '",
                      *conf]
        cluster = Cluster(work_dir / name, port, conf_lines)
        cluster.module = request.module.__name__ if request else None
        cluster.prefix = f"it-{RUN_ID}-{name}"
        if cluster.dir.exists():  # left by an earlier run in the same work directory
            cluster.stop("immediate")
            shutil.rmtree(cluster.dir)
        cluster.init()
        _clusters.append(cluster)
        cluster.start()
        if wait_slot:
            wait_until(lambda: cluster.confirmed_flush(), 60, f"the shipper's slot in {name}")
        if extension_db:
            cluster.query("CREATE EXTENSION pg_engage", dbname=extension_db)
        return cluster

    yield make
    for c in _clusters:
        c.stop("immediate")


@pytest.fixture(scope="module")
def cluster(request, make_cluster):
    """The module's cluster, with the module's CLUSTER_CONF lines; the shipper is running."""
    name = request.module.__name__.rsplit(".", 1)[-1]
    c = make_cluster(name, *getattr(request.module, "CLUSTER_CONF", []), request=request)
    c.wait_running()
    return c


@pytest.fixture
def prefix(request, cluster):
    """A topic prefix of the test's own, in effect in the shipper."""
    p = f"it-{RUN_ID}-" + re.sub(r"[^A-Za-z0-9_-]", "_", request.node.name)[:120]
    cluster.use_prefix(p)
    return p


@pytest.fixture
def fresh_prefix(request, cluster):
    """Like prefix, after emptying the tables the workloads write."""
    cluster.empty_tables()
    return request.getfixturevalue("prefix")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On failure, attaches the tails of the server logs."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and call.when == "call":
        for c in _clusters:
            if c.module not in (None, item.module.__name__):
                continue
            tail = "\n".join(c.log().splitlines()[-40:])
            report.sections.append((f"server log {c.dir.name} (tail)", tail))
