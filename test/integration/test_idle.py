"""With nothing to ship, the slot follows the WAL (so it never holds WAL back)."""
from support import lsn_int, wait_until

DEADLINE_S = 15


def wait_slot_follows(cluster, what):
    """Waits until confirmed_flush_lsn reaches the current flush position."""
    target = cluster.flush_lsn()
    wait_until(lambda: cluster.confirmed_flush() >= target, DEADLINE_S,
               f"confirmed_flush_lsn to reach {target:X} {what}")


def test_no_changes(cluster, broker, prefix):
    """Only WAL of no captured table (checkpoints, no-op transactions): the slot keeps up."""
    for round_ in range(3):
        with cluster.connect() as conn:
            conn.execute("CHECKPOINT")
            conn.execute("SELECT txid_current()")
        wait_slot_follows(cluster, f"after checkpoint {round_ + 1}")
    assert cluster.status()["in_flight"] == 0
    assert broker.topics(prefix) == []


def test_changes_outside_capture(cluster, broker, prefix):
    """Lots of changes to public.noise only: the slot keeps up, nothing is sent."""
    shipped = cluster.status()["events_shipped"]
    with cluster.connect() as conn:
        conn.execute("CREATE TABLE public.noise (id int PRIMARY KEY, payload text)")
        for i in range(10):
            conn.execute("INSERT INTO public.noise SELECT g, repeat('x', 200) FROM generate_series(%s::int, %s::int) g",
                         (i * 2000 + 1, (i + 1) * 2000))
        conn.execute("UPDATE public.noise SET payload = 'y' WHERE id % 3 = 0")
        conn.execute("DELETE FROM public.noise WHERE id % 5 = 0")
    wait_slot_follows(cluster, "after writing public.noise")
    start = lsn_int(cluster.one("SELECT pg_current_wal_flush_lsn()::text"))
    with cluster.connect() as conn:
        for i in range(20):
            conn.execute("UPDATE public.noise SET payload = %s WHERE id = %s", (str(i), i + 1))
    assert cluster.flush_lsn() > start
    wait_slot_follows(cluster, "after small public.noise transactions")
    assert cluster.status()["events_shipped"] == shipped
    assert broker.topics(prefix) == [], "changes of public.noise were sent"
