"""The warehouse's raw tables, the same in DuckDB and PostgreSQL (and, with COPY, in Redshift).

`raw_events`: one row per landed line (Kafka message), appended by the loader and never updated.
`value` is the event record's exact text; the headers are kept whole (`headers`, JSON text) and as
columns. `load_id` numbers the loads (1, 2, ...): it is the arrival watermark of the dbt staging
model, so an object landed late for an old hour is simply part of a later load.
`raw_objects`: the manifest, one row per loaded object key: an object is loaded exactly once.
"""
from __future__ import annotations

from .config import RAW_SCHEMA

RAW_EVENTS = f"{RAW_SCHEMA}.raw_events"
RAW_OBJECTS = f"{RAW_SCHEMA}.raw_objects"

# (name, type) in table order; text is varchar in DuckDB and text in PostgreSQL.
EVENT_COLUMNS = [
    ("load_id", "bigint not null"),
    ("object_key", "text not null"),
    ("topic", "text not null"),
    ("kafka_partition", "integer not null"),
    ("kafka_offset", "bigint not null"),
    ("kafka_ts", "timestamptz"),
    ("timestamp_type", "text"),
    ("msg_key", "text"),
    ("msg_key_base64", "text"),
    ("headers", "text"),
    ("headers_base64", "text"),
    ("event_id", "text"),
    ("op", "text"),
    ("table_name", "text"),
    ("lsn", "text"),
    ("ingested_at", "timestamptz"),
    ("value", "text"),
    ("value_base64", "text"),
    ("loaded_at", "timestamptz not null"),
]

OBJECT_COLUMNS = [
    ("object_key", "text not null primary key"),
    ("topic", "text not null"),
    ("dt", "date not null"),
    ("hour", "integer not null"),
    ("kafka_partition", "integer not null"),
    ("start_offset", "bigint not null"),
    ("records", "bigint not null"),
    ("load_id", "bigint not null"),
    ("loaded_at", "timestamptz not null"),
]


def create_statements() -> list[str]:
    """Return the statements creating the raw schema and tables if missing."""
    def table(name: str, cols: list[tuple[str, str]]) -> str:
        body = ",\n    ".join(f"{c} {t}" for c, t in cols)
        return f"create table if not exists {name} (\n    {body}\n)"
    return [f"create schema if not exists {RAW_SCHEMA}",
            table(RAW_EVENTS, EVENT_COLUMNS), table(RAW_OBJECTS, OBJECT_COLUMNS)]

