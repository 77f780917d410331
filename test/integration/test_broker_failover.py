"""A broker of a 3-broker cluster dies (kill -9) while the shipper ships: shipping goes on with the
two left, the broker comes back, and nothing is lost.

The cluster (fixture kafka_cluster, scripts/kafka.sh cluster-start) replicates every topic 3 times
with min.insync.replicas=2, and the shipper produces with acks=all: a write is acknowledged once
two replicas hold it, so one dead broker costs no acknowledged event and need not stop shipping.

Why these tests can fail:
- run_failover waits, with the victim dead and fenced, until the slot confirms WAL written after
  the fencing.  A shipper that stalls until every broker is back (stuck on the dead leader, a
  producer not refreshing its metadata, a retry that never succeeds) fails that wait.
  test_two_brokers_down_hold_the_slot makes the same measurement with two of three brokers dead
  (below min.insync.replicas, and without a controller quorum, since every node is also a voter):
  there the slot must not move, so the measurement does tell a working cluster from a stuck one.
- check_stream after catch-up: an event acknowledged by the leader that died and then lost (too few
  replicas, an unclean election), or a slot confirmed past an event never acknowledged, shows as a
  missing row or message in the rebuilt tables; reordering shows in the per-key order check.

The delivery mode is a parameter (MODES): the at-least-once shipper may resend after the failover
(duplicates, with ids seen before, are counted and reported); an exactly-once mode must add none.
"""
import time
from collections import Counter
from dataclasses import dataclass, field

import pytest

from support import Workload, check_stream, wait_until


@dataclass
class Mode:
    """A delivery mode under test: its extra postgresql.conf lines, and whether it may duplicate."""
    conf: list = field(default_factory=list)
    duplicates_allowed: bool = True


MODES = {
    "at_least_once": Mode(),
    "exactly_once": Mode(["engage.delivery = 'exactly_once'"], duplicates_allowed=False),
}

MIN_DOWN_S = 15  # how long the victims stay dead at least (the slot must advance, or be held)
IN_FLIGHT_S = 5  # after a kill, acknowledgements already on their way may still arrive this long
PROGRESS_S = 120  # deadline for the slot to confirm a given WAL position (noisy 2-core machine)


def start_shipping(make_cluster, kafka_cluster, request, name, mode, seed):
    """A PostgreSQL cluster shipping to kafka_cluster, and a running Workload on it (waited until
    events flow)."""
    pg = make_cluster(name, *mode.conf, brokers=kafka_cluster.bootstrap, request=request)
    pg.wait_running()
    workload = Workload(pg, name, seed=seed)
    workload.start()
    wait_until(lambda: pg.status()["events_shipped"] >= 300, 90, "events to flow")
    return pg, workload


def busiest_leader(kafka_cluster, prefix):
    """The broker leading the most partitions of the prefix's topics (its death moves the most)."""
    counts = kafka_cluster.leaders(kafka_cluster.topics(prefix))
    return max(sorted(counts), key=lambda b: counts[b])


def confirms_past(pg, mark, timeout, what):
    """Waits until the slot confirmed WAL position mark; returns how long it took."""
    t0 = time.monotonic()
    wait_until(lambda: pg.confirmed_flush() >= mark, timeout,
               f"confirmed_flush to pass {mark:X} {what} (status: {pg._status_text()})", interval=0.5)
    return time.monotonic() - t0


def catch_up_and_check(pg, workload, kafka_cluster, mode):
    """Stops the workload, waits until everything is shipped, reads the stream read_committed and
    checks it (nothing lost, per-key order, rebuild equals the database); returns check_stream's
    result."""
    workload.stop()
    pg.wait_shipped(timeout=180)
    events = kafka_cluster.read_prefix(pg.prefix, isolation="read_committed")
    result = check_stream(events, pg, pg.prefix)
    in_db = {r[0] for r in pg.query("SELECT name FROM engage.templates WHERE type = 'wl'")}
    keys = {m["key"] for m in result["messages"].values() if m["topic"] == "wl"}
    assert keys == in_db, f"messages: {len(in_db - keys)} missing, {len(keys - in_db)} not committed"
    if not mode.duplicates_allowed:
        assert result["duplicates"] == 0, f"{result['duplicates']} duplicates"
    return result


