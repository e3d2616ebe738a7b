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

from ta_lab2.bars.windows import assign_windows
from ta_lab2.emas.compute import EmaState, compute_bar_space, compute_daily_space
from ta_lab2.emas.validate import nonfinite_mask, validate_emas
from ta_lab2.refresh.context import Batch, ComponentResult, RunOptions
from ta_lab2.registry import EmaFamily, EmaVariant, bar_family
from ta_lab2.store import emastore
from ta_lab2.store.batch import BatchWrites
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


def refresh_emas(batch: Batch, asset_id: int, opts: RunOptions, family: EmaFamily) -> ComponentResult:
    """Locks: the runner holds ``(emas.<family>, id)`` and ``("bars.1d", id)`` shared."""
    result = ComponentResult(asset_id, f"emas.{family.name}")
    bounds = batch.reads.bounds(asset_id)
    if bounds["n"] == 0:
        result.details = {"mode": "noop", "reason": "no 1d rows"}
        return result
    all_tfs = batch.reads.timeframes()
    _, default_periods = batch.reads.periods()
    daily = batch.reads.daily_frame(asset_id)
    grid = _Grid(daily, np.datetime64(daily["day"].iloc[0], "D"))
    _, rev = batch.reads.changes_since(asset_id, 0)
    modes: dict[str, int] = defaultdict(int)
    for variant in family.variants:
        selection = series_for(variant, all_tfs, default_periods, opts)
        states = {(s["tf"], s["period"]): s for s in batch.reads.state_rows(variant.state_table, "ema_state_get",
                                                                             asset_id)}
        for tf, periods in selection.items():
            _refresh_tf(batch, family, variant, asset_id, tf, periods, states, grid, rev, opts, result, modes)
    if not opts.dry_run:
        batch.writes.execute(family.watermark_column, emastore.refresh_state_stmt(family.watermark_column),
                             {"id": asset_id, "ts": bounds["last_ts"]})
    result.details = {"modes": dict(modes), "src_rev": rev}
    result.status = "dry_run" if opts.dry_run else "ok"
    log.debug("asset %s emas.%s: %s rows written %s, %s rejects", asset_id, family.name, result.rows_written,
              dict(modes), result.rejects)
    return result


def _plan_period(batch: Batch, variant: EmaVariant, asset_id: int, tf: Timeframe, period: int,
                 row: dict[str, Any] | None, grid: _Grid,
                 opts: RunOptions) -> tuple[str, EmaState | None, pd.Timestamp | None]:
    """(mode, start state, delete-from instant) for one series."""
    if row is None or opts.full_rebuild:
        return "scratch", None, None
    changed = batch.reads.changes_since(asset_id, row["src_rev"])[0]
    if changed is None:
        return "noop", None, None
    changed = pd.Timestamp(changed).tz_convert("UTC")
    if changed > row["last_ts"]:
        return "append", _to_state(row), None
    r = resume_point(batch.conn, variant.table, asset_id, tf.tf, period, changed)
    if r["last_ts"] is None or r["last_ema"] is None:
        return "scratch", None, None
    last = np.datetime64(pd.Timestamp(r["last_ts"]).tz_convert(None), "ns")
    seen = grid.canonical(tf) & (grid.ts <= last)
    # from the grid, not the table: v2 has no rows before its seed, yet canonical days before
    # the seed count (the state of a one-shot build saw them too)
    last_canonical = pd.Timestamp(grid.ts[seen][-1], tz="UTC") if seen.any() else None
    return "restart", _to_state({**r, "canonical_count": int(seen.sum()),
                                 "last_canonical_ts": last_canonical}), changed


def _refresh_tf(batch: Batch, family: EmaFamily, variant: EmaVariant, asset_id: int, tf: Timeframe,
                periods: list[int], states: dict[tuple[str, int], dict[str, Any]], grid: _Grid, rev: int,
                opts: RunOptions, result: ComponentResult, modes: dict[str, int]) -> None:
    groups: dict[Any, list[tuple[int, EmaState | None, str, pd.Timestamp | None]]] = defaultdict(list)
    for p in periods:
        mode, start, from_ts = _plan_period(batch, variant, asset_id, tf, p, states.get((tf.tf, p)), grid, opts)
        modes[mode] += 1
        if mode != "noop":
            groups[None if start is None else start.last_ts].append((p, start, mode, from_ts))
    compute = compute_daily_space if family.daily_space_only else compute_bar_space
    canon = grid.canonical(tf)
    out = batch.writes
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
                out.delete_series(variant.table, asset_id, {"tf": tf.tf, "period": p}, "ts", from_ts)
                out.delete_series("ema_rejects", asset_id, {"alignment_source": variant.alignment_source,
                                                            "tf": tf.tf, "period": p}, "ts", from_ts)
        out.add_rows(variant.table, WRITE_COLUMNS, rows)
        if not rejects.empty:
            rejects.insert(1, "id", asset_id)
            out.ema_rejects.append(rejects[list(emastore.REJECT_WRITE_COLUMNS)])
        for p, _, _, _ in members:
            _put_state(out, variant, asset_id, tf.tf, p, new_states.get(p), rev)


def _put_state(out: BatchWrites, variant: EmaVariant, asset_id: int, tf: str, period: int,
               state: EmaState | None, rev: int) -> None:
    if state is None:  # not seeded (too little history): no state, recomputed from scratch next run
        out.delete_state(variant.state_table, {"id": asset_id, "tf": tf, "period": period})
        return

    def ts(v: Any) -> Any:
        return None if v is None else pd.Timestamp(v, tz="UTC").to_pydatetime()

    out.put_state(variant.state_table, "ema_state_put", {
        "id": asset_id, "tf": tf, "period": period, "last_ts": ts(state.last_ts),
        "last_canonical_ts": ts(state.last_canonical_ts), "last_bar_ema": state.last_bar_ema,
        "last_ema": state.last_ema, "canonical_count": state.canonical_count, "src_rev": rev})
