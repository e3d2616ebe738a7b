"""Reads for the validation checks and the write of their results (``validation_results``).

Every check is one set-based statement (``include/sql/queries/validation_*.sql``) run on the
caller's connection; family tables come in as identifiers from the registry, values as bind
parameters. Nothing here commits: :func:`ta_lab2.ops.validation.run_validation` owns the
read transaction and the separate write transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from ta_lab2.registry import BAR_1D
from ta_lab2.store import sqlfiles

REJECTS_1D = BAR_1D.table + "_rejects"


def _query(name: str, **idents: str | Sequence[str]) -> sql.Composed:
    """``queries/validation_<name>``; a str is one identifier, a sequence a column list."""
    parts = {
        k: sql.Identifier(v) if isinstance(v, str) else sql.SQL(", ").join(map(sql.Identifier, v))
        for k, v in idents.items()
    }
    return sql.SQL(sqlfiles.load(f"queries/validation_{name}")).format(**parts)  # type: ignore[arg-type]


def _rows(
    conn: psycopg.Connection, name: str, params: dict[str, Any], **idents: str | Sequence[str]
) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_query(name, **idents), params).fetchall()


def _one(
    conn: psycopg.Connection, name: str, params: dict[str, Any], **idents: str | Sequence[str]
) -> dict[str, Any]:
    rows = _rows(conn, name, params, **idents)
    assert len(rows) == 1, f"validation_{name} returned {len(rows)} rows"
    return rows[0]


def utc_timestamps(conn: psycopg.Connection) -> None:
    """Render timestamps in UTC for the rest of the transaction (the JSON details carry them as text)."""
    conn.execute("SET LOCAL TIME ZONE 'UTC'")


# -- 1d bars -------------------------------------------------------------------------------
def daily_duplicate_days(conn: psycopg.Connection, asset_id: int) -> list[dict[str, Any]]:
    """Days holding more than one 1d bar: day, n, timestamps."""
    return _rows(conn, "1d_duplicate_days", {"id": asset_id}, bars_1d=BAR_1D.table)


def daily_gaps(conn: psycopg.Connection, asset_id: int) -> list[dict[str, Any]]:
    """Every missing day between the first and last 1d bar with its kind (see the SQL)."""
    return _rows(
        conn, "1d_gaps", {"id": asset_id}, bars_1d=BAR_1D.table, rejects=REJECTS_1D, state=BAR_1D.state_table
    )


def daily_missing_days(conn: psycopg.Connection, asset_id: int) -> dict[str, Any]:
    return _one(conn, "1d_missing_days", {"id": asset_id}, bars_1d=BAR_1D.table)


def daily_bar_seq(conn: psycopg.Connection, asset_id: int) -> dict[str, Any]:
    return _one(conn, "1d_bar_seq", {"id": asset_id}, bars_1d=BAR_1D.table)


def ohlc_consistency(conn: psycopg.Connection, table: str, asset_id: int) -> list[dict[str, Any]]:
    """Per tf of ``table`` (1d or snapshot): n_checked, n_bad, examples."""
    return _rows(conn, "ohlc_consistency", {"id": asset_id}, table=table)


# -- snapshot bars -------------------------------------------------------------------------
def snapshot_ohlcv(
    conn: psycopg.Connection, table: str, asset_id: int, vol_rtol: float
) -> list[dict[str, Any]]:
    """Per tf: completed bars checked against their 1d rows (n_checked, n_bad, examples)."""
    return _rows(
        conn, "snapshot_ohlcv", {"id": asset_id, "vol_rtol": vol_rtol}, table=table, bars_1d=BAR_1D.table
    )


def snapshot_missing_days(conn: psycopg.Connection, table: str, asset_id: int) -> list[dict[str, Any]]:
    return _rows(conn, "snapshot_missing_days", {"id": asset_id}, table=table)


def snapshot_bar_seq(conn: psycopg.Connection, table: str, asset_id: int) -> list[dict[str, Any]]:
    return _rows(conn, "snapshot_bar_seq", {"id": asset_id}, table=table, bars_1d=BAR_1D.table)


def snapshot_incomplete(conn: psycopg.Connection, table: str, asset_id: int) -> list[dict[str, Any]]:
    return _rows(conn, "snapshot_incomplete", {"id": asset_id}, table=table)


# -- EMAs ----------------------------------------------------------------------------------
def ema_values(conn: psycopg.Connection, table: str, asset_id: int) -> dict[str, Any]:
    return _one(conn, "ema_values", {"id": asset_id}, table=table)


def ema_rejects(conn: psycopg.Connection, asset_id: int) -> dict[str, Any]:
    return _one(conn, "ema_rejects", {"id": asset_id})


def ema_row_counts(
    conn: psycopg.Connection, table: str, bar_table: str, asset_id: int
) -> list[dict[str, Any]]:
    """Per (tf, period): seed_ts, n_rows, n_canonical, n_bars (completed bars from the seed)."""
    return _rows(conn, "ema_row_counts", {"id": asset_id}, table=table, bars=bar_table, bars_1d=BAR_1D.table)


# -- cross-asset ---------------------------------------------------------------------------
def primary_keys(conn: psycopg.Connection, tables: Sequence[str]) -> list[dict[str, Any]]:
    """Per table: table_name, exists, pk_columns (None without a validated primary key)."""
    return _rows(conn, "primary_keys", {"tables": list(tables)})


def duplicate_keys(conn: psycopg.Connection, table: str, key: Sequence[str], asset_ids: Sequence[int]) -> int:
    """Rows of ``table`` beyond the first per ``key`` value, for ``asset_ids`` (a full scan)."""
    return int(_one(conn, "duplicate_keys", {"ids": list(asset_ids)}, table=table, key=key)["n_extra"])


# -- results -------------------------------------------------------------------------------
def put_results(conn: psycopg.Connection, run_id: str, rows: Iterable[dict[str, Any]]) -> int:
    """Upsert check results (dicts with the columns of ``validation_results``); returns the count."""
    params = [
        {**r, "run_id": run_id, "details": json.dumps(r.get("details") or {}, default=str)} for r in rows
    ]
    if params:
        with conn.cursor() as cur:
            cur.executemany(sqlfiles.load("queries/validation_results_put"), params)
    return len(params)
