"""Export the source database's own rates into the warehouse, for the reconciliation tests.

    python -m pipeline.warehouse.reconcile --source "host=... dbname=engage"   # then:
    dbt build --vars 'reconcile_source: true'

Writes engage_raw.recon_campaign_rates (`engage.campaign_rates(id)` of every campaign) and
engage_raw.recon_campaign_rates_hourly (`engage.campaign_rates_hourly` after a
`SELECT engage.rollup_rates()`), rates as numeric text so no digit is lost on the way; the dbt
tests reconcile_campaign_rates and reconcile_hourly_rates compare the presentation models with
them. Run it when the warehouse has loaded everything the source has committed.
"""
from __future__ import annotations

import argparse
import sys

from .config import RAW_SCHEMA, WarehouseConfig
from .engines import open_warehouse

RATES = f"{RAW_SCHEMA}.recon_campaign_rates"
HOURLY = f"{RAW_SCHEMA}.recon_campaign_rates_hourly"
_RATE_COLS = "open_rate text, click_rate text, click_to_open_rate text, conversion_rate text"


def source_rates(dsn: str) -> tuple[list[tuple], list[tuple]]:
    """Return (campaign rates rows, hourly rows) read from the source database."""
    import psycopg
    with psycopg.connect(dsn, autocommit=True) as con:
        rates = con.execute("""
            SELECT c.campaign_id, r.audience_size, r.opens, r.clicks, r.conversions,
                   r.open_rate::text, r.click_rate::text, r.click_to_open_rate::text,
                   r.conversion_rate::text
            FROM engage.campaigns AS c CROSS JOIN LATERAL engage.campaign_rates(c.campaign_id) AS r
            ORDER BY 1""").fetchall()
        con.execute("SELECT engage.rollup_rates()")
        hourly = con.execute("""
            SELECT campaign_id, hour, new_opens, new_clicks, new_conversions, cum_opens, cum_clicks,
                   cum_conversions, audience_size, open_rate::text, click_rate::text,
                   click_to_open_rate::text, conversion_rate::text
            FROM engage.campaign_rates_hourly ORDER BY 1, 2""").fetchall()
    return rates, hourly


def export(dsn: str, cfg: WarehouseConfig) -> tuple[int, int]:
    """Replace the recon tables with the source's current rates; return the row counts."""
    rates, hourly = source_rates(dsn)
    wh = open_warehouse(cfg)
    try:
        wh.ensure_raw()
        for stmt in (f"drop table if exists {RATES}", f"drop table if exists {HOURLY}",
                     f"create table {RATES} (campaign_id bigint, audience_size bigint, opens bigint, "
                     f"clicks bigint, conversions bigint, {_RATE_COLS})",
                     f"create table {HOURLY} (campaign_id bigint, hour timestamptz, new_opens bigint, "
                     f"new_clicks bigint, new_conversions bigint, cum_opens bigint, cum_clicks bigint, "
                     f"cum_conversions bigint, audience_size bigint, {_RATE_COLS})"):
            wh.execute(stmt)
        wh.insert_rows(RATES, rates)
        wh.insert_rows(HOURLY, hourly)
    finally:
        wh.close()
    return len(rates), len(hourly)


def main(argv: list[str] | None = None) -> int:
    """Command line."""
    p = argparse.ArgumentParser(prog="python -m pipeline.warehouse.reconcile", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", required=True, help="libpq connection string of the source database")
    args = p.parse_args(argv)
    n, h = export(args.source, WarehouseConfig.from_env())
    print(f"exported {n} campaigns and {h} hourly rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
