"""Bar windows: which bar (``bar_seq``) and scheduled window ``[win_start, win_end]``
(both inclusive UTC days) each observed day belongs to (BARS.md sections 2-6).

Every family counts in *units*: days (``D``), weeks starting Sunday (US) or Monday (ISO)
(``W``), calendar months (``M``) or calendar years (``Y``). A bar is ``tf_qty`` units.

- ``rolling`` (tf_day): N-day blocks from the asset's first observed day ``f``:
  ``bar_seq = (day - f).days // N + 1``. 3D from 2025-01-01: 01-01..01-03 is bar 1.
- ``calendar``: blocks of N full units from the first unit starting on or after ``f``;
  days before it belong to no bar (``bar_seq = -1``, NaT window). 1W_CAL_US from
  2025-01-01 (a Wednesday): bar 1 is Sun 2025-01-05..Sat 2025-01-11.
- ``calendar_anchor``: a fixed grid, independent of ``f`` (stable under backfill), partial
  at both ends. Weeks: N-week blocks from the epoch week (1970-01-04 US / 1970-01-05 ISO),
  ``bar_seq`` = the block index. Months: N-month blocks partitioning each calendar year
  (the last one truncated at Dec 31 when N does not divide 12),
  ``bar_seq = year * ceil(12 / N) + (month - 1) // N``. Years: ``bar_seq = year // N``.
  3M_CAL_ANCHOR on 2025-02-15: bar 8100, 2025-01-01..2025-03-31.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ta_lab2.timeframes import Timeframe

_WEEK_EPOCH = {"US": 3, "ISO": 4}  # 1970-01-04 (Sunday) / 1970-01-05 (Monday) as epoch days
_EPOCH_YEAR = 1970
NO_BAR = -1


class Windows(NamedTuple):
    """Arrays aligned with the input days; ``bar_seq = -1`` and NaT for days in no bar."""

    bar_seq: np.ndarray  # int64
    win_start: np.ndarray  # datetime64[D], inclusive
    win_end: np.ndarray  # datetime64[D], inclusive


def assign_windows(days: np.ndarray, tf: Timeframe, first_day: np.datetime64) -> Windows:
    """Window of every day in ``days`` (sorted, unique, midnight datetime64, >= ``first_day``).

    ``first_day`` is the asset's first observed day; it fixes rolling and calendar bars
    and is ignored by the anchored grid.
    """
    x = as_day_numbers(days, "days")
    f = day_number(first_day, "first_day")
    if x.size and (np.any(np.diff(x) <= 0) or x[0] < f):
        raise ValueError(f"{tf.tf}: days must be sorted, unique and >= first_day {first_day}")
    seq, start, end = window_numbers(x, np.int64(f), tf)
    ok = in_a_bar(seq, tf)
    return Windows(seq, _to_dates(start, ok), _to_dates(end, ok))


def in_a_bar(seq: np.ndarray, tf: Timeframe) -> np.ndarray:
    """Which days of :func:`window_numbers` belong to a bar (every day of the anchored grid)."""
    return np.ones(seq.size, dtype=bool) if tf.roll_policy == "calendar_anchor" else seq != NO_BAR


def window_numbers(x: np.ndarray, f: np.ndarray | np.int64, tf: Timeframe) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`assign_windows` on epoch day numbers ``x``, unchecked, with the first day ``f``
    given per day (days of many assets at once) or once: (bar_seq, first day, last day) as
    int64 arrays, ``bar_seq = -1`` (and meaningless days) for days in no bar."""
    if tf.roll_policy == "calendar_anchor":
        return _anchored(x, tf)
    if tf.roll_policy not in ("rolling", "calendar"):
        raise ValueError(f"{tf.tf}: unknown roll_policy {tf.roll_policy!r}")
    u0 = _first_full_unit(f, tf)
    u = _unit_index(x, tf)
    ok = u >= u0
    seq = np.where(ok, (u - u0) // tf.tf_qty + 1, NO_BAR)
    first_unit = u0 + (seq - 1) * tf.tf_qty
    return seq, _unit_start(first_unit, tf), _unit_start(first_unit + tf.tf_qty, tf) - 1


def window_containing(
    day: np.datetime64, tf: Timeframe, first_day: np.datetime64
) -> tuple[int, np.datetime64, np.datetime64]:
    """``(bar_seq, win_start, win_end)`` of ``day`` (>= ``first_day``).

    For a rolling/calendar family a day before the first full period gets the FIRST
    bar's window (a refresh restarting at ``win_start`` then rebuilds every bar).
    """
    x = day_number(day, "day")
    f = day_number(first_day, "first_day")
    if x < f:
        raise ValueError(f"{tf.tf}: day {day} is before first_day {first_day} (a backfill: rebuild)")
    if tf.roll_policy != "calendar_anchor":
        x = max(x, int(_unit_start(_first_full_unit(np.int64(f), tf), tf)[0]))
    w = assign_windows(np.asarray([x], dtype="datetime64[D]"), tf, first_day)
    return int(w.bar_seq[0]), w.win_start[0], w.win_end[0]


def as_day_numbers(values: np.ndarray, what: str) -> np.ndarray:
    """Midnight datetime64 values as int64 days since 1970-01-01; rejects NaT and times."""
    a = np.asarray(values)
    if a.dtype.kind != "M":
        raise TypeError(f"{what} must be datetime64, got {a.dtype}")
    d = a.astype("datetime64[D]")
    if np.any(np.isnat(a)) or np.any(d != a):
        raise ValueError(f"{what} must be midnight UTC days without NaT")
    return d.astype(np.int64)


def day_number(value: np.datetime64, what: str) -> int:
    """One midnight day (np.datetime64 or datetime-like) as its epoch day number."""
    return int(as_day_numbers(np.asarray([np.datetime64(value)]), what)[0])


def _to_dates(day_numbers: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    out = day_numbers.astype("datetime64[D]")
    if valid is not None:
        out[~valid] = np.datetime64("NaT")
    return out


def _unit_index(x: np.ndarray, tf: Timeframe) -> np.ndarray:
    """Unit number of each day: D = epoch day, W = week since the scheme's epoch week,
    M = year * 12 + month - 1, Y = calendar year."""
    if tf.base_unit == "D":
        return x
    if tf.base_unit == "W":
        return (x - _WEEK_EPOCH[str(tf.calendar_scheme)]) // 7
    if tf.base_unit == "M":
        return x.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64) + _EPOCH_YEAR * 12
    return x.astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + _EPOCH_YEAR


def _unit_start(u: np.ndarray, tf: Timeframe) -> np.ndarray:
    """First day (epoch day number) of each unit; inverse of :func:`_unit_index`."""
    if tf.base_unit == "D":
        return u
    if tf.base_unit == "W":
        return u * 7 + _WEEK_EPOCH[str(tf.calendar_scheme)]
    if tf.base_unit == "M":
        months = (u - _EPOCH_YEAR * 12).astype("datetime64[M]")
        return months.astype("datetime64[D]").astype(np.int64)
    return (u - _EPOCH_YEAR).astype("datetime64[Y]").astype("datetime64[D]").astype(np.int64)


def _first_full_unit(f: np.ndarray | np.int64, tf: Timeframe) -> np.ndarray:
    """The first unit starting on or after day number ``f`` (for D: ``f`` itself), per day."""
    f = np.atleast_1d(np.asarray(f, dtype=np.int64))
    uf = _unit_index(f, tf)
    return uf + (_unit_start(uf, tf) != f)


def _anchored(x: np.ndarray, tf: Timeframe) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fixed-grid windows: (bar_seq, first day, last day) as int64 arrays."""
    n = tf.tf_qty
    u = _unit_index(x, tf)
    if tf.base_unit == "M":
        year, month0 = u // 12, u % 12
        seq = year * (-(-12 // n)) + month0 // n
        first_unit = year * 12 + (month0 // n) * n
        next_unit = np.minimum(first_unit + n, year * 12 + 12)
    elif tf.base_unit in ("W", "Y"):
        seq = u // n
        first_unit = seq * n
        next_unit = first_unit + n
    else:
        raise ValueError(f"{tf.tf}: calendar_anchor is defined for W, M and Y units, not {tf.base_unit}")
    return seq, _unit_start(first_unit, tf), _unit_start(next_unit, tf) - 1
