"""Reads and writes shared by the snapshot and EMA families (family tables by identifier)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pandas as pd
import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from ta_lab2.store import io, sqlfiles
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


def daily_bounds(conn: psycopg.Connection, asset_id: int) -> dict[str, Any]:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(sqlfiles.load("queries/bars_1d_bounds"), {"id": asset_id}).fetchone()
    assert row is not None
    return row


def daily_frame(conn: psycopg.Connection, asset_id: int, from_ts: datetime | None) -> pd.DataFrame:
    """Accepted 1d rows from ``from_ts`` on, with ``day`` (naive midnight, the UTC day)."""
    df = io.read_frame(conn, sqlfiles.load("queries/bars_1d_daily_frame"), {"id": asset_id, "from_ts": from_ts})
    return typed_daily(df if not df.empty else pd.DataFrame(columns=DAILY_FRAME_COLS))


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


def state_rows(conn: psycopg.Connection, state_table: str, asset_id: int, query_name: str) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query(query_name, state=state_table), {"id": asset_id}).fetchall()


def put_state(conn: psycopg.Connection, state_table: str, query_name: str, row: dict[str, Any]) -> None:
    conn.execute(query(query_name, state=state_table), row)


def delete_series(conn: psycopg.Connection, table: str, asset_id: int, keys: dict[str, Any],
                  ts_column: str, from_ts: datetime | None) -> int:
    """Delete one series' rows (``keys`` e.g. {'tf': '7D'}) from ``from_ts`` on (None = all)."""
    where = [sql.SQL("id = %s")] + [sql.SQL("{} = %s").format(sql.Identifier(k)) for k in keys]
    params: list[Any] = [asset_id, *keys.values()]
    if from_ts is not None:
        where.append(sql.SQL("{} >= %s").format(sql.Identifier(ts_column)))
        params.append(from_ts)
    stmt = sql.SQL("DELETE FROM {} WHERE ").format(sql.Identifier(table)) + sql.SQL(" AND ").join(where)
    with conn.cursor() as cur:
        cur.execute(stmt, params)
        return cur.rowcount


def delete_states(conn: psycopg.Connection, state_table: str, asset_id: int) -> None:
    conn.execute(sql.SQL("DELETE FROM {} WHERE id = %s").format(sql.Identifier(state_table)), (asset_id,))


def insert_rows(conn: psycopg.Connection, table: str, columns: Sequence[str], df: pd.DataFrame) -> int:
    return io.copy_frame(conn, table, columns, df)
