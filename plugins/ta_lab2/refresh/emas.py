"""The EMA step for one asset and one refresher family (EMAS.md).

Inputs are the asset's daily grid (accepted 1d rows: ``ts`` = time_close, ``close``) and, per
timeframe, which grid days close a completed bar: a day is canonical exactly when it is the
scheduled last day of its window (:func:`ta_lab2.bars.windows.assign_windows`, the same
function the bar builder uses), which is the bar table's ``is_partial_end = FALSE`` row.

Per series (tf, period), from the 1d change feed after the series' cursor:

* nothing changed -> untouched;
* the first changed day is after the series' ``last_ts`` -> continue from the stored state
  over the new days only (the normal daily run: new days x series rows);
* an earlier change (backfill, revised close, rebuilt 1d) -> restart from the stored output
  rows just before that day (their ``ema``/``ema_bar`` are the state), or from scratch when
  the change precedes the seed; rows from that day on are deleted and recomputed;
* no state (never seeded), ``full_rebuild`` -> from scratch.

New rows are validated (:func:`ta_lab2.emas.validate.validate_emas`); NaN/inf are never
written; violations go to ``ema_rejects``. Rows, rejects and state commit together.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

import numpy as np
import pandas as pd
import psycopg

from ta_lab2.bars.windows import assign_windows
from ta_lab2.emas.compute import EmaState, compute_bar_space, compute_daily_space
from ta_lab2.emas.validate import nonfinite_mask, validate_emas
from ta_lab2.refresh.context import ComponentResult, RunOptions
from ta_lab2.registry import EmaFamily, EmaVariant, bar_family
from ta_lab2.store import bars1d, emastore, frames, io
from ta_lab2.store.emastore import resume_point
from ta_lab2.timeframes import Timeframe, select

log = logging.getLogger(__name__)
WRITE_COLUMNS = ("id", "tf", "ts", "period", "tf_days", "roll", "ema", "ema_bar")


def series_for(variant: EmaVariant, all_tfs: list[Timeframe], default_periods: list[int],
               opts: RunOptions) -> dict[Timeframe, list[int]]:
    """(timeframe -> periods) of one EMA table: explicit combos win over tfs x periods."""
    fam = bar_family(variant.bar_family)
    if opts.tf_period_combos:
        mine = {t.tf: t for t in select(all_tfs, fam, [c[0] for c in opts.tf_period_combos], with_daily=True)}
        out: dict[Timeframe, list[int]] = defaultdict(list)
        for tf, p in opts.tf_period_combos:
            if tf in mine and p not in out[mine[tf]]:
                out[mine[tf]].append(p)
        return {t: sorted(ps) for t, ps in out.items()}
    periods = sorted(set(opts.periods)) if opts.periods else default_periods
    return {t: list(periods) for t in select(all_tfs, fam, opts.tfs or None, with_daily=True)}


def _to_state(row: dict[str, Any]) -> EmaState:
    return EmaState(last_ts=np.datetime64(pd.Timestamp(row["last_ts"]).tz_convert(None), "ns"),
                    last_canonical_ts=None if row["last_canonical_ts"] is None else
                    np.datetime64(pd.Timestamp(row["last_canonical_ts"]).tz_convert(None), "ns"),
                    last_bar_ema=row["last_bar_ema"], last_ema=row["last_ema"],
                    canonical_count=int(row["canonical_count"]))


class _Grid:
    """One asset's daily grid and the canonical flags per timeframe (computed once per run)."""

    def __init__(self, daily: pd.DataFrame, first_day: np.datetime64) -> None:
        self.ts = daily["time_close"].dt.tz_convert(None).to_numpy("datetime64[ns]")
        self.close = daily["close"].to_numpy("float64")
        self.days = daily["day"].to_numpy("datetime64[D]")
        self.first_day = first_day
        self._canon: dict[str, np.ndarray] = {}

    def canonical(self, tf: Timeframe) -> np.ndarray:
        if tf.tf not in self._canon:
            w = assign_windows(self.days, tf, self.first_day)
            self._canon[tf.tf] = ~np.isnat(w.win_start) & (w.win_end == self.days)
        return self._canon[tf.tf]


def refresh_emas(conn: psycopg.Connection, asset_id: int, opts: RunOptions, family: EmaFamily) -> ComponentResult:
    io.advisory_xact_lock(conn, family.lock_key, asset_id)
    io.advisory_xact_lock(conn, "bars.1d", asset_id, shared=True)
    result = ComponentResult(asset_id, f"emas.{family.name}")
    bounds = frames.daily_bounds(conn, asset_id)
    if bounds["n"] == 0:
        result.details = {"mode": "noop", "reason": "no 1d rows"}
        return result
    all_tfs = frames.timeframes(conn)
    _, default_periods = frames.periods(conn)
    daily = frames.daily_frame(conn, asset_id, None)
    grid = _Grid(daily, np.datetime64(daily["day"].iloc[0], "D"))
    _, rev = bars1d.changes_since(conn, asset_id, 0)
    modes: dict[str, int] = defaultdict(int)
    for variant in family.variants:
        selection = series_for(variant, all_tfs, default_periods, opts)
        states = {(s["tf"], s["period"]): s for s in
                  frames.state_rows(conn, variant.state_table, asset_id, "ema_state_get")}
        for tf, periods in selection.items():
            _refresh_tf(conn, family, variant, asset_id, tf, periods, states, grid, rev, opts, result, modes)
    if not opts.dry_run:
        emastore.put_refresh_state(conn, family.watermark_column, asset_id, bounds["last_ts"])
    result.details = {"modes": dict(modes), "src_rev": rev}
    result.status = "dry_run" if opts.dry_run else "ok"
    log.info("asset %s emas.%s: %s rows written %s, %s rejects", asset_id, family.name, result.rows_written,
             dict(modes), result.rejects)
    return result


