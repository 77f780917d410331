"""The workers never stay down while the server runs, and the status tells the truth about them."""
import re
import time

from support import lsn_int, wait_until, worker_exits

CLUSTER_CONF = ["log_min_messages = log"]


def insert_member(cluster, name):
    """Inserts a member named name."""
    cluster.query("INSERT INTO engage.members (name) VALUES (%s)", (name,))


def shipped_names(broker, prefix):
    """Names of the members whose inserts are in Kafka under prefix."""
    return {e.record["new"]["name"] for e in broker.read_prefix(prefix)
            if e.topic == f"{prefix}.members" and e.record["op"] == "insert"}


def launcher_pid(cluster):
    """Pid of the running launcher, or None."""
    return cluster.one("SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_engage launcher'")


def test_terminated_shipper_comes_back(cluster, broker, fresh_prefix):
    """pg_terminate_backend of the shipper: a new one ships what was written meanwhile; pid never stale."""
    old = cluster.wait_running()["pid"]
    assert cluster.one("SELECT pg_terminate_backend(%s)", (old,))
    wait_until(lambda: cluster.status()["pid"] != old, 10, "the status to drop the old shipper's pid")
    insert_member(cluster, "while-restarting")
    new = cluster.wait_running(30)["pid"]
    assert new != old
    insert_member(cluster, "after-restart")
    cluster.wait_shipped()
    assert {"while-restarting", "after-restart"} <= shipped_names(broker, fresh_prefix)


def test_terminated_launcher_comes_back(cluster, broker, fresh_prefix):
    """pg_terminate_backend of the launcher: the postmaster starts it again, and it the shipper."""
    offset = cluster.log_size()
    old_launcher = launcher_pid(cluster)
    old_shipper = cluster.wait_running()["pid"]
    assert old_launcher and cluster.one("SELECT pg_terminate_backend(%s)", (old_launcher,))
    wait_until(lambda: (p := launcher_pid(cluster)) and p != old_launcher, 30, "a new launcher")
    wait_until(lambda: (s := cluster.status())["state"] == "running" and s["pid"] not in (None, old_shipper),
               30, "a new shipper started by the new launcher")
    insert_member(cluster, "after-launcher-restart")
    cluster.wait_shipped()
    assert "after-launcher-restart" in shipped_names(broker, fresh_prefix)
    exits = worker_exits(cluster.log_since(offset))
    assert any(re.search(r'"pg_engage launcher" \(PID %d\) exited with exit code 1' % old_launcher, l)
               for l in exits), exits


def test_disabled_shipper_clears_pid_and_counts_sessions(cluster, broker, prefix):
    """engage.enabled off: state stopped, pid and in_flight cleared; on again: a new session is counted."""
    sessions = cluster.wait_running()["sessions"]
    cluster.reload(enabled="off")
    wait_until(lambda: (s := cluster.status())["state"] == "stopped" and s["pid"] is None, 30,
               "the shipper to stop and its pid to be cleared")
    assert cluster.status()["in_flight"] == 0
    cluster.reload(enabled=None)
    s = cluster.wait_running()
    assert s["sessions"] > sessions, s
    wait_until(lambda: cluster.status()["broker_reachable"] is True, 30, "the broker to be known reachable")


def test_clean_shutdown_is_not_a_failure(make_cluster, request):
    """A server shutdown stops both workers with status 0: nothing in the log looks like a failure."""
    c = make_cluster("shutdown", request=request)
    c.wait_running()
    offset = c.log_size()
    c.stop("fast")
    log = c.log_since(offset)
    assert not [l for l in worker_exits(log) if "exit code 0" not in l], worker_exits(log)


def test_fast_shutdown_while_a_record_is_flushed_in_part(make_cluster, request):
    """A WAL record whose start is flushed and whose end is not (a large non-transactional message:
    no commit flushes it, the WAL writer flushes whole pages only) keeps the shipper waiting for the
    rest; a fast shutdown must still end at once, not when something else flushes WAL."""
    c = make_cluster("partflush", request=request)
    c.wait_running()
    # The initial snapshot's chunks commit (and so flush WAL): let it end first.
    wait_until(lambda: c.one("SELECT count(*) FROM engage.snapshots WHERE state IN ('pending', 'running')") == 0,
               60, "the initial snapshot to end")
    # In a transaction left open: the end of a transaction without an xid that wrote WAL would
    # ask the WAL writer to flush it all (asynchronous commit); the server's stop aborts it.
    writer = c.connect()
    writer.execute("BEGIN")
    end = lsn_int(writer.execute("SELECT pg_logical_emit_message(false, 'not_engage', "
                                 "repeat(md5('x'), 20000))::text").fetchone()[0])
    start = end - 32 * 20000
    wait_until(lambda: start < c.flush_lsn() < end, 30,
               "the WAL writer to flush the message's first pages, not its last")
    # The shipper looks for new WAL every engage.poll_interval (no event says it is inside the
    # record): give it that time, and a second more.
    time.sleep(1 + c.one("SELECT setting::int FROM pg_settings WHERE name = 'engage.poll_interval'") / 1000)
    assert c.flush_lsn() < end, "something flushed the rest of the record: the test proves nothing"
    offset = c.log_size()
    started = time.monotonic()
    c.stop("fast")
    took = time.monotonic() - started
    assert took < 20, f"the fast shutdown took {took:.1f} s"
    writer.close()
    log = c.log_since(offset)
    assert not [l for l in worker_exits(log) if "exit code 0" not in l], worker_exits(log)
