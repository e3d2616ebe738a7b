"""Snapshot bars (BARS.md "Snapshot bars"): one row per observed day per bar, holding the
bar's aggregates from its first observed day through that day.

Boundary convention: a bar is its scheduled window ``[win_start, win_end]`` (inclusive
UTC days, :func:`ta_lab2.bars.windows.assign_windows`); gap days keep their place in the
calendar. Example, 3D rolling bars from first day 2025-01-01 with 2025-01-02 missing:

    day         bar_seq  pos_in_bar  count_days  count_missing_days  first/last_missing_day  is_partial_end
    2025-01-01  1        1           1           0                   NaT / NaT               True
    2025-01-03  1        3           2           1                   01-02 / 01-02           False

A row for day d depends only on the bar's observed days <= d and (tf, first_day), so a
rebuild from any bar's ``win_start`` reproduces the full build's rows of those bars.
``volume`` is the running sum of the non-null volumes, NaN while all of them are null; the
sum is compensated (Kahan, as pandas' grouped ``cumsum``), so each row also has a compensation
term (:attr:`Snapshots.volume_comp`).

Append: a row depends on the bar's earlier days only through the bar's newest row before it
(open/time_open, running high/low and their instants, running volume and its compensation,
count_days, pos_in_bar, first/last missing day). Given that row (a *tail*, :data:`TAIL_COLUMNS`)
the rows of the days after it are built from those days alone, bit for bit the full build's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd

from ta_lab2.bars.windows import Windows, as_day_numbers, in_a_bar, window_numbers
from ta_lab2.timeframes import Timeframe

SNAPSHOT_COLUMNS: tuple[str, ...] = (
    "id", "tf", "tf_days", "bar_seq", "timestamp", "time_open", "time_close", "time_high",
    "time_low", "open", "high", "low", "close", "volume", "market_cap", "pos_in_bar",
    "count_days_remaining", "is_partial_start", "is_partial_end", "count_days",
    "count_missing_days", "is_missing_days", "first_missing_day", "last_missing_day",
)  # fmt: skip
SNAPSHOT_INPUT_COLUMNS: tuple[str, ...] = (
    "day", "timestamp", "time_open", "time_close", "time_high", "time_low",
    "open", "high", "low", "close", "volume", "market_cap",
)  # fmt: skip
_TIME_COLUMNS = ("timestamp", "time_open", "time_close", "time_high", "time_low")
TAIL_COLUMNS: tuple[str, ...] = (
    "bar_seq", "pos_in_bar", "time_open", "time_high", "time_low", "open", "high", "low", "volume",
    "volume_comp", "count_days", "first_missing_day", "last_missing_day",
)  # fmt: skip


class Snapshots(NamedTuple):
    """What :func:`build_snapshots_many` returns."""

    rows: pd.DataFrame  # exactly SNAPSHOT_COLUMNS
    which: np.ndarray  # each row's series index
    volume_comp: np.ndarray  # each row's compensation of its running volume (what an append resumes from)


def build_snapshots(
    daily: pd.DataFrame, tf: Timeframe, first_day: np.datetime64, asset_id: int
) -> pd.DataFrame:
    """Snapshot rows of ``tf`` for one asset, exactly :data:`SNAPSHOT_COLUMNS`, sorted by
    (bar_seq, timestamp). ``daily`` holds :data:`SNAPSHOT_INPUT_COLUMNS`, one row per observed UTC
    day, sorted; ``first_day`` is the asset's first observed day (it may precede ``daily``
    when rebuilding from a bar's ``win_start``). Days in no bar produce no row.
    """
    return build_snapshots_many([(daily, tf, first_day, asset_id)])[0]


def build_snapshots_many(
    series: Sequence[tuple[pd.DataFrame, Timeframe, np.datetime64, int]],
    tails: pd.DataFrame | None = None,
) -> Snapshots:
    """:func:`build_snapshots` of several (daily, tf, first_day, asset_id) series in one pass
    (:func:`build_snapshots_spans` of their frames put end to end)."""
    if not series:
        raise ValueError("build_snapshots_many needs at least one series")
    frames = [s[0] for s in series]
    ends = np.cumsum([len(d) for d in frames])
    daily = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0].reset_index(drop=True)
    return build_snapshots_spans(daily, np.stack([np.concatenate(([0], ends[:-1])), ends], axis=1),
                                 [s[1] for s in series], [s[2] for s in series], [s[3] for s in series], tails)


def build_snapshots_spans(
    daily: pd.DataFrame, spans: np.ndarray, tfs: Sequence[Timeframe], first_days: Sequence[np.datetime64],
    asset_ids: Sequence[int], tails: pd.DataFrame | None = None,
) -> Snapshots:
    """Snapshot rows of many series in one pass: series i is timeframe ``tfs[i]`` of asset
    ``asset_ids[i]`` (first observed day ``first_days[i]``) over the daily rows
    ``daily[spans[i, 0]:spans[i, 1]]`` (one asset's days, sorted; series may share rows).
    Returns the concatenation of each series' :func:`build_snapshots` in series order, each
    row's series index and volume compensation. Every aggregate is per bar (a bar never spans
    two series), so each series' rows are its own build's bit for bit; the work is vectorised
    over all series (per distinct timeframe for the windows).

    ``tails`` (optional, one row per series, :data:`TAIL_COLUMNS`; ``bar_seq`` NaN = none): the
    series' newest stored row, its span then holding only days after that row's day. A
    series' first bar continues the tail's bar when it has the tail's ``bar_seq``: its rows are
    the full build's rows of those days (the append path)."""
    if not len(tfs):
        raise ValueError("build_snapshots_spans needs at least one series")
    all_days = _check_daily(daily)
    spans = np.asarray(spans, dtype=np.int64).reshape(-1, 2)
    lengths = spans[:, 1] - spans[:, 0]
    which = np.repeat(np.arange(len(tfs)), lengths)
    rows = np.arange(which.size) - np.repeat(np.cumsum(lengths) - lengths - spans[:, 0], lengths)
    x = all_days[rows]
    f_series = as_day_numbers(np.asarray(first_days, dtype="datetime64[ns]"), "first_day")
    f = f_series[which]
    same = which[1:] == which[:-1]
    if np.any(same & (np.diff(x) <= 0)) or np.any(x < f):
        raise ValueError("each series' days must be sorted, unique and >= its first_day")
    names = np.asarray([t.tf for t in tfs], dtype=object)
    seq, start, end = np.empty(x.size, dtype=np.int64), np.empty(x.size, dtype=np.int64), np.empty(x.size, dtype=np.int64)
    keep = np.empty(x.size, dtype=bool)
    kinds, code = np.unique(names, return_inverse=True)
    by_name = {t.tf: t for t in tfs}
    row_code = code[which]
    for k, name in enumerate(kinds):
        m = row_code == k
        tf = by_name[name]
        seq[m], start[m], end[m] = window_numbers(x[m], f[m], tf)
        keep[m] = in_a_bar(seq[m], tf)
    rows, which, x, f, seq, start, end = (a[keep] for a in (rows, which, x, f, seq, start, end))
    counts = np.bincount(which, minlength=len(tfs))
    daily = daily.take(rows).reset_index(drop=True)
    win = Windows(seq, start.astype("datetime64[D]"), end.astype("datetime64[D]"))
    new = np.ones(seq.size, dtype=bool)
    new[1:] = (seq[1:] != seq[:-1]) | (which[1:] != which[:-1])
    gid = np.cumsum(new) - 1
    first_pos = np.flatnonzero(new)[gid]
    seed = _seeds(tails, counts, seq, x - start + 1, gid, int(new.sum()))
    out = {
        "id": np.asarray(asset_ids, dtype=np.int64)[which],
        "tf": pd.array(names[which].tolist(), dtype="str"),
        "tf_days": np.asarray([t.tf_days_nominal for t in tfs], dtype=np.int64)[which],
        "bar_seq": seq,
    }
    prices, comp = _price_columns(daily, gid, new, first_pos, seed)
    out |= prices
    out |= _calendar_columns(x, win, f, new, first_pos, seed)
    return Snapshots(pd.DataFrame(out, columns=list(SNAPSHOT_COLUMNS)), which, comp)


