"""The 1d step for a batch of assets: source -> ``cmc_price_bars_1d`` (+ state, rejects, change feed).

Incremental rule (BARS.md §1, extended): the window to recompute starts at the first source
row that is new or may have changed: inside the 3-day lookback before ``last_src_ts`` or
loaded (``load_ts``) after the last run. A source minimum earlier than ``daily_min_seen``
(backfill), a missing state or ``full_rebuild`` recompute the whole asset. The window is
rebuilt with the pure :func:`ta_lab2.bars.daily.build_daily_many` (all assets of the batch in
one pass; every read is one query for the batch), diffed against the stored rows, and only rows
that are new or changed are written; the per-asset counters count exactly those. Every write
and the watermark commit in the caller's single transaction.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from ta_lab2.bars.daily import DAILY_COLUMNS, DailyBuild, build_daily_many
from ta_lab2.frames import changed_mask
from ta_lab2.refresh.context import LOOKBACK_1D, Batch, ComponentResult, DataCorruptionError, RunOptions
from ta_lab2.store import bars1d

log = logging.getLogger(__name__)
COMPARE = tuple(c for c in DAILY_COLUMNS if c not in ("id", "tf", "timestamp"))


def effective_cutoff(as_of: datetime, state: dict[str, Any] | None, full_rebuild: bool) -> datetime:
    """A run never un-sees data it consumed before: an ``as_of`` earlier than the state's
    ``last_src_ts`` keeps what was consumed (only ``full_rebuild`` rewinds to ``as_of``)."""
    if state is None or full_rebuild or state["last_src_ts"] is None:
        return as_of
    return max(as_of, state["last_src_ts"] + timedelta(microseconds=1))


def _window_start(changes: dict[str, Any], state: dict[str, Any] | None, full: bool) -> tuple[str, Any]:
    if state is None or full:
        return "rebuild", None
    if changes["src_min_ts"] < state["daily_min_seen"]:
        return "rebuild", None  # backfilled history: dense bar_seq shifts for everything
    if changes["first_changed_ts"] is None:
        return "noop", None
    day = pd.Timestamp(changes["first_changed_ts"] - timedelta(microseconds=1)).floor("D")
    return "window", day.to_pydatetime()


def _check_corruption(asset_id: int, bad: int, total: int, opts: RunOptions) -> None:
    limit = max(opts.corruption_min_rows, opts.corruption_pct / 100.0 * total)
    if bad > limit:
        raise DataCorruptionError(
            f"asset {asset_id}: {bad} rejected or repaired 1d rows in one run exceeds "
            f"max({opts.corruption_min_rows}, {opts.corruption_pct}% of {total}) = {limit:.0f}; "
            "nothing written, inspect cmc_price_bars_1d_rejects / the source and rerun"
        )


def refresh_1d(batch: Batch, asset_id: int, opts: RunOptions) -> ComponentResult:
    """One asset (a batch of one)."""
    return refresh_1d_many(batch, [asset_id], opts)[0]


def refresh_1d_many(batch: Batch, asset_ids: list[int], opts: RunOptions) -> list[ComponentResult]:
    """Every asset of the batch planned from one read per kind, built in ONE
    :func:`build_daily_many` pass, diffed against the stored rows and queued set-based on
    ``batch.writes`` (the runner flushes, then invalidates the reads). Each asset's seconds are
    an equal share of the step. Locks: the runner holds ``("source", id)`` shared (no load
    commits mid-read) and ``("bars.1d", id)`` (:func:`ta_lab2.refresh.runner.locks_for`).
    Raises :class:`DataCorruptionError` for the first asset over the limit (the runner then
    redoes the batch asset by asset)."""
    t0 = time.perf_counter()
    states = {}
    for a in asset_ids:
        found = batch.reads.state_rows("cmc_price_bars_1d_state", "bars_1d_state_get", a)
        states[a] = found[0] if found else None
    cutoffs = {a: effective_cutoff(opts.as_of, states[a], opts.full_rebuild) for a in asset_ids}
    changes = bars1d.source_changes(batch.conn, [(a, cutoffs[a], states[a]) for a in asset_ids], LOOKBACK_1D)
    results, plans = [], []
    for a in asset_ids:
        result, state, change = ComponentResult(a, "bars.1d"), states[a], changes[a]
        results.append(result)
        if change["src_max_ts"] is None:
            result.details = {"mode": "noop", "reason": f"no source rows before {cutoffs[a].isoformat()}"}
            continue
        mode, from_ts = _window_start(change, state, opts.full_rebuild)
        result.details = {"mode": mode, "from": from_ts.isoformat() if from_ts else None,
                          "cutoff": cutoffs[a].isoformat()}
        if mode == "noop":
            _advance(batch, state, change, result, opts, rev=state["rev"] if state else 0)
        else:
            plans.append(_Plan(result, mode, from_ts, cutoffs[a], state, change))
    if plans:
        _rebuild(batch, plans, opts)
    share = (time.perf_counter() - t0) / len(results) if results else 0.0
    for result in results:
        result.duration_s = share
    return results


@dataclass
class _Plan:
    result: ComponentResult
    mode: str  # rebuild | window
    from_ts: datetime | None
    cutoff: datetime
    state: dict[str, Any] | None
    changes: dict[str, Any]


@dataclass
class _Diff:
    """The batch's build against its stored windows (masks aligned with the build's frames)."""

    changed: np.ndarray  # per bar row: new key or a value differs
    known: np.ndarray  # per bar row: its key is stored
    deleted: pd.DataFrame  # (id, timestamp) stored but no longer built
    new_rejects: np.ndarray  # per reject row: not stored yet


def _diff(conn: Any, windows: list[tuple[int, datetime | None]], build: DailyBuild) -> _Diff:
    bars, rejects = build.bars, build.rejects
    stored = bars1d.stored_windows(conn, windows)
    known, gone = np.zeros(len(bars), dtype=bool), np.zeros(len(stored), dtype=bool)
    if len(stored):
        keys, stored_keys = (pd.MultiIndex.from_frame(f[["id", "timestamp"]]) for f in (bars, stored))
        known, gone = keys.isin(stored_keys), ~stored_keys.isin(keys)
    new_rejects = np.ones(len(rejects), dtype=bool)
    old = bars1d.stored_rejects(conn, windows)
    if len(rejects) and len(old):
        cols = ["id", "timestamp", "reason"]
        new_rejects = ~pd.MultiIndex.from_frame(rejects[cols]).isin(pd.MultiIndex.from_frame(old[cols]))
    return _Diff(changed_mask(bars, stored, ["id", "timestamp"], COMPARE).to_numpy(), known,
                 stored.loc[gone, ["id", "timestamp"]], new_rejects)


def _per_plan(which: np.ndarray, n: int, mask: np.ndarray | None = None) -> np.ndarray:
    """Rows per plan (``which``: each row's plan index), counting only ``mask`` rows when given."""
    return np.bincount(which, weights=None if mask is None else mask.astype("float64"), minlength=n).astype("int64")


def _rebuild(batch: Batch, plans: list[_Plan], opts: RunOptions) -> None:
    """Windows of every planned asset: read, build at once, diff, count, check, queue."""
    windows = [(p.result.asset_id, p.from_ts) for p in plans]
    prev = bars1d.prev_rows(batch.conn, [(a, f) for a, f in windows if f is not None])
    src = bars1d.source_windows(batch.conn, [(a, f, p.cutoff) for (a, f), p in zip(windows, plans, strict=True)])
    build = build_daily_many(src, prev)
    diff = _diff(batch.conn, windows, build)
    _count(plans, build, diff, prev, opts)
    if opts.dry_run:
        for p in plans:
            p.result.status = "dry_run"
        return
    _queue(batch, plans, windows, build, diff, opts)


def _count(plans: list[_Plan], build: DailyBuild, diff: _Diff, prev: pd.DataFrame, opts: RunOptions) -> None:
    """Each asset's counters and details (only rows new or changed count), then its corruption check."""
    n, changed, bars, rejects = len(plans), diff.changed, build.bars, build.rejects
    index = pd.Index([p.result.asset_id for p in plans])
    which, rej_which = index.get_indexer(bars["id"]), index.get_indexer(rejects["id"])
    n_deleted = _per_plan(index.get_indexer(diff.deleted["id"]), n)
    n_changed, n_rejects = _per_plan(which, n, changed), _per_plan(rej_which, n, diff.new_rejects)
    flags = {name: _per_plan(which, n, getattr(build, name).to_numpy(dtype=bool) & changed)
             for name in ("repaired_timehigh", "repaired_timelow", "repaired_ohlc", "filled_times")}
    repaired = (build.repaired_timehigh | build.repaired_timelow | build.repaired_ohlc).to_numpy(dtype=bool)
    repairs, sizes = _per_plan(which, n, repaired & changed), _per_plan(which, n)
    gaps = _per_plan(which, n, bars["is_missing_days"].to_numpy(dtype=bool) & changed)
    reasons = {int(k): rejects["reason"][diff.new_rejects & (rej_which == k)].value_counts().to_dict()
               for k in np.unique(rej_which[diff.new_rejects])}
    for k, p in enumerate(plans):
        res = p.result
        res.rows_written, res.rejects = int(n_changed[k] + n_deleted[k]), int(n_rejects[k])
        res.repairs, res.gaps = int(repairs[k]), int(gaps[k])
        res.details.update(**{name: int(v[k]) for name, v in flags.items()}, deleted=int(n_deleted[k]),
                           reject_reasons=reasons.get(k, {}))
        total = int(prev["bar_seq"].get(res.asset_id, 0) if p.from_ts is not None else 0) + int(sizes[k])
        _check_corruption(res.asset_id, res.rejects + res.repairs, total, opts)


def _queue(batch: Batch, plans: list[_Plan], windows: list[tuple[int, datetime | None]], build: DailyBuild,
           diff: _Diff, opts: RunOptions) -> None:
    """Rows, rejects, change-feed entries and states of the batch on ``batch.writes``."""
    bars, changed, out = build.bars, diff.changed, batch.writes
    bars1d.replace_windows(out, bars[changed & ~diff.known], bars[changed & diff.known],
                           list(diff.deleted.itertuples(index=False, name=None)), windows,
                           build.rejects.drop(columns="day"))
    first, count = _touched(bars.loc[changed, ["id", "timestamp"]], diff.deleted)
    for p in plans:
        asset_id = p.result.asset_id
        # the feed's newest rev, not 0, when the state row is gone (deleted by hand to force a
        # rebuild): consumers' cursors stay valid and the feed's key never repeats
        rev = p.state["rev"] if p.state else batch.reads.changes_since(asset_id, 0)[1]
        if asset_id in count:
            rev += 1
            day = pd.Timestamp(first[asset_id] - timedelta(microseconds=1)).floor("D").to_pydatetime()
            bars1d.append_change(out, asset_id, rev, day, count[asset_id], p.mode == "rebuild")
        _advance(batch, p.state, p.changes, p.result, opts, rev)


def _touched(*frames: pd.DataFrame) -> tuple[dict[int, pd.Timestamp], dict[int, int]]:
    """Per asset: the earliest ``timestamp`` of the (id, timestamp) rows written or deleted, and their count."""
    ids = np.concatenate([f["id"].to_numpy(dtype="int64") for f in frames])
    ts = np.concatenate([pd.to_datetime(f["timestamp"], utc=True).dt.tz_localize(None).to_numpy("datetime64[us]")
                         for f in frames])
    order = np.lexsort((ts, ids))
    ids, ts = ids[order], ts[order]
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]) if len(ids) else np.zeros(0, dtype="int64")
    counts = np.diff(np.r_[starts, len(ids)])
    return ({int(ids[s]): pd.Timestamp(ts[s], tz="UTC") for s in starts},
            {int(ids[s]): int(c) for s, c in zip(starts, counts, strict=True)})


def _advance(batch: Batch, state: dict[str, Any] | None, changes: dict[str, Any],
             result: ComponentResult, opts: RunOptions, rev: int) -> ComponentResult:
    if opts.dry_run:
        result.status = "dry_run"
        return result
    d = result.details
    bars1d.put_state(batch.writes, {
        "id": result.asset_id, "last_src_ts": changes["src_max_ts"], "daily_min_seen": changes["src_min_ts"],
        "daily_max_seen": changes["src_max_ts"], "last_upserted": result.rows_written,
        "last_repaired_timehigh": d.get("repaired_timehigh", 0), "last_repaired_timelow": d.get("repaired_timelow", 0),
        "last_rejected": result.rejects, "last_filled_times": d.get("filled_times", 0),
        "last_load_ts": changes["max_load_ts"], "rev": rev,
    })
    log.debug("asset %s bars.1d: %s rows written, %s repairs, %s rejects (%s)", result.asset_id, result.rows_written,
              result.repairs, result.rejects, d.get("mode"))
    return result
