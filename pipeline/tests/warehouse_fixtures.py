"""Helpers of the warehouse and cycle tests: landing objects written directly, a source cluster.

No Kafka: event records come from decoding a logical slot with engage_decoder (the exact values
the shipper sends) or are made up, and `LandingWriter` writes them as pipeline/LANDING.md objects
with made-up partitions and offsets, on the shipper's topics (`engage.<table>` per table,
`engage-app.<topic>` for messages, `engage-control` for gap and snapshot records).

    src = SourceCluster(tmp_dir, port)         # a PostgreSQL with pg_engage and a slot
    src.sql("...")                             # run SQL in the source database
    records = src.decode()                     # new record values since the last decode
    w = LandingWriter(root); w.write(records)  # land them (objects per topic/partition/hour)
    warehouse(kind, tmp_path, pg)              # WarehouseConfig for duckdb or postgres
"""
from __future__ import annotations

import gzip
import json
import os
import subprocess
import zlib
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PGBIN = os.environ.get("PGBIN", "/usr/lib/postgresql/15/bin")
DEAD_LETTER_TOPIC = "engage-dead_letter"


def record_meta(value: str) -> dict:
    """Return what the shipper derives from a record: topic, key and headers (parses a copy)."""
    rec = json.loads(value)
    if rec["op"] == "message":
        topic, key = f"engage-app.{rec['topic']}", rec.get("key")
    elif rec["op"] == "gap":                     # the control topic, keyed by the slot name
        topic, key = "engage-control", rec["slot"]
    elif rec["op"] == "snapshot":                # the control topic, keyed by the table's name
        topic, key = "engage-control", rec["table"]
    else:
        topic = "engage." + rec["table"].split(".", 1)[1]
        key = None if rec.get("pk") is None else json.dumps(rec["pk"], separators=(",", ":"))
    headers = {"engage.id": rec["id"], "engage.op": rec["op"]}
    if rec.get("table"):
        headers["engage.table"] = rec["table"]
    if rec.get("lsn") or rec.get("to_lsn"):
        headers["engage.lsn"] = rec.get("lsn") or rec["to_lsn"]
    ts = rec.get("ts") or "2026-01-01T00:00:00.000000Z"
    ms = int(datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() * 1000)
    return {"topic": topic, "key": key, "headers": headers, "ms": ms}


def landing_line(topic: str, partition: int, offset: int, ms: int, key: str | None,
                 headers: dict, value: str | None) -> str:
    """Return one landing line (members in the contract's order)."""
    return json.dumps({
        "topic": topic, "partition": partition, "offset": offset, "timestamp": ms,
        "timestamp_type": "create", "key": key, "headers": headers,
        "ingested_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "value": value}, ensure_ascii=False, separators=(",", ":"))


class LandingWriter:
    """Writes landing objects under root, keeping per-partition offsets across calls."""

    def __init__(self, root: Path, partitions: int = 2):
        """Land into root with `partitions` partitions per topic."""
        self.root = Path(root)
        self.partitions = partitions
        self.next_offset: dict[tuple[str, int], int] = defaultdict(int)

    def write(self, values: list[str], max_records: int = 1000, hold=None) -> list[str]:
        """Land record values as objects; return the keys written. Objects whose key satisfies
        hold(key) are not written but kept in self.held, to be put later (late files)."""
        buckets: dict[tuple[str, int], list[str]] = defaultdict(list)
        for value in values:
            m = record_meta(value)
            part = zlib.crc32((m["key"] or "").encode()) % self.partitions
            off = self.next_offset[(m["topic"], part)]
            self.next_offset[(m["topic"], part)] += 1
            buckets[(m["topic"], part)].append(
                landing_line(m["topic"], part, off, m["ms"], m["key"], m["headers"], value))
        written, self.held = [], []
        for (topic, part), lines in sorted(buckets.items()):
            for key, chunk in self._objects(topic, part, lines, max_records):
                if hold and hold(key):
                    self.held.append((key, chunk))
                else:
                    written.append(self.put(key, chunk))
        return written

    def write_lines(self, topic: str, partition: int, lines: list[str]) -> str:
        """Write given lines as one object of topic/partition (offset of the first line)."""
        first = json.loads(lines[0])
        return self.put(_key(topic, partition, first["offset"], first["timestamp"]), lines)

    def put(self, key: str, lines: list[str]) -> str:
        """Write one object (gzip JSON lines) at key; return the key."""
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode("utf-8"), 1))
        return key

    def _objects(self, topic: str, part: int, lines: list[str], max_records: int):
        """Split a partition's lines into objects: same record-time hour, at most max_records."""
        out, cur, cur_hour = [], [], None
        for line in lines:
            rec = json.loads(line)
            hour = rec["timestamp"] // 3_600_000
            if cur and (hour != cur_hour or len(cur) >= max_records):
                out.append(cur)
                cur = []
            cur_hour = hour
            cur.append(line)
        if cur:
            out.append(cur)
        result = []
        for chunk in out:
            first = json.loads(chunk[0])
            result.append((_key(topic, part, first["offset"], first["timestamp"]), chunk))
        return result


