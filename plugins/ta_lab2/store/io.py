"""Bulk reads and writes: COPY-based staging, frames in and out, advisory locks.

Every write here runs on the caller's connection inside the caller's transaction; nothing
in this module commits. The caller (one refresh step) commits rows and watermark together.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql


def lock_key(*parts: object) -> int:
    """A stable signed 64-bit advisory-lock key for e.g. ('bars.1d', 825)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def advisory_xact_lock(conn: psycopg.Connection, *parts: object, shared: bool = False) -> None:
    """Serialise refreshes of the same (component, asset) until this transaction ends.
    Several locks in one transaction: use :func:`lock_in_order` (deadlock-free)."""
    fn = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
    conn.execute(sql.SQL("SELECT {}(%s)").format(sql.Identifier(fn)), (lock_key(*parts),))


def lock_rank() -> dict[str, int]:
    """THE global lock order (docs/operations/STATE_MANAGEMENT.md §4): ``source`` first, then
    every component in registry order (``bars.1d``, the snapshot families, the EMA families)."""
    from ta_lab2.registry import BAR_FAMILY_NAMES, EMA_FAMILY_NAMES

    names = ("source", *(f"bars.{b}" for b in BAR_FAMILY_NAMES), *(f"emas.{e}" for e in EMA_FAMILY_NAMES))
    return {n: i for i, n in enumerate(names)}


def lock_in_order(conn: psycopg.Connection, locks: Iterable[tuple[str, int, bool]]) -> list[tuple[str, int, bool]]:
    """Take transaction-scoped advisory locks ``(namespace, asset id, shared)`` in the one
    global order (namespace rank, asset id), one round trip. Every transaction of the project
    that holds more than one lock takes them through here, so no two can wait on each other
    in a cycle (a cycle needs one of them to take a lower key after a higher one). A key wanted
    both shared and exclusive is taken exclusive. Returns the locks in the order taken."""
    rank = lock_rank()
    wanted: dict[tuple[str, int], bool] = {}
    for ns, asset, shared in locks:
        if ns not in rank:
            raise ValueError(f"unknown lock namespace {ns!r}; known: {list(rank)}")
        wanted[(ns, int(asset))] = wanted.get((ns, int(asset)), True) and shared
    ordered = sorted(wanted, key=lambda k: (rank[k[0]], k[1]))
    if ordered:  # a function scan of unnest yields (and locks) its rows in array order
        conn.execute("SELECT count(CASE WHEN s THEN pg_advisory_xact_lock_shared(k) ELSE pg_advisory_xact_lock(k) END)"
                     " FROM unnest(%s::bigint[], %s::bool[]) AS u(k, s)",
                     ([lock_key(*k) for k in ordered], [wanted[k] for k in ordered]))
    return [(ns, a, wanted[(ns, a)]) for ns, a in ordered]


def _cell(v: Any) -> Any:
    if v is None or v is pd.NaT:
        return None
    if isinstance(v, float) and np.isnan(v):
        return None
    if isinstance(v, np.generic):
        return v.item()
    return v


def _records(df: pd.DataFrame, columns: Sequence[str]) -> Iterable[tuple[Any, ...]]:
    for row in df[list(columns)].itertuples(index=False, name=None):
        yield tuple(_cell(v) for v in row)


def copy_rows(
    conn: psycopg.Connection, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]
) -> int:
    """COPY ``rows`` (tuples in ``columns`` order) into ``table``; returns the count."""
    stmt = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    n = 0
    with conn.cursor() as cur, cur.copy(stmt) as copy:
        for row in rows:
            copy.write_row(row)
            n += 1
    return n


def _instants_text(s: pd.Series) -> np.ndarray:
    """tz-aware instants as ISO-8601 UTC text with full nanoseconds (None for NaT).

    The same instants pandas' ``to_csv`` would write, formatted by numpy in C: pandas'
    per-value datetime formatting was about half the cost of writing a frame of bars or EMAs.
    """
    values = s.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[ns]")
    text = np.char.add(np.datetime_as_string(values, unit="ns"), "+00:00").astype(object)
    text[np.isnat(values)] = None
    return text


def copy_frame(conn: psycopg.Connection, table: str, columns: Sequence[str], df: pd.DataFrame) -> int:
    """COPY a DataFrame's ``columns`` into ``table`` as CSV (NaN/NaT/None -> NULL).

    Floats are written with Python's shortest round-trip repr, so float64 values arrive
    bit-exact; dict/list cells (jsonb) are JSON-encoded. An empty string would read as NULL:
    no text column of this project may hold one.
    """
    if df.empty:
        return 0
    out = df[list(columns)].copy()
    for col in out.columns:
        if isinstance(out[col].dtype, pd.DatetimeTZDtype):
            out[col] = _instants_text(out[col])
        elif out[col].dtype == object and out[col].map(lambda v: isinstance(v, dict | list)).any():
            out[col] = out[col].map(lambda v: None if v is None else json.dumps(v, default=str))
    text = out.to_csv(index=False, header=False, na_rep="")
    stmt = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    with conn.cursor() as cur, cur.copy(stmt) as copy:
        copy.write(text)
    return len(out)


def stage_like(conn: psycopg.Connection, stage: str, like: str) -> None:
    """A temp table shaped like ``like`` (no constraints), dropped at commit."""
    conn.execute(
        sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP").format(
            sql.Identifier(stage), sql.Identifier(like)
        )
    )
    conn.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(stage)))


def read_frame(conn: psycopg.Connection, query: sql.Composable | str, params: Any = None) -> pd.DataFrame:
    with conn.cursor() as cur:
        cur.execute(query, params)  # type: ignore[arg-type]  # str or composed SQL
        cols = [d.name for d in cur.description or []]
        return pd.DataFrame(cur.fetchall(), columns=cols)
