"""Reads for a chart (``include/sql/queries/chart_*.sql``): bars, EMAs at bar closes, 1d days.

Tables are identifiers from the registry; the request is checked against the data so a bad
one says what would work (known timeframes of that asset, periods)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import pandas as pd
import psycopg
from psycopg import sql

from ta_lab2.charts import DEFAULT_BARS, DEFAULT_PERIODS, ChartData, ChartError, ema_table_for
from ta_lab2.registry import BAR_1D, BAR_FAMILY_NAMES, bar_family
from ta_lab2.store import sqlfiles

BAR_COLUMNS = ["timestamp", "time_open", "open", "high", "low", "close", "is_missing_days"]


def _q(name: str, table: str) -> sql.Composed:
    return sql.SQL(sqlfiles.load(f"queries/{name}")).format(table=sql.Identifier(table))  # type: ignore[arg-type]


def timeframes(conn: psycopg.Connection, asset_id: int, family: str) -> list[str]:
    """The timeframes the family's table holds for the asset."""
    table = bar_family(family).table
    return [r[0] for r in conn.execute(_q("chart_timeframes", table), {"id": asset_id}).fetchall()]


def asset_symbol(conn: psycopg.Connection, asset_id: int) -> str | None:
    """The asset's symbol, None when it is not in ``dim_assets``."""
    row = conn.execute(sqlfiles.load("queries/chart_asset"), {"id": asset_id}).fetchone()
    return None if row is None else str(row[1])


def load_chart(conn: psycopg.Connection, asset_id: int, family: str, tf: str,
               periods: Sequence[int] = DEFAULT_PERIODS, n_bars: int = DEFAULT_BARS) -> ChartData:
    """Everything :func:`ta_lab2.charts.chart_figure` draws; :class:`ChartError` for a request
    the warehouse cannot answer (unknown asset or family, timeframe without bars)."""
    if family not in BAR_FAMILY_NAMES:
        raise ChartError(f"family {family!r} is not a bar family ({', '.join(BAR_FAMILY_NAMES)})")
    if n_bars <= 0 or not periods or min(periods) <= 0:
        raise ChartError("bars and periods must be positive")
    fam = bar_family(family)
    symbol = asset_symbol(conn, asset_id)
    if symbol is None:
        raise ChartError(f"asset {asset_id} is not in dim_assets")
    tfs = timeframes(conn, asset_id, family)
    if tf not in tfs:
        raise ChartError(f"asset {asset_id} has no {family} bars at {tf!r} (it has: {', '.join(tfs) or 'none'})")
    name = "chart_bars_snapshot" if fam.is_snapshot else "chart_bars_1d"
    rows = conn.execute(_q(name, fam.table), {"id": asset_id, "tf": tf, "n": n_bars}).fetchall()
    bars = pd.DataFrame(rows, columns=BAR_COLUMNS)
    for c in ("timestamp", "time_open"):
        bars[c] = pd.to_datetime(bars[c], utc=True)
    start = bars["time_open"].iloc[0].to_pydatetime()
    end = bars["timestamp"].iloc[-1].to_pydatetime()
    ema_rows = conn.execute(_q("chart_emas", ema_table_for(family)),
                            {"id": asset_id, "tf": tf, "periods": list(periods), "start": start, "end": end}).fetchall()
    emas = pd.DataFrame(ema_rows, columns=["period", "ts", "ema"])
    emas["ts"] = pd.to_datetime(emas["ts"], utc=True)
    days = [r[0] for r in conn.execute(_q("chart_days_1d", BAR_1D.table),
                                       {"id": asset_id, "start": start - timedelta(days=1), "end": end}).fetchall()]
    missing = [p for p in periods if p not in set(emas["period"])]
    notes = [f"no EMA {p} at {tf} for asset {asset_id}" for p in missing]
    return ChartData(asset_id, symbol, family, tf, bars, emas, days, tuple(periods), notes)
