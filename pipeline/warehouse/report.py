"""What a cycle did, measured in the warehouse before and after `dbt build`.

events staged (rows stg_events gained), duplicates dropped (raw rows the run considered minus
those staged: copies of events already staged or loaded twice), rows changed per current-state
model (rows rewritten: new versions, tombstones), and lag (now minus the newest staged event's
commit time, and minus the newest landed message's Kafka time).
"""
from __future__ import annotations

from datetime import datetime, timezone

from .config import RAW_SCHEMA

STATE_TABLES = ["users", "templates", "audiences", "members", "audience_members", "campaigns",
                "campaign_audience"]


def _scalar(wh, sql: str, default=None):
    """Return the first value of sql's first row, or default if the query fails (no table yet)."""
    try:
        rows = wh.execute(sql)
    except Exception:  # noqa: BLE001 - a missing table on a first run is expected
        _rollback(wh)
        return default
    value = rows[0][0] if rows else None
    return default if value is None else value


def _rollback(wh) -> None:
    """Leave a failed transaction (DuckDB keeps none open; psycopg is in autocommit)."""
    try:
        wh.execute("rollback")
    except Exception:  # noqa: BLE001
        pass


def before(wh) -> dict:
    """Return the watermarks before a build: last staging batch and last staged load."""
    s = wh.cfg.schema
    return {"batch": _scalar(wh, f"select max(_batch) from {s}.stg_events", 0),
            "load_id": _scalar(wh, f"select max(load_id) from {s}.stg_events", 0)}


def after(wh, mark: dict, dead_letter_topic: str = "engage-dead_letter") -> dict:
    """Return the counts of what the build since `mark` did, and the lag."""
    s = wh.cfg.schema
    staged = _scalar(wh, f"select count(*) from {s}.stg_events where _batch > {mark['batch']}", 0)
    considered = _scalar(wh, f"""select count(*) from {RAW_SCHEMA}.raw_events
        where load_id > {mark['load_id']} and value is not null
          and topic <> '{dead_letter_topic}'""", 0)
    changed = {t: _scalar(wh, f"select count(*) from {s}.state_{t} where _batch > {mark['batch']}", 0)
               for t in STATE_TABLES}
    return {"events_staged": staged, "duplicates_dropped": max(considered - staged, 0),
            "rows_changed": sum(changed.values()), "rows_changed_by_table": changed,
            **lag(wh)}


def lag(wh) -> dict:
    """Return seconds from the newest staged commit and the newest Kafka timestamp to now."""
    now = datetime.now(timezone.utc)
    commit = _scalar(wh, f"select max(commit_ts) from {wh.cfg.schema}.stg_events")
    kafka = _scalar(wh, f"select max(kafka_ts) from {RAW_SCHEMA}.raw_events")
    return {"lag_commit_seconds": _seconds(now, commit), "lag_kafka_seconds": _seconds(now, kafka)}


def _seconds(now: datetime, ts) -> float | None:
    """Return now - ts in seconds (None when there is no ts)."""
    if ts is None:
        return None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=timezone.utc)
    return round((now - ts).total_seconds(), 3)
