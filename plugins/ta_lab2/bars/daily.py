"""1d bars from source candles (BARS.md §1): repair, reject, dense ``bar_seq``, gaps.

Pure: a frame of ``cmc_price_histories7`` rows of one or MANY assets in (told apart by ``id``),
bars + rejects + per-row flags out, in one vectorised pass over all of them
(:func:`build_daily_many`); :func:`build_daily` is its batch of one.

Rules, in order:

1. **Price rejects**: any of open/high/low/close NULL, NaN, infinite or <= 0 -> reject
   (reason lists every problem, e.g. ``close<=0``).
2. **Duplicate day** (two source rows on one UTC day, e.g. from two files): the row with
   the later ``load_ts`` wins (then the later ``timestamp``); every loser is a reject with
   reason ``duplicate``.
3. **Time repairs**: ``time_high`` outside ``[time_open, time_close]`` -> the close time if
   close >= open else the open time, and ``high`` -> max(open, close) (the extreme is
   unusable). Same for ``time_low`` (close time if close <= open, ``low`` -> min(open, close)).
   A NULL time (the per-coin CSV has none) is *filled* by the same time rule but the reported
   extreme is kept: its value is valid, only its instant is unknown (counted as ``filled``).
4. ``high = max(high, open, close, low)``, ``low = min(low, open, close, high)`` (counted as
   ``ohlc`` repairs when they change a value).
5. **Time order**: ``time_open <= time_low, time_high <= time_close`` and
   ``time_open < time_close`` after repair, else reject ``time_order``.

Example: day 2024-01-02 after 2024-01-01 and before nothing else -> bar_seq = prev + 1,
count_missing_days 0; a next day 2024-01-05 -> count_missing_days 2, is_missing_days True.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

DAILY_COLUMNS: tuple[str, ...] = (
    "id", "tf", "bar_seq", "timestamp", "time_open", "time_close", "time_high", "time_low", "open",
    "high", "low", "close", "volume", "market_cap", "is_partial_start", "is_partial_end",
    "is_missing_days", "count_missing_days",
)
REJECT_COLUMNS: tuple[str, ...] = ("id", "timestamp", "reason", "raw")
PRICE_COLUMNS = ("open", "high", "low", "close")
DAY_CLOSE = pd.Timedelta(days=1) - pd.Timedelta(milliseconds=1)


@dataclass(frozen=True)
class DailyBuild:
    bars: pd.DataFrame  # DAILY_COLUMNS plus "day", ordered by (id, day)
    rejects: pd.DataFrame  # REJECT_COLUMNS plus "day", ordered by (id, timestamp, reason)
    repaired_timehigh: pd.Series  # bool per bar row (aligned with bars)
    repaired_timelow: pd.Series
    repaired_ohlc: pd.Series
    filled_times: pd.Series


def source_day(src: pd.DataFrame) -> pd.Series:
    """The UTC calendar day of each source row: of ``timeopen`` when present, else of the
    instant just before ``timestamp`` (a close at 23:59:59.999 or at the next midnight)."""
    ts_day = (src["timestamp"] - pd.Timedelta(microseconds=1)).dt.tz_convert("UTC").dt.floor("D")
    open_day = src["timeopen"].dt.tz_convert("UTC").dt.floor("D")
    return open_day.fillna(ts_day).dt.tz_localize(None)


def _nulls(raw: pd.Series) -> np.ndarray:
    """SQL NULLs (None / pd.NA) of a RAW price column; a float column has none (NaN is NaN)."""
    if raw.dtype.kind == "f":
        return np.zeros(len(raw), dtype=bool)
    return raw.map(lambda v: v is None or v is pd.NA).to_numpy(dtype=bool)


def _price_reasons(src: pd.DataFrame) -> np.ndarray:
    """Reject reasons per row from the RAW price values (None = NULL is told apart from NaN):
    every problem of the row, comma-separated, "" for a good row."""
    problems = []
    for col in PRICE_COLUMNS:
        raw = src[col]
        null = _nulls(raw)
        v = pd.to_numeric(raw, errors="coerce").to_numpy(dtype="float64")
        with np.errstate(invalid="ignore"):
            problems.append(np.select([null, np.isnan(v), np.isinf(v), v <= 0],
                                      [f"{col} missing", f"{col} NaN", f"{col} infinite", f"{col}<=0"], ""))
    reasons = np.full(len(src), "", dtype=object)
    for i in np.flatnonzero(np.any([p != "" for p in problems], axis=0)):
        reasons[i] = ",".join(p[i] for p in problems if p[i])
    return reasons


def _raw(rows: pd.DataFrame) -> list[str]:
    cols = [c for c in rows.columns if c != "day"]
    return [json.dumps({c: (None if pd.isna(v) else str(v)) for c, v in zip(cols, r, strict=True)})
            for r in rows[cols].itertuples(index=False, name=None)]


def _rejects(rows: pd.DataFrame, reasons: Any) -> pd.DataFrame:
    out = pd.DataFrame({"timestamp": rows["timestamp"], "reason": pd.Series(reasons, index=rows.index, dtype=object),
                        "raw": _raw(rows),
                        "day": rows["day"]})
    out.insert(0, "id", rows["id"].astype("int64"))
    return out


def _dedupe(ok: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per (id, day) the row with the latest (load_ts, timestamp) wins; winners ordered by (id, day)."""
    ordered = ok.sort_values(["id", "day", "load_ts", "timestamp"], kind="mergesort")
    ids, days = ordered["id"].to_numpy(), ordered["day"].to_numpy()
    loser = np.zeros(len(ordered), dtype=bool)
    loser[:-1] = (ids[1:] == ids[:-1]) & (days[1:] == days[:-1])
    return ordered[~loser], ordered[loser]


