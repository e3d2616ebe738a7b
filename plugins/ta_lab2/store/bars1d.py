"""Reads and writes of the 1d bar family: source windows, stored rows, state, change feed; every
read is for a BATCH of assets in one query (per-asset arguments as arrays joined by position)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from io import BytesIO
from typing import Any

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from ta_lab2.bars.daily import DAILY_COLUMNS, PRICE_COLUMNS
from ta_lab2.store import io, sqlfiles
from ta_lab2.store.batch import BatchWrites

TIME_COLS = ("timeopen", "timeclose", "timehigh", "timelow", "timestamp", "load_ts")
SOURCE_COLS = ("id", "name", "timeopen", "timeclose", "timehigh", "timelow", "timestamp", "open", "high", "low",
               "close", "volume", "marketcap", "source_file", "load_ts")


def _q(name: str) -> str:
    return sqlfiles.load(f"queries/{name}")


def get_state(conn: psycopg.Connection, asset_id: int) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_q("bars_1d_state_get"), {"id": asset_id}).fetchone()


def put_state(out: BatchWrites, state: dict[str, Any]) -> None:
    out.put_state("cmc_price_bars_1d_state", "bars_1d_state_put", state)  # staged: one upsert per batch


def _arrays(plan: Sequence[tuple[int, datetime | None]]) -> dict[str, list[Any]]:
    return {"ids": [int(a) for a, _ in plan], "from_ts": [f for _, f in plan]}


def source_changes(conn: psycopg.Connection, assets: Sequence[tuple[int, datetime, dict[str, Any] | None]],
                   lookback: timedelta) -> dict[int, dict[str, Any]]:
    """Per asset ``(id, cutoff, state)`` of a batch: first changed / min / max source instant and
    newest ``load_ts`` visible at its cutoff (one query for the batch)."""
    params = {"ids": [int(a) for a, _, _ in assets], "cutoffs": [c for _, c, _ in assets], "lookback": lookback,
              "last_src_ts": [s["last_src_ts"] if s else None for _, _, s in assets],
              "last_load_ts": [s["last_load_ts"] if s else None for _, _, s in assets]}
    with conn.cursor(row_factory=dict_row) as cur:
        return {r["id"]: r for r in cur.execute(_q("bars_1d_source_changes"), params).fetchall()}


def refresh_work(conn: psycopg.Connection, asset_ids: Sequence[int], as_of: datetime, full: bool) -> dict[int, int]:
    """Per asset, the days its refresh will about (re)compute (``queries/refresh_work``): the new
    source days after its 1d watermark, or its whole visible history when it is built from
    scratch, fully rebuilt or has rows loaded at or before its watermark. One query."""
    rows = conn.execute(_q("refresh_work"), {"ids": [int(a) for a in asset_ids], "as_of": as_of,
                                             "full": bool(full)}).fetchall()
    return {int(r[0]): int(r[1]) for r in rows}


def source_windows(conn: psycopg.Connection, plan: Sequence[tuple[int, datetime | None, datetime]]) -> pd.DataFrame:
    """Source rows of every ``(id, from_ts, cutoff)`` (from_ts None = whole history), ordered by
    (id, timestamp). Prices stay raw: a SQL NULL price is None (its column then object), a NaN
    price NaN, so :func:`ta_lab2.bars.daily.build_daily_many` tells them apart.

    Read as CSV through COPY and parsed by pandas' C reader: a full build reads every source row,
    and a row of Python objects per source row cost several times the rest of the step."""
    params = {**_arrays([(a, f) for a, f, _ in plan]), "cutoffs": [c for _, _, c in plan]}
    stmt = sql.SQL("COPY ({}) TO STDOUT (FORMAT csv, HEADER)").format(sql.SQL(_q("bars_1d_source_window").strip()))
    buf = BytesIO()
    with conn.cursor() as cur, cur.copy(stmt, params) as copy:
        for block in copy:
            buf.write(block)
    buf.seek(0)
    floats = ("open", "high", "low", "close", "volume", "marketcap")
    df = pd.read_csv(buf, keep_default_na=False, na_values={c: ["", "NaN"] if c in floats else [""] for c in SOURCE_COLS},
                     dtype={"id": "int64", "name": object, "source_file": object, "price_nulls": "int64",
                            **dict.fromkeys(floats, "float64"), **dict.fromkeys(TIME_COLS, "Int64")})
    for col in TIME_COLS:  # epoch microseconds, NULL -> NaT (int64 min is NaT's bit pattern)
        us = df[col].to_numpy("int64", na_value=np.iinfo(np.int64).min).view("datetime64[us]")
        df[col] = pd.Series(us, index=df.index).dt.tz_localize("UTC")
    nulls = df.pop("price_nulls").to_numpy()
    for bit, col in enumerate(PRICE_COLUMNS):
        isnull = (nulls >> bit) & 1 == 1
        if isnull.any():
            raw = df[col].astype(object)
            raw[isnull] = None
            df[col] = raw
    return df


def stored_windows(conn: psycopg.Connection, plan: Sequence[tuple[int, datetime | None]]) -> pd.DataFrame:
    """Stored 1d rows of every ``(id, from_ts)`` (None = all), ordered by (id, timestamp)."""
    df = io.read_frame(conn, _q("bars_1d_window"), _arrays(plan))
    if df.empty:
        return pd.DataFrame(columns=list(DAILY_COLUMNS))
    for col in ("timestamp", "time_open", "time_close", "time_high", "time_low"):
        df[col] = pd.to_datetime(df[col], utc=True)
    return df


def prev_rows(conn: psycopg.Connection, plan: Sequence[tuple[int, datetime]]) -> pd.DataFrame:
    """Per ``(id, before_ts)``: ``bar_seq`` and ``day`` (UTC day of ``time_open``) of the last
    stored row before ``before_ts``, indexed by id (assets without one are absent)."""
    rows = conn.execute(_q("bars_1d_prev"), {"ids": [int(a) for a, _ in plan],
                                             "before_ts": [b for _, b in plan]}).fetchall()
    day = pd.to_datetime([r[2] for r in rows], utc=True).floor("D").tz_localize(None)
    return pd.DataFrame({"bar_seq": [int(r[1]) for r in rows], "day": day},
                        index=pd.Index([int(r[0]) for r in rows], dtype="int64"))


def stored_rejects(conn: psycopg.Connection, plan: Sequence[tuple[int, datetime | None]]) -> pd.DataFrame:
    """Stored rejects (id, timestamp, reason) of every ``(id, from_ts)`` (None = all)."""
    df = io.read_frame(conn, _q("bars_1d_rejects_window"), _arrays(plan))
    if df.empty:
        return pd.DataFrame({"id": pd.Series(dtype="int64"), "timestamp": pd.Series(dtype="datetime64[us, UTC]"),
                             "reason": pd.Series(dtype=object)})
    df["timestamp"] = pd.to_datetime(df["timestamp"], utc=True)
    return df


def replace_windows(out: BatchWrites, added: pd.DataFrame, updated: pd.DataFrame, deleted: Sequence[tuple[int, Any]],
                    windows: Sequence[tuple[int, datetime | None]], rejects: pd.DataFrame) -> None:
    """Queue for a batch: COPY the rows whose key is not stored (``added``: the whole of a full
    build), upsert the changed stored rows, delete the vanished ``(id, timestamp)``s, rewrite the
    rejects of every ``(id, from_ts)`` window. The caller holds every asset's 1d lock, so an
    absent key stays absent until the flush (deletes, upserts, then COPYs)."""
    for asset_id, ts in deleted:
        out.delete_series("cmc_price_bars_1d", asset_id, {"timestamp": pd.Timestamp(ts).to_pydatetime()},
                          "timestamp", None)
    out.stage_upsert("_stage_1d", "cmc_price_bars_1d", DAILY_COLUMNS, updated, "bars_1d_upsert")
    if not added.empty:
        out.add_rows("cmc_price_bars_1d", DAILY_COLUMNS, added)
    for asset_id, from_ts in windows:
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
