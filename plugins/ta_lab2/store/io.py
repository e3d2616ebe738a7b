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


PG_EPOCH_US = np.datetime64("2000-01-01T00:00:00", "us")
PG_EPOCH_DAY = np.datetime64("2000-01-01", "D")
BINARY_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8
_FIXED = {"integer": ">i4", "bigint": ">i8", "smallint": ">i2", "double precision": ">f8", "boolean": "?",
          "timestamp with time zone": ">i8", "date": ">i4"}
_INT_RANGE = {"integer": 2**31, "bigint": 2**63, "smallint": 2**15}


def column_types(conn: psycopg.Connection, table: str) -> dict[str, str]:
    """``{column: format_type}`` of ``table`` (a temp table too: it resolves on this session)."""
    rows = conn.execute("SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
                        " WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped", (table,)).fetchall()
    return {str(name): str(kind) for name, kind in rows}


class _NotBinary(Exception):
    """A column the binary encoder does not lay out (the CSV path writes it)."""


def _binary_column(s: pd.Series, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(values in the wire type, NULL mask) of one column; text values as a bytes array."""
    if kind == "timestamp with time zone":  # before any to_numpy(): a tz-aware one boxes every value
        if not isinstance(s.dtype, pd.DatetimeTZDtype):
            raise _NotBinary(kind)
        ns = s.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[ns]")
        null = np.isnat(ns)
        if (ns[~null].view("int64") % 1000).any():  # sub-microsecond: the server's text rounding decides
            raise _NotBinary(kind)
        return np.where(null, 0, (ns.astype("datetime64[us]") - PG_EPOCH_US).view("int64")), null
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        raise _NotBinary(kind)
    values = s.to_numpy()
    if kind == "text":
        codes, uniques = pd.factorize(values)  # few distinct texts (tf): check and encode each once
        if not all(isinstance(u, str) for u in uniques):
            raise _NotBinary(kind)
        encoded = np.array([u.encode("utf-8") for u in uniques] + [b""], dtype=bytes)
        return encoded[codes], codes < 0  # code -1 (NULL) takes the trailing b""
    if kind not in _FIXED:
        raise _NotBinary(kind)
    if kind == "date":
        days = pd.to_datetime(s).to_numpy("datetime64[ns]") if values.dtype == object else values
        if days.dtype.kind != "M":
            raise _NotBinary(kind)
        null = np.isnat(days)
        return np.where(null, 0, (days.astype("datetime64[D]") - PG_EPOCH_DAY).view("int64")), null
    if values.dtype == object:
        null = pd.isna(values)
        values = np.where(null, 0, values)
    else:
        null = np.isnan(values) if values.dtype.kind == "f" else np.zeros(len(values), bool)
    if kind == "double precision":
        return values.astype("float64"), null
    if kind == "boolean":
        if values.dtype.kind not in "bO" or (values.dtype == object and not all(isinstance(v, bool | np.bool_) for v in values[~null])):
            raise _NotBinary(kind)
        return values.astype(bool), null
    ints = np.where(null, 0, values)
    if ints.dtype.kind == "f" and (ints != np.floor(ints)).any():
        raise ValueError(f"non-integral value for an {kind} column")
    ints = ints.astype("int64")
    bound = _INT_RANGE[kind]
    if len(ints) and (ints.min() < -bound or ints.max() >= bound):
        raise ValueError(f"value out of range for an {kind} column")
    return ints, null


def copy_frame_binary(conn: psycopg.Connection, table: str, columns: Sequence[str], df: pd.DataFrame,
                      types: dict[str, str] | None = None) -> int:
    """COPY a DataFrame's ``columns`` into ``table`` in PostgreSQL's binary format, laid out by
    numpy: no per-value text (formatting a full build as CSV cost more than the COPY itself).

    Same values as :func:`copy_frame` (NaN/NaT/None -> NULL, float64 bit-exact). Rows are
    grouped by their NULL pattern and text lengths so that each group is one fixed-width
    record array (row order inside the COPY is not preserved; a table has none). Raises
    :class:`_NotBinary` for a column type it does not lay out.
    """
    kinds = types if types is not None else column_types(conn, table)
    encoded = [_binary_column(df[c], kinds.get(c, "")) for c in columns]  # unknown column: _NotBinary
    n = len(df)
    groups = _layout_groups([null for _, null in encoded]
                            + [np.char.str_len(v) for v, _ in encoded if v.dtype.kind == "S"], n) if n else []
    stmt = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT binary)").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns)))
    with conn.cursor() as cur, cur.copy(stmt) as copy:
        copy.write(BINARY_HEADER)
        for pick in groups:
            copy.write(_group_records(encoded, columns, kinds, pick).tobytes())
        copy.write(b"\xff\xff")
    return n


def _layout_groups(parts: list[np.ndarray], n: int) -> list[np.ndarray]:
    """Row indices per distinct combination of ``parts`` (NULL masks, text lengths); only the
    parts that vary are compared, so the usual all-alike frame costs no sort."""
    varying = [p.astype(np.int64) for p in parts if len(p) and p.min() != p.max()]
    if not varying:
        return [np.arange(n)]
    code = np.zeros(n, np.int64)
    for part in varying:  # mixed radix; re-numbered densely (a sort) only when it grows large
        code = code * (int(part.max()) + 1) + part
        if code.max() >= 1 << 20:
            code = np.unique(code, return_inverse=True)[1].reshape(-1).astype(np.int64)
    present = np.flatnonzero(np.bincount(code))
    lookup = np.zeros(int(code.max()) + 1, np.int64)
    lookup[present] = np.arange(len(present))
    code, count = lookup[code], len(present)
    if count <= 16:
        return [np.flatnonzero(code == g) for g in range(count)]
    order = np.argsort(code, kind="stable")
    starts = np.searchsorted(code[order], np.arange(count + 1))
    return [order[starts[g]:starts[g + 1]] for g in range(count)]


def _group_records(encoded: list[tuple[np.ndarray, np.ndarray]], columns: Sequence[str], kinds: dict[str, str],
                   pick: np.ndarray) -> np.ndarray:
    """One fixed-width record per picked row: field count, then (length, value) per column."""
    first = pick[0]
    fields: list[tuple[str, str]] = [("_n", ">i2")]
    widths: list[int] = []
    for i, (values, null) in enumerate(encoded):
        fields.append((f"l{i}", ">i4"))
        if null[first]:
            widths.append(-1)
            continue
        dtype = f"S{len(values[first])}" if values.dtype.kind == "S" else _FIXED[kinds[columns[i]]]
        widths.append(np.dtype(dtype).itemsize)
        if widths[-1]:
            fields.append((f"v{i}", dtype))
    rec = np.empty(len(pick), dtype=np.dtype(fields))
    rec["_n"] = len(columns)
    for i, (values, _) in enumerate(encoded):
        rec[f"l{i}"] = widths[i]
        if widths[i] > 0:
            rec[f"v{i}"] = values[pick]
    return rec


def copy_frame(conn: psycopg.Connection, table: str, columns: Sequence[str], df: pd.DataFrame) -> int:
    """COPY a DataFrame's ``columns`` into ``table``: binary (:func:`copy_frame_binary`) when
    every column's type has a binary layout here, else as CSV (:func:`copy_frame_csv`)."""
    if df.empty:
        return 0
    try:
        return copy_frame_binary(conn, table, columns, df)
    except _NotBinary:  # raised while encoding, before the COPY starts
        return copy_frame_csv(conn, table, columns, df)


def copy_frame_csv(conn: psycopg.Connection, table: str, columns: Sequence[str], df: pd.DataFrame) -> int:
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