def run_failover(make_cluster, kafka_cluster, request, name, mode, seed):
    """Kills the busiest leader under load, requires the slot to advance while it is dead, brings
    it back, then checks the whole stream; returns a summary dict."""
    pg, workload = start_shipping(make_cluster, kafka_cluster, request, name, mode, seed)
    summary = {}
    try:
        victim = busiest_leader(kafka_cluster, pg.prefix)
        summary["victim"] = victim
        log_offset = pg.log_size()
        killed_at = time.monotonic()
        kafka_cluster.kill9(victim)
        try:
            wait_until(lambda: victim not in kafka_cluster.live_brokers(), 60,
                       f"the cluster to fence broker {victim}", interval=0.5)
            summary["fenced_s"] = round(time.monotonic() - killed_at, 1)
            # Twice: the first mark may be reached by acknowledgements already in flight at the
            # kill; the second is WAL written and shipped entirely with two brokers.
            waits, states = [], Counter()
            while len(waits) < 2 or time.monotonic() - killed_at < MIN_DOWN_S:
                commits = workload.commits
                waits.append(confirms_past(pg, pg.flush_lsn(), PROGRESS_S, f"with broker {victim} dead"))
                assert workload.commits > commits, "no commit while the slot advanced"
                assert not kafka_cluster.running(victim), f"broker {victim} is running again"
                status = pg.status()
                states[(status["state"], status["broker_reachable"])] += 1
            summary["progress_waits_s"] = [round(w, 1) for w in waits]
            summary["states"] = dict(states)  # what engage.shipper said meanwhile
            summary["down_s"] = round(time.monotonic() - killed_at, 1)
            said = [l for l in pg.log_since(log_offset).splitlines() if "no Kafka broker" in l]
            assert not said, f"one broker of three dead, yet the shipper said: {said[:2]}"
        finally:
            t0 = time.monotonic()
            kafka_cluster.restart(victim)
            summary["restart_s"] = round(time.monotonic() - t0, 1)
        commits = workload.commits
        confirms_past(pg, pg.flush_lsn(), PROGRESS_S, f"after broker {victim} came back")
        assert workload.commits > commits, "no commit after the broker came back"
        result = catch_up_and_check(pg, workload, kafka_cluster, mode)
        summary.update(events=result["events"], duplicates=result["duplicates"],
                       commits=workload.commits, state=pg.status()["state"])
        return summary
    finally:
        if workload.is_alive():
            workload.stop_event.set()
            workload.join(60)
        pg.stop("fast")


@pytest.mark.parametrize("mode", list(MODES))
def test_broker_failover(mode, make_cluster, kafka_cluster, request):
    """kill -9 of the broker leading the most partitions while the workload ships: the slot keeps
    advancing with two brokers, the broker comes back, nothing is lost (duplicates reported)."""
    summary = run_failover(make_cluster, kafka_cluster, request, f"failover_{mode}", MODES[mode], seed=10)
    assert summary["state"] == "running"
    print(f"failover ({mode}, cluster started in {kafka_cluster.start_seconds:.1f} s): {summary}")


def test_two_brokers_down_hold_the_slot(make_cluster, kafka_cluster, request):
    """With two of three brokers dead the cluster cannot acknowledge (acks=all, min.insync.replicas
    2, no controller quorum): the slot must not move past what was acknowledged, though commits go
    on; once both are back everything arrives."""
    mode = MODES["at_least_once"]
    pg, workload = start_shipping(make_cluster, kafka_cluster, request, "failover_two_down", mode, seed=11)
    try:
        victims = sorted(kafka_cluster.live_brokers())[:2]
        try:
            for v in victims:
                kafka_cluster.kill9(v)
            killed_at = time.monotonic()
            samples, mark, commits = [], None, None  # samples: (s since the kill, confirmed_flush)
            while (elapsed := time.monotonic() - killed_at) < MIN_DOWN_S:
                if mark is None and elapsed >= IN_FLIGHT_S:
                    mark, commits = pg.flush_lsn(), workload.commits
                samples.append((elapsed, pg.confirmed_flush()))
                time.sleep(0.5)
            # Acknowledgements in flight at the kill may still arrive during the first seconds.
            held = {lsn for t, lsn in samples if t >= IN_FLIGHT_S}
            assert len(held) == 1, \
                f"the slot moved with one broker of three: {[f'{lsn:X}' for lsn in sorted(held)]}"
            assert held.pop() < mark, f"nothing was waiting to be shipped (WAL {mark:X})"
            assert workload.commits > commits, "no commits with two brokers dead"
        finally:
            t0 = time.monotonic()
            for v in victims:
                kafka_cluster.restart(v)
            restart_s = time.monotonic() - t0
        t0 = time.monotonic()
        commits = workload.commits
        confirms_past(pg, pg.flush_lsn(), PROGRESS_S, f"after brokers {victims} came back")
        assert workload.commits > commits, "no commit after the brokers came back"
        resumed_s = time.monotonic() - t0
        result = catch_up_and_check(pg, workload, kafka_cluster, mode)
        print(f"two down: held at {samples[-1][1]:X} for {MIN_DOWN_S - IN_FLIGHT_S} s; restarts "
              f"{restart_s:.1f} s, shipping again {resumed_s:.1f} s later; {result['events']} events, "
              f"{result['duplicates']} duplicates")
    finally:
        if workload.is_alive():
            workload.stop_event.set()
            workload.join(60)
        pg.stop("fast")
