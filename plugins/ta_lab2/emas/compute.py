"""Per-asset, per-timeframe EMA rows and the state that continues them (EMAS.md).

Two spaces, one continuation contract:

- ``compute_bar_space`` (multi_tf, cal, cal_anchor): an EMA over the timeframe's canonical bar
  closes (``ema_bar``), previewed on the days in between (roll rows), plus a continuous daily
  EMA (``ema``) started from the bar seed.
- ``compute_daily_space`` (v2): an EMA of the daily closes with period ``tf_days * p``.

Inputs are the asset's daily grid in day order: ``ts`` (datetime64[ns] UTC; tz-aware values
are converted), ``close`` (float64) and ``is_canonical`` (True on the days that close a
completed bar of ``tf``). Given ``starts[p]`` (the ``EmaState`` a previous call returned), the
arrays hold only the days after ``starts[p].last_ts`` and the series continues from the state;
a period without a start is computed from scratch over the arrays (pass the full grid).
Either way, prefix + continuation == one-shot, bit for bit.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ta_lab2.emas.kernel import ema_recursion, sma_seed

EMA_COLUMNS = ("tf", "ts", "period", "tf_days", "roll", "ema", "ema_bar")


@dataclass(frozen=True)
class EmaState:
    """State of one seeded (id, tf, period) series after its last written row.

    ``last_ts``: last grid day written; ``last_canonical_ts``: latest canonical day seen (None
    if none, v2 only); ``last_bar_ema``: bar-space EMA at that close (None in v2);
    ``last_ema``: daily-space ``ema`` on ``last_ts``; ``canonical_count``: canonical days seen
    since the start of the grid.
    """

    last_ts: np.datetime64
    last_canonical_ts: np.datetime64 | None
    last_bar_ema: float | None
    last_ema: float
    canonical_count: int


def to_utc_ns(ts: object) -> np.ndarray:
    """Timestamps as naive ``datetime64[ns]`` in UTC (int64 is read as ns since the epoch)."""
    idx = pd.DatetimeIndex(ts)
    if idx.tz is not None:
        idx = idx.tz_convert("UTC").tz_localize(None)
    return idx.as_unit("ns").to_numpy()


def _check_grid(
    ts: object, close: object, is_canonical: object, tf_days: int, periods: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Validate and normalise the grid arrays; periods come back sorted ascending."""
    ts_ns, close_a, canon = to_utc_ns(ts), np.asarray(close), np.asarray(is_canonical)
    if close_a.ndim != 1 or canon.ndim != 1 or not (len(ts_ns) == len(close_a) == len(canon)):
        raise ValueError("ts, close and is_canonical must be 1-d arrays of the same length")
    if close_a.dtype.kind not in "fiu" or canon.dtype != np.bool_:
        raise ValueError(
            f"close must be numeric and is_canonical boolean, got {close_a.dtype}, {canon.dtype}"
        )
    if not np.all(np.isfinite(close_a)):
        raise ValueError("close must be finite (the grid's closes are repaired upstream)")
    if len(ts_ns) > 1 and not np.all(ts_ns[1:] > ts_ns[:-1]):
        raise ValueError("ts must be strictly increasing (one row per observed day, no NaT)")
    per = np.array(sorted(periods), dtype=np.int64)
    if (len(per) and per[0] < 1) or len(np.unique(per)) != len(per) or tf_days < 1:
        raise ValueError(f"periods must be distinct integers >= 1 and tf_days >= 1: {periods}, {tf_days}")
    return ts_ns, close_a.astype(np.float64), canon, per


def _check_starts(
    starts: Mapping[int, EmaState] | None, per: np.ndarray, ts: np.ndarray, bar_space: bool
) -> dict[int, EmaState]:
    """The starts, checked: known periods, seeded states, continuing strictly after last_ts."""
    starts = dict(starts or {})
    for p, st in starts.items():
        if p not in per:
            raise ValueError(f"start given for period {p}, which is not in periods")
        if len(ts) and not ts[0] > st.last_ts:
            raise ValueError(f"period {p}: arrays must start after last_ts {st.last_ts}, got {ts[0]}")
        if bar_space and (st.last_bar_ema is None or st.canonical_count < p):
            raise ValueError(f"period {p}: bar-space state must be seeded, got {st}")
        if not np.isfinite([st.last_ema, 0.0 if st.last_bar_ema is None else st.last_bar_ema]).all():
            raise ValueError(f"period {p}: state values must be finite, got {st}")
    return starts


