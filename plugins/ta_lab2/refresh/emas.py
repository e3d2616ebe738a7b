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
    """Every series of the batch planned from the batch's reads (no grid read), as arrays
    (:class:`_Planner`); the continued ones computed together (:class:`_Appends`), the others
    per (asset, tf) from the grids of just the assets that need one. Locks: the runner holds
    ``(emas.<family>, id)`` and ``("bars.1d", id)`` shared."""
    all_tfs = batch.reads.timeframes()
    _, default_periods = batch.reads.periods()
    results, live = [], []
    for asset_id in asset_ids:
        result = ComponentResult(asset_id, f"emas.{family.name}")
        results.append(result)
        if batch.reads.bounds(asset_id)["n"] == 0:
            result.details = {"mode": "noop", "reason": "no 1d rows"}
            continue
        result.details = {"modes": {}, "src_rev": batch.reads.changes_since(asset_id, 0)[1]}
        result.status = "dry_run" if opts.dry_run else "ok"
        live.append(result)
    planner = _Planner(batch, family, opts, live)
    for index, variant in enumerate(family.variants):
        planner.variant(index, variant, series_for(variant, all_tfs, default_periods, opts))
    planner.count_modes()
    batch.reads.want_daily(sorted({live[i].asset_id for i in planner.slow}))
    for i, series in sorted(planner.slow.items()):
        result = live[i]
        asset_id, rev = result.asset_id, result.details["src_rev"]
        groups: dict[tuple[EmaVariant, Timeframe], list[Member]] = defaultdict(list)
        for variant, tf, p, row, mode in series:
            groups[(variant, tf)].append(_member(batch, variant, asset_id, tf, p, row, mode))
        for (variant, tf), members in groups.items():
            _compute_tf(batch, family, variant, asset_id, tf, members, _Grid.of(batch, asset_id), rev, opts, result)
    if live and not opts.dry_run:  # one statement for the batch
        batch.writes.execute(family.watermark_column, emastore.refresh_state_stmt(family.watermark_column),
                             {"ids": [r.asset_id for r in live],
                              "ts": [batch.reads.bounds(r.asset_id)["last_ts"] for r in live]})
    planner.appends.run(batch, opts)
    for result in results:
        log.debug("asset %s emas.%s: %s rows written %s, %s rejects", result.asset_id, family.name,
                  result.rows_written, result.details.get("modes"), result.rejects)
    return results


MODES = ("noop", "append", "restart", "scratch", "unseeded")
NOOP, APPEND, RESTART, SCRATCH, UNSEEDED = range(len(MODES))