class _Seed(NamedTuple):
    """Per row: does its bar continue a tail (``on``), and which tail row (``at``)."""

    on: np.ndarray
    at: np.ndarray
    tails: pd.DataFrame | None


def _seeds(tails: pd.DataFrame | None, counts: np.ndarray, seq: np.ndarray, pos: np.ndarray,
           gid: np.ndarray, n_groups: int) -> _Seed:
    on, at = np.zeros(n_groups, dtype=bool), np.zeros(n_groups, dtype=np.int64)
    if tails is not None:
        if len(tails) != counts.size:
            raise ValueError(f"tails has {len(tails)} rows for {counts.size} series")
        tail_seq = tails["bar_seq"].to_numpy(np.float64, na_value=np.nan)
        s = np.flatnonzero(~np.isnan(tail_seq) & (counts > 0))
        first = (np.cumsum(counts) - counts)[s]
        tail_pos = tails["pos_in_bar"].to_numpy(np.float64, na_value=np.nan)[s]
        later = (seq[first] > tail_seq[s]) | ((seq[first] == tail_seq[s]) & (pos[first] > tail_pos))
        if not later.all():
            raise ValueError("a series' days must all come after its tail's day")
        same = seq[first] == tail_seq[s]
        on[gid[first[same]]] = True
        at[gid[first[same]]] = s[same]
    return _Seed(on[gid], at[gid], tails if on.any() else None)


