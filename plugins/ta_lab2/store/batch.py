"""Set-based reads and writes for a BATCH of assets on one connection (ARCHITECTURE "Data path").

:class:`BatchReads` answers the per-asset questions a refresh step asks (daily grid, bounds,
change feed, state rows, timeframes, periods) from ONE query per kind for all assets of the
batch, cached for the batch's lifetime (the CLI reuses it across components; a 1d step
invalidates what it changes). :class:`BatchWrites` collects what the steps write and
:meth:`BatchWrites.flush` sends it set-based: one ``DELETE ... USING unnest(...)`` per table
for the superseded series, one ``COPY`` per output table, one staged upsert of EMA rejects,
one pipelined upsert per state table. Nothing here commits.

Order inside a flush (deletes, then rows, then states) equals the per-series order of the
one-by-one path because every series of a batch has its own key (asset, tf[, period]).
"""

from __future__ import annotations

import numbers
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import partial
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from ta_lab2.store import frames, io, sqlfiles
from ta_lab2.timeframes import Timeframe

DAILY_COLS = frames.DAILY_FRAME_COLS


class Tail(NamedTuple):
    """One asset's grid days after a cut (``is_new``) and up to two days before them."""

    ts: np.ndarray  # time_close, naive UTC datetime64[ns]
    days: np.ndarray  # the grid day (UTC day of time_open), datetime64[D]
    close: np.ndarray  # float64
    is_new: np.ndarray  # bool: a day after the cut (the others are the up to two before it)
    first_day: np.datetime64  # the asset's first grid day


def utc_ns(values: list[Any]) -> np.ndarray:
    """Tz-aware instants as naive UTC ``datetime64[ns]``."""
    if not values:
        return np.array([], dtype="datetime64[ns]")
    return pd.DatetimeIndex(values).tz_convert("UTC").tz_localize(None).as_unit("ns").to_numpy()


NAT = np.iinfo(np.int64).min  # numpy's NaT as an int64: what a NULL instant or day reads as


class Columns:
    """Rows of a query as one numpy array per column (:meth:`BatchReads.state_columns`):
    instants ``datetime64[ns]`` (naive UTC, NULL -> NaT), days ``datetime64[D]``, floats
    ``float64`` (NULL -> NaN, remembered in :attr:`nulls`), integers ``int64`` (``float64``
    with NaN when a NULL occurs), text and the rest ``object``. The driver never builds a
    datetime per value: instants travel as epoch microseconds (5x cheaper to fetch, and no
    per-value conversion after)."""

    def __init__(self, data: dict[str, np.ndarray], nulls: dict[str, np.ndarray]) -> None:
        self.data, self.nulls = data, nulls

    def __len__(self) -> int:
        return len(next(iter(self.data.values()))) if self.data else 0

    def __getitem__(self, column: str) -> np.ndarray:
        return self.data[column]

    def take(self, index: np.ndarray) -> Columns:
        return Columns({k: v[index] for k, v in self.data.items()}, {k: v[index] for k, v in self.nulls.items()})

    def row(self, j: int) -> dict[str, Any]:
        """Row ``j`` as the dict-row read gives it (None for NULL, tz-aware instants)."""
        out: dict[str, Any] = {}
        for name, values in self.data.items():
            v = values[j]
            if name in self.nulls and self.nulls[name][j]:
                out[name] = None
            elif values.dtype.kind == "M":
                out[name] = None if np.isnat(v) else (pd.Timestamp(v, tz="UTC") if values.dtype == "datetime64[ns]"
                                                      else v.astype(object))
            else:
                out[name] = v.item() if isinstance(v, np.generic) else v
        return out


_INSTANT = "timestamp with time zone"
# (state table, query) -> (the query's column names, their kinds): fixed by the SQL file's SELECT
# list and the schema, so asked once per process
_SHAPES: dict[tuple[str, str], tuple[list[str], dict[str, str]]] = {}


