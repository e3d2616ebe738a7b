"""The snapshot step for one asset and one family (multi_tf, cal_*, cal_anchor_*).

Per (id, tf): a missing state, ``full_rebuild`` or a moved first day (backfill, or the
first day rejected) rebuilds the series. Otherwise the 1d change feed gives the first 1d day
changed since the series' cursor; the bar containing that day is recomputed from its window
start with the pure :func:`ta_lab2.bars.snapshot.build_snapshots`, and only snapshot rows
from the changed day on are deleted and re-inserted: a snapshot row depends only on its
bar's days up to its own day, so earlier rows are unchanged by construction. A daily run
therefore writes (new days × timeframes) rows. Rows and state commit together.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import psycopg

from ta_lab2.bars.snapshot import SNAPSHOT_COLUMNS, build_snapshots
from ta_lab2.bars.windows import window_containing
from ta_lab2.refresh.context import Batch, ComponentResult, RunOptions
from ta_lab2.registry import BarFamily
from ta_lab2.store import frames
from ta_lab2.timeframes import Timeframe, select

log = logging.getLogger(__name__)


def _day(ts: Any) -> np.datetime64:
    return np.datetime64(pd.Timestamp(ts).tz_convert("UTC").tz_localize(None).floor("D"), "D")


def _restart(batch: Batch, asset_id: int, state: dict[str, Any] | None, first_ts: datetime,
             full: bool) -> tuple[str, np.datetime64 | None]:
    """('rebuild', None) | ('noop', None) | ('window', first changed day)."""
    if state is None or full or state["daily_min_seen"] != first_ts:
        return "rebuild", None
    changed, _ = batch.reads.changes_since(asset_id, state["src_rev"])
    return ("noop", None) if changed is None else ("window", _day(changed))


def _plan(batch: Batch, family: BarFamily, asset_id: int, tfs: list[Timeframe],
          first_ts: datetime, opts: RunOptions) -> list[tuple[Timeframe, str, np.datetime64 | None, np.datetime64]]:
    states = {s["tf"]: s for s in batch.reads.state_rows(family.state_table, "snapshot_state_get", asset_id)}
    first_day = _day(first_ts)
    plan: list[tuple[Timeframe, str, np.datetime64 | None, np.datetime64]] = []
    for tf in tfs:
        mode, changed = _restart(batch, asset_id, states.get(tf.tf), first_ts, opts.full_rebuild)
        start = first_day if changed is None else window_containing(changed, tf, first_day)[1]
        plan.append((tf, mode, changed, start))
    return plan


def bar_timeframes(all_tfs: list[Timeframe], family: BarFamily, opts: RunOptions) -> list[Timeframe]:
    """``--tfs`` when given, else the canonical timeframes; plus, either way, those named in
    ``--tf-period-combos`` (the EMAs of a combo have the bars they are computed from)."""
    chosen = {t.tf: t for t in select(all_tfs, family, opts.tfs or None)}
    if opts.tf_period_combos:
        chosen.update((t.tf, t) for t in select(all_tfs, family, [c[0] for c in opts.tf_period_combos]))
    return sorted(chosen.values(), key=lambda t: (t.sort_order, t.tf))


def refresh_snapshot(batch: Batch, asset_id: int, opts: RunOptions, family: BarFamily) -> ComponentResult:
    """Locks: the runner holds ``(bars.<family>, id)`` and ``("bars.1d", id)`` shared
    (:func:`ta_lab2.refresh.runner.locks_for`)."""
    result = ComponentResult(asset_id, f"bars.{family.name}")
    tfs = bar_timeframes(batch.reads.timeframes(), family, opts)
    bounds = batch.reads.bounds(asset_id)
    if not tfs or bounds["n"] == 0:
        result.details = {"mode": "noop", "reason": "no 1d rows" if tfs else "no timeframe selected"}
        return result
    _, rev = batch.reads.changes_since(asset_id, 0)
    plan = [p for p in _plan(batch, family, asset_id, tfs, bounds["first_ts"], opts) if p[1] != "noop"]
    starts = [p[3] for p in plan]
    daily = batch.reads.daily_frame(asset_id, pd.Timestamp(min(starts), tz="UTC") if starts else None) \
        if plan else None
    first_day = _day(bounds["first_ts"])
    modes: dict[str, int] = {}
    for tf, mode, changed, start in plan:
        assert daily is not None
        rows = build_snapshots(daily[daily["day"] >= pd.Timestamp(start)], tf, first_day, asset_id)
        from_ts = None if changed is None else pd.Timestamp(changed, tz="UTC")
        if from_ts is not None:
            rows = rows[rows["timestamp"] >= from_ts]
        result.rows_written += len(rows)
        result.gaps += int(rows["is_missing_days"].sum())
        modes[mode] = modes.get(mode, 0) + 1
        if not opts.dry_run:
            _write(batch, family, asset_id, tf, from_ts, rows, bounds, rev)
    result.details = {"tfs": [t.tf for t in tfs], "modes": modes, "src_rev": rev}
    result.status = "dry_run" if opts.dry_run else "ok"
    log.debug("asset %s bars.%s: %s rows written over %d timeframes %s", asset_id, family.name,
              result.rows_written, len(tfs), modes)
    return result


def _write(batch: Batch, family: BarFamily, asset_id: int, tf: Timeframe, from_ts: Any,
           rows: pd.DataFrame, bounds: dict[str, Any], rev: int) -> None:
    """Queue the series' delete-from, rows and state (sent set-based by the batch flush)."""
    out = batch.writes
    out.delete_series(family.table, asset_id, {"tf": tf.tf}, "timestamp", from_ts)
    out.add_rows(family.table, SNAPSHOT_COLUMNS, rows)
    state = {"id": asset_id, "tf": tf.tf, "daily_min_seen": bounds["first_ts"], "daily_max_seen": bounds["last_ts"],
             "src_rev": rev}
    if len(rows):  # the newest row after the write is the newest written row (older ones were kept)
        last = rows.iloc[-1]  # rows are in (bar_seq, timestamp) order, i.e. in time order
        out.put_state(family.state_table, "snapshot_state_put", {
            **state, "last_bar_seq": int(last["bar_seq"]), "last_time_close": last["time_close"].to_pydatetime()})
        return

    def from_table(conn: psycopg.Connection) -> None:  # nothing new: the stored newest row
        row = conn.execute(frames.query("snapshot_last_row", table=family.table),
                           {"id": asset_id, "tf": tf.tf}).fetchone()
        out.put_state(family.state_table, "snapshot_state_put", {
            **state, "last_bar_seq": row[0] if row else None, "last_time_close": row[1] if row else None})

    out.after_rows.append(from_table)
