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
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import psycopg
from psycopg.rows import dict_row

from ta_lab2.bars.snapshot import SNAPSHOT_COLUMNS, TAIL_COLUMNS, Snapshots, build_snapshots_spans
from ta_lab2.bars.windows import window_containing
from ta_lab2.refresh.context import Batch, ComponentResult, RunOptions
from ta_lab2.registry import BarFamily
from ta_lab2.store import frames
from ta_lab2.store.batch import BatchWrites, Columns, utc_ns
from ta_lab2.timeframes import Timeframe, select

log = logging.getLogger(__name__)


def _day(ts: Any) -> np.datetime64:
    """The UTC day of a tz-aware instant."""
    if isinstance(ts, datetime) and not isinstance(ts, pd.Timestamp):  # what the driver returns: no pandas boxing
        return np.datetime64(ts.astimezone(UTC).date(), "D")
    return np.datetime64(pd.Timestamp(ts).tz_convert("UTC").tz_localize(None).floor("D"), "D")


MODES = ("rebuild", "window", "append")
REBUILD, WINDOW, APPEND, NOOP = 0, 1, 2, 3


class _Plan(NamedTuple):
    """The series of a batch and family to build, as arrays in (asset, tf) order."""

    at: np.ndarray  # index of the series' asset in ``live``
    tf: np.ndarray  # index into ``tfs``
    mode: np.ndarray  # REBUILD | WINDOW | APPEND
    changed: np.ndarray  # datetime64[D]: first changed day (NaT: rebuild)
    start: np.ndarray  # datetime64[D]: first day to read (the window start of the changed day, the
    # asset's first day for a rebuild, the changed day itself for an append)
    state: np.ndarray  # row of the state columns (-1: none)


class _Assets(NamedTuple):
    """Per live asset: id, first and last accepted 1d instant (ns), first grid day, cursor."""

    ids: np.ndarray
    first_ts: np.ndarray
    last_ts: np.ndarray
    first_day: np.ndarray
    rev: np.ndarray


def _assets(batch: Batch, live: list[ComponentResult]) -> _Assets:
    bounds = [batch.reads.bounds(r.asset_id) for r in live]
    first = utc_ns([b["first_ts"] for b in bounds])
    return _Assets(np.array([r.asset_id for r in live], dtype=np.int64), first, utc_ns([b["last_ts"] for b in bounds]),
                   first.astype("datetime64[D]"), np.array([r.details["src_rev"] for r in live], dtype=np.int64))


def _plan(batch: Batch, family: BarFamily, tfs: list[Timeframe], assets: _Assets, states: Columns,
          opts: RunOptions) -> _Plan:
    """Every (asset, tf) series' mode from its state row and the 1d change feed, as arrays: no
    state, ``full_rebuild`` or a moved first day (backfill, first day rejected) -> rebuild;
    nothing changed since the cursor -> noop (dropped); a change after the newest row that the
    state carries -> append; else window."""
    n, m = len(assets.ids), len(tfs)
    pos = {int(a): i for i, a in enumerate(assets.ids.tolist())}
    code = {tf.tf: k for k, tf in enumerate(tfs)}
    at = np.fromiter((pos.get(a, -1) for a in states["id"].tolist()), np.int64, len(states))
    key = np.fromiter((code.get(t, -1) for t in states["tf"].tolist()), np.int64, len(states))
    row_of = np.full((n, m), -1, dtype=np.int64)
    mine = (at >= 0) & (key >= 0)
    row_of[at[mine], key[mine]] = np.flatnonzero(mine)
    j = row_of.ravel()  # series (i, k) in asset-major order
    i = np.repeat(np.arange(n), m)
    has = j >= 0
    jj = np.where(has, j, 0)
    mode = np.full(n * m, REBUILD)
    changed = np.full(n * m, np.datetime64("NaT"), dtype="datetime64[D]")
    if not opts.full_rebuild and len(states):
        kept = has & (states["daily_min_seen"][jj] == assets.first_ts[i])
        days: dict[tuple[int, int], np.datetime64] = {}
        for pair in set(zip(assets.ids[i[kept]].tolist(), states["src_rev"][jj[kept]].tolist(), strict=True)):
            day = batch.reads.changes_since(*pair)[0]
            days[pair] = np.datetime64("NaT", "D") if day is None else _day(day)
        changed[kept] = np.array([days[pair] for pair in zip(assets.ids[i[kept]].tolist(),
                                                             states["src_rev"][jj[kept]].tolist(), strict=True)],
                                 dtype="datetime64[D]")
        midnight = changed.astype("datetime64[ns]")
        # an append resumes from the carried newest row: it must be there and end before the changed day
        carried = ~np.isnat(states["last_ts"][jj]) & ~np.isnat(states["last_time_close"][jj]) \
            & (states["last_time_close"][jj] < midnight) & (states["last_ts"][jj] < midnight)
        if "last_volume_comp" in states.nulls:
            carried &= ~states.nulls["last_volume_comp"][jj]
        mode = np.where(~kept, REBUILD, np.where(np.isnat(changed), NOOP, np.where(carried, APPEND, WINDOW)))
    go = np.flatnonzero(mode != NOOP)
    i, k, mode, changed, j = i[go], np.tile(np.arange(m), n)[go], mode[go], changed[go], j[go]
    start = np.where(mode == REBUILD, assets.first_day[i], changed)
    for s in np.flatnonzero(mode == WINDOW).tolist():
        start[s] = window_containing(changed[s], tfs[k[s]], assets.first_day[i[s]])[1]
    return _Plan(i, k, mode, changed, start, np.where(mode == REBUILD, -1, j))