class _Planner:
    """The mode of every series (asset, tf, period) of a batch, one table at a time, as arrays:
    series with a state row from the change feed (``noop`` nothing since its cursor,
    ``append`` only days after its ``last_ts``, else ``restart``); selected series without one
    ``scratch``, unless provably too little history to seed (``unseeded``: counted, nothing
    read or written); ``full_rebuild``: every selected series ``scratch``. Continued series
    whose state carries the validation bounds go to :class:`_Appends` as columns; the rest
    (rare on a daily run) to :attr:`slow`, per asset, as the per-series path takes them."""

    def __init__(self, batch: Batch, family: EmaFamily, opts: RunOptions, live: list[ComponentResult]) -> None:
        self.batch, self.family, self.opts, self.live = batch, family, opts, live
        self.pos = {r.asset_id: i for i, r in enumerate(live)}
        self.counts = np.zeros((len(MODES), len(live)), dtype=np.int64)
        self.slow: dict[int, list[tuple[EmaVariant, Timeframe, int, dict[str, Any] | None, str]]] = defaultdict(list)
        self.appends = _Appends(family, live)

    def variant(self, index: int, variant: EmaVariant, selection: dict[Timeframe, list[int]]) -> None:
        expected = [(tf, p) for tf, periods in selection.items() for p in periods]
        if not expected or not self.live:
            return
        code = {(tf.tf, p): k for k, (tf, p) in enumerate(expected)}
        st = self.batch.reads.state_columns(variant.state_table, "ema_state_get")
        at = np.fromiter((self.pos.get(a, -1) for a in st["id"].tolist()), np.int64, len(st))
        key = np.fromiter((code.get(tp, -1) for tp in zip(st["tf"].tolist(), st["period"].tolist(), strict=True)),
                          np.int64, len(st))
        mine = np.flatnonzero((at >= 0) & (key >= 0))
        st, at, key = st.take(mine), at[mine], key[mine]
        has = np.zeros((len(self.live), len(expected)), dtype=bool)
        has[at, key] = True
        mode = np.full(len(st), SCRATCH) if self.opts.full_rebuild else self._state_modes(st)
        fast = mode == APPEND
        if "median3_min" in st.nulls:  # a state from before the validation bounds: through the grid once
            fast &= ~st.nulls["median3_min"]
        self.appends.add(index, at[fast], st.take(np.flatnonzero(fast)),
                         np.array([expected[k][0].tf_days_nominal for k in key[fast]], dtype=np.int64),
                         {tf.tf: tf for tf, _ in expected})
        np.add.at(self.counts, (mode, at), 1)
        for j in np.flatnonzero(~fast & (mode != NOOP)).tolist():
            tf, p = expected[key[j]]
            row = None if mode[j] == SCRATCH else st.row(j)
            self.slow[int(at[j])].append((variant, tf, p, row, MODES[mode[j]]))
        self._missing(variant, expected, has)

    def _state_modes(self, st: Any) -> np.ndarray:
        """noop | append | restart per state row: the first 1d day changed after its cursor."""
        first: dict[tuple[int, int], np.datetime64] = {}
        for pair in set(zip(st["id"].tolist(), st["src_rev"].tolist(), strict=True)):
            day = self.batch.reads.changes_since(*pair)[0]
            first[pair] = np.datetime64("NaT", "ns") if day is None else _ns(day)
        changed = np.array([first[pair] for pair in zip(st["id"].tolist(), st["src_rev"].tolist(), strict=True)],
                           dtype="datetime64[ns]")
        return np.where(np.isnat(changed), NOOP, np.where(changed > st["last_ts"], APPEND, RESTART))

    def _missing(self, variant: EmaVariant, expected: list[tuple[Timeframe, int]], has: np.ndarray) -> None:
        """Selected series without a state row: scratch, or unseeded when too short to seed."""
        periods = np.array([p for _, p in expected], dtype=np.int64)
        by_tf: dict[str, list[int]] = defaultdict(list)
        for k, (tf, _) in enumerate(expected):
            by_tf[tf.tf].append(k)
        for ks in by_tf.values():
            tf = expected[ks[0]][0]
            lacking = ~has[:, ks]
            seeds = np.full(len(self.live), np.iinfo(np.int64).max)
            if not self.opts.full_rebuild:
                spans = self.batch.reads.memo.setdefault("ema_day_spans", {})  # per asset, shared by the families
                for i in np.flatnonzero(lacking.any(axis=1)).tolist():
                    bounds = self.batch.reads.bounds(self.live[i].asset_id)
                    if self.live[i].asset_id not in spans:
                        spans[self.live[i].asset_id] = _day_span(bounds)
                    seeds[i] = _seedable(self.family, tf, bounds["n"], spans[self.live[i].asset_id])
            ii, kk = np.nonzero(lacking)
            scratch = periods[ks][kk] <= seeds[ii]
            np.add.at(self.counts, (np.where(scratch, SCRATCH, UNSEEDED), ii), 1)
            for i, k in zip(ii[scratch].tolist(), kk[scratch].tolist(), strict=True):
                self.slow[i].append((variant, tf, int(periods[ks[k]]), None, "scratch"))

    def count_modes(self) -> None:
        for i, result in enumerate(self.live):
            result.details["modes"] = {m: int(n) for m, n in zip(MODES, self.counts[:, i], strict=True) if n}


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
    """The continued series of one batch and family, computed and written together. A job is
    one series; its columns (:meth:`add`) come straight from the state read."""

    STATE = ("last_ts", "last_canonical_ts", "last_ema", "last_bar_ema", "canonical_count", "median3_min",
             "median3_max")

    def __init__(self, family: EmaFamily, live: list[ComponentResult]) -> None:
        self.family, self.live = family, live
        self.rev = np.array([r.details["src_rev"] for r in live], dtype=np.int64)  # per live asset
        self.parts: list[dict[str, np.ndarray]] = []
        self.tfs: dict[str, Timeframe] = {}

    def add(self, variant: int, at: np.ndarray, states: Any, tf_days: np.ndarray, tfs: dict[str, Timeframe]) -> None:
        """Jobs of one table: ``at`` (index of each job's asset in ``live``), its state rows."""
        if len(at):
            self.parts.append({"at": at, "variant": np.full(len(at), variant), "tf": states["tf"],
                               "period": states["period"].astype(np.int64), "tf_days": tf_days, "rev": self.rev[at],
                               "asset": states["id"].astype(np.int64), **{k: states[k] for k in self.STATE}})
            self.tfs.update(tfs)

    def run(self, batch: Batch, opts: RunOptions) -> None:
        if not self.parts:
            return
        jobs = {k: np.concatenate([p[k] for p in self.parts]) for k in self.parts[0]}
        bar_space = not self.family.daily_space_only
        assets, job_asset = np.unique(jobs["asset"], return_inverse=True)
        cut = np.full(len(assets), np.iinfo(np.int64).max)
        np.minimum.at(cut, job_asset, jobs["last_ts"].view(np.int64))
        cuts = {int(a): pd.Timestamp(c, tz="UTC").to_pydatetime() for a, c in zip(assets.tolist(), cut.tolist(),
                                                                                    strict=True)}
        tails = batch.reads.tail(cuts)
        flat, rows = self._layout(tails, _tail_median3(batch, cuts, tails), job_asset, jobs["last_ts"])
        canonical = self._canonical(flat, rows, jobs["tf"])
        period, tf_days = jobs["period"], jobs["tf_days"]
        done = continue_emas(flat["close"][rows.day], canonical, rows.length, 2.0 / (tf_days * period + 1),
                             jobs["last_ema"], 2.0 / (period + 1) if bar_space else None,
                             jobs["last_bar_ema"] if bar_space else None)
        m3_min, m3_max, bad = self._validate(flat["m3"], rows, done, jobs["median3_min"], jobs["median3_max"])
        keep = np.isfinite(done.ema) & ~np.isinf(done.ema_bar)
        written = np.bincount(jobs["at"], weights=np.bincount(rows.job[keep], minlength=len(period)),
                              minlength=len(self.live))
        for i in np.flatnonzero(written).tolist():
            self.live[i].rows_written += int(written[i])
        ts = flat["ts"][rows.day]
        self._rejects(batch, jobs, set(jobs["asset"][np.unique(rows.job[bad])].tolist()), rows.job, ts, done,
                      write=not opts.dry_run)
        if opts.dry_run:
            return
        self._write_rows(batch.writes, jobs, rows, ts, canonical, done, keep)
        self._write_states(batch.writes, jobs, rows, ts, canonical, done, m3_min, m3_max)

    @staticmethod
    def _layout(tails: dict[int, Any], m3: dict[int, np.ndarray], job_asset: np.ndarray,
                before_ts: np.ndarray) -> tuple[dict[str, np.ndarray], _Rows]:
        """The batch's tail days end to end (``ts``, ``close``, ``m3``, ``x`` epoch day, ``f``
        first grid day, per day) and where each job's new days are among them. ``tails`` is in
        asset order, ``job_asset`` indexes it."""
        parts = list(tails.values())
        sizes = np.array([len(t.ts) for t in parts], dtype=np.int64)
        flat = {
            "ts": np.concatenate([t.ts for t in parts]), "close": np.concatenate([t.close for t in parts]),
            "m3": np.concatenate([m3[a] for a in tails]),
            "x": np.concatenate([t.days for t in parts]).astype(np.int64),
            "f": np.repeat(np.array([t.first_day for t in parts], dtype="datetime64[D]").astype(np.int64), sizes),
        }
        base = (np.cumsum(sizes) - sizes)[job_asset]
        size = sizes[job_asset]
        # per job, its asset's tail days up to its last_ts (searchsorted side="right" within the
        # asset's sorted days), counted one day position at a time for all jobs at once
        k0 = np.zeros(len(job_asset), dtype=np.int64)
        last = max(len(flat["ts"]) - 1, 0)
        for i in range(int(size.max(initial=0))):
            k0 += (i < size) & (flat["ts"][np.minimum(base + i, last)] <= before_ts)
        first, length = base + k0, size - k0
        start, k = block_index(length)
        return flat, _Rows(np.repeat(np.arange(len(job_asset)), length), np.repeat(first, length) + k, start, length)

    def _canonical(self, flat: dict[str, np.ndarray], rows: _Rows, job_tf: np.ndarray) -> np.ndarray:
        """Per row: does its day close a bar of its job's timeframe (one windows pass per tf)."""
        names, tf_of_job = np.unique(job_tf.astype(str), return_inverse=True)
        tf_of_row = tf_of_job[rows.job]
        out = np.zeros(len(rows.day), dtype=bool)
        for i, name in enumerate(names.tolist()):
            tf = self.tfs[name]
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

    def _write_rows(self, out: BatchWrites, jobs: dict[str, np.ndarray], rows: _Rows, ts: np.ndarray,
                    canonical: np.ndarray, done: Any, keep: np.ndarray) -> None:
        for index, variant in enumerate(self.family.variants):
            mine = (jobs["variant"][rows.job] == index) & keep
            if mine.any():
                jr = rows.job[mine]
                out.add_rows(variant.table, WRITE_COLUMNS, pd.DataFrame({
                    "id": jobs["asset"][jr], "tf": jobs["tf"][jr], "ts": pd.DatetimeIndex(ts[mine]).tz_localize("UTC"),
                    "period": jobs["period"][jr], "tf_days": jobs["tf_days"][jr], "roll": ~canonical[mine],
                    "ema": done.ema[mine], "ema_bar": done.ema_bar[mine]}))

    def _write_states(self, out: BatchWrites, jobs: dict[str, np.ndarray], rows: _Rows, ts: np.ndarray,
                      canonical: np.ndarray, done: Any, m3_min: np.ndarray, m3_max: np.ndarray) -> None:
        """Every job's new state as columns, one staged upsert per state table (per-series
        dictionaries cost 0.7 s of a 100-asset day in the profile)."""
        n = len(jobs["asset"])
        n_canon = np.bincount(rows.job[canonical], minlength=n)
        last_canon = np.full(n, -1)
        np.maximum.at(last_canon, rows.job[canonical], np.flatnonzero(canonical))
        moved = rows.length > 0
        before_ts, before_canon = jobs["last_ts"], jobs["last_canonical_ts"]
        at = np.clip(rows.start + rows.length - 1, 0, None)
        last_ts = np.where(moved, ts[at] if len(ts) else before_ts, before_ts)
        last_canonical = np.where(moved & (last_canon >= 0), ts[np.clip(last_canon, 0, None)] if len(ts) else before_canon,
                                  before_canon)
        frame = pd.DataFrame({
            "id": jobs["asset"], "tf": jobs["tf"], "period": jobs["period"],
            "last_ts": pd.DatetimeIndex(last_ts).tz_localize("UTC"),
            "last_canonical_ts": pd.DatetimeIndex(last_canonical).tz_localize("UTC"),
            "last_bar_ema": np.full(n, np.nan) if self.family.daily_space_only
            else np.where(moved, done.last_bar_ema, jobs["last_bar_ema"]),
            "last_ema": np.where(moved, done.last_ema, jobs["last_ema"]),
            "canonical_count": jobs["canonical_count"].astype(np.int64) + n_canon,
            "src_rev": jobs["rev"], "median3_min": m3_min, "median3_max": m3_max,
        })
        for index, variant in enumerate(self.family.variants):
            mine = jobs["variant"] == index
            if mine.any():
                out.put_states(variant.state_table, "ema_state_put", frame[mine].reset_index(drop=True))

    def _rejects(self, batch: Batch, jobs: dict[str, np.ndarray], bad_assets: set[int], job_of_row: np.ndarray,
                 ts_rows: np.ndarray, done: Any, *, write: bool) -> None:
        """The reject rows of the (rare) assets with a flagged value, exactly as
        :func:`validate_emas` gives them over the asset's grid."""
        for a in sorted(bad_assets):
            grid = _Grid.of(batch, a)
            for index, variant in enumerate(self.family.variants):
                sel = np.flatnonzero((jobs["asset"] == a) & (jobs["variant"] == index))
                mask = np.isin(job_of_row, sel)
                if not mask.any():
                    continue
                jr = job_of_row[mask]
                rows = pd.DataFrame({
                    "id": a, "tf": jobs["tf"][jr], "ts": pd.DatetimeIndex(ts_rows[mask]).tz_localize("UTC"),
                    "period": jobs["period"][jr], "ema": done.ema[mask], "ema_bar": done.ema_bar[mask]})
                rejects = validate_emas(rows, grid.ts, grid.close)
                self.live[int(jobs["at"][sel[0]])].rejects += len(rejects)
                if write:
                    _queue_rejects(batch.writes, variant, a, rejects)