def _check_daily(daily: pd.DataFrame) -> np.ndarray:
    """Validate the input frame; return its days as epoch day numbers."""
    missing = [c for c in SNAPSHOT_INPUT_COLUMNS if c not in daily.columns]
    if missing:
        raise ValueError(f"daily frame lacks columns {missing}")
    naive = [c for c in _TIME_COLUMNS if not isinstance(daily[c].dtype, pd.DatetimeTZDtype)]
    if naive:
        raise ValueError(f"columns {naive} must be tz-aware (UTC) timestamps")
    if not np.issubdtype(daily["day"].dtype, np.datetime64):
        raise ValueError(f"column 'day' must be naive datetime64 days, got {daily['day'].dtype}")
    return as_day_numbers(daily["day"].to_numpy(), "days")


def _price_columns(daily: pd.DataFrame, gid: np.ndarray, new: np.ndarray, first_pos: np.ndarray,
                   seed: _Seed) -> tuple[dict, np.ndarray]:
    """open/time_open of the first day, running high/low with the earliest instant of the
    extreme, day's close/market_cap, running volume (and its compensation). A bar continuing a
    tail starts from the tail's aggregates; a tie with the tail's extreme keeps the tail's instant."""
    high, high_pos = _running_max(daily["high"].to_numpy(np.float64), gid, new)
    neg_low, low_pos = _running_max(-daily["low"].to_numpy(np.float64), gid, new)
    vol = daily["volume"].to_numpy(np.float64)
    known = ~np.isnan(vol)
    acc, comp = np.zeros(vol.size), np.zeros(vol.size)
    seen = _group_cumsum(known.astype(np.int64), first_pos)
    time = {c: daily[c].array for c in _TIME_COLUMNS}
    open_ = daily["open"].to_numpy(np.float64)[first_pos]
    low = -neg_low
    if seed.tails is None:
        time_open, time_high, time_low = (time[c].take(p) for c, p in
                                          (("time_open", first_pos), ("time_high", high_pos), ("time_low", low_pos)))
    else:
        on, t = seed.on, seed.tails
        tail = {c: t[c].to_numpy(np.float64, na_value=np.nan)[seed.at] for c in ("open", "high", "low", "volume")}
        open_ = np.where(on, tail["open"], open_)
        old_high = on & ~(high > tail["high"])
        old_low = on & ~(low < tail["low"])
        high, low = np.where(old_high, tail["high"], high), np.where(old_low, tail["low"], low)
        time_open = _take_or_tail(time["time_open"], first_pos, t["time_open"], seed.at, on)
        time_high = _take_or_tail(time["time_high"], high_pos, t["time_high"], seed.at, old_high)
        time_low = _take_or_tail(time["time_low"], low_pos, t["time_low"], seed.at, old_low)
        had = on & ~np.isnan(tail["volume"])
        acc = np.where(had, tail["volume"], 0.0)
        comp = np.where(on, t["volume_comp"].to_numpy(np.float64, na_value=np.nan)[seed.at], 0.0)
        seen = seen + had
    vol_sum, vol_comp = _running_sum(np.where(known, vol, 0.0), new, acc, comp)
    return {
        "timestamp": time["timestamp"],
        "time_open": time_open,
        "time_close": time["time_close"],
        "time_high": time_high,
        "time_low": time_low,
        "open": open_,
        "high": high,
        "low": low,
        "close": daily["close"].to_numpy(np.float64),
        "volume": np.where(seen > 0, vol_sum, np.nan),
        "market_cap": daily["market_cap"].to_numpy(np.float64),
    }, vol_comp


def _take_or_tail(days: pd.api.extensions.ExtensionArray, pos: np.ndarray, tail: pd.Series, at: np.ndarray,
                  use_tail: np.ndarray) -> pd.api.extensions.ExtensionArray:
    """``days.take(pos)``, with the tail's value (row ``at``) where ``use_tail``."""
    both = pd.concat([pd.Series(days), tail.reset_index(drop=True).astype(days.dtype)], ignore_index=True)
    return both.array.take(np.where(use_tail, len(days) + at, pos))