def _column_expr(name: str, kind: str) -> sql.Composable:
    col = sql.SQL("q.{}").format(sql.Identifier(name))
    if kind == _INSTANT:  # exact: extract(epoch) is numeric
        return sql.SQL("coalesce((extract(epoch FROM {c}) * 1000000)::int8, {nat}) AS {n}").format(
            c=col, nat=sql.Literal(NAT), n=sql.Identifier(name))
    if kind == "date":
        return sql.SQL("coalesce(({c} - DATE '1970-01-01')::int8, {nat}) AS {n}").format(
            c=col, nat=sql.Literal(NAT), n=sql.Identifier(name))
    return col


def _to_array(values: tuple[Any, ...], kind: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(array, NULL mask or None) of one fetched column (see :class:`Columns`)."""
    if kind == _INSTANT:
        return np.array(values, dtype=np.int64).view("datetime64[us]").astype("datetime64[ns]"), None
    if kind == "date":
        return np.array(values, dtype=np.int64).view("datetime64[D]"), None
    if kind in ("double precision", "integer", "bigint", "smallint"):
        if None not in values:  # a scan in C; the mask only when a NULL is there
            return np.array(values, dtype=np.float64 if kind == "double precision" else np.int64), None
        return np.array(values, dtype=np.float64), np.fromiter((v is None for v in values), dtype=bool,
                                                               count=len(values))
    if kind == "boolean":
        return np.array(values, dtype=bool), None
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out, None


def _widened(state_table: str, query_name: str) -> sql.Composed:
    """``queries/<query_name>`` (one asset's state rows) widened to the batch: its
    ``WHERE id = %(id)s`` becomes ``WHERE id = ANY(%(ids)s)``."""
    one = sqlfiles.load(f"queries/{query_name}")
    text = one.replace("WHERE id = %(id)s", "WHERE id = ANY(%(ids)s)")
    if text == one:
        raise ValueError(f"query {query_name} has no 'WHERE id = %(id)s' to widen to the batch")
    return sql.SQL(text).format(state=sql.Identifier(state_table))  # type: ignore[arg-type]


class BatchReads:
    """Per-asset reads of one batch, each fetched once for every asset of the batch."""

    def __init__(self, conn: psycopg.Connection, asset_ids: Sequence[int]) -> None:
        self.conn = conn
        self.ids = sorted(set(asset_ids))
        self._tfs: list[Timeframe] | None = None
        self._periods: tuple[list[int], list[int]] | None = None
        self._daily: dict[int, pd.DataFrame] | None = None
        self._daily_read: set[int] = set()  # assets whose whole grid was read (maybe empty)
        self._daily_ids: list[int] | None = None  # want_daily
        self.memo: dict[Any, Any] = {}  # values a step derives from the 1d rows (forgotten with them)
        self._bounds: dict[int, dict[str, Any]] | None = None
        self._feed: dict[int, list[tuple[int, datetime]]] | None = None
        self._since: dict[tuple[int, int], tuple[datetime | None, int]] = {}
        self._states: dict[tuple[str, str], dict[int, list[dict[str, Any]]]] = {}
        self._columns: dict[tuple[str, str], Columns] = {}

    def invalidate(self) -> None:
        """Forget everything derived from the 1d table (after a 1d step wrote)."""
        self._daily = self._bounds = self._feed = None
        self._daily_read, self._daily_ids = set(), None
        self.memo.clear()
        self._since.clear()
        self.forget_states()

    def forget_states(self) -> None:
        """Forget the state rows read (after a component wrote its state table)."""
        self._states.clear()
        self._columns.clear()

    def timeframes(self) -> list[Timeframe]:
        if self._tfs is None:
            self._tfs = frames.timeframes(self.conn)
        return self._tfs

    def periods(self) -> tuple[list[int], list[int]]:
        if self._periods is None:
            self._periods = frames.periods(self.conn)
        return self._periods

    def bounds(self, asset_id: int) -> dict[str, Any]:
        """First/last accepted 1d instant and the row count, plus the first/last ``time_open``
        (their UTC days are the grid's first and last days)."""
        if self._bounds is None:
            rows = self.conn.execute(
                'SELECT id, min("timestamp"), max("timestamp"), count(*), min(time_open), max(time_open) '
                "FROM cmc_price_bars_1d WHERE id = ANY(%s) GROUP BY id", (self.ids,)).fetchall()
            self._bounds = {r[0]: {"first_ts": r[1], "last_ts": r[2], "n": int(r[3]), "first_open": r[4],
                                   "last_open": r[5]} for r in rows}
        return self._bounds.get(asset_id, {"first_ts": None, "last_ts": None, "n": 0, "first_open": None,
                                           "last_open": None})

    def want_daily(self, asset_ids: Sequence[int]) -> None:
        """Only these assets' whole daily grids will be asked for (the EMA step knows after
        planning): the first :meth:`daily_frame` reads just them instead of the whole batch."""
        self._daily_ids = sorted(set(asset_ids))

    def daily_frame(self, asset_id: int, from_ts: datetime | None = None) -> pd.DataFrame:
        """The asset's accepted 1d rows from ``from_ts`` on (None: all), typed by
        :func:`ta_lab2.store.frames.typed_daily` (with ``day``, the UTC day of ``time_open``)."""
        if asset_id not in self._daily_read:
            wanted = [a for a in (self.ids if self._daily_ids is None else self._daily_ids) if a not in self._daily_read]
            got = self._read_daily(sorted({*wanted, asset_id}))
            self._daily = {**(self._daily or {}), **got}
            self._daily_read.update(wanted, [asset_id])
        df = (self._daily or {}).get(asset_id)
        if df is None:
            df = frames.typed_daily(pd.DataFrame(columns=DAILY_COLS))
        if from_ts is not None:
            df = df[df["timestamp"] >= pd.Timestamp(from_ts)].reset_index(drop=True)
        return df

    def daily_rows_from(self, from_ts: dict[int, datetime]) -> pd.DataFrame:
        """The rows of ``daily_frame(a, from_ts[a])`` of every asset named, end to end with an
        ``id`` column (sorted by id, timestamp): ONE query reading only those rows (the append
        path's new days), or the whole-history read's rows when it was made."""
        key = ("daily_rows_from", tuple(sorted((a, pd.Timestamp(t)) for a, t in from_ts.items())))
        if key not in self.memo:  # the snapshot families of one CLI batch ask for the same new days
            self.memo[key] = self._daily_rows_from(from_ts)
        return self.memo[key].copy()

    def _daily_rows_from(self, from_ts: dict[int, datetime]) -> pd.DataFrame:
        if from_ts and all(a in self._daily_read for a in from_ts):
            parts = [self.daily_frame(a, ts).assign(id=a) for a, ts in sorted(from_ts.items())]
            return pd.concat(parts, ignore_index=True) if parts else frames.typed_daily(
                pd.DataFrame(columns=["id", *DAILY_COLS]))
        cols = ", ".join(f'd."{c}"' for c in DAILY_COLS)
        # one primary-key range scan per asset (OFFSET 0: see queries/bars_1d_window.sql)
        rows = io.read_frame(self.conn, f"SELECT k.id, {cols} FROM unnest(%s::integer[], %s::timestamptz[]) "
                                        "AS k(id, from_ts) CROSS JOIN LATERAL (SELECT * FROM cmc_price_bars_1d "
                                        'WHERE id = k.id AND "timestamp" >= k.from_ts OFFSET 0) AS d '
                                        'ORDER BY k.id, d."timestamp"',
                             (list(from_ts), [pd.Timestamp(t).to_pydatetime() for t in from_ts.values()]))
        return frames.typed_daily(rows if not rows.empty else pd.DataFrame(columns=["id", *DAILY_COLS]))

    def _read_daily(self, ids: list[int]) -> dict[int, pd.DataFrame]:
        cols = ", ".join(f'"{c}"' for c in DAILY_COLS)
        all_rows = io.read_frame(self.conn, f"SELECT id, {cols} FROM cmc_price_bars_1d WHERE id = ANY(%s) "
                                            'ORDER BY id, "timestamp"', (ids,))
        if all_rows.empty:
            return {}
        return self._split_by_id(frames.typed_daily(all_rows))

    @staticmethod
    def _split_by_id(typed: pd.DataFrame) -> dict[int, pd.DataFrame]:
        """A typed daily frame with an ``id`` column (sorted by id, timestamp), per asset."""
        ids = typed.pop("id").to_numpy()
        cuts = [0, *(np.flatnonzero(ids[1:] != ids[:-1]) + 1).tolist(), len(ids)]
        return {int(ids[a]): typed.iloc[a:b].reset_index(drop=True) for a, b in zip(cuts, cuts[1:], strict=False)}

    def changes_since(self, asset_id: int, since_rev: int) -> tuple[datetime | None, int]:
        """As ``bars_1d_changes_since``: (first changed day after ``since_rev``, newest rev)."""
        if self._feed is None:
            feed: dict[int, list[tuple[int, datetime]]] = defaultdict(list)
            for r in self.conn.execute("SELECT id, rev, first_changed_ts FROM cmc_price_bars_1d_changes "
                                       "WHERE id = ANY(%s)", (self.ids,)).fetchall():
                feed[r[0]].append((int(r[1]), r[2]))
            self._feed = dict(feed)
        key = (asset_id, since_rev)
        if key not in self._since:  # asked once per series: the feed grows by a rev per run
            entries = self._feed.get(asset_id, [])
            later = [ts for rev, ts in entries if rev > since_rev and ts is not None]
            self._since[key] = (min(later) if later else None), max((rev for rev, _ in entries), default=0)
        return self._since[key]

    def tail(self, cuts: dict[int, datetime]) -> dict[int, Tail]:
        """Per asset, the grid days after ``cuts[asset]`` (``queries/bars_1d_tail``): one
        index range scan per asset, never its history."""
        key = ("tail", tuple(sorted(cuts.items())))
        if key in self.memo:  # the EMA families of one batch ask for the same cuts (CLI session)
            return dict(self.memo[key])
        ids = sorted(cuts)
        rows = self.conn.execute(sqlfiles.load("queries/bars_1d_tail"),
                                 {"ids": ids, "cuts": [cuts[a] for a in ids]}).fetchall()
        cols: list[tuple[Any, ...]] = list(zip(*rows, strict=True)) if rows else [() for _ in range(6)]
        row_ids = np.array(cols[0], dtype=np.int64)
        ts_all = utc_ns(list(cols[1]))  # one conversion for the batch, sliced per asset below
        days_all = utc_ns(list(cols[2])).astype("datetime64[D]")
        close_all = np.array(cols[3], dtype=np.float64)
        new_all = np.array(cols[4], dtype=bool)
        first_all = utc_ns(list(cols[5])).astype("datetime64[D]")
        lo = np.searchsorted(row_ids, ids, side="left")  # rows come ordered by id
        hi = np.searchsorted(row_ids, ids, side="right")
        out = {}
        for a, i, j in zip(ids, lo.tolist(), hi.tolist(), strict=True):
            first = first_all[i] if j > i else np.datetime64("NaT", "D")
            out[a] = Tail(ts_all[i:j], days_all[i:j], close_all[i:j], new_all[i:j], first)
        self.memo[key] = out
        return dict(out)

    def state_rows(self, state_table: str, query_name: str, asset_id: int) -> list[dict[str, Any]]:
        """The rows ``query_name`` returns for one asset, read for all assets at once."""
        key = (state_table, query_name)
        if key not in self._states:
            stmt = _widened(state_table, query_name)
            by_id: dict[int, list[dict[str, Any]]] = defaultdict(list)
            # binary results: the same Python values, a third cheaper to load (timestamps, floats)
            with self.conn.cursor(row_factory=dict_row, binary=True) as cur:
                for row in cur.execute(stmt, {"ids": self.ids}).fetchall():
                    by_id[row["id"]].append(row)
            self._states[key] = dict(by_id)
        return self._states[key].get(asset_id, [])

    def state_columns(self, state_table: str, query_name: str) -> Columns:
        """Every row ``query_name`` returns for the batch's assets (its ``WHERE id = %(id)s``
        widened to the batch), as :class:`Columns` ordered by id; one query, cached like
        :meth:`state_rows`. Column kinds are the state table's."""
        key = (state_table, query_name)
        if key not in self._columns:
            inner = _widened(state_table, query_name)
            if key not in _SHAPES:  # the query's columns (its SELECT list) and their kinds
                with self.conn.cursor() as cur:
                    cur.execute(sql.SQL("SELECT * FROM ({}) AS q LIMIT 0").format(inner), {"ids": []})
                    _SHAPES[key] = ([d.name for d in cur.description or []], io.column_types(self.conn, state_table))
            names, kinds = _SHAPES[key]
            with self.conn.cursor(binary=True) as cur:
                exprs = sql.SQL(", ").join(_column_expr(n, kinds.get(n, "")) for n in names)
                rows = cur.execute(sql.SQL("SELECT {} FROM ({}) AS q ORDER BY q.id").format(exprs, inner),
                                   {"ids": self.ids}).fetchall()
            cols: list[tuple[Any, ...]] = list(zip(*rows, strict=True)) if rows else [() for _ in names]
            data, nulls = {}, {}
            for name, values in zip(names, cols, strict=True):
                data[name], mask = _to_array(values, kinds.get(name, ""))
                if mask is not None:
                    nulls[name] = mask
            self._columns[key] = Columns(data, nulls)
        return self._columns[key]


class BatchWrites:
    """What the steps of one batch write, sent set-based by :meth:`flush`."""

    def __init__(self) -> None:
        # (table, key columns, ts column) -> [(asset, *keys, from_ts | None)]
        self.deletes: dict[tuple[str, tuple[str, ...], str], list[tuple[Any, ...]]] = defaultdict(list)
        self.rows: dict[tuple[str, tuple[str, ...]], list[pd.DataFrame]] = defaultdict(list)
        # (stage, like, columns, upsert query) -> frames: one staged COPY + one upsert each
        self.upserts: dict[tuple[str, str, tuple[str, ...], str], list[pd.DataFrame]] = defaultdict(list)
        self.ema_rejects: list[pd.DataFrame] = []
        self.state_deletes: dict[tuple[str, tuple[str, ...]], list[tuple[Any, ...]]] = defaultdict(list)
        self.state_puts: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        self.state_frames: dict[tuple[str, str], list[pd.DataFrame]] = defaultdict(list)
        self.statements: dict[str, tuple[sql.Composed, list[dict[str, Any]]]] = {}
        self.after_rows: list[Callable[[psycopg.Connection], None]] = []

    def delete_series(self, table: str, asset_id: int, keys: dict[str, Any], ts_column: str,
                      from_ts: datetime | None) -> None:
        """Rows of one series (``keys`` e.g. {'tf': '7D'}) from ``from_ts`` on (None = all)."""
        self.deletes[(table, tuple(keys), ts_column)].append((asset_id, *keys.values(), from_ts))

    def add_rows(self, table: str, columns: Sequence[str], df: pd.DataFrame) -> None:
        if not df.empty:
            self.rows[(table, tuple(columns))].append(df)

    def stage_upsert(self, stage: str, like: str, columns: Sequence[str], df: pd.DataFrame, query_name: str) -> None:
        """Rows for ``query_name`` (an ``INSERT … SELECT FROM stage ON CONFLICT``)."""
        if not df.empty:
            self.upserts[(stage, like, tuple(columns), query_name)].append(df)

    def put_state(self, state_table: str, query_name: str, row: dict[str, Any]) -> None:
        self.state_puts[(state_table, query_name)].append(row)

    def put_states(self, state_table: str, query_name: str, rows: pd.DataFrame) -> None:
        """State rows as columns (one frame for many series): staged by one binary ``COPY``;
        ``query_name`` must have a ``<query>_staged`` twin."""
        if not rows.empty:
            self.state_frames[(state_table, query_name)].append(rows)

    def delete_state(self, state_table: str, keys: dict[str, Any]) -> None:
        self.state_deletes[(state_table, tuple(keys))].append(tuple(keys.values()))

    def execute(self, key: str, stmt: sql.Composed, params: dict[str, Any]) -> None:
        """``stmt`` (named ``key``) run once per params set (pipelined) after the states."""
        self.statements.setdefault(key, (stmt, []))[1].append(params)

    def flush(self, conn: psycopg.Connection) -> None:
        for (table, keys, ts_col), items in self.deletes.items():
            _delete_keys(conn, table, ("id", *keys), [i[:-1] for i in items], ts_col, [i[-1] for i in items])
        for (stage, like, columns, query_name), parts in self.upserts.items():
            io.stage_like(conn, stage, like)
            io.copy_frame(conn, stage, columns, parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True))
            conn.execute(sqlfiles.load(f"queries/{query_name}"))
        for (table, columns), parts in self.rows.items():
            io.copy_frame(conn, table, columns, parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True))
        if self.ema_rejects:
            from ta_lab2.store import emastore

            emastore.insert_rejects(conn, pd.concat(self.ema_rejects, ignore_index=True))
        for fn in self.after_rows:
            fn(conn)
        for (state_table, keys), items in self.state_deletes.items():
            _delete_keys(conn, state_table, keys, items, None, None)
        for (state_table, query_name), rows in self.state_puts.items():
            _put_states(conn, state_table, query_name, rows)
        for (state_table, query_name), parts in self.state_frames.items():
            frame = parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)
            _upsert_staged(conn, state_table, query_name, partial(_copy_whole_frame, conn, frame))
        with conn.cursor() as cur:
            for stmt, params in self.statements.values():
                cur.executemany(stmt, params)
        self.__init__()  # type: ignore[misc]  # empty again: a flush never sends anything twice


