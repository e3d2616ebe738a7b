"""The snapshot step for one asset and one family (multi_tf, cal_*, cal_anchor_*).

Per (id, tf): a missing state, ``full_rebuild`` or a moved first day (backfill, or the
first day rejected) rebuilds the series. Otherwise the 1d change feed gives the first 1d day
changed since the series' cursor; the bar containing that day is recomputed from its window
start with the pure :func:`ta_lab2.bars.snapshot.build_snapshots`, and only snapshot rows
from the changed day on are deleted and re-inserted: a snapshot row depends only on its
bar's days up to its own day, so earlier rows are unchanged by construction. A daily run
therefore writes (new days × timeframes) rows. Rows and state commit together.

Append (the daily run): when the changed day comes after the series' newest stored row and
the state carries that row (its ``last_*`` columns, with the running volume's compensation),
nothing before the changed day is read: the new rows are built from that row and the new 1d
rows only (one query for the batch), by the same pure build (``tails``), equal to the full
build's rows bit for bit. The state read is the batch's only read of the family (D-engine-9).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import psycopg
from psycopg.rows import dict_row

from ta_lab2.bars.snapshot import SNAPSHOT_COLUMNS, TAIL_COLUMNS, Snapshots, build_snapshots_spans
from ta_lab2.bars.windows import window_containing
from ta_lab2.refresh.context import Batch, ComponentResult, RunOptions
from ta_lab2.registry import BarFamily
from ta_lab2.store import frames
from ta_lab2.store.batch import BatchWrites
from ta_lab2.timeframes import Timeframe, select

log = logging.getLogger(__name__)


def _day(ts: Any) -> np.datetime64:
    """The UTC day of a tz-aware instant."""
    if isinstance(ts, datetime) and not isinstance(ts, pd.Timestamp):  # what the driver returns: no pandas boxing
        return np.datetime64(ts.astimezone(UTC).date(), "D")
    return np.datetime64(pd.Timestamp(ts).tz_convert("UTC").tz_localize(None).floor("D"), "D")


def _restart(batch: Batch, asset_id: int, state: dict[str, Any] | None, first_ts: datetime,
             full: bool, days: dict[int, np.datetime64 | None]) -> tuple[str, np.datetime64 | None]:
    """('rebuild', None) | ('noop', None) | ('window' | 'append', first changed day).
    ``days`` memoises the first changed day per cursor (the series of an asset share theirs)."""
    if state is None or full or state["daily_min_seen"] != first_ts:
        return "rebuild", None
    rev = state["src_rev"]
    if rev not in days:
        changed = batch.reads.changes_since(asset_id, rev)[0]
        days[rev] = None if changed is None else _day(changed)
    day = days[rev]
    if day is None:
        return "noop", None
    appends = state.get("last_volume_comp") is not None and state.get("last_ts") is not None \
        and state["last_time_close"] is not None and state["last_time_close"] < pd.Timestamp(day, tz="UTC")
    return ("append" if appends else "window"), day


def _plan(batch: Batch, family: BarFamily, asset_id: int, tfs: list[Timeframe], first_ts: datetime,
          first_day: np.datetime64, opts: RunOptions
          ) -> list[tuple[Timeframe, str, np.datetime64 | None, np.datetime64, dict[str, Any] | None]]:
    """Per timeframe (tf, mode, first changed day, first day to read: the window start of the
    changed day, the asset's first day for a rebuild, the changed day itself for an append; the
    state row)."""
    states = {s["tf"]: s for s in batch.reads.state_rows(family.state_table, "snapshot_state_get", asset_id)}
    days: dict[int, np.datetime64 | None] = {}
    plan = []
    for tf in tfs:
        state = states.get(tf.tf)
        mode, changed = _restart(batch, asset_id, state, first_ts, opts.full_rebuild, days)
        start = first_day if changed is None else changed if mode == "append" else _window_start(changed, tf, first_day)
        plan.append((tf, mode, changed, start, state))
    return plan


def _window_start(changed: np.datetime64, tf: Timeframe, first_day: np.datetime64) -> np.datetime64:
    return window_containing(changed, tf, first_day)[1]


def _tails(planned: list[list[Any]]) -> pd.DataFrame | None:
    """The newest row of every 'append' series, from its state row (no query); a series whose
    newest row is not before its changed day falls back to 'window'. An appended series' slot 5
    is its row number in the returned frame."""
    want: list[dict[str, Any]] = []
    for p in planned:
        if p[2] != "append":
            continue
        state = p[10]
        if state["last_ts"] >= pd.Timestamp(p[3], tz="UTC"):
            p[2], p[4] = "window", _window_start(p[3], p[1], p[9])
        else:
            p[5] = len(want)
            want.append(state)
    return frames.snapshot_tails(want)[list(TAIL_COLUMNS)] if want else None


def bar_timeframes(all_tfs: list[Timeframe], family: BarFamily, opts: RunOptions) -> list[Timeframe]:
    """``--tfs`` when given, else the canonical timeframes; plus, either way, those named in
    ``--tf-period-combos`` (the EMAs of a combo have the bars they are computed from)."""
    chosen = {t.tf: t for t in select(all_tfs, family, opts.tfs or None)}
    if opts.tf_period_combos:
        chosen.update((t.tf, t) for t in select(all_tfs, family, [c[0] for c in opts.tf_period_combos]))
    return sorted(chosen.values(), key=lambda t: (t.sort_order, t.tf))


def refresh_snapshot(batch: Batch, asset_id: int, opts: RunOptions, family: BarFamily) -> ComponentResult:
    """One asset (a batch of one)."""
    return refresh_snapshots(batch, [asset_id], opts, family)[0]


def refresh_snapshots(batch: Batch, asset_ids: list[int], opts: RunOptions,
                      family: BarFamily) -> list[ComponentResult]:
    """Every series (asset, tf) of the batch planned from the batch's reads, built in ONE
    :func:`build_snapshots_many` pass, written set-based. Locks: the runner holds
    ``(bars.<family>, id)`` and ``("bars.1d", id)`` shared (:func:`ta_lab2.refresh.runner.locks_for`)."""
    tfs = bar_timeframes(batch.reads.timeframes(), family, opts)
    results = []
    # per series: [asset, tf, mode, changed day, first day to read, tail row | None, result, bounds, src_rev,
    #              the asset's first day, state row | None]
    planned: list[list[Any]] = []
    for asset_id in asset_ids:
        result = ComponentResult(asset_id, f"bars.{family.name}")
        results.append(result)
        bounds = batch.reads.bounds(asset_id)
        if not tfs or bounds["n"] == 0:
            result.details = {"mode": "noop", "reason": "no 1d rows" if tfs else "no timeframe selected"}
            continue
        _, rev = batch.reads.changes_since(asset_id, 0)
        result.details = {"tfs": [t.tf for t in tfs], "modes": {}, "src_rev": rev}
        first_day = _day(bounds["first_ts"])
        for tf, mode, changed, start, state in _plan(batch, family, asset_id, tfs, bounds["first_ts"], first_day,
                                                     opts):
            if mode != "noop":
                planned.append([asset_id, tf, mode, changed, start, None, result, bounds, rev, first_day, state])
    tails = _tails(planned)
    if planned:
        _write_all(batch, family, planned, _build(batch, planned, tails), opts)
    for result in results:
        log.debug("asset %s bars.%s: %s rows written %s", result.asset_id, family.name, result.rows_written,
                  result.details.get("modes"))
    return results


def _build(batch: Batch, planned: list[list[Any]], tails: pd.DataFrame | None) -> Snapshots:
    """Every planned series in one :func:`build_snapshots_spans`: each asset's daily rows read
    once (only the new days when all its series append), each series a span of them."""
    first: dict[int, np.datetime64] = {}  # per asset, the earliest day a series needs
    whole: set[int] = set()  # assets with a series that is not appended (sliced from the whole-history read)
    for p in planned:
        first[p[0]] = min(first.get(p[0], p[4]), p[4])
        if p[2] != "append":
            whole.add(p[0])
    frame = batch.reads.daily_rows_from({a: pd.Timestamp(d, tz="UTC") for a, d in first.items() if a not in whole})
    if whole:
        frame = pd.concat([frame, *(batch.reads.daily_frame(a, pd.Timestamp(first[a], tz="UTC")).assign(id=a)
                                    for a in sorted(whole))], ignore_index=True)
    ids = frame.pop("id").to_numpy()
    edges = np.flatnonzero(np.concatenate(([True], ids[1:] != ids[:-1], [True])))
    rows_of = {int(ids[a]): (a, b) for a, b in zip(edges[:-1], edges[1:], strict=True)} if ids.size else {}
    days = frame["day"].to_numpy()
    instants = frame["timestamp"].dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()
    spans = np.empty((len(planned), 2), dtype=np.int64)
    for k, p in enumerate(planned):  # an append reads the rows from its changed day on, as the window path keeps
        a, b = rows_of.get(p[0], (0, 0))
        on = instants if p[2] == "append" else days
        spans[k] = a + np.searchsorted(on[a:b], np.datetime64(p[4], "ns")), b
    seeds = None if tails is None else tails.reindex([-1 if p[5] is None else p[5] for p in planned])
    return build_snapshots_spans(frame, spans, [p[1] for p in planned], [p[9] for p in planned],
                                 [p[0] for p in planned], None if seeds is None else seeds.reset_index(drop=True))


def _write_all(batch: Batch, family: BarFamily, planned: list[list[Any]], built: Snapshots, opts: RunOptions) -> None:
    """Keep each series' rows from its changed day on, count them, queue the writes."""
    rows, which, comp = built
    ts = rows["timestamp"].array
    from_ts = pd.array([pd.NaT if p[3] is None else pd.Timestamp(p[3], tz="UTC") for p in planned], dtype=ts.dtype)
    cut = from_ts.take(which)
    keep = np.asarray(cut.isna() | (ts >= cut), dtype=bool)
    rows, which, comp = rows[keep].reset_index(drop=True), which[keep], comp[keep]
    n = np.bincount(which, minlength=len(planned))
    gaps = np.bincount(which, weights=rows["is_missing_days"].to_numpy(bool), minlength=len(planned))
    ends = np.cumsum(n)
    for k, p in enumerate(planned):
        result = p[6]
        result.rows_written += int(n[k])
        result.gaps += int(gaps[k])
        result.details["modes"][p[2]] = result.details["modes"].get(p[2], 0) + 1
    if opts.dry_run:
        return
    out = batch.writes
    out.add_rows(family.table, SNAPSHOT_COLUMNS, rows)
    for k, p in enumerate(planned):
        if p[2] != "append":  # an appended series has no row from its changed day on: its newest is older
            out.delete_series(family.table, p[0], {"tf": p[1].tf}, "timestamp", from_ts[k] if p[3] is not None else None)
    wrote = np.flatnonzero(n)
    if wrote.size:  # the newest row after the write is the series' newest written row (rows are in time order)
        out.put_states(family.state_table, "snapshot_state_put",
                       _states([planned[k] for k in wrote], rows.iloc[ends[wrote] - 1], comp[ends[wrote] - 1]))
    for j in np.flatnonzero(n == 0).tolist():
        asset_id, tf, mode, _changed, _start, _tail, _result, bounds, rev, _first, before = planned[j]
        state = {"id": asset_id, "tf": tf.tf, "daily_min_seen": bounds["first_ts"],
                 "daily_max_seen": bounds["last_ts"], "src_rev": rev}
        if mode == "append":  # nothing new: the series keeps its newest row, as its state names it
            out.put_state(family.state_table, "snapshot_state_put", {**state, **{c: before[c] for c in _LAST}})
        else:  # its newest row is older than what was rebuilt: read it after the write
            out.after_rows.append(partial(_state_from_table, out, family, state))


