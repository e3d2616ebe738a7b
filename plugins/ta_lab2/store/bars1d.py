"""Reads and writes of the 1d bar family: source window, stored rows, state, change feed."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pandas as pd
import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from ta_lab2.bars.daily import DAILY_COLUMNS
from ta_lab2.store import io, sqlfiles
from ta_lab2.store.batch import BatchWrites

TIME_COLS = ("timeopen", "timeclose", "timehigh", "timelow", "timestamp", "load_ts")


def _q(name: str) -> str:
    return sqlfiles.load(f"queries/{name}")


def get_state(conn: psycopg.Connection, asset_id: int) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_q("bars_1d_state_get"), {"id": asset_id}).fetchone()


def put_state(out: BatchWrites, state: dict[str, Any]) -> None:
    out.execute("bars_1d_state_put", sql.SQL(_q("bars_1d_state_put")), state)  # type: ignore[arg-type]


def source_changes(conn: psycopg.Connection, asset_id: int, cutoff: datetime,
                   state: dict[str, Any] | None, lookback: timedelta) -> dict[str, Any]:
    params = {"id": asset_id, "cutoff": cutoff, "lookback": lookback,
              "last_src_ts": state["last_src_ts"] if state else None,
              "last_load_ts": state["last_load_ts"] if state else None}
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(_q("bars_1d_source_changes"), params).fetchone()
    assert row is not None
    return row


def source_window(conn: psycopg.Connection, asset_id: int, from_ts: datetime | None,
                  cutoff: datetime) -> pd.DataFrame:
    df = io.read_frame(conn, _q("bars_1d_source_window"), {"id": asset_id, "from_ts": from_ts, "cutoff": cutoff})
    for col in TIME_COLS:
        df[col] = pd.to_datetime(df[col], utc=True)
    return df  # prices stay raw: build_daily tells NULL from NaN


def stored_window(conn: psycopg.Connection, asset_id: int, from_ts: datetime | None) -> pd.DataFrame:
    df = io.read_frame(conn, _q("bars_1d_window"), {"id": asset_id, "from_ts": from_ts})
    if df.empty:
        return pd.DataFrame(columns=list(DAILY_COLUMNS))
    for col in ("timestamp", "time_open", "time_close", "time_high", "time_low"):
        df[col] = pd.to_datetime(df[col], utc=True)
    return df


def prev_row(conn: psycopg.Connection, asset_id: int, before_ts: datetime) -> tuple[int, pd.Timestamp] | None:
    row = conn.execute(_q("bars_1d_prev"), {"id": asset_id, "before_ts": before_ts}).fetchone()
    if row is None:
        return None
    return int(row[0]), pd.Timestamp(row[1]).tz_convert("UTC").floor("D").tz_localize(None)


def stored_rejects(conn: psycopg.Connection, asset_id: int, from_ts: datetime | None) -> set[tuple[Any, str]]:
    rows = conn.execute(_q("bars_1d_rejects_window"), {"id": asset_id, "from_ts": from_ts}).fetchall()
    return {(pd.Timestamp(r[1]), r[2]) for r in rows}


def replace_window(out: BatchWrites, asset_id: int, from_ts: datetime | None,
                   changed: pd.DataFrame, deleted_ts: list[Any], rejects: pd.DataFrame) -> None:
    """Queue: upsert changed rows, delete vanished ones, rewrite the window's rejects."""
    for ts in deleted_ts:
        out.delete_series("cmc_price_bars_1d", asset_id, {"timestamp": pd.Timestamp(ts).to_pydatetime()},
                          "timestamp", None)
    out.stage_upsert("_stage_1d", "cmc_price_bars_1d", DAILY_COLUMNS, changed, "bars_1d_upsert")
    out.delete_series("cmc_price_bars_1d_rejects", asset_id, {}, "timestamp", from_ts)
    out.add_rows("cmc_price_bars_1d_rejects", ("id", "timestamp", "reason", "raw"), rejects)


def delete_all(conn: psycopg.Connection, asset_id: int) -> None:
    conn.execute("DELETE FROM cmc_price_bars_1d WHERE id = %s", (asset_id,))


def append_change(out: BatchWrites, asset_id: int, rev: int, first_changed: datetime,
                  rows_changed: int, is_rebuild: bool) -> None:
    out.execute("bars_1d_change_put", sql.SQL(_q("bars_1d_change_put")),  # type: ignore[arg-type]
                {"id": asset_id, "rev": rev, "first_changed_ts": first_changed, "rows_changed": rows_changed,
                 "is_rebuild": is_rebuild})


def changes_since(conn: psycopg.Connection, asset_id: int, since_rev: int) -> tuple[datetime | None, int]:
    """(first changed 1d day after ``since_rev`` or None, newest rev) of the change feed."""
    row = conn.execute(_q("bars_1d_changes_since"), {"id": asset_id, "since_rev": since_rev}).fetchone()
    assert row is not None
    return row[0], int(row[1])