def _tails(states: Columns, plan: _Plan) -> pd.DataFrame | None:
    """Per planned series, the newest row of an 'append' series from its state row (no query),
    typed as the pure build's tails (:data:`TAIL_COLUMNS`); a row of NaN for the others (None:
    no series appends)."""
    appends = plan.mode == APPEND
    if not appends.any():
        return None
    st = states.take(plan.state[appends])
    out: dict[str, Any] = {}
    for tail, col in frames.SNAPSHOT_TAIL_STATE.items():
        values = st[col]
        if values.dtype.kind == "M":
            out[tail] = pd.DatetimeIndex(values.astype("datetime64[ns]"))
            if tail.startswith("time_"):
                out[tail] = out[tail].tz_localize("UTC")
        elif tail in ("bar_seq", "pos_in_bar", "count_days"):
            out[tail] = values.astype(np.int64)
        else:
            out[tail] = values.astype(np.float64)
    return pd.DataFrame(out)[list(TAIL_COLUMNS)].reindex(np.where(appends, np.cumsum(appends) - 1, -1)) \
        .reset_index(drop=True)


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
    """Every series (asset, tf) of the batch planned from the batch's reads (as arrays, from
    the state table read as columns), built in ONE :func:`build_snapshots_spans` pass, written
    set-based. Locks: the runner holds ``(bars.<family>, id)`` and ``("bars.1d", id)`` shared
    (:func:`ta_lab2.refresh.runner.locks_for`)."""
    tfs = bar_timeframes(batch.reads.timeframes(), family, opts)
    results, live = [], []
    for asset_id in asset_ids:
        result = ComponentResult(asset_id, f"bars.{family.name}")
        results.append(result)
        bounds = batch.reads.bounds(asset_id)
        if not tfs or bounds["n"] == 0:
            result.details = {"mode": "noop", "reason": "no 1d rows" if tfs else "no timeframe selected"}
            continue
        result.details = {"tfs": [t.tf for t in tfs], "modes": {}, "src_rev": batch.reads.changes_since(asset_id, 0)[1]}
        live.append(result)
    if live:
        assets = _assets(batch, live)
        states = batch.reads.state_columns(family.state_table, "snapshot_state_get")
        plan = _plan(batch, family, tfs, assets, states, opts)
        if len(plan.at):
            _write_all(batch, family, tfs, live, assets, states, plan,
                       _build(batch, tfs, assets, plan, _tails(states, plan)), opts)
    for result in results:
        log.debug("asset %s bars.%s: %s rows written %s", result.asset_id, family.name, result.rows_written,
                  result.details.get("modes"))
    return results


def _build(batch: Batch, tfs: list[Timeframe], assets: _Assets, plan: _Plan, tails: pd.DataFrame | None) -> Snapshots:
    """Every planned series in one :func:`build_snapshots_spans`: each asset's daily rows read
    once (only the new days when all its series append), each series a span of them."""
    first = np.full(len(assets.ids), np.datetime64("NaT"), dtype="datetime64[D]")  # per asset, the earliest day a series needs
    planned = np.zeros(len(assets.ids), dtype=bool)
    planned[plan.at] = True
    first[planned] = np.datetime64("9999-12-31")
    np.minimum.at(first, plan.at, plan.start)
    whole = np.zeros(len(assets.ids), dtype=bool)  # assets with a series that is not appended (sliced from the whole-history read)
    whole[plan.at[plan.mode != APPEND]] = True
    frame = batch.reads.daily_rows_from({int(assets.ids[i]): pd.Timestamp(first[i], tz="UTC")
                                         for i in np.flatnonzero(planned & ~whole).tolist()})
    if whole.any():
        frame = pd.concat([frame, *(batch.reads.daily_frame(int(assets.ids[i]), pd.Timestamp(first[i], tz="UTC"))
                                    .assign(id=int(assets.ids[i])) for i in np.flatnonzero(whole).tolist())],
                          ignore_index=True)
    ids = frame.pop("id").to_numpy()
    edges = np.flatnonzero(np.concatenate(([True], ids[1:] != ids[:-1], [True])))
    rows_of = {int(ids[a]): (a, b) for a, b in zip(edges[:-1], edges[1:], strict=True)} if ids.size else {}
    days = frame["day"].to_numpy()
    instants = frame["timestamp"].dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()
    spans = np.empty((len(plan.at), 2), dtype=np.int64)
    start_ns = plan.start.astype("datetime64[ns]")
    for k, (i, mode) in enumerate(zip(plan.at.tolist(), plan.mode.tolist(), strict=True)):
        # an append reads the rows from its changed day on, as the window path keeps
        a, b = rows_of.get(int(assets.ids[i]), (0, 0))
        on = instants if mode == APPEND else days
        spans[k] = a + np.searchsorted(on[a:b], start_ns[k]), b
    return build_snapshots_spans(frame, spans, [tfs[k] for k in plan.tf.tolist()], list(assets.first_day[plan.at]),
                                 assets.ids[plan.at].tolist(), tails)