def _key(topic: str, partition: int, offset: int, ms: int) -> str:
    """Return the landing key of an object (pipeline/LANDING.md)."""
    when = datetime.fromtimestamp(ms // 3_600_000 * 3600, tz=timezone.utc)
    return (f"raw/topic={topic}/dt={when:%Y-%m-%d}/hour={when:%H}/"
            f"{topic}-{partition}-{offset:020d}.jsonl.gz")


def _lib(cmd: str) -> None:
    """Run a scripts/lib.sh function call in bash."""
    subprocess.run(["bash", "-c", f"source {ROOT}/scripts/lib.sh && {cmd}"], check=True,
                   capture_output=True, text=True)


class SourceCluster:
    """A throwaway PostgreSQL (as the postgres OS user) with pg_engage and a logical slot."""

    def __init__(self, base: Path, port: int, extra_conf: tuple[str, ...] = ()):
        """Create and start the cluster in base on port, create the extension and the slot."""
        self.dir, self.port = Path(base), port
        conf = " ".join(f"'{c}'" for c in extra_conf)
        _lib(f"cluster_init {self.dir} {port} {conf} && cluster_start {self.dir}")
        self.sql("CREATE EXTENSION pg_engage")
        self.sql("SELECT pg_create_logical_replication_slot('wh_test', 'engage_decoder')")

    def dsn(self, db: str = "postgres") -> str:
        """Return a libpq connection string for db."""
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={db}"

    def sql(self, text: str, db: str = "postgres") -> list[tuple]:
        """Run SQL (autocommit, one statement or several) and return the last result's rows."""
        import psycopg
        with psycopg.connect(self.dsn(db), autocommit=True) as con:
            cur = con.execute(text)
            return cur.fetchall() if cur.description else []

    def decode(self) -> list[str]:
        """Return the record values decoded since the last call (consumes the slot)."""
        return [r[0] for r in self.sql(
            "SELECT data FROM pg_logical_slot_get_changes('wh_test', NULL, NULL)")]

    def stop(self) -> None:
        """Stop the cluster (immediate: it is thrown away) and remove its directory."""
        import shutil
        _lib(f"cluster_stop {self.dir} immediate")
        shutil.rmtree(self.dir, ignore_errors=True)
        if self.dir.parent.name.startswith("engage-wh-"):
            shutil.rmtree(self.dir.parent, ignore_errors=True)


def new_base_dir(prefix: str) -> Path:
    """Return a fresh directory the postgres OS user can reach (pytest's tmp dirs are private)."""
    import tempfile
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


def warehouse_config(kind: str, tmp: Path, src: "SourceCluster | None", name: str):
    """Return a WarehouseConfig: a DuckDB file in tmp, or a new database `name` in src's cluster."""
    from pipeline.warehouse.config import WarehouseConfig
    if kind == "duckdb":
        return WarehouseConfig(type="duckdb", path=str(tmp / f"{name}.duckdb"))
    src.sql(f"DROP DATABASE IF EXISTS {name}")
    src.sql(f"CREATE DATABASE {name}")
    return WarehouseConfig(type="postgres", host="127.0.0.1", port=str(src.port), user="postgres",
                           dbname=name)


def query(cfg, sql: str) -> list[tuple]:
    """Run a query on the warehouse and return its rows (opens and closes a connection)."""
    from pipeline.warehouse.engines import open_warehouse
    wh = open_warehouse(cfg)
    try:
        return wh.execute(sql)
    finally:
        wh.close()


def columns(cfg, table: str) -> list[str]:
    """Return the column names of a warehouse table or view (schema-qualified name)."""
    schema, name = table.split(".")
    return [r[0] for r in query(cfg, f"""select column_name from information_schema.columns
        where table_schema = '{schema}' and table_name = '{name}' order by ordinal_position""")]