def _group_cumsum(values: np.ndarray, first_pos: np.ndarray) -> np.ndarray:
    """Per-bar running sum of integers (bars are contiguous runs starting at ``first_pos``)."""
    run = np.cumsum(values)
    return run - (run - values)[first_pos]


def _running_sum(values: np.ndarray, new: np.ndarray, acc: np.ndarray, comp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-bar compensated (Kahan) running sum and compensation of every row, exactly pandas'
    grouped ``cumsum`` of float64 when every bar starts from ``acc = comp = 0``; ``acc``/``comp``
    (per row, read at each bar's first row) let a bar resume a stored running sum.
    Vectorised over bars: step p adds the p-th value of every bar at once."""
    n = values.size
    out, out_comp = np.empty(n), np.empty(n)
    if n == 0:
        return out, out_comp
    starts = np.flatnonzero(new)
    lengths = np.diff(np.append(starts, n))
    order = np.argsort(-lengths, kind="stable")  # the bars still running at step p are a prefix
    starts, lengths = starts[order], lengths[order]
    total, c = acc[starts].copy(), comp[starts].copy()
    alive = np.searchsorted(-lengths, -np.arange(1, lengths[0] + 1), side="right")
    for p, k in enumerate(alive):
        rows = starts[:k] + p
        y = values[rows] - c[:k]
        t = total[:k] + y
        c[:k] = (t - total[:k]) - y
        total[:k] = t
        out[rows], out_comp[rows] = t, c[:k]
    return out, out_comp


def _running_max(values: np.ndarray, gid: np.ndarray, new: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-bar running max and the row of its first occurrence (a later tie does not move it)."""
    run = pd.Series(values).groupby(gid).cummax().to_numpy()
    prev = np.empty_like(run)
    prev[1:] = run[:-1]
    setter = new | (values > prev)  # rows that set a new extreme (every bar's first row does)
    return run, np.maximum.accumulate(np.where(setter, np.arange(values.size), 0))


def _calendar_columns(x: np.ndarray, win: Windows, f: np.ndarray, new: np.ndarray, first_pos: np.ndarray,
                      seed: _Seed) -> dict:
    """Position, completeness and missing-day columns. Missing days are counted from the
    effective start ``max(win_start, first_day)``: the gap before row i is the run of
    unobserved days after the previous observed day of the bar (or after eff_start - 1, or
    after the tail's day when the bar continues a tail)."""
    start = win.win_start.astype(np.int64)
    end = win.win_end.astype(np.int64)
    eff = np.maximum(start, f)
    before = eff - 1
    nat = np.datetime64("NaT", "ns")
    first_missing = last_missing = np.full(x.size, nat)
    count_days = np.arange(x.size) - first_pos + 1
    if seed.tails is not None:
        on, t = seed.on, seed.tails
        tail_pos = t["pos_in_bar"].to_numpy(np.float64, na_value=np.nan)[seed.at]
        before = np.where(on, start + np.nan_to_num(tail_pos).astype(np.int64) - 1, before)
        count_days = count_days + np.where(on, t["count_days"].to_numpy(np.float64, na_value=0.0)[seed.at], 0.0
                                           ).astype(np.int64)
        first_missing, last_missing = (
            np.where(on, t[c].to_numpy("datetime64[ns]")[seed.at], nat)
            for c in ("first_missing_day", "last_missing_day"))
    prev = np.where(new, before, np.concatenate(([0], x[:-1])))
    gap = x - prev - 1
    count_missing = x - eff + 1 - count_days
    return {
        "pos_in_bar": x - start + 1,
        "count_days_remaining": end - x,
        "is_partial_start": start < f,
        "is_partial_end": x != end,
        "count_days": count_days,
        "count_missing_days": count_missing,
        "is_missing_days": count_missing > 0,
        "first_missing_day": _gap_day((gap > 0) & (gap == count_missing), prev + 1, first_pos, first_missing),
        "last_missing_day": _gap_day(gap > 0, x - 1, first_pos, last_missing),
    }


def _gap_day(marked: np.ndarray, day_of_row: np.ndarray, first_pos: np.ndarray, otherwise: np.ndarray) -> np.ndarray:
    """``day_of_row`` at the latest marked row of the same bar up to each row, else ``otherwise``."""
    rows = np.maximum.accumulate(np.where(marked, np.arange(marked.size), -1))
    days = day_of_row[rows].astype("datetime64[D]").astype("datetime64[ns]")
    return np.where(rows >= first_pos, days, otherwise)
