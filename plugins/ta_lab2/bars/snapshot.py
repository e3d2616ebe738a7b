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
``volume`` is the running sum of the non-null volumes, NaN while all of them are null.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ta_lab2.bars.windows import Windows, assign_windows, day_number
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
) -> tuple[pd.DataFrame, np.ndarray]:
    """:func:`build_snapshots` of several (daily, tf, first_day, asset_id) series in one pass:
    the concatenation of their outputs in the given order, and each row's series index.
    Every aggregate is per bar (a bar never spans two series), so each series' rows equal its
    own :func:`build_snapshots` bit for bit; the pandas/numpy work is paid once, not per series."""
    if not series:
        raise ValueError("build_snapshots_many needs at least one series")
    parts, wins, xs, news, names, days_nominal, ids, firsts = [], [], [], [], [], [], [], []
    for daily, tf, first_day, asset_id in series:
        days = _check_daily(daily, tf)
        win = assign_windows(days, tf, first_day)
        keep = ~np.isnat(win.win_start)
        parts.append(daily.iloc[np.flatnonzero(keep)])
        win = Windows(*(a[keep] for a in win))
        wins.append(win)
        xs.append(days[keep].astype("datetime64[D]").astype(np.int64))
        seq = win.bar_seq.astype(np.int64)
        new = np.ones(seq.size, dtype=bool)
        new[1:] = seq[1:] != seq[:-1]
        news.append(new)
        names.append(tf.tf)
        days_nominal.append(tf.tf_days_nominal)
        ids.append(asset_id)
        firsts.append(day_number(first_day, "first_day"))
    counts = np.array([len(x) for x in xs], dtype=np.int64)
    which = np.repeat(np.arange(len(series)), counts)
    daily = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0].reset_index(drop=True)
    win = Windows(*(np.concatenate([w[k] for w in wins]) for k in range(3)))
    x = np.concatenate(xs)
    new = np.concatenate(news)
    seq = win.bar_seq.astype(np.int64)
    gid = np.cumsum(new) - 1
    first_pos = np.flatnonzero(new)[gid]
    out = {
        "id": np.asarray(ids, dtype=np.int64)[which],
        "tf": pd.array(np.asarray(names, dtype=object)[which].tolist(), dtype="str"),
        "tf_days": np.asarray(days_nominal, dtype=np.int64)[which],
        "bar_seq": seq,
    }
    out |= _price_columns(daily, gid, new, first_pos)
    out |= _calendar_columns(x, win, np.asarray(firsts, dtype=np.int64)[which], new, first_pos)
    return pd.DataFrame(out, columns=list(SNAPSHOT_COLUMNS)), which


def _check_daily(daily: pd.DataFrame, tf: Timeframe) -> np.ndarray:
    """Validate the input frame; return its days as a datetime64 array."""
    missing = [c for c in SNAPSHOT_INPUT_COLUMNS if c not in daily.columns]
    if missing:
        raise ValueError(f"{tf.tf}: daily frame lacks columns {missing}")
    naive = [c for c in _TIME_COLUMNS if not isinstance(daily[c].dtype, pd.DatetimeTZDtype)]
    if naive:
        raise ValueError(f"{tf.tf}: columns {naive} must be tz-aware (UTC) timestamps")
    if not np.issubdtype(daily["day"].dtype, np.datetime64):
        raise ValueError(f"{tf.tf}: column 'day' must be naive datetime64 days, got {daily['day'].dtype}")
    return daily["day"].to_numpy()


def _price_columns(daily: pd.DataFrame, gid: np.ndarray, new: np.ndarray, first_pos: np.ndarray) -> dict:
    """open/time_open of the first day, running high/low with the earliest instant of the
    extreme, day's close/market_cap, running volume."""
    high, high_pos = _running_max(daily["high"].to_numpy(np.float64), gid, new)
    neg_low, low_pos = _running_max(-daily["low"].to_numpy(np.float64), gid, new)
    vol = pd.Series(daily["volume"].to_numpy(np.float64))
    seen = vol.notna().groupby(gid).cumsum().to_numpy()
    vol_sum = vol.fillna(0.0).groupby(gid).cumsum().to_numpy()
    time = {c: daily[c].array for c in _TIME_COLUMNS}
    return {
        "timestamp": time["timestamp"],
        "time_open": time["time_open"].take(first_pos),
        "time_close": time["time_close"],
        "time_high": time["time_high"].take(high_pos),
        "time_low": time["time_low"].take(low_pos),
        "open": daily["open"].to_numpy(np.float64)[first_pos],
        "high": high,
        "low": -neg_low,
        "close": daily["close"].to_numpy(np.float64),
        "volume": np.where(seen > 0, vol_sum, np.nan),
        "market_cap": daily["market_cap"].to_numpy(np.float64),
    }


def _running_max(values: np.ndarray, gid: np.ndarray, new: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-bar running max and the row of its first occurrence (a later tie does not move it)."""
    run = pd.Series(values).groupby(gid).cummax().to_numpy()
    prev = np.empty_like(run)
    prev[1:] = run[:-1]
    setter = new | (values > prev)  # rows that set a new extreme (every bar's first row does)
    return run, np.maximum.accumulate(np.where(setter, np.arange(values.size), 0))


def _calendar_columns(x: np.ndarray, win: Windows, f: np.ndarray, new: np.ndarray, first_pos: np.ndarray) -> dict:
    """Position, completeness and missing-day columns. Missing days are counted from the
    effective start ``max(win_start, first_day)``: the gap before row i is the run of
    unobserved days after the previous observed day of the bar (or after eff_start - 1)."""
    start = win.win_start.astype(np.int64)
    end = win.win_end.astype(np.int64)
    eff = np.maximum(start, f)
    prev = np.where(new, eff - 1, np.concatenate(([0], x[:-1])))
    gap = x - prev - 1
    count_days = np.arange(x.size) - first_pos + 1
    count_missing = x - eff + 1 - count_days
    return {
        "pos_in_bar": x - start + 1,
        "count_days_remaining": end - x,
        "is_partial_start": start < f,
        "is_partial_end": x != end,
        "count_days": count_days,
        "count_missing_days": count_missing,
        "is_missing_days": count_missing > 0,
        "first_missing_day": _gap_day((gap > 0) & (gap == count_missing), prev + 1, first_pos),
        "last_missing_day": _gap_day(gap > 0, x - 1, first_pos),
    }


def _gap_day(marked: np.ndarray, day_of_row: np.ndarray, first_pos: np.ndarray) -> np.ndarray:
    """``day_of_row`` at the latest marked row of the same bar up to each row, NaT if none."""
    rows = np.maximum.accumulate(np.where(marked, np.arange(marked.size), -1))
    days = day_of_row[rows].astype("datetime64[D]").astype("datetime64[ns]")
    return np.where(rows >= first_pos, days, np.datetime64("NaT", "ns"))
