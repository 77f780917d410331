"""Loading landed objects into the raw tables, one class per warehouse engine.

Each engine loads a batch of objects in one transaction: their lines into raw_events and their
keys into raw_objects, under one new load_id. A crash before the commit leaves nothing, so the
next run loads the same objects again; the manifest's primary key refuses a second load of a key.
The record value is never parsed in Python: the engine's JSON reader takes the line apart and
`value` is the JSON string's exact text.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager

from . import ddl
from .config import RAW_SCHEMA, WarehouseConfig
from .source import Source, parse_key

# The members of a landing line DuckDB reads (absent ones are NULL, others are ignored).
_DUCK_COLUMNS = ("{'topic':'VARCHAR','partition':'INTEGER','offset':'BIGINT','timestamp':'BIGINT',"
                 "'timestamp_type':'VARCHAR','key':'VARCHAR','key_base64':'VARCHAR',"
                 "'headers':'JSON','headers_base64':'JSON','ingested_at':'VARCHAR','value':'VARCHAR',"
                 "'value_base64':'VARCHAR'}")


def open_warehouse(cfg: WarehouseConfig):
    """Return the engine object for cfg."""
    return DuckDBWarehouse(cfg) if cfg.type == "duckdb" else PostgresWarehouse(cfg)


def manifest_rows(keys: list[str], counts: dict[str, int], load_id: int) -> list[tuple]:
    """Return raw_objects rows (without loaded_at) for keys."""
    rows = []
    for key in keys:
        p = parse_key(key)
        rows.append((key, p["topic"], p["dt"], p["hour"], p["partition"], p["start_offset"],
                     counts.get(key, 0), load_id))
    return rows


class _RawTables:
    """What both engines do the same way with the raw schema (self.con, self.cfg, execute())."""

    def ensure_raw(self) -> None:
        """Create the raw schema and tables if missing."""
        for stmt in ddl.create_statements():
            self.con.execute(stmt)

    def loaded_keys(self) -> set[str]:
        """Return the keys of the objects already loaded."""
        return {r[0] for r in self.execute(f"select object_key from {ddl.RAW_OBJECTS}")}

    def drop_all(self) -> None:
        """Drop the raw schema and the models' schema (replay)."""
        for schema in (RAW_SCHEMA, self.cfg.schema):
            self.con.execute(f"drop schema if exists {schema} cascade")


class DuckDBWarehouse(_RawTables):
    """A DuckDB file; read_json reads the objects (in place when local, else from a temp copy)."""

    def __init__(self, cfg: WarehouseConfig):
        """Open (create) the database file."""
        import duckdb
        self.cfg = cfg
        self.con = duckdb.connect(cfg.path)
        self.con.execute("set TimeZone = 'UTC'")

    def close(self) -> None:
        """Close the connection (dbt needs the file next)."""
        self.con.close()

    def execute(self, sql: str, params: list | None = None) -> list[tuple]:
        """Run one statement and return its rows."""
        return self.con.execute(sql, params or []).fetchall()

    def insert_rows(self, table: str, rows: list[tuple]) -> None:
        """Insert rows (tuples in column order) into table."""
        if rows:
            marks = ", ".join("?" * len(rows[0]))
            self.con.executemany(f"insert into {table} values ({marks})", rows)

    def load(self, source: Source, keys: list[str]) -> int:
        """Load keys in one transaction; return the number of lines loaded."""
        with _local_copies(source, keys) as (root, paths):
            self.con.execute("begin")
            try:
                n = self._load_files(root, paths, keys)
                self.con.execute("commit")
            except BaseException:
                self.con.execute("rollback")
                raise
        return n

    def _load_files(self, root: str, paths: list[str], keys: list[str]) -> int:
        """Insert the files' lines and the manifest rows; return the line count."""
        load_id = self.execute(f"select coalesce(max(load_id), 0) + 1 from {ddl.RAW_OBJECTS}")[0][0]
        self.con.execute(f"""
            insert into {ddl.RAW_EVENTS}
            select ?, substr(filename, ?), topic, partition, "offset", to_timestamp("timestamp" / 1000.0),
                   timestamp_type, key, key_base64, cast(headers as varchar),
                   cast(headers_base64 as varchar),
                   json_extract_string(headers, '$."engage.id"'),
                   json_extract_string(headers, '$."engage.op"'),
                   json_extract_string(headers, '$."engage.table"'),
                   json_extract_string(headers, '$."engage.lsn"'),
                   cast(ingested_at as timestamptz), value, value_base64, current_timestamp
            from read_json(?, format = 'newline_delimited', compression = 'gzip',
                           filename = true, columns = {_DUCK_COLUMNS})""",
                         [load_id, len(root) + 2, paths])
        counts = dict(self.execute(
            f"select object_key, count(*) from {ddl.RAW_EVENTS} where load_id = ? group by 1",
            [load_id]))
        self.con.executemany(
            f"insert into {ddl.RAW_OBJECTS} values (?, ?, ?, ?, ?, ?, ?, ?, current_timestamp)",
            manifest_rows(keys, counts, load_id))
        return sum(counts.values())


