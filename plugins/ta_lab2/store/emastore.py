"""Reads and writes of the EMA tables: resume points, rows, rejects, state, watermarks."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

import pandas as pd
import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from ta_lab2.store import frames, io, sqlfiles

REJECT_WRITE_COLUMNS = ("alignment_source", "id", "tf", "period", "ts", "ema_value", "violation_type", "bounds", "source_close")


def resume_point(conn: psycopg.Connection, table: str, asset_id: int, tf: str, period: int,
                 before: datetime) -> dict[str, Any]:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(frames.query("ema_resume_point", table=table),
                          {"id": asset_id, "tf": tf, "period": period, "before_ts": before}).fetchone()
    assert row is not None
    return row


def insert_rejects(conn: psycopg.Connection, rejects: pd.DataFrame) -> None:
    if rejects.empty:
        return
    io.stage_like(conn, "_stage_ema_rejects", "ema_rejects")
    io.copy_frame(conn, "_stage_ema_rejects", REJECT_WRITE_COLUMNS, rejects)
    conn.execute(sqlfiles.load("queries/ema_rejects_put"))


@functools.cache  # one per family, asked per asset
def refresh_state_stmt(column: str) -> sql.Composed:
    return sql.SQL(sqlfiles.load("queries/ema_refresh_state_put")).format(column=sql.Identifier(column))  # type: ignore[arg-type]
