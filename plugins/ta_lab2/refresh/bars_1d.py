"""The 1d step for one asset: source -> ``cmc_price_bars_1d`` (+ state, rejects, change feed).

Incremental rule (BARS.md §1, extended): the window to recompute starts at the first source
row that is new or may have changed: inside the 3-day lookback before ``last_src_ts`` or
loaded (``load_ts``) after the last run. A source minimum earlier than ``daily_min_seen``
(backfill), a missing state or ``full_rebuild`` recompute the whole asset. The window is
rebuilt with the pure :func:`ta_lab2.bars.daily.build_daily`, diffed against the stored
rows, and only rows that are new or changed are written; the per-run counters count exactly
those. Every write and the watermark commit in the caller's single transaction.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from ta_lab2.bars.daily import DAILY_COLUMNS, build_daily
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
    """Locks: the runner holds ``("source", id)`` shared (no load commits mid-read) and
    ``("bars.1d", id)`` (:func:`ta_lab2.refresh.runner.locks_for`). Reads of the source and the
    stored window are per asset; the state comes from one read for the batch and every write is
    queued on ``batch.writes`` (set-based at the flush; the runner then invalidates the reads)."""
    conn = batch.conn
    found = batch.reads.state_rows("cmc_price_bars_1d_state", "bars_1d_state_get", asset_id)
    state = found[0] if found else None
    cutoff = effective_cutoff(opts.as_of, state, opts.full_rebuild)
    changes = bars1d.source_changes(conn, asset_id, cutoff, state, LOOKBACK_1D)
    result = ComponentResult(asset_id, "bars.1d")
    if changes["src_max_ts"] is None:
        result.details = {"mode": "noop", "reason": f"no source rows before {cutoff.isoformat()}"}
        return result
    mode, from_ts = _window_start(changes, state, opts.full_rebuild)
    result.details = {"mode": mode, "from": from_ts.isoformat() if from_ts else None, "cutoff": cutoff.isoformat()}
    if mode == "noop":
        return _advance(batch, asset_id, state, changes, result, opts, rev=state["rev"] if state else 0)
    prev = bars1d.prev_row(conn, asset_id, from_ts) if from_ts else None
    src = bars1d.source_window(conn, asset_id, from_ts, cutoff)
    build = build_daily(src, asset_id, *(prev or (0, None)))
    stored = bars1d.stored_window(conn, asset_id, from_ts)
    changed = changed_mask(build.bars, stored, "timestamp", COMPARE)
    deleted = sorted(set(stored["timestamp"]) - set(build.bars["timestamp"]))
    old_rejects = bars1d.stored_rejects(conn, asset_id, from_ts)
    new_rejects = [k not in old_rejects for k in zip(build.rejects["timestamp"], build.rejects["reason"], strict=True)]
    repaired = (build.repaired_timehigh | build.repaired_timelow | build.repaired_ohlc) & changed.to_numpy()
    result.rows_written = int(changed.sum()) + len(deleted)
    result.rejects = int(sum(new_rejects))
    result.repairs = int(repaired.sum())
    result.gaps = int(build.bars.loc[changed, "is_missing_days"].sum())
    result.details.update(
        repaired_timehigh=int((build.repaired_timehigh & changed.to_numpy()).sum()),
        repaired_timelow=int((build.repaired_timelow & changed.to_numpy()).sum()),
        repaired_ohlc=int((build.repaired_ohlc & changed.to_numpy()).sum()),
        filled_times=int((build.filled_times & changed.to_numpy()).sum()),
        deleted=len(deleted), reject_reasons=build.rejects["reason"][new_rejects].value_counts().to_dict(),
    )
    total = (prev[0] if prev else 0) + len(build.bars)
    _check_corruption(asset_id, result.rejects + result.repairs, total, opts)
    if opts.dry_run:
        result.status = "dry_run"
        return result
    bars1d.replace_window(batch.writes, asset_id, from_ts, build.bars[changed.to_numpy()], deleted,
                          build.rejects.drop(columns="day"))
    # the feed's newest rev, not 0, when the state row is gone (deleted by hand to force a
    # rebuild): consumers' cursors stay valid and the feed's key never repeats
    rev = state["rev"] if state else batch.reads.changes_since(asset_id, 0)[1]
    touched = list(build.bars.loc[changed, "timestamp"]) + deleted
    if touched:
        rev += 1
        first = pd.Timestamp(min(touched) - timedelta(microseconds=1)).floor("D").to_pydatetime()
        bars1d.append_change(batch.writes, asset_id, rev, first, len(touched), mode == "rebuild")
    return _advance(batch, asset_id, state, changes, result, opts, rev)


def _advance(batch: Batch, asset_id: int, state: dict[str, Any] | None, changes: dict[str, Any],
             result: ComponentResult, opts: RunOptions, rev: int) -> ComponentResult:
    if opts.dry_run:
        result.status = "dry_run"
        return result
    d = result.details
    bars1d.put_state(batch.writes, {
        "id": asset_id, "last_src_ts": changes["src_max_ts"], "daily_min_seen": changes["src_min_ts"],
        "daily_max_seen": changes["src_max_ts"], "last_upserted": result.rows_written,
        "last_repaired_timehigh": d.get("repaired_timehigh", 0), "last_repaired_timelow": d.get("repaired_timelow", 0),
        "last_rejected": result.rejects, "last_filled_times": d.get("filled_times", 0),
        "last_load_ts": changes["max_load_ts"], "rev": rev,
    })
    log.debug("asset %s bars.1d: %s rows written, %s repairs, %s rejects (%s)", asset_id, result.rows_written,
             result.repairs, result.rejects, d.get("mode"))
    return result