def _write_all(batch: Batch, family: BarFamily, tfs: list[Timeframe], live: list[ComponentResult], assets: _Assets,
               states: Columns, plan: _Plan, built: Snapshots, opts: RunOptions) -> None:
    """Keep each series' rows from its changed day on, count them, queue the writes."""
    rows, which, comp = built
    cut = plan.changed.astype("datetime64[ns]")[which]
    ts = rows["timestamp"].dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()
    keep = np.isnat(cut) | (ts >= cut)
    rows, which, comp = rows[keep].reset_index(drop=True), which[keep], comp[keep]
    n = np.bincount(which, minlength=len(plan.at))
    gaps = np.bincount(which, weights=rows["is_missing_days"].to_numpy(bool), minlength=len(plan.at))
    ends = np.cumsum(n)
    written = np.bincount(plan.at, weights=n, minlength=len(live))
    flagged = np.bincount(plan.at, weights=gaps, minlength=len(live))
    counts = np.zeros((len(MODES), len(live)), dtype=np.int64)
    np.add.at(counts, (plan.mode, plan.at), 1)
    for i, result in enumerate(live):
        result.rows_written += int(written[i])
        result.gaps += int(flagged[i])
        result.details["modes"] = {m: int(c) for m, c in zip(MODES, counts[:, i], strict=True) if c}
    if opts.dry_run:
        return
    out = batch.writes
    out.add_rows(family.table, SNAPSHOT_COLUMNS, rows)
    for k in np.flatnonzero(plan.mode != APPEND).tolist():  # an appended series has no row from its changed day on
        changed = plan.changed[k]
        out.delete_series(family.table, int(assets.ids[plan.at[k]]), {"tf": tfs[plan.tf[k]].tf}, "timestamp",
                          None if np.isnat(changed) else pd.Timestamp(changed, tz="UTC").to_pydatetime())
    wrote = np.flatnonzero(n)
    if wrote.size:  # the newest row after the write is the series' newest written row (rows are in time order)
        of = plan.at[wrote]
        newest = rows.iloc[ends[wrote] - 1]
        out.put_states(family.state_table, "snapshot_state_put", pd.DataFrame({
            "id": assets.ids[of], "tf": [tfs[k].tf for k in plan.tf[wrote].tolist()],
            "daily_min_seen": pd.DatetimeIndex(assets.first_ts[of]).tz_localize("UTC"),
            "daily_max_seen": pd.DatetimeIndex(assets.last_ts[of]).tz_localize("UTC"),
            "src_rev": assets.rev[of], "last_volume_comp": np.asarray(comp[ends[wrote] - 1], dtype=np.float64),
            **{state: newest[col].array for col, state in frames.SNAPSHOT_ROW_STATE.items()}}))
    for k in np.flatnonzero(n == 0).tolist():
        i = int(plan.at[k])
        bounds = batch.reads.bounds(int(assets.ids[i]))
        state = {"id": int(assets.ids[i]), "tf": tfs[plan.tf[k]].tf, "daily_min_seen": bounds["first_ts"],
                 "daily_max_seen": bounds["last_ts"], "src_rev": int(assets.rev[i])}
        if plan.mode[k] == APPEND:  # nothing new: the series keeps its newest row, as its state names it
            before = states.row(int(plan.state[k]))
            out.put_state(family.state_table, "snapshot_state_put", {**state, **{c: before[c] for c in _LAST}})
        else:  # its newest row is older than what was rebuilt: read it after the write
            out.after_rows.append(partial(_state_from_table, out, family, state))


_LAST = (*frames.SNAPSHOT_ROW_STATE.values(), "last_volume_comp")  # what a state row carries of its newest row


def _state_from_table(out: BatchWrites, family: BarFamily, state: dict[str, Any], conn: psycopg.Connection) -> None:
    """Nothing new was written for the series: its state names the stored newest row (the
    running volume's compensation is not stored with it: unknown, the next run takes 'window')."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(frames.query("snapshot_last_row", table=family.table),
                          {"id": state["id"], "tf": state["tf"]}).fetchone()
    out.put_state(family.state_table, "snapshot_state_put",
                  {**state, **{c: (row or {}).get(c) for c in _LAST}})