def _plan_period(conn: psycopg.Connection, variant: EmaVariant, asset_id: int, tf: Timeframe, period: int,
                 row: dict[str, Any] | None, grid: _Grid, opts: RunOptions,
                 feed: dict[int, Any]) -> tuple[str, EmaState | None, pd.Timestamp | None]:
    """(mode, start state, delete-from instant) for one series."""
    if row is None or opts.full_rebuild:
        return "scratch", None, None
    if row["src_rev"] not in feed:
        feed[row["src_rev"]] = bars1d.changes_since(conn, asset_id, row["src_rev"])[0]
    changed = feed[row["src_rev"]]
    if changed is None:
        return "noop", None, None
    changed = pd.Timestamp(changed).tz_convert("UTC")
    if changed > row["last_ts"]:
        return "append", _to_state(row), None
    r = resume_point(conn, variant.table, asset_id, tf.tf, period, changed)
    if r["last_ts"] is None or r["last_ema"] is None:
        return "scratch", None, None
    last = np.datetime64(pd.Timestamp(r["last_ts"]).tz_convert(None), "ns")
    seen = grid.canonical(tf) & (grid.ts <= last)
    # from the grid, not the table: v2 has no rows before its seed, yet canonical days before
    # the seed count (the state of a one-shot build saw them too)
    last_canonical = pd.Timestamp(grid.ts[seen][-1], tz="UTC") if seen.any() else None
    return "restart", _to_state({**r, "canonical_count": int(seen.sum()),
                                 "last_canonical_ts": last_canonical}), changed


def _refresh_tf(conn: psycopg.Connection, family: EmaFamily, variant: EmaVariant, asset_id: int, tf: Timeframe,
                periods: list[int], states: dict[tuple[str, int], dict[str, Any]], grid: _Grid, rev: int,
                opts: RunOptions, result: ComponentResult, modes: dict[str, int]) -> None:
    feed: dict[int, Any] = {}
    groups: dict[Any, list[tuple[int, EmaState | None, str, pd.Timestamp | None]]] = defaultdict(list)
    for p in periods:
        mode, start, from_ts = _plan_period(conn, variant, asset_id, tf, p, states.get((tf.tf, p)), grid, opts, feed)
        modes[mode] += 1
        if mode != "noop":
            groups[None if start is None else start.last_ts].append((p, start, mode, from_ts))
    compute = compute_daily_space if family.daily_space_only else compute_bar_space
    canon = grid.canonical(tf)
    for last_ts, members in groups.items():
        sel = slice(None) if last_ts is None else grid.ts > last_ts
        starts = {p: s for p, s, _, _ in members if s is not None} or None
        rows, new_states = compute(grid.ts[sel], grid.close[sel], canon[sel], tf.tf, tf.tf_days_nominal,
                                   [p for p, _, _, _ in members], starts)
        rows.insert(0, "id", asset_id)
        rejects = validate_emas(rows, grid.ts, grid.close)
        rejects.insert(0, "alignment_source", variant.alignment_source)
        rows = rows[~nonfinite_mask(rows)]
        result.rows_written += len(rows)
        result.rejects += len(rejects)
        if opts.dry_run:
            continue
        for p, _, mode, from_ts in members:
            if mode != "append":  # append only adds rows after last_ts; scratch deletes all
                emastore.delete_series(conn, variant.table, variant.alignment_source, asset_id, tf.tf, p,
                                       from_ts)
        emastore.insert_rows(conn, variant.table, WRITE_COLUMNS, rows)
        rejects.insert(1, "id", asset_id)
        emastore.insert_rejects(conn, rejects)
        for p, _, _, _ in members:
            _put_state(conn, variant, asset_id, tf.tf, p, new_states.get(p), rev)


def _put_state(conn: psycopg.Connection, variant: EmaVariant, asset_id: int, tf: str, period: int,
               state: EmaState | None, rev: int) -> None:
    if state is None:  # not seeded (too little history): no state, recomputed from scratch next run
        emastore.delete_state(conn, variant.state_table, asset_id, tf, period)
        return

    def ts(v: Any) -> Any:
        return None if v is None else pd.Timestamp(v, tz="UTC").to_pydatetime()

    emastore.put_state(conn, variant.state_table, {
        "id": asset_id, "tf": tf, "period": period, "last_ts": ts(state.last_ts),
        "last_canonical_ts": ts(state.last_canonical_ts), "last_bar_ema": state.last_bar_ema,
        "last_ema": state.last_ema, "canonical_count": state.canonical_count, "src_rev": rev})
