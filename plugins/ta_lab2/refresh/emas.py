"""The EMA step for a batch of assets and one refresher family (EMAS.md).

Inputs are each asset's daily grid (accepted 1d rows: ``ts`` = time_close, ``close``) and, per
timeframe, which grid days close a completed bar: a day is canonical exactly when it is the
scheduled last day of its window (:func:`ta_lab2.bars.windows.assign_windows`, the same
function the bar builder uses), which is the bar table's ``is_partial_end = FALSE`` row.

Per series (tf, period), from the 1d change feed after the series' cursor:

* nothing changed -> untouched;
* the first changed day is after the series' ``last_ts`` -> continue from the stored state
  over the new days only. This is the normal daily run, and it is computed for ALL such
  series of the batch at once (:func:`ta_lab2.emas.append.continue_emas`) from one read of
  the state rows and one read of the grid days after each asset's cut
  (``queries/bars_1d_tail``); the validation bounds continue from the state's
  ``median3_min``/``median3_max``: no history is read;
* an earlier change (backfill, revised close, rebuilt 1d) -> restart from the stored output
  rows just before that day (their ``ema``/``ema_bar`` are the state), or from scratch when
  the change precedes the seed; rows from that day on are deleted and recomputed;
* no state (never seeded), ``full_rebuild`` -> from scratch, unless the series provably
  cannot seed yet (too few grid days or possible canonical closes for its period: mode
  ``unseeded``, nothing to read or write).

New rows are validated (:func:`ta_lab2.emas.validate.validate_emas`); NaN/inf are never
written; violations go to ``ema_rejects``. Rows, rejects and state commit together.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from ta_lab2.bars.windows import assign_windows, in_a_bar, window_numbers
from ta_lab2.emas.append import block_index, canonical_upper_bound, continue_emas, median3_tail
from ta_lab2.emas.compute import EmaState, compute_bar_space, compute_daily_space
from ta_lab2.emas.validate import median3, nonfinite_mask, validate_emas, violation_types
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


Member = tuple[int, EmaState | None, str, pd.Timestamp | None]  # (period, start, mode, delete-from)


def _ns(value: Any) -> np.datetime64:
    """A tz-aware instant as naive UTC ``datetime64[ns]`` (the grid's ``ts``)."""
    if isinstance(value, datetime) and not isinstance(value, pd.Timestamp):
        return np.datetime64(value.astimezone(UTC).replace(tzinfo=None), "ns")
    return np.datetime64(pd.Timestamp(value).tz_convert(None), "ns")


def _ns_many(values: list[Any]) -> np.ndarray:
    """:func:`_ns` of many instants at once (None -> NaT)."""
    if not values:
        return np.array([], dtype="datetime64[ns]")
    return pd.DatetimeIndex(pd.to_datetime(values, utc=True)).tz_convert(None).as_unit("ns").to_numpy()


def _to_state(row: dict[str, Any]) -> EmaState:
    return EmaState(last_ts=_ns(row["last_ts"]),
                    last_canonical_ts=None if row["last_canonical_ts"] is None else _ns(row["last_canonical_ts"]),
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
        self._m3: tuple[np.ndarray, np.ndarray] | None = None

    @classmethod
    def of(cls, batch: Batch, asset_id: int) -> _Grid:
        """The asset's grid, built once per batch and component."""
        cache = batch.reads.memo.setdefault("ema_grids", {})
        if asset_id not in cache:
            daily = batch.reads.daily_frame(asset_id)
            cache[asset_id] = cls(daily, np.datetime64(daily["day"].iloc[0], "D"))
        return cache[asset_id]

    def canonical(self, tf: Timeframe) -> np.ndarray:
        if tf.tf not in self._canon:
            w = assign_windows(self.days, tf, self.first_day)
            self._canon[tf.tf] = ~np.isnat(w.win_start) & (w.win_end == self.days)
        return self._canon[tf.tf]

    def median3_range(self, through: np.datetime64) -> tuple[float | None, float | None]:
        """(min, max) of the trailing median3 of the closes over the grid days <= ``through``."""
        if self._m3 is None:
            m3 = median3(self.close)
            self._m3 = np.minimum.accumulate(m3), np.maximum.accumulate(m3)
        i = int(np.searchsorted(self.ts, through, side="right")) - 1
        return (None, None) if i < 0 else (float(self._m3[0][i]), float(self._m3[1][i]))


def refresh_emas(batch: Batch, asset_id: int, opts: RunOptions, family: EmaFamily) -> ComponentResult:
    """One asset (a batch of one)."""
    return refresh_emas_batch(batch, [asset_id], opts, family)[0]


def refresh_emas_batch(batch: Batch, asset_ids: list[int], opts: RunOptions,
                       family: EmaFamily) -> list[ComponentResult]:
    """Every series of the batch planned from the batch's reads (no grid read); the continued
    ones computed together (:class:`_Appends`), the others per (asset, tf) from the grids of
    just the assets that need one. Locks: the runner holds ``(emas.<family>, id)`` and
    ``("bars.1d", id)`` shared."""
    all_tfs = batch.reads.timeframes()
    _, default_periods = batch.reads.periods()
    selections = [(v, series_for(v, all_tfs, default_periods, opts)) for v in family.variants]
    results, plans, need_grid = [], [], set()
    for asset_id in asset_ids:
        result = ComponentResult(asset_id, f"emas.{family.name}")
        results.append(result)
        bounds = batch.reads.bounds(asset_id)
        if bounds["n"] == 0:
            result.details = {"mode": "noop", "reason": "no 1d rows"}
            continue
        span = _day_span(bounds)
        modes: dict[str, int] = defaultdict(int)
        series = []
        for variant, selection in selections:
            states: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
            for s in batch.reads.state_rows(variant.state_table, "ema_state_get", asset_id):
                states[s["tf"]][s["period"]] = s
            for tf, periods in selection.items():
                rows = states.get(tf.tf)
                seeds_up_to = _seedable(family, tf, bounds["n"], span)
                if not rows and not opts.full_rebuild:  # no state for the tf (most tfs of a young asset)
                    seeded = [p for p in periods if p <= seeds_up_to]
                    if len(seeded) < len(periods):
                        modes["unseeded"] += len(periods) - len(seeded)
                    periods = seeded  # too little history: counted, not planned one by one
                for p in periods:
                    row = rows.get(p) if rows else None
                    if opts.full_rebuild:
                        mode = "scratch"
                    elif row is None:  # scratch, unless provably too little history to seed
                        mode = "scratch" if p <= seeds_up_to else "unseeded"
                    else:
                        mode = _mode(batch, asset_id, row)
                    modes[mode] += 1
                    if mode in ("scratch", "restart") or (row is not None and mode == "append"
                                                          and row["median3_min"] is None):
                        need_grid.add(asset_id)
                    if mode not in ("noop", "unseeded"):
                        series.append((variant, tf, p, row, mode))
        plans.append((result, bounds, series))
        result.details = {"modes": dict(modes), "src_rev": batch.reads.changes_since(asset_id, 0)[1]}
        result.status = "dry_run" if opts.dry_run else "ok"
    batch.reads.want_daily(sorted(need_grid))
    appends = _Appends(family)
    watermarks: list[tuple[int, datetime]] = []
    for result, bounds, series in plans:
        asset_id, rev = result.asset_id, result.details["src_rev"]
        slow: dict[tuple[EmaVariant, Timeframe], list[Member]] = defaultdict(list)
        for variant, tf, p, row, mode in series:
            if mode == "append" and row is not None and row["median3_min"] is not None:
                appends.add(result, variant, tf, p, row, rev)
            else:
                slow[(variant, tf)].append(_member(batch, variant, asset_id, tf, p, row, mode))
        for (variant, tf), members in slow.items():
            _compute_tf(batch, family, variant, asset_id, tf, members, _Grid.of(batch, asset_id), rev, opts, result)
        watermarks.append((asset_id, bounds["last_ts"]))
    if watermarks and not opts.dry_run:  # one statement for the batch
        batch.writes.execute(family.watermark_column, emastore.refresh_state_stmt(family.watermark_column),
                             {"ids": [a for a, _ in watermarks], "ts": [t for _, t in watermarks]})
    appends.run(batch, opts)
    for result in results:
        log.debug("asset %s emas.%s: %s rows written %s, %s rejects", result.asset_id, family.name,
                  result.rows_written, result.details.get("modes"), result.rejects)
    return results


def _day_span(bounds: dict[str, Any]) -> tuple[np.datetime64, np.datetime64]:
    """The asset's first and last grid days (a grid day is the UTC day of a row's time_open).
    Exact, not widened: a day before the first would add an anchored bar ending on it."""
    return _ns(bounds["first_open"]).astype("datetime64[D]"), _ns(bounds["last_open"]).astype("datetime64[D]")


def _seedable(family: EmaFamily, tf: Timeframe, n_days: int, span: tuple[np.datetime64, np.datetime64]) -> int:
    """The largest period a series of ``tf`` without state can seed; a longer one is
    ``unseeded`` (scratch would write nothing): v2 needs ``tf_days * p`` grid days; bar space
    needs ``p`` canonical closes, at most :func:`canonical_upper_bound` over the span."""
    if family.daily_space_only:
        return n_days // tf.tf_days_nominal
    return min(n_days, canonical_upper_bound(span[0], span[1], tf))


def _mode(batch: Batch, asset_id: int, row: dict[str, Any]) -> str:
    """noop | append | restart of a series with a state row, from the change feed."""
    changed = batch.reads.changes_since(asset_id, row["src_rev"])[0]
    if changed is None:
        return "noop"
    return "append" if changed > row["last_ts"] else "restart"


def _member(batch: Batch, variant: EmaVariant, asset_id: int, tf: Timeframe, period: int,
            row: dict[str, Any] | None, mode: str) -> Member:
    """(period, start state, delete-from instant) of a series computed from the grid."""
    if mode == "scratch":
        return period, None, "scratch", None
    assert row is not None
    if mode == "append":
        return period, _to_state(row), "append", None
    changed = pd.Timestamp(batch.reads.changes_since(asset_id, row["src_rev"])[0]).tz_convert("UTC")
    r = resume_point(batch.conn, variant.table, asset_id, tf.tf, period, changed)
    if r["last_ts"] is None or r["last_ema"] is None:
        return period, None, "scratch", None
    grid = _Grid.of(batch, asset_id)
    last = _ns(r["last_ts"])
    seen = grid.canonical(tf) & (grid.ts <= last)
    # from the grid, not the table: v2 has no rows before its seed, yet canonical days before
    # the seed count (the state of a one-shot build saw them too)
    last_canonical = pd.Timestamp(grid.ts[seen][-1], tz="UTC") if seen.any() else None
    return period, _to_state({**r, "canonical_count": int(seen.sum()), "last_canonical_ts": last_canonical}), \
        "restart", changed


def _compute_tf(batch: Batch, family: EmaFamily, variant: EmaVariant, asset_id: int, tf: Timeframe,
                members: list[Member], grid: _Grid, rev: int, opts: RunOptions, result: ComponentResult) -> None:
    """Series of one (asset, tf) computed from the asset's grid (scratch, restart, or a
    continuation whose state lacks the validation bounds)."""
    groups: dict[Any, list[Member]] = defaultdict(list)
    for m in members:
        groups[None if m[1] is None else m[1].last_ts].append(m)
    compute = compute_daily_space if family.daily_space_only else compute_bar_space
    canon = grid.canonical(tf)
    out = batch.writes
    for last_ts, group in groups.items():
        sel = slice(None) if last_ts is None else grid.ts > last_ts
        starts = {p: s for p, s, _, _ in group if s is not None} or None
        rows, new_states = compute(grid.ts[sel], grid.close[sel], canon[sel], tf.tf, tf.tf_days_nominal,
                                   [p for p, _, _, _ in group], starts)
        rows.insert(0, "id", asset_id)
        rejects = validate_emas(rows, grid.ts, grid.close)
        rows = rows[~nonfinite_mask(rows)]
        result.rows_written += len(rows)
        result.rejects += len(rejects)
        if opts.dry_run:
            continue
        for p, _, mode, from_ts in group:
            if mode != "append":  # append only adds rows after last_ts; scratch deletes all
                out.delete_series(variant.table, asset_id, {"tf": tf.tf, "period": p}, "ts", from_ts)
                out.delete_series("ema_rejects", asset_id, {"alignment_source": variant.alignment_source,
                                                            "tf": tf.tf, "period": p}, "ts", from_ts)
        out.add_rows(variant.table, WRITE_COLUMNS, rows)
        _queue_rejects(out, variant, asset_id, rejects)
        for p, _, _, _ in group:
            state = new_states.get(p)
            m3 = grid.median3_range(state.last_ts) if state is not None else (None, None)
            _put_state(out, variant, asset_id, tf.tf, p, state, rev, m3)


def _queue_rejects(out: BatchWrites, variant: EmaVariant, asset_id: int, rejects: pd.DataFrame) -> None:
    if not rejects.empty:
        rejects.insert(0, "alignment_source", variant.alignment_source)
        rejects.insert(1, "id", asset_id)
        out.ema_rejects.append(rejects[list(emastore.REJECT_WRITE_COLUMNS)])


def _utc(v: Any) -> Any:
    return None if v is None else pd.Timestamp(v, tz="UTC").to_pydatetime()


def _put_state(out: BatchWrites, variant: EmaVariant, asset_id: int, tf: str, period: int,
               state: EmaState | None, rev: int, median3_range: tuple[float | None, float | None]) -> None:
    if state is None:  # not seeded (too little history): no state, recomputed from scratch next run
        out.delete_state(variant.state_table, {"id": asset_id, "tf": tf, "period": period})
        return
    out.put_state(variant.state_table, "ema_state_put", {
        "id": asset_id, "tf": tf, "period": period, "last_ts": _utc(state.last_ts),
        "last_canonical_ts": _utc(state.last_canonical_ts), "last_bar_ema": state.last_bar_ema,
        "last_ema": state.last_ema, "canonical_count": state.canonical_count, "src_rev": rev,
        "median3_min": median3_range[0], "median3_max": median3_range[1]})


class _Rows(NamedTuple):
    """The continued rows of a batch: job ``j`` owns rows ``start[j] : start[j] + length[j]``."""

    job: np.ndarray  # row -> job
    day: np.ndarray  # row -> index into the batch's flat tail days
    start: np.ndarray
    length: np.ndarray


def _tail_median3(batch: Batch, cuts: dict[int, datetime], tails: dict[int, Any]) -> dict[int, np.ndarray]:
    """Per asset, the trailing median3 of its new tail days (NaN on the days before them),
    memoised with the tail read: the EMA families of one CLI batch share the cuts."""
    key = ("tail_median3", tuple(sorted(cuts.items())))
    if key not in batch.reads.memo:
        out = {}
        for a, tail in tails.items():
            m3 = np.full(len(tail.close), np.nan)
            m3[tail.is_new] = median3_tail(tail.close[~tail.is_new], tail.close[tail.is_new])
            out[a] = m3
        batch.reads.memo[key] = out
    return dict(batch.reads.memo[key])


class _Appends:
    """The continued series of one batch and family, computed and written together."""

    def __init__(self, family: EmaFamily) -> None:
        self.family = family
        self.jobs: list[tuple[ComponentResult, EmaVariant, Timeframe, int, dict[str, Any], int]] = []

    def add(self, result: ComponentResult, variant: EmaVariant, tf: Timeframe, period: int, row: dict[str, Any],
            rev: int) -> None:
        self.jobs.append((result, variant, tf, period, row, rev))

    def run(self, batch: Batch, opts: RunOptions) -> None:
        if not self.jobs:
            return
        jobs, bar_space = self.jobs, not self.family.daily_space_only
        cuts: dict[int, datetime] = {}
        for result, _, _, _, row, _ in jobs:
            cuts[result.asset_id] = min(cuts.get(result.asset_id, row["last_ts"]), row["last_ts"])
        tails = batch.reads.tail(cuts)
        before_ts = _ns_many([j[4]["last_ts"] for j in jobs])
        flat, rows = self._layout(tails, _tail_median3(batch, cuts, tails), before_ts)
        canonical = self._canonical(tails, flat, rows)
        period = np.array([j[3] for j in jobs], dtype=np.int64)
        tf_days = np.array([j[2].tf_days_nominal for j in jobs], dtype=np.int64)
        state = {k: np.array([j[4][k] for j in jobs], dtype=np.float64)
                 for k in ("last_ema", "last_bar_ema", "median3_min", "median3_max")}
        done = continue_emas(flat["close"][rows.day], canonical, rows.length, 2.0 / (tf_days * period + 1),
                             state["last_ema"], 2.0 / (period + 1) if bar_space else None,
                             state["last_bar_ema"] if bar_space else None)
        m3_min, m3_max, bad = self._validate(flat["m3"], rows, done, state["median3_min"], state["median3_max"])
        keep = np.isfinite(done.ema) & ~np.isinf(done.ema_bar)
        for j, n in enumerate(np.bincount(rows.job[keep], minlength=len(jobs))):
            jobs[j][0].rows_written += int(n)
        bad_assets = {jobs[j][0].asset_id for j in np.unique(rows.job[bad])}
        ts = flat["ts"][rows.day]
        self._rejects(batch, jobs, bad_assets, rows.job, ts, done, write=not opts.dry_run)
        if opts.dry_run:
            return
        self._write_rows(batch.writes, rows, ts, canonical, done, keep, period, tf_days)
        self._write_states(batch.writes, rows, ts, canonical, done, m3_min, m3_max, before_ts)

    def _layout(self, tails: dict[int, Any], m3: dict[int, np.ndarray],
                before_ts: np.ndarray) -> tuple[dict[str, np.ndarray], _Rows]:
        """The batch's tail days end to end (``ts``, ``close``, ``m3``, ``x`` epoch day, ``f``
        first grid day, per day) and where each job's new days are among them."""
        offsets, n = {}, 0
        for a, tail in tails.items():
            offsets[a] = n
            n += len(tail.ts)
        parts = list(tails.values())
        flat = {
            "ts": np.concatenate([t.ts for t in parts]), "close": np.concatenate([t.close for t in parts]),
            "m3": np.concatenate([m3[a] for a in tails]),
            "x": np.concatenate([t.days for t in parts]).astype(np.int64),
            "f": np.concatenate([np.full(len(t.days), t.first_day.astype(np.int64)) for t in parts]),
        }
        sizes = {a: len(t.ts) for a, t in tails.items()}
        base = np.array([offsets[j[0].asset_id] for j in self.jobs], dtype=np.int64)
        size = np.array([sizes[j[0].asset_id] for j in self.jobs], dtype=np.int64)
        # per job, its asset's tail days up to its last_ts (searchsorted side="right" within the
        # asset's sorted days), counted one day position at a time for all jobs at once
        k0 = np.zeros(len(self.jobs), dtype=np.int64)
        last = max(len(flat["ts"]) - 1, 0)
        for i in range(int(size.max(initial=0))):
            k0 += (i < size) & (flat["ts"][np.minimum(base + i, last)] <= before_ts)
        first, length = base + k0, size - k0
        start, k = block_index(length)
        return flat, _Rows(np.repeat(np.arange(len(self.jobs)), length), np.repeat(first, length) + k, start, length)

    def _canonical(self, tails: dict[int, Any], flat: dict[str, np.ndarray], rows: _Rows) -> np.ndarray:
        """Per row: does its day close a bar of its job's timeframe (one windows pass per tf)."""
        tfs = list({j[2].tf: j[2] for j in self.jobs}.values())
        code = {tf.tf: i for i, tf in enumerate(tfs)}
        tf_of_row = np.array([code[j[2].tf] for j in self.jobs], dtype=np.int64)[rows.job]
        out = np.zeros(len(rows.day), dtype=bool)
        for i, tf in enumerate(tfs):
            seq, _, end = window_numbers(flat["x"], flat["f"], tf)
            closes = in_a_bar(seq, tf) & (end == flat["x"])
            mine = tf_of_row == i
            out[mine] = closes[rows.day[mine]]
        return out

    @staticmethod
    def _validate(m3: np.ndarray, rows: _Rows, done: Any, m3_min: np.ndarray,
                  m3_max: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The median3 range continued over each job's days; which rows a check flags."""
        lo, hi = m3_min.copy(), m3_max.copy()
        row_lo, row_hi = np.empty(len(rows.day)), np.empty(len(rows.day))
        for step in range(int(rows.length.max(initial=0))):
            act = np.flatnonzero(rows.length > step)
            at = rows.start[act] + step
            lo[act] = np.minimum(lo[act], m3[rows.day[at]])
            hi[act] = np.maximum(hi[act], m3[rows.day[at]])
            row_lo[at], row_hi[at] = lo[act], hi[act]
        bad = (violation_types(done.ema, 0.5 * row_lo, 2.0 * row_hi, False) != "") | \
              (violation_types(done.ema_bar, 0.5 * row_lo, 2.0 * row_hi, True) != "")
        return lo, hi, bad

    def _write_rows(self, out: BatchWrites, rows: _Rows, ts: np.ndarray, canonical: np.ndarray, done: Any,
                    keep: np.ndarray, period: np.ndarray, tf_days: np.ndarray) -> None:
        ids = np.array([j[0].asset_id for j in self.jobs], dtype=np.int64)
        tfs = np.array([j[2].tf for j in self.jobs], dtype=object)
        tables = np.array([j[1].table for j in self.jobs], dtype=object)
        for variant in self.family.variants:
            mine = (tables[rows.job] == variant.table) & keep
            if mine.any():
                jr = rows.job[mine]
                out.add_rows(variant.table, WRITE_COLUMNS, pd.DataFrame({
                    "id": ids[jr], "tf": tfs[jr], "ts": pd.DatetimeIndex(ts[mine]).tz_localize("UTC"),
                    "period": period[jr], "tf_days": tf_days[jr], "roll": ~canonical[mine],
                    "ema": done.ema[mine], "ema_bar": done.ema_bar[mine]}))

    def _write_states(self, out: BatchWrites, rows: _Rows, ts: np.ndarray, canonical: np.ndarray, done: Any,
                      m3_min: np.ndarray, m3_max: np.ndarray, before_ts: np.ndarray) -> None:
        """Every job's new state as columns, one staged upsert per state table (per-series
        dictionaries cost 0.7 s of a 100-asset day in the profile)."""
        jobs, n = self.jobs, len(self.jobs)
        n_canon = np.bincount(rows.job[canonical], minlength=n)
        last_canon = np.full(n, -1)
        np.maximum.at(last_canon, rows.job[canonical], np.flatnonzero(canonical))
        moved = rows.length > 0
        before_canon = _ns_many([j[4]["last_canonical_ts"] for j in jobs])
        at = np.clip(rows.start + rows.length - 1, 0, None)
        last_ts = np.where(moved, ts[at] if len(ts) else before_ts, before_ts)
        last_canonical = np.where(moved & (last_canon >= 0), ts[np.clip(last_canon, 0, None)] if len(ts) else before_canon,
                                  before_canon)
        before_ema = np.array([j[4]["last_ema"] for j in jobs], dtype=np.float64)
        before_bar = np.array([np.nan if j[4]["last_bar_ema"] is None else j[4]["last_bar_ema"] for j in jobs],
                              dtype=np.float64)
        frame = pd.DataFrame({
            "id": np.array([j[0].asset_id for j in jobs], dtype=np.int64),
            "tf": np.array([j[2].tf for j in jobs], dtype=object),
            "period": np.array([j[3] for j in jobs], dtype=np.int64),
            "last_ts": pd.DatetimeIndex(last_ts).tz_localize("UTC"),
            "last_canonical_ts": pd.DatetimeIndex(last_canonical).tz_localize("UTC"),
            "last_bar_ema": np.full(n, np.nan) if self.family.daily_space_only
            else np.where(moved, done.last_bar_ema, before_bar),
            "last_ema": np.where(moved, done.last_ema, before_ema),
            "canonical_count": np.array([int(j[4]["canonical_count"]) for j in jobs], dtype=np.int64) + n_canon,
            "src_rev": np.array([j[5] for j in jobs], dtype=np.int64),
            "median3_min": m3_min, "median3_max": m3_max,
        })
        tables = np.array([j[1].state_table for j in jobs], dtype=object)
        for variant in self.family.variants:
            mine = tables == variant.state_table
            if mine.any():
                out.put_states(variant.state_table, "ema_state_put", frame[mine].reset_index(drop=True))

    def _rejects(self, batch: Batch, jobs: list[Any], bad_assets: set[int], job_of_row: np.ndarray,
                 ts_rows: np.ndarray, done: Any, *, write: bool) -> None:
        """The reject rows of the (rare) assets with a flagged value, exactly as
        :func:`validate_emas` gives them over the asset's grid."""
        for a in sorted(bad_assets):
            grid = _Grid.of(batch, a)
            for variant in self.family.variants:
                sel = [j for j, job in enumerate(jobs) if job[0].asset_id == a and job[1] is variant]
                mask = np.isin(job_of_row, sel)
                if not mask.any():
                    continue
                jr = job_of_row[mask]
                rows = pd.DataFrame({
                    "id": a, "tf": [jobs[j][2].tf for j in jr], "ts": pd.DatetimeIndex(ts_rows[mask]).tz_localize("UTC"),
                    "period": [jobs[j][3] for j in jr], "ema": done.ema[mask], "ema_bar": done.ema_bar[mask]})
                rejects = validate_emas(rows, grid.ts, grid.close)
                jobs[sel[0]][0].rejects += len(rejects)
                if write:
                    _queue_rejects(batch.writes, variant, a, rejects)
