"""1d bars from source candles (BARS.md §1): repair, reject, dense ``bar_seq``, gaps.

Pure: a frame of ``cmc_price_histories7`` rows of one asset in, bars + rejects + counts out.

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
    bars: pd.DataFrame  # DAILY_COLUMNS plus "day"
    rejects: pd.DataFrame  # REJECT_COLUMNS plus "day"
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


def _price_reasons(src: pd.DataFrame) -> pd.Series:
    """Reject reasons per row from the RAW price values (None = NULL is told apart from NaN)."""
    reasons = pd.Series("", index=src.index, dtype=object)
    for col in PRICE_COLUMNS:
        raw = src[col]
        null = raw.map(lambda v: v is None or v is pd.NA).astype(bool)
        v = pd.to_numeric(raw, errors="coerce").astype("float64")
        bad = np.select([null, v.isna(), np.isinf(v), v <= 0],
                        [f"{col} missing", f"{col} NaN", f"{col} infinite", f"{col}<=0"], "")
        reasons = reasons.str.cat(pd.Series(bad, index=src.index), sep=",")
    return reasons.str.strip(",").str.replace(",,+", ",", regex=True)


def _raw(rows: pd.DataFrame) -> list[str]:
    cols = [c for c in rows.columns if c != "day"]
    return [json.dumps({c: (None if pd.isna(v) else str(v)) for c, v in zip(cols, r, strict=True)})
            for r in rows[cols].itertuples(index=False, name=None)]


def _rejects(rows: pd.DataFrame, reasons: pd.Series | str) -> pd.DataFrame:
    out = pd.DataFrame({"timestamp": rows["timestamp"], "reason": reasons, "raw": _raw(rows),
                        "day": rows["day"]})
    out.insert(0, "id", rows["id"].astype("int64"))
    return out


def _dedupe(ok: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    ordered = ok.sort_values(["day", "load_ts", "timestamp"], kind="mergesort")
    loser = ordered.duplicated("day", keep="last")
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


def build_daily(src: pd.DataFrame, asset_id: int, prev_bar_seq: int = 0,
                prev_day: pd.Timestamp | None = None) -> DailyBuild:
    """Bars for the source rows ``src`` (one asset, any order) continuing after a bar with
    ``bar_seq == prev_bar_seq`` on ``prev_day`` (None/0 when ``src`` starts the history)."""
    src = src.copy()
    for col in ("timeopen", "timeclose", "timehigh", "timelow", "timestamp", "load_ts"):
        src[col] = pd.to_datetime(src[col], utc=True)
    src["day"] = source_day(src)
    reasons = _price_reasons(src)
    for col in PRICE_COLUMNS + ("volume", "marketcap"):
        src[col] = pd.to_numeric(src[col], errors="coerce").astype("float64")
    bad = reasons != ""
    winners, losers = _dedupe(src[~bad])
    fixed, bad_h, bad_l, ohlc, filled = _repair(winners)
    order_bad = ((fixed["time_open"] >= fixed["time_close"]) | (fixed["time_low"] < fixed["time_open"])
                 | (fixed["time_high"] > fixed["time_close"]))
    rejects = pd.concat([_rejects(src[bad], reasons[bad]), _rejects(losers, "duplicate"),
                         _rejects(winners[order_bad], "time_order")], ignore_index=True)
    keep = ~order_bad
    bars = fixed[keep].reset_index(drop=True)  # winners are sorted by day already
    bars["id"] = np.int64(asset_id)
    bars["tf"] = "1D"
    bars["bar_seq"] = np.arange(prev_bar_seq + 1, prev_bar_seq + 1 + len(bars), dtype="int64")
    prev = bars["day"].shift(1)
    if prev_day is not None and len(bars):
        prev.iloc[0] = prev_day
    gap = ((bars["day"] - prev).dt.days - 1).fillna(0).astype("int64")
    bars["count_missing_days"] = gap
    bars["is_missing_days"] = gap > 0
    bars["is_partial_start"] = False
    bars["is_partial_end"] = False
    bars = bars.rename(columns={"marketcap": "market_cap"})
    flags = [s[keep].reset_index(drop=True) for s in (bad_h, bad_l, ohlc, filled)]
    return DailyBuild(bars[[*DAILY_COLUMNS, "day"]], rejects.sort_values(["timestamp", "reason"],
                      ignore_index=True), *flags)
