"""A long-lived shipper keeps its memory flat: sessions (reloads, retries) leave nothing behind."""
import re
import time

from support import wait_until

SESSIONS = 1000
CLUSTER_CONF = ["log_min_messages = log"]


def memory_of(cluster, pid):
    """(TopMemoryContext bytes, grand total bytes, VmRSS kB) of a backend, via pg_log_backend_memory_contexts."""
    offset = cluster.log_size()
    assert cluster.one("SELECT pg_log_backend_memory_contexts(%s)", (pid,))
    text = wait_until(lambda: (t := cluster.log_since(offset)) and "Grand total:" in t and t, 30,
                      "the memory context dump")
    top = int(re.search(r"level: 0; TopMemoryContext: (\d+) total", text).group(1))
    grand = int(re.search(r"Grand total: (\d+) bytes", text).group(1))
    with open(f"/proc/{pid}/status") as f:
        rss = int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1))
    return top, grand, rss


def force_sessions(cluster, n):
    """Starts n new shipper sessions by flipping engage.topic_prefix, each waited for."""
    base = cluster.status()["sessions"]
    prefixes = [cluster.prefix + "-a", cluster.prefix + "-b"]
    with cluster.connect() as conn:
        for i in range(n):
            conn.execute(f"ALTER SYSTEM SET engage.topic_prefix = '{prefixes[i % 2]}'")
            conn.execute("SELECT pg_reload_conf()")
            want = base + i + 1
            deadline = time.monotonic() + 30
            while conn.execute("SELECT sessions FROM engage.shipper").fetchone()[0] < want:
                assert time.monotonic() < deadline, f"session {i + 1} of {n} did not start"
                time.sleep(0.002)


def test_thousand_sessions_leave_memory_flat(cluster, broker, prefix):
    """1,000 sessions: TopMemoryContext and the whole context tree do not grow; RSS stays bounded."""
    pid = cluster.wait_running()["pid"]
    force_sessions(cluster, 50)  # warm up: caches, librdkafka's first allocations
    cluster.wait_running()
    top0, grand0, rss0 = memory_of(cluster, pid)
    force_sessions(cluster, SESSIONS)
    s = cluster.wait_running()
    assert s["pid"] == pid, "the shipper restarted: this test measures one process"
    top1, grand1, rss1 = memory_of(cluster, pid)
    print(f"after 50 sessions: top {top0} grand {grand0} rss {rss0} kB; "
          f"after {SESSIONS} more: top {top1} grand {grand1} rss {rss1} kB")
    # 470 bytes a session, the leak this guards against, would be 470 kB here.
    assert top1 - top0 <= 8192, f"TopMemoryContext grew by {top1 - top0} bytes over {SESSIONS} sessions"
    assert grand1 - grand0 <= 65536, f"the context tree grew by {grand1 - grand0} bytes over {SESSIONS} sessions"
    assert rss1 - rss0 <= 16384, f"RSS grew by {rss1 - rss0} kB over {SESSIONS} sessions"