_LAST = (*frames.SNAPSHOT_ROW_STATE.values(), "last_volume_comp")  # what a state row carries of its newest row


def _states(planned: list[list[Any]], newest: pd.DataFrame, comp: np.ndarray) -> pd.DataFrame:
    """State rows (as columns) of series whose newest row was just written (``newest``, one per
    series, with its running volume's compensation ``comp``)."""
    bounds = [p[7] for p in planned]
    return pd.DataFrame({
        "id": np.array([p[0] for p in planned], dtype=np.int64), "tf": [p[1].tf for p in planned],
        "daily_min_seen": pd.array([b["first_ts"] for b in bounds], dtype=newest["timestamp"].dtype),
        "daily_max_seen": pd.array([b["last_ts"] for b in bounds], dtype=newest["timestamp"].dtype),
        "src_rev": np.array([p[8] for p in planned], dtype=np.int64),
        "last_volume_comp": np.asarray(comp, dtype=np.float64),
        **{state: newest[col].array for col, state in frames.SNAPSHOT_ROW_STATE.items()}})


def _state_from_table(out: BatchWrites, family: BarFamily, state: dict[str, Any], conn: psycopg.Connection) -> None:
    """Nothing new was written for the series: its state names the stored newest row (the
    running volume's compensation is not stored with it: unknown, the next run takes 'window')."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(frames.query("snapshot_last_row", table=family.table),
                          {"id": state["id"], "tf": state["tf"]}).fetchone()
    out.put_state(family.state_table, "snapshot_state_put",
                  {**state, **{c: (row or {}).get(c) for c in _LAST}})
