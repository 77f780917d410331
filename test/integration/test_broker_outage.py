"""The broker goes away for 30 s under load: the status shows it, the shipper recovers, nothing lost."""
import time

from support import Workload, check_stream, wait_until

OUTAGE_S = 30


def test_broker_outage_under_load(cluster, broker, fresh_prefix):
    """Stop the broker 30 s while transactions commit; restart it; every change arrives."""
    prefix = fresh_prefix
    workload = Workload(cluster, "outage", seed=3)
    workload.start()
    seen = []
    try:
        wait_until(lambda: cluster.status()["events_shipped"] >= 300, 60, "events to flow")
        broker.stop()
        try:
            stopped_at = time.monotonic()
            held = None
            while time.monotonic() - stopped_at < OUTAGE_S:
                s = cluster.status()
                seen.append((round(time.monotonic() - stopped_at, 1), s["state"], s["broker_reachable"],
                             s["in_flight"], s["confirmed"]))
                if held is None and time.monotonic() - stopped_at > 3:
                    held = cluster.confirmed_flush()
                time.sleep(0.5)
            commits_during = workload.commits
            assert cluster.confirmed_flush() == held, "the slot confirmed WAL while no broker acknowledged"
        finally:
            broker.restart()
        wait_until(lambda: (s := cluster.status())["state"] == "running" and s["broker_reachable"], 120,
                   "the shipper to recover after the broker came back")
        wait_until(lambda: workload.commits >= commits_during + 200, 60, "more commits after the outage")
    finally:
        workload.stop()
    outage = [s for s in seen if s[1] == "waiting for broker" or s[2] is False]
    assert outage, f"engage.shipper never showed the outage: {seen}"
    assert cluster.status()["state"] == "running"
    cluster.wait_shipped(timeout=180)
    events = broker.read_prefix(prefix)
    result = check_stream(events, cluster, prefix, tables=["engage.members", "engage.templates"])
    in_db = {r[0] for r in cluster.query("SELECT name FROM engage.templates WHERE type = 'wl'")}
    keys = {m["key"] for m in result["messages"].values() if m["topic"] == "wl"}
    assert keys == in_db, f"messages: {len(in_db - keys)} missing, {len(keys - in_db)} not committed"
    print(f"outage: {len(outage)}/{len(seen)} polls showed it; {result['events']} events, "
          f"{result['duplicates']} duplicates")
