"""The daily EMA step of MANY series at once, from their stored states (EMAS.md).

The normal daily run continues every seeded series by the few grid days after its
``last_ts``. Each series (a *job*) owns a block of the flat day arrays (its new days, in
order); one numpy step per day index advances every job that has that many new days, so
the cost is (new days x series) arithmetic, with no per-series Python or pandas.

Bit-exactness: every value is the one :func:`ta_lab2.emas.compute.compute_bar_space` /
:func:`~ta_lab2.emas.compute.compute_daily_space` give when continued from the same state,
because every update is the kernel's ``alpha * x + (1.0 - alpha) * prev`` in float64:

- ``ema = alpha_daily * close + (1 - alpha_daily) * ema[previous day]``;
- bar space: ``ema_bar = alpha_bar * close + (1 - alpha_bar) * bar_ema`` of the latest
  canonical close strictly before the day: on a canonical day that value IS the new bar EMA
  (the recursion over canonical closes), on any other day it is the preview (a roll row);
- daily space (v2): ``ema_bar`` is NaN (NULL).

Example: one job, alpha_daily 0.5, last_ema 10, new closes [12, 14] -> ema [11, 12.5].
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Continued(NamedTuple):
    """Flat per-row values (job blocks in order) and each job's values after its last day."""

    ema: np.ndarray
    ema_bar: np.ndarray
    last_ema: np.ndarray
    last_bar_ema: np.ndarray


def block_index(block_len: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(start of each block, day index of each flat row within its block)."""
    block_len = np.asarray(block_len, dtype=np.int64)
    start = np.concatenate([[0], np.cumsum(block_len)[:-1]]).astype(np.int64)
    k = np.arange(int(block_len.sum()), dtype=np.int64) - np.repeat(start, block_len)
    return start, k


def continue_emas(close: np.ndarray, canonical: np.ndarray, block_len: np.ndarray, alpha_daily: np.ndarray,
                  last_ema: np.ndarray, alpha_bar: np.ndarray | None = None,
                  last_bar_ema: np.ndarray | None = None) -> Continued:
    """Continue J series over their blocks of new days.

    ``close``/``canonical``: flat arrays (sum of ``block_len`` rows, job j's days in order);
    ``alpha_daily``/``last_ema`` (J,): the daily-space EMA; ``alpha_bar``/``last_bar_ema``
    (J,) for bar space (None: daily space, ``ema_bar`` NaN and ``last_bar_ema`` NaN).
    """
    close = np.asarray(close, dtype=np.float64)
    canonical = np.asarray(canonical, dtype=bool)
    block_len = np.asarray(block_len, dtype=np.int64)
    if not (len(close) == len(canonical) == int(block_len.sum())):
        raise ValueError("close and canonical must hold sum(block_len) rows")
    start, _ = block_index(block_len)
    ema_now = np.asarray(last_ema, dtype=np.float64).copy()
    bar_space = alpha_bar is not None
    bar_now = np.asarray(last_bar_ema if bar_space else np.full(len(block_len), np.nan), dtype=np.float64).copy()
    ema = np.empty(len(close))
    ema_bar = np.full(len(close), np.nan)
    one_minus_daily = 1.0 - np.asarray(alpha_daily, dtype=np.float64)
    a_daily = np.asarray(alpha_daily, dtype=np.float64)
    a_bar = np.asarray(alpha_bar if bar_space else a_daily, dtype=np.float64)
    one_minus_bar = 1.0 - a_bar
    for k in range(int(block_len.max(initial=0))):
        act = np.flatnonzero(block_len > k)
        pos = start[act] + k
        x = close[pos]
        new = one_minus_daily[act] * ema_now[act]
        new += x * a_daily[act]
        ema_now[act] = new
        ema[pos] = new
        if bar_space:
            value = a_bar[act] * x + one_minus_bar[act] * bar_now[act]
            ema_bar[pos] = value
            canon = canonical[pos]
            bar_now[act[canon]] = value[canon]
    return Continued(ema, ema_bar, ema_now, bar_now)


def median3_tail(before: np.ndarray, new: np.ndarray) -> np.ndarray:
    """:func:`ta_lab2.emas.validate.median3` of the new days, given up to two grid closes
    just before them (fewer only when the grid starts there)."""
    from ta_lab2.emas.validate import median3

    both = np.concatenate([np.asarray(before, dtype=np.float64), np.asarray(new, dtype=np.float64)])
    return median3(both)[len(before):]


def canonical_upper_bound(first_day: np.datetime64, last_day: np.datetime64, tf: object) -> int:
    """An upper bound of the canonical closes of ``tf`` (a :class:`ta_lab2.timeframes.Timeframe`)
    on a grid inside ``[first_day, last_day]``: the bars of a dense grid over a range that
    starts no later and ends no earlier whose scheduled last day is inside it. A series
    whose period exceeds it cannot seed, so the daily run need not read its history.

    Widening the range never lowers the count (rolling and calendar bars start at the first
    full unit on or after ``first_day``; anchored bars ignore it), so callers may pass a
    conservative range. Example: 7D over 2025-01-01..2025-01-20 -> 2 (bars end 01-07, 01-14).
    """
    from ta_lab2.bars.windows import NO_BAR, assign_windows

    first, last = np.datetime64(first_day, "D"), np.datetime64(last_day, "D")
    if last < first:
        return 0
    days = np.array([first, last] if last > first else [first], dtype="datetime64[D]")
    w = assign_windows(days, tf, first)  # type: ignore[arg-type]
    seq_last, end_last = int(w.bar_seq[-1]), w.win_end[-1]
    if seq_last == NO_BAR:
        return 0
    seq_first = int(w.bar_seq[0]) if int(w.bar_seq[0]) != NO_BAR else 1
    return max(0, seq_last - int(end_last > last) - seq_first + 1)
