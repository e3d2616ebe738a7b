"""Reads and writes shared by the snapshot and EMA families (family tables by identifier)."""

from __future__ import annotations

import pandas as pd
import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from ta_lab2.store import sqlfiles
from ta_lab2.timeframes import Timeframe

DAILY_TIME_COLS = ("timestamp", "time_open", "time_close", "time_high", "time_low")


def query(name: str, **idents: str) -> sql.Composed:
    return sql.SQL(sqlfiles.load(f"queries/{name}")).format(  # type: ignore[arg-type]
        **{k: sql.Identifier(v) for k, v in idents.items()})


def timeframes(conn: psycopg.Connection) -> list[Timeframe]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(sqlfiles.load("queries/dim_timeframe_all")).fetchall()
    return [Timeframe.from_row(r) for r in rows]


def periods(conn: psycopg.Connection) -> tuple[list[int], list[int]]:
    """(all periods, default periods) of ``dim_period``."""
    rows = conn.execute("SELECT period, is_default FROM dim_period ORDER BY period").fetchall()
    return [r[0] for r in rows], [r[0] for r in rows if r[1]]


DAILY_FRAME_COLS = ["timestamp", "time_open", "time_close", "time_high", "time_low", "open", "high", "low",
                    "close", "volume", "market_cap"]


def typed_daily(df: pd.DataFrame) -> pd.DataFrame:
    """The daily frame's dtypes (UTC instants, float64 prices) and its ``day`` column."""
    for col in DAILY_TIME_COLS:
        df[col] = pd.to_datetime(df[col], utc=True)
    for col in DAILY_FRAME_COLS[5:]:
        df[col] = pd.to_numeric(df[col]).astype("float64")
    df["day"] = df["time_open"].dt.floor("D").dt.tz_localize(None)
    return df


# snapshot row column -> the state column that carries it for the series' newest row (D-engine-9)
SNAPSHOT_ROW_STATE = {"bar_seq": "last_bar_seq", "timestamp": "last_ts", "time_close": "last_time_close",
                      "pos_in_bar": "last_pos_in_bar", "time_open": "last_time_open", "time_high": "last_time_high",
                      "time_low": "last_time_low", "open": "last_open", "high": "last_high", "low": "last_low",
                      "volume": "last_volume", "count_days": "last_count_days",
                      "first_missing_day": "last_first_missing_day", "last_missing_day": "last_last_missing_day"}
# the pure build's tail column (ta_lab2.bars.snapshot.TAIL_COLUMNS) -> its state column: the row's
# columns an append resumes from, and the running volume's compensation
SNAPSHOT_TAIL_STATE = {**{c: s for c, s in SNAPSHOT_ROW_STATE.items() if c not in ("timestamp", "time_close")},
                       "volume_comp": "last_volume_comp"}
