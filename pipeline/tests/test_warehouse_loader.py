"""The loader: each landing object once, values byte for byte, late objects, atomic batches."""
from __future__ import annotations

import gzip

import pytest

from warehouse_fixtures import LandingWriter, SourceCluster, landing_line, new_base_dir, query, warehouse_config

from pipeline.warehouse.engines import open_warehouse
from pipeline.warehouse.loader import load_new
from pipeline.warehouse.source import LandingSource

PG_PORT = 55762
# Escapes, non-ASCII, a control character, an unescaped U+2028 (a line break to str.splitlines),
# and a numeric with more digits than a double holds.
TRICKY = ('{"v":1,"id":"0/10:1","lsn":"0/10","xid":1,"ts":"2026-06-06T18:00:00.000000Z","op":"insert",'
          '"table":"engage.members","pk":{"member_id":1},"new":{"member_id":1,"name":"Zoë\u2028 \\"Z\\" \\\\ \\u0001\\t",'
          '"email":"z@x.com","contact":"1.000000000000000000001","created_at":"2026-06-06T18:00:00.000000Z"}}')


@pytest.fixture(scope="module")
def pg():
    """A PostgreSQL cluster for the postgres cases."""
    src = SourceCluster(new_base_dir("engage-wh-load-") / "pg", PG_PORT)
    yield src
    src.stop()


class MemorySource:
    """A landing that is not a local directory (like S3): objects only as bytes."""

    def __init__(self, inner: LandingSource, fail_on: str | None = None):
        """Serve inner's objects; reading fail_on raises (a crash mid-load)."""
        self.inner, self.fail_on, self.url = inner, fail_on, "memory://"

    def keys(self):
        """Keys of the inner landing."""
        return self.inner.keys()

    def read(self, key):
        """Bytes, or a crash on fail_on."""
        if key == self.fail_on:
            raise OSError("connection reset")
        return self.inner.read(key)

    def lines(self, key):
        """Lines from the bytes."""
        return gzip.decompress(self.read(key)).decode().rstrip("\n").split("\n")

    def local_path(self, key):
        """Never local."""
        return None


def load(cfg, source):
    """Run the loader once on an open-and-close connection."""
    wh = open_warehouse(cfg)
    try:
        return load_new(source, wh, batch_objects=2)
    finally:
        wh.close()


@pytest.mark.parametrize("kind", ["duckdb", "postgres"])
def test_objects_once_exact_values_and_late_objects(kind, pg, tmp_path):
    """Values keep their bytes; a second run loads nothing; a late object is loaded next time."""
    cfg = warehouse_config(kind, tmp_path, pg, "wh_load1")
    w = LandingWriter(tmp_path / "landing")
    w.write([TRICKY])
    source = LandingSource(str(tmp_path / "landing"))
    first = load(cfg, source)
    assert (first.objects_loaded, first.lines_loaded) == (1, 1)
    assert load(cfg, source).objects_loaded == 0
    got = query(cfg, "SELECT value, event_id, op, table_name, msg_key, kafka_offset FROM engage_raw.raw_events")
    assert got == [(TRICKY, "0/10:1", "insert", "engage.members", '{"member_id":1}', 0)]
    late = landing_line("engage.members", 0, 7, 1_600_000_000_000, None, {}, TRICKY)
    key = w.write_lines("engage.members", 0, [late])
    assert "dt=2020-09-13/hour=12" in key               # an old hour, landed after newer ones
    again = load(cfg, source)
    assert (again.objects_loaded, again.lines_loaded) == (1, 1)
    loads = query(cfg, "SELECT object_key, load_id, records FROM engage_raw.raw_objects ORDER BY load_id")
    assert [r[1:] for r in loads] == [(1, 1), (2, 1)] and loads[1][0] == key


@pytest.mark.parametrize("kind", ["duckdb", "postgres"])
def test_crash_mid_load_leaves_nothing_then_converges(kind, pg, tmp_path):
    """A batch that fails is rolled back whole; the next run loads every object once."""
    cfg = warehouse_config(kind, tmp_path, pg, "wh_load2")
    w = LandingWriter(tmp_path / "landing", partitions=1)
    values = [TRICKY.replace("0/10:1", f"0/10:{i}").replace('"member_id":1', f'"member_id":{i}')
              for i in range(1, 7)]
    keys = w.write(values, max_records=2)
    assert len(keys) == 3
    inner = LandingSource(str(tmp_path / "landing"))
    with pytest.raises(OSError):
        load(cfg, MemorySource(inner, fail_on=keys[1]))     # first batch holds keys[0:2]
    assert query(cfg, "SELECT count(*) FROM engage_raw.raw_events") == [(0,)]
    assert query(cfg, "SELECT count(*) FROM engage_raw.raw_objects") == [(0,)]
    report = load(cfg, MemorySource(inner))                  # a non-local landing (temp copies)
    assert (report.objects_loaded, report.lines_loaded) == (3, 6)
    got = [r[0] for r in query(cfg, "SELECT value FROM engage_raw.raw_events ORDER BY kafka_offset")]
    assert got == values