def _repair_time(t: pd.Series, t_open: pd.Series, t_close: pd.Series, at_close: pd.Series):
    missing = t.isna()
    outside = ~missing & ((t < t_open) | (t > t_close))
    fixed = t.where(~(missing | outside), t_close.where(at_close, t_open))
    return fixed, outside, missing


def _repair(d: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series, pd.Series, pd.Series, pd.Series]:
    d = d.copy()
    d["time_open"] = d["timeopen"].fillna(d["day"].dt.tz_localize("UTC"))
    d["time_close"] = d["timeclose"].fillna(d["day"].dt.tz_localize("UTC") + DAY_CLOSE)
    up = d["close"] >= d["open"]
    d["time_high"], bad_h, miss_h = _repair_time(d["timehigh"], d["time_open"], d["time_close"], up)
    d["time_low"], bad_l, miss_l = _repair_time(d["timelow"], d["time_open"], d["time_close"], d["close"] <= d["open"])
    d.loc[bad_h, "high"] = np.maximum(d["open"], d["close"])[bad_h]
    d.loc[bad_l, "low"] = np.minimum(d["open"], d["close"])[bad_l]
    high = d[["high", "open", "close", "low"]].max(axis=1)
    low = d[["low", "open", "close", "high"]].min(axis=1)
    ohlc = (high != d["high"]) | (low != d["low"])
    d["high"], d["low"] = high, low
    return d, bad_h, bad_l, ohlc, miss_h | miss_l


def _group_starts(ids: np.ndarray) -> np.ndarray:
    """True at the first row of each run of equal ids."""
    start = np.ones(len(ids), dtype=bool)
    start[1:] = ids[1:] != ids[:-1]
    return start


def build_daily(src: pd.DataFrame, asset_id: int, prev_bar_seq: int = 0,
                prev_day: pd.Timestamp | None = None) -> DailyBuild:
    """Bars for the source rows ``src`` (one asset, any order) continuing after a bar with
    ``bar_seq == prev_bar_seq`` on ``prev_day`` (None/0 when ``src`` starts the history)."""
    prev = pd.DataFrame({"bar_seq": [prev_bar_seq], "day": [prev_day]}, index=[asset_id])
    return build_daily_many(src.assign(id=np.int64(asset_id)), prev)


def build_daily_many(src: pd.DataFrame, prev: pd.DataFrame | None = None) -> DailyBuild:
    """Bars for the source rows ``src`` of many assets (column ``id``; any order), each asset
    continuing after its previous bar: ``prev`` indexed by id with ``bar_seq`` and ``day``
    (an asset absent or with bar_seq 0 / day None starts its history)."""
    src = src.copy()
    for col in ("timeopen", "timeclose", "timehigh", "timelow", "timestamp", "load_ts"):
        src[col] = pd.to_datetime(src[col], utc=True)
    src["id"] = src["id"].astype("int64")
    src["day"] = source_day(src)
    reasons = _price_reasons(src)
    for col in PRICE_COLUMNS + ("volume", "marketcap"):
        src[col] = pd.to_numeric(src[col], errors="coerce").astype("float64")
    bad = reasons != ""
    winners, losers = _dedupe(src[~bad])
    fixed, bad_h, bad_l, ohlc, filled = _repair(winners)
    order_bad = ((fixed["time_open"] >= fixed["time_close"]) | (fixed["time_low"] < fixed["time_open"])
                 | (fixed["time_high"] > fixed["time_close"]))
    parts = [(src[bad], reasons[bad]), (losers, "duplicate"), (winners[order_bad], "time_order")]
    made = [_rejects(rows, why) for rows, why in parts if len(rows)] or [_rejects(src.iloc[:0], "")]
    rejects = pd.concat(made, ignore_index=True)  # a daily window rarely has any: build only what exists
    keep = ~order_bad
    bars = fixed[keep].reset_index(drop=True)  # winners are sorted by (id, day) already
    ids = bars["id"].to_numpy()
    start = _group_starts(ids)
    first = np.maximum.accumulate(np.where(start, np.arange(len(bars)), 0))  # each row's group start
    if prev is None:
        prev = pd.DataFrame({"bar_seq": pd.Series(dtype="int64"), "day": pd.Series(dtype="datetime64[ns]")})
    base = prev["bar_seq"].reindex(ids).fillna(0).to_numpy(dtype="int64")
    bars["bar_seq"] = base + (np.arange(len(bars)) - first) + 1
    before = bars["day"].shift(1)
    before[start] = pd.to_datetime(prev["day"].reindex(ids)).to_numpy()[start]
    gap = ((bars["day"] - before).dt.days - 1).fillna(0).astype("int64")
    bars["tf"] = "1D"
    bars["count_missing_days"] = gap
    bars["is_missing_days"] = gap > 0
    bars["is_partial_start"] = False
    bars["is_partial_end"] = False
    bars = bars.rename(columns={"marketcap": "market_cap"})
    flags = [s[keep].reset_index(drop=True) for s in (bad_h, bad_l, ohlc, filled)]
    return DailyBuild(bars[[*DAILY_COLUMNS, "day"]], rejects.sort_values(["id", "timestamp", "reason"],
                      ignore_index=True), *flags)
