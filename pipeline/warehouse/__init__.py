"""The warehouse side of the pipeline: raw landing → raw table (loader) → dbt models.

`loader` appends new landing objects to the warehouse's raw table exactly once per object;
`dbt/` holds the dbt project (staging dedupe, current state, presentation); `dbtrun` runs it.
The warehouse is DuckDB (a file, the embedded default) or PostgreSQL (the Redshift stand-in),
chosen by `WarehouseConfig` from the environment (see `config.py`).
"""
