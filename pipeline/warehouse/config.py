"""Where the warehouse is: one set of environment variables for the loader and for dbt.

    ENGAGE_WH_TYPE      duckdb (default) or postgres
    ENGAGE_WH_PATH      DuckDB database file (default ./warehouse.duckdb)
    ENGAGE_WH_HOST, ENGAGE_WH_PORT, ENGAGE_WH_USER, ENGAGE_WH_PASSWORD, ENGAGE_WH_DBNAME
                        PostgreSQL connection (defaults 127.0.0.1, 5432, postgres, '', postgres)
    ENGAGE_WH_SCHEMA    schema of the dbt models (default engage_wh); the raw tables live in
                        engage_raw in both engines

dbt/profiles.yml reads the same variables, so the loader and `dbt build` always agree.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, fields

RAW_SCHEMA = "engage_raw"
_ENV = {
    "type": ("ENGAGE_WH_TYPE", "duckdb"),
    "path": ("ENGAGE_WH_PATH", "warehouse.duckdb"),
    "host": ("ENGAGE_WH_HOST", "127.0.0.1"),
    "port": ("ENGAGE_WH_PORT", "5432"),
    "user": ("ENGAGE_WH_USER", "postgres"),
    "password": ("ENGAGE_WH_PASSWORD", ""),
    "dbname": ("ENGAGE_WH_DBNAME", "postgres"),
    "schema": ("ENGAGE_WH_SCHEMA", "engage_wh"),
}


@dataclass(frozen=True)
class WarehouseConfig:
    """Connection settings of the warehouse (see the module docstring for the variables)."""

    type: str = "duckdb"
    path: str = "warehouse.duckdb"
    host: str = "127.0.0.1"
    port: str = "5432"
    user: str = "postgres"
    password: str = ""
    dbname: str = "postgres"
    schema: str = "engage_wh"

    @classmethod
    def from_env(cls, env: dict | None = None) -> "WarehouseConfig":
        """Read the ENGAGE_WH_* variables (from env, default os.environ)."""
        env = os.environ if env is None else env
        cfg = cls(**{k: env.get(var, default) for k, (var, default) in _ENV.items()})
        if cfg.type not in ("duckdb", "postgres"):
            raise ValueError(f"ENGAGE_WH_TYPE must be duckdb or postgres, not {cfg.type!r}")
        return cfg

    def to_env(self) -> dict[str, str]:
        """Return the ENGAGE_WH_* variables describing this warehouse (for dbt's profile)."""
        env = {_ENV[f.name][0]: str(getattr(self, f.name)) for f in fields(self)}
        if self.type == "duckdb":
            env["ENGAGE_WH_PATH"] = os.path.abspath(self.path)
        return env

    def describe(self) -> str:
        """Return a short human-readable location of the warehouse (no password)."""
        if self.type == "duckdb":
            return f"duckdb:{os.path.abspath(self.path)}"
        return f"postgres://{self.user}@{self.host}:{self.port}/{self.dbname}"