def _frame(
    tf: str,
    tf_days: int,
    ts: np.ndarray,
    roll: np.ndarray,
    per: np.ndarray,
    row_start: np.ndarray,
    ema: np.ndarray,
    ema_bar: np.ndarray,
) -> pd.DataFrame:
    """Rows ``t >= row_start[s]`` of the (T, S) matrices, sorted by period then ts."""
    n_t = len(ts)
    mask = np.arange(n_t)[None, :] >= row_start[:, None]  # (S, T)
    t_idx = np.broadcast_to(np.arange(n_t), mask.shape)[mask]
    return pd.DataFrame(
        {
            "tf": tf,
            "ts": pd.DatetimeIndex(ts[t_idx]).tz_localize("UTC"),
            "period": np.repeat(per, mask.sum(axis=1)),
            "tf_days": np.full(len(t_idx), tf_days, dtype=np.int64),
            "roll": roll[t_idx],
            "ema": ema.T[mask],
            "ema_bar": ema_bar.T[mask],
        },
        columns=list(EMA_COLUMNS),
    )


@functools.cache
def _no_rows_template(tf: str, tf_days: int) -> pd.DataFrame:
    empty = np.empty((0, 0))
    no_per = np.empty(0, dtype=np.int64)
    return _frame(tf, tf_days, np.empty(0, "datetime64[ns]"), np.empty(0, bool), no_per, no_per, empty, empty)


def _no_rows(tf: str, tf_days: int) -> pd.DataFrame:
    """No rows, with the columns and dtypes of :func:`_frame` (a copy: callers add columns)."""
    return _no_rows_template(tf, tf_days).copy()


def compute_bar_space(
    ts: object,
    close: object,
    is_canonical: object,
    tf: str,
    tf_days: int,
    periods: Sequence[int],
    starts: Mapping[int, EmaState] | None = None,
) -> tuple[pd.DataFrame, dict[int, EmaState]]:
    """Bar-space EMA rows (multi_tf, cal, cal_anchor) of one timeframe, and the new states.

    - ``bar_ema = sma_seeded_ema(canonical closes, p)``, ``alpha_bar = 2 / (p + 1)``; the seed
      day is the p-th canonical close; rows run from the seed day to the last grid day.
    - ``ema_bar``: on a canonical day (``roll`` False) the bar's ``bar_ema``; on any other day
      (a roll row, ``roll`` True) the preview ``alpha_bar * close + (1 - alpha_bar) * bar_ema``
      of the latest canonical close strictly before that day (never fed back).
    - ``ema``: ``ema_bar`` on the seed row, then ``alpha_daily * close + (1 - alpha_daily) *
      ema[previous row]`` every grid day, ``alpha_daily = 2 / (tf_days * p + 1)``.

    Example (3D, p = 2, closes 10..18 on days 1-9, canonical days 3, 6, 9): rows on days 6-9,
    ``ema_bar`` 13.5 (F), 15.1666… (T), 15.8333… (T), 16.5 (F); ``ema`` 13.5, 14.2142…, ….
    A period with fewer than p canonical closes (and no start) yields no rows and no state.
    """
    ts, close, canon, per = _check_grid(ts, close, is_canonical, tf_days, periods)
    starts = _check_starts(starts, per, ts, bar_space=True)
    canon_idx = np.flatnonzero(canon)
    per = per[[p in starts or p <= len(canon_idx) for p in per]]
    if len(ts) == 0 or len(per) == 0:
        return _no_rows(tf, tf_days), {int(p): starts[int(p)] for p in per}
    started = np.array([p in starts for p in per])
    closes_c = close[canon_idx]
    alpha_bar, alpha_daily = 2.0 / (per + 1), 2.0 / (tf_days * per + 1)
    init_bar = np.array([starts[p].last_bar_ema if p in starts else np.nan for p in per], dtype=np.float64)
    seed = np.array([np.nan if p in starts else sma_seed(closes_c, p) for p in per])
    bar = ema_recursion(closes_c, alpha_bar, init_bar, np.where(started, -1, per - 1), seed)
    # bar_ema of the latest canonical close up to and including each day (init before any).
    latest = np.vstack([init_bar[None, :], bar])[np.cumsum(canon)]
    preview = alpha_bar * close[:, None] + (1.0 - alpha_bar) * latest
    ema_bar = np.where(canon[:, None], latest, preview)
    row_start = np.array([0 if p in starts else canon_idx[p - 1] for p in per], dtype=np.int64)
    init_ema = np.array([starts[p].last_ema if p in starts else np.nan for p in per])
    ema = ema_recursion(close, alpha_daily, init_ema, np.where(started, -1, row_start), seed)
    rows = _frame(tf, tf_days, ts, ~canon, per, row_start, ema, ema_bar)
    return rows, _states(ts, canon_idx, per, starts, ema[-1], latest[-1])