def _put_states(conn: psycopg.Connection, state_table: str, query_name: str, rows: list[dict[str, Any]]) -> None:
    """The state rows of one table, staged by ``COPY`` and upserted in ONE statement,
    ``queries/<query_name>_staged`` (per-row statements cost ~0.1 ms each, the daily run writes
    ~70 state rows per asset)."""
    if not rows:
        return
    columns = list(rows[0])
    _upsert_staged(conn, state_table, query_name,
                   lambda stage: io.copy_rows(conn, stage, columns, ([r[c] for c in columns] for r in rows)))


def _copy_whole_frame(conn: psycopg.Connection, frame: pd.DataFrame, stage: str) -> None:
    io.copy_frame(conn, stage, list(frame.columns), frame)


def _upsert_staged(conn: psycopg.Connection, state_table: str, query_name: str,
                   fill: Callable[[str], object]) -> None:
    """A temp stage shaped like ``state_table``, filled by ``fill(stage)``, upserted by the
    ONE statement ``queries/<query_name>_staged``."""
    stage = f"_stage_{state_table}"
    io.stage_like(conn, stage, state_table)
    fill(stage)
    conn.execute(frames.query(f"{query_name}_staged", state=state_table, stage=stage))


def _pg_type(value: Any) -> str:
    if isinstance(value, numbers.Integral):
        return "bigint"
    if isinstance(value, str):
        return "text"
    if isinstance(value, datetime):
        return "timestamptz"
    raise TypeError(f"no key type for {value!r}")


