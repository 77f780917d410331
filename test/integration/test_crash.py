"""Crashes mid-stream (SIGKILL of the shipper, immediate shutdowns): nothing lost, duplicates exact."""
import os
import signal

from support import RB_MARK, Workload, check_stream, wait_until, worker_exits

STREAM_TABLES = ["engage.members", "engage.templates"]


def events_shipped(cluster, at_least):
    """True once the shipper (since its start) shipped at least that many events."""
    return cluster.status()["events_shipped"] >= at_least


def check_after_crashes(cluster, broker, prefix, workload):
    """Every committed change is in Kafka once, modulo exact duplicates; nothing rolled back is."""
    cluster.wait_shipped(timeout=180)
    events = broker.read_prefix(prefix)
    result = check_stream(events, cluster, prefix, tables=STREAM_TABLES)
    assert not [e for e in events if RB_MARK.encode() in e.value], "events of rolled-back work in Kafka"
    in_db = {r[0] for r in cluster.query("SELECT name FROM engage.templates WHERE type = 'wl'")}
    assert workload.committed <= in_db, "the database lost committed transactions"
    keys = {m["key"] for m in result["messages"].values() if m["topic"] == "wl"}
    assert keys == in_db, f"messages: {len(in_db - keys)} missing, {len(keys - in_db)} not committed"
    return result


def test_sigkill_shipper_mid_stream(cluster, broker, fresh_prefix):
    """SIGKILL of the shipper under load: the server restarts it, the stream goes on, nothing lost."""
    prefix = fresh_prefix
    workload = Workload(cluster, "kill", seed=1)
    workload.start()
    try:
        wait_until(lambda: events_shipped(cluster, 300), 60, "events to flow")
        pid = cluster.status()["pid"]
        assert pid in cluster.shipper_pids()
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: f"(PID {pid}) was terminated by signal 9" in cluster.log(), 30,
                   "the postmaster to notice the killed shipper")
        new = cluster.wait_running(timeout=90)
        assert new["pid"] != pid
        commits = workload.commits
        wait_until(lambda: workload.commits >= commits + 200 and events_shipped(cluster, 300), 90,
                   "the workload and the stream to go on after the crash")
    finally:
        workload.stop()
    assert workload.errors > 0, "the crash restart did not even disturb the workload"
    result = check_after_crashes(cluster, broker, prefix, workload)
    print(f"sigkill: {result['events']} events, {result['duplicates']} duplicates")


def restarts_under_load(cluster, workload, mode, rounds):
    """Stops (pg_ctl -m mode) and starts the server rounds times while workload writes.

    Returns the pg_engage worker exits other than clean ones seen in the log."""
    failed_exits = []
    workload.start()
    try:
        for round_ in range(rounds):
            wait_until(lambda: events_shipped(cluster, 200), 90, f"events to flow before stop {round_ + 1}")
            offset = cluster.log_size()
            cluster.stop(mode)
            failed_exits += [l for l in worker_exits(cluster.log_since(offset)) if "exit code 0" not in l]
            cluster.start()
            cluster.wait_running(timeout=90)
        commits = workload.commits
        wait_until(lambda: workload.commits >= commits + 200 and events_shipped(cluster, 200), 90,
                   "the workload and the stream to go on after the restarts")
    finally:
        workload.stop()
    return failed_exits


def test_immediate_shutdown_three_times(cluster, broker, fresh_prefix):
    """pg_ctl -m immediate stop/start three times under load: nothing lost, duplicates exact."""
    workload = Workload(cluster, "imm", seed=2)
    restarts_under_load(cluster, workload, "immediate", 3)
    assert workload.errors >= 3
    result = check_after_crashes(cluster, broker, fresh_prefix, workload)
    print(f"immediate x3: {result['events']} events, {result['duplicates']} duplicates")


def test_clean_shutdown_flushes_in_flight(cluster, broker, fresh_prefix):
    """pg_ctl -m fast stop under load: the shipper flushes and confirms, so nothing is sent twice."""
    workload = Workload(cluster, "fast", seed=3)
    failed_exits = restarts_under_load(cluster, workload, "fast", 2)
    assert not failed_exits, f"a pg_engage worker failed during a clean shutdown: {failed_exits}"
    result = check_after_crashes(cluster, broker, fresh_prefix, workload)
    assert result["duplicates"] == 0, f"a clean shutdown left {result['duplicates']} events to send again"