@contextmanager
def _local_copies(source: Source, keys: list[str]):
    """Yield (root, paths) with every key readable at root/key: in place, or copied to a temp dir."""
    local = [source.local_path(k) for k in keys]
    if all(local) and keys:
        root = local[0][: -len(keys[0]) - 1]
        if all(p == f"{root}/{k}" for p, k in zip(local, keys)):
            yield root, local
            return
    tmp = tempfile.mkdtemp(prefix="engage-load-")
    try:
        paths = []
        for key in keys:
            path = os.path.join(tmp, key)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(source.read(key))
            paths.append(path)
        yield tmp, paths
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class PostgresWarehouse(_RawTables):
    """A PostgreSQL database (the Redshift stand-in); lines go in with COPY, SQL takes them apart."""

    def __init__(self, cfg: WarehouseConfig):
        """Connect with the ENGAGE_WH_* settings."""
        import psycopg
        self.cfg = cfg
        self.con = psycopg.connect(host=cfg.host, port=cfg.port, user=cfg.user,
                                   password=cfg.password or None, dbname=cfg.dbname,
                                   autocommit=True)
        self.con.execute("set TimeZone = 'UTC'")

    def close(self) -> None:
        """Close the connection."""
        self.con.close()

    def execute(self, sql: str, params: list | None = None) -> list[tuple]:
        """Run one statement and return its rows (none for statements without a result)."""
        cur = self.con.execute(sql.replace("?", "%s"), params or [])
        return cur.fetchall() if cur.description else []

    def insert_rows(self, table: str, rows: list[tuple]) -> None:
        """Insert rows (tuples in column order) into table."""
        if rows:
            marks = ", ".join(["%s"] * len(rows[0]))
            with self.con.cursor() as cur:
                cur.executemany(f"insert into {table} values ({marks})", rows)

    def load(self, source: Source, keys: list[str]) -> int:
        """Load keys in one transaction; return the number of lines loaded."""
        with self.con.transaction():
            self.con.execute(f"lock table {ddl.RAW_OBJECTS} in exclusive mode")
            load_id = self.execute(
                f"select coalesce(max(load_id), 0) + 1 from {ddl.RAW_OBJECTS}")[0][0]
            self.con.execute("create temp table _engage_lines (object_key text, line text) "
                             "on commit drop")
            with self.con.cursor().copy("copy _engage_lines from stdin") as copy:
                for key in keys:
                    for line in source.lines(key):
                        copy.write_row((key, line))
            self.con.execute(_PG_INSERT.format(events=ddl.RAW_EVENTS), [load_id])
            counts = dict(self.execute(
                f"select object_key, count(*) from {ddl.RAW_EVENTS} where load_id = %s group by 1",
                [load_id]))
            with self.con.cursor() as cur:
                cur.executemany(
                    f"insert into {ddl.RAW_OBJECTS} values (%s, %s, %s, %s, %s, %s, %s, %s, now())",
                    manifest_rows(keys, counts, load_id))
        return sum(counts.values())


_PG_INSERT = """
    insert into {events}
    select %s, object_key, j->>'topic', (j->>'partition')::integer, (j->>'offset')::bigint,
           to_timestamp((j->>'timestamp')::bigint / 1000.0), j->>'timestamp_type',
           j->>'key', j->>'key_base64', (j->'headers')::text, (j->'headers_base64')::text,
           j->'headers'->>'engage.id', j->'headers'->>'engage.op',
           j->'headers'->>'engage.table', j->'headers'->>'engage.lsn',
           (j->>'ingested_at')::timestamptz, j->>'value', j->>'value_base64', now()
    from (select object_key, line::json as j from _engage_lines) as l
"""