def _delete_keys(conn: psycopg.Connection, table: str, keys: Sequence[str], values: list[tuple[Any, ...]],
                 ts_col: str | None, from_ts: list[Any] | None) -> None:
    """``DELETE FROM table USING unnest(key arrays) k`` (rows at/after ``k.from_ts`` when given)."""
    if not values:
        return
    cols = list(zip(*values, strict=True))
    types = [_pg_type(c[0]) for c in cols]
    arrays: list[sql.Composable] = [sql.SQL("%s::{}[]").format(sql.SQL(t)) for t in types]
    names = [sql.Identifier(f"k{i}") for i in range(len(keys))]
    cond = [sql.SQL("t.{} = k.{}").format(sql.Identifier(k), n) for k, n in zip(keys, names, strict=True)]
    params: list[Any] = [[int(v) if isinstance(v, numbers.Integral) else v for v in c] for c in cols]
    if ts_col is not None and from_ts is not None:
        arrays.append(sql.SQL("%s::timestamptz[]"))
        names.append(sql.Identifier("from_ts"))
        cond.append(sql.SQL("(k.from_ts IS NULL OR t.{} >= k.from_ts)").format(sql.Identifier(ts_col)))
        params.append(from_ts)
    stmt = sql.SQL("DELETE FROM {} AS t USING unnest({}) AS k({}) WHERE {}").format(
        sql.Identifier(table), sql.SQL(", ").join(arrays), sql.SQL(", ").join(names), sql.SQL(" AND ").join(cond))
    conn.execute(stmt, params)