def compute_daily_space(
    ts: object,
    close: object,
    is_canonical: object,
    tf: str,
    tf_days: int,
    periods: Sequence[int],
    starts: Mapping[int, EmaState] | None = None,
) -> tuple[pd.DataFrame, dict[int, EmaState]]:
    """Daily-space (v2) EMA rows of one timeframe, and the new states.

    ``ema = sma_seeded_ema(daily closes, n)`` with ``n = tf_days * p``: seeded on the n-th grid
    day with the mean of the first n closes, then ``alpha_daily * close + (1 - alpha_daily) *
    prev``, ``alpha_daily = 2 / (n + 1)``. ``ema_bar`` is NaN (NULL); ``roll`` is False on the
    days that close a bar of ``tf`` (``is_canonical``), True otherwise. Example: tf_days 2,
    p 2, closes 1, 2, 3, 4, 5: one row on day 4 with ema 2.5, then day 5: 0.4*5 + 0.6*2.5 = 3.5.
    A period with fewer than n grid days (and no start) yields no rows and no state.
    """
    ts, close, canon, per = _check_grid(ts, close, is_canonical, tf_days, periods)
    starts = _check_starts(starts, per, ts, bar_space=False)
    per = per[[p in starts or tf_days * p <= len(ts) for p in per]]
    if len(ts) == 0 or len(per) == 0:
        return _no_rows(tf, tf_days), {int(p): starts[int(p)] for p in per}
    started = np.array([p in starts for p in per])
    n_seed = tf_days * per
    seed = np.array([np.nan if p in starts else sma_seed(close, tf_days * p) for p in per])
    init = np.array([starts[p].last_ema if p in starts else np.nan for p in per])
    row_start = np.where(started, 0, n_seed - 1)
    ema = ema_recursion(close, 2.0 / (n_seed + 1), init, np.where(started, -1, row_start), seed)
    ema_bar = np.full_like(ema, np.nan)
    rows = _frame(tf, tf_days, ts, ~canon, per, row_start, ema, ema_bar)
    return rows, _states(ts, np.flatnonzero(canon), per, starts, ema[-1], None)


def _states(
    ts: np.ndarray,
    canon_idx: np.ndarray,
    per: np.ndarray,
    starts: Mapping[int, EmaState],
    last_ema: np.ndarray,
    last_bar_ema: np.ndarray | None,
) -> dict[int, EmaState]:
    """The state after the last grid day of ``ts``, one per computed period."""
    out: dict[int, EmaState] = {}
    for j, p in enumerate(int(q) for q in per):
        before = starts.get(p)
        last_canon = before.last_canonical_ts if before is not None else None
        if len(canon_idx):
            last_canon = ts[canon_idx[-1]]
        out[p] = EmaState(
            last_ts=ts[-1],
            last_canonical_ts=last_canon,
            last_bar_ema=None if last_bar_ema is None else float(last_bar_ema[j]),
            last_ema=float(last_ema[j]),
            canonical_count=(before.canonical_count if before is not None else 0) + len(canon_idx),
        )
    return out
