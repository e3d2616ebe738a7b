"""The snapshot step for one asset and one family (multi_tf, cal_*, cal_anchor_*).

Per (id, tf): a missing state, ``full_rebuild`` or a moved first day (backfill, or the
first day rejected) rebuilds the series. Otherwise the 1d change feed gives the first 1d day
changed since the series' cursor; the bar containing that day is recomputed from its window
start with the pure :func:`ta_lab2.bars.snapshot.build_snapshots`, and only snapshot rows
from the changed day on are deleted and re-inserted: a snapshot row depends only on its
bar's days up to its own day, so earlier rows are unchanged by construction. A daily run
therefore writes (new days × timeframes) rows. Rows and state commit together.

Append (the daily run): when the changed day comes after the series' newest stored row and
the state knows that row's running-volume compensation, nothing before the changed day is
re-read: the new rows are built from that row (read for every such series of the batch in one
query, ``snapshot_tails``) and the new 1d rows only (one query for the batch), by the same pure
build (``tails``), equal to the full build's rows bit for bit.
"""

from __future__ import annotations

import logging
from datetime import datetime
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import psycopg

from ta_lab2.bars.snapshot import SNAPSHOT_COLUMNS, TAIL_COLUMNS, Snapshots, build_snapshots_spans
from ta_lab2.bars.windows import window_containing
from ta_lab2.refresh.context import Batch, ComponentResult, RunOptions
from ta_lab2.registry import BarFamily
from ta_lab2.store import frames
from ta_lab2.store.batch import BatchWrites
from ta_lab2.timeframes import Timeframe, select

log = logging.getLogger(__name__)


def _day(ts: Any) -> np.datetime64:
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
    appends = state.get("last_volume_comp") is not None and state["last_time_close"] is not None \
        and state["last_time_close"] < pd.Timestamp(day, tz="UTC")
    return ("append" if appends else "window"), day


def _plan(batch: Batch, family: BarFamily, asset_id: int, tfs: list[Timeframe],
          first_ts: datetime, first_day: np.datetime64, opts: RunOptions) -> list[tuple[Timeframe, str, np.datetime64 | None, np.datetime64]]:
    """Per timeframe (tf, mode, first changed day, first day to read: the window start of the
    changed day, the asset's first day for a rebuild, the changed day itself for an append)."""
    states = {s["tf"]: s for s in batch.reads.state_rows(family.state_table, "snapshot_state_get", asset_id)}
    days: dict[int, np.datetime64 | None] = {}
    plan: list[tuple[Timeframe, str, np.datetime64 | None, np.datetime64]] = []
    for tf in tfs:
        mode, changed = _restart(batch, asset_id, states.get(tf.tf), first_ts, opts.full_rebuild, days)
        start = first_day if changed is None else changed if mode == "append" else _window_start(changed, tf, first_day)
        plan.append((tf, mode, changed, start))
    return plan


def _window_start(changed: np.datetime64, tf: Timeframe, first_day: np.datetime64) -> np.datetime64:
    return window_containing(changed, tf, first_day)[1]


def _tails(batch: Batch, family: BarFamily, planned: list[list[Any]]) -> pd.DataFrame | None:
    """The newest stored row of every 'append' series (one query); a series whose row is not
    the one its state names, or not before its changed day, falls back to 'window'."""
    want = [p for p in planned if p[2] == "append"]
    if not want:
        return None
    tails = frames.snapshot_tails(batch.conn, family.table, family.state_table, [(p[0], p[1].tf) for p in want])
    at = {(int(r.id), r.tf): i for i, r in enumerate(tails.itertuples(index=False))
          if r.bar_seq == r.last_bar_seq and r.time_close == r.last_time_close}
    newest = tails["timestamp"].tolist()
    for p in want:
        i = at.get((p[0], p[1].tf))
        if i is None or newest[i] >= pd.Timestamp(p[3], tz="UTC"):
            p[2], p[4] = "window", _window_start(p[3], p[1], p[9])
        else:
            p[5] = i
    return tails[list(TAIL_COLUMNS)]


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
    #              the asset's first day]
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
        for tf, mode, changed, start in _plan(batch, family, asset_id, tfs, bounds["first_ts"], first_day, opts):
            if mode != "noop":
                planned.append([asset_id, tf, mode, changed, start, None, result, bounds, rev, first_day])
    tails = _tails(batch, family, planned)
    if planned:
        _write_all(batch, family, planned, _build(batch, planned, tails), tails, opts)
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


def _write_all(batch: Batch, family: BarFamily, planned: list[list[Any]], built: Snapshots,
               tails: pd.DataFrame | None, opts: RunOptions) -> None:
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
    bar_seq, time_close = rows["bar_seq"].to_numpy(), rows["time_close"].array
    for k, (asset_id, tf, mode, changed, _start, tail, _result, bounds, rev, _first) in enumerate(planned):
        if mode != "append":  # an appended series has no row from its changed day on: its newest is older
            out.delete_series(family.table, asset_id, {"tf": tf.tf}, "timestamp", from_ts[k] if changed is not None else None)
        state = {"id": asset_id, "tf": tf.tf, "daily_min_seen": bounds["first_ts"],
                 "daily_max_seen": bounds["last_ts"], "src_rev": rev}
        if n[k]:  # the newest row after the write is the series' newest written row (rows are in time order)
            last = ends[k] - 1
            out.put_state(family.state_table, "snapshot_state_put", {
                **state, "last_bar_seq": int(bar_seq[last]), "last_time_close": time_close[last].to_pydatetime(),
                "last_volume_comp": float(comp[last])})
        else:  # an appended series keeps its newest row (and its compensation); else it is unknown
            state["last_volume_comp"] = None if tail is None or tails is None else float(tails["volume_comp"].iloc[tail])
            out.after_rows.append(partial(_state_from_table, out, family, state))


def _state_from_table(out: BatchWrites, family: BarFamily, state: dict[str, Any], conn: psycopg.Connection) -> None:
    """Nothing new was written for the series: its state names the stored newest row."""
    row = conn.execute(frames.query("snapshot_last_row", table=family.table),
                       {"id": state["id"], "tf": state["tf"]}).fetchone()
    out.put_state(family.state_table, "snapshot_state_put", {
        **state, "last_bar_seq": row[0] if row else None, "last_time_close": row[1] if row else None})
