"""EMA validation: the rows of ``ema_rejects`` for one asset (EMAS.md "Validation").

A value is rejected when it is NaN, +-inf, negative, or outside the close bounds
``[0.5 * min(c), 2 * max(c)]``, where ``c`` are the asset's daily closes from the first grid
day up to **the row's own day**, after a **trailing 3-day median** (``method: median3``).

Why the median: an EMA is a convex combination of closes, so it always lies inside
``[min(close), max(close)]`` of the literal closes, and a single corrupted close (x1000) raises
``max(close)`` with it and can never be flagged. The median of each day and the two days before
it drops an isolated one-day spike (also on the newest day) but keeps any move that lasts two
days or more; the first two days use the median of what they have.

Why trailing and per row: a row's bounds then depend only on the grid up to its own day, so
validating a row in a daily incremental run gives exactly the verdict of a full rebuild
(``ema_rejects`` obeys the incremental == full property like every other table).

Example: closes 100, 101, 100000, 102, 103 -> trailing median3 100, 100.5, 101, 102, 103 ->
bounds on day 3 [50, 202]; an EMA that moved to 18,000 on the spike day is ``above_upper_bound``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ta_lab2.emas.compute import to_utc_ns

REJECT_COLUMNS = ("tf", "period", "ts", "ema_value", "violation_type", "bounds", "source_close")
BOUNDS_METHOD = "median3"


def median3(close: np.ndarray) -> np.ndarray:
    """Trailing 3-day median: ``median(c[t-2], c[t-1], c[t])``; the first two days use the
    median of the values they have. ``median3([1, 9, 2, 3, 50]) == [1, 5, 2, 3, 3]``."""
    close = np.asarray(close, dtype=np.float64)
    if len(close) < 3:
        return np.array([np.median(close[: i + 1]) for i in range(len(close))], dtype=np.float64)
    tail = np.median(np.lib.stride_tricks.sliding_window_view(close, 3), axis=1)
    return np.concatenate([[close[0], np.median(close[:2])], tail])


def running_bounds(grid_close: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per grid day t: ``(0.5 * min, 2 * max)`` of ``median3(grid_close)[0..t]``."""
    smooth = median3(grid_close)
    return 0.5 * np.minimum.accumulate(smooth), 2.0 * np.maximum.accumulate(smooth)


def nonfinite_mask(rows: pd.DataFrame) -> np.ndarray:
    """Rows that must never be written: ``ema`` NaN/inf, or ``ema_bar`` inf.

    ``ema_bar`` NaN is NULL (always so in v2), so it is not treated as non-finite.
    """
    ema = rows["ema"].to_numpy(dtype=np.float64, na_value=np.nan)
    ema_bar = rows["ema_bar"].to_numpy(dtype=np.float64, na_value=np.nan)
    return ~np.isfinite(ema) | np.isinf(ema_bar)


def violation_types(values: np.ndarray, lower: np.ndarray, upper: np.ndarray, null_ok: bool) -> np.ndarray:
    """One violation type per value ('' = fine); the first matching check wins."""
    with np.errstate(invalid="ignore"):
        checks = [
            np.isnan(values) & (not null_ok),
            np.isinf(values),
            values < 0,
            values < lower,
            values > upper,
        ]
    names = ["nan", "inf", "negative", "below_lower_bound", "above_upper_bound"]
    return np.select(checks, names, default="")


def _check_grid(grid_ts: object, grid_close: object) -> tuple[np.ndarray, np.ndarray]:
    ts, close = to_utc_ns(grid_ts), np.asarray(grid_close, dtype=np.float64)
    if close.ndim != 1 or len(ts) != len(close) or len(ts) == 0:
        raise ValueError("grid_ts and grid_close must be non-empty 1-d arrays of the same length")
    if not np.all(ts[1:] > ts[:-1]) or not np.all(np.isfinite(close)):
        raise ValueError("grid_ts must be strictly increasing and grid_close finite")
    return ts, close


def validate_emas(rows: pd.DataFrame, grid_ts: object, grid_close: object) -> pd.DataFrame:
    """The reject rows (``REJECT_COLUMNS``) for EMA rows of one asset, several series allowed.

    ``grid_ts``/``grid_close`` are the asset's daily grid from its first day (the bounds span
    starts there; each row's span ends on its own day). Each ``ema`` is checked, and each non-NULL ``ema_bar`` with the types
    suffixed ``_bar``; types in order of precedence (one per value): nan, inf, negative,
    below_lower_bound, above_upper_bound. ``bounds`` is a JSON-able dict.
    """
    g_ts, g_close = _check_grid(grid_ts, grid_close)
    if rows.empty:
        return pd.DataFrame({c: [] for c in REJECT_COLUMNS})
    end = np.searchsorted(g_ts, to_utc_ns(rows["ts"]), side="right") - 1
    if np.any(end < 0):
        raise ValueError("EMA rows dated before the first grid day")
    low_all, high_all = running_bounds(g_close)
    lower, upper = low_all[end], high_all[end]
    parts = []
    for col, suffix, null_ok in (("ema", "", False), ("ema_bar", "_bar", True)):
        values = rows[col].to_numpy(dtype=np.float64, na_value=np.nan)
        kind = violation_types(values, lower, upper, null_ok)
        hit = np.flatnonzero(kind != "")
        parts.append((hit, values[hit], np.char.add(kind[hit], suffix)))
    if not any(len(p[0]) for p in parts):  # the usual case: skip building an empty frame
        return pd.DataFrame({c: [] for c in REJECT_COLUMNS})
    return _reject_frame(rows, parts, g_ts, g_close, end, lower, upper)


def _reject_frame(
    rows: pd.DataFrame,
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    g_ts: np.ndarray,
    g_close: np.ndarray,
    end: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
) -> pd.DataFrame:
    """Assemble the reject rows: the flagged row's key, value, type, bounds and its close."""
    hit = np.concatenate([p[0] for p in parts]).astype(np.int64)
    row_ts = to_utc_ns(rows["ts"].iloc[hit])
    pos = np.minimum(np.searchsorted(g_ts, row_ts), len(g_ts) - 1)
    source_close = np.where(g_ts[pos] == row_ts, g_close[pos], np.nan)
    start_iso = pd.Timestamp(g_ts[0], tz="UTC").isoformat()
    bounds = [
        {
            "lower": float(lower[i]),
            "upper": float(upper[i]),
            "span_start": start_iso,
            "span_end": pd.Timestamp(g_ts[end[i]], tz="UTC").isoformat(),
            "method": BOUNDS_METHOD,
        }
        for i in hit
    ]
    out = pd.DataFrame(
        {
            "tf": rows["tf"].to_numpy()[hit],
            "period": rows["period"].to_numpy()[hit],
            "ts": rows["ts"].array[hit],
            "ema_value": np.concatenate([p[1] for p in parts]),
            "violation_type": np.concatenate([p[2] for p in parts]).astype(object),
            "bounds": bounds,
            "source_close": source_close,
        },
        columns=list(REJECT_COLUMNS),
    )
    return out.sort_values(["tf", "period", "ts", "violation_type"], kind="stable", ignore_index=True)
