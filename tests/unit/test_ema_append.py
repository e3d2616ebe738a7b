"""The batched daily EMA step (emas/append.py) against the one-series reference, bit for bit.

The reference is :func:`compute_bar_space` / :func:`compute_daily_space` continued from a
state (itself covered by test_ema_compute's incremental == one-shot property); the batched
step must give the same rows and states for many series with different numbers of new days.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ta_lab2.bars.windows import assign_windows
from ta_lab2.emas.append import block_index, canonical_upper_bound, continue_emas, median3_tail
from ta_lab2.emas.compute import compute_bar_space, compute_daily_space
from ta_lab2.emas.validate import median3
from tests.unit.test_bar_windows import SEEDED

DAY = np.timedelta64(1, "D")
T0 = np.datetime64("2024-01-01", "ns")


@st.composite
def series_set(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int, int, int]]]:
    """A grid (closes with spikes, canonical flags) and jobs (tf_days, period, prefix length, new days)."""
    n = draw(st.integers(25, 80))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    close = np.round(100 * np.exp(np.cumsum(rng.normal(0, 0.05, n))), 6)
    close[rng.random(n) < 0.05] *= 1000.0  # corrupt closes: values the bounds flag
    canon = rng.random(n) < 0.3
    jobs = []
    for _ in range(draw(st.integers(1, 6))):
        tf_days, period = draw(st.integers(1, 5)), draw(st.integers(1, 4))
        prefix = draw(st.integers(tf_days * period, n - 1))  # seeded in both spaces
        jobs.append((tf_days, period, prefix, draw(st.integers(0, n - prefix))))
    return close, canon, jobs


@pytest.mark.parametrize("bar_space", [True, False])
@given(case=series_set())
@settings(max_examples=60, deadline=None)
def test_many_series_continued_at_once_equal_each_continued_alone(bar_space: bool, case: tuple) -> None:
    close, canon, jobs = case
    ts = T0 + np.arange(len(close)) * DAY
    compute = compute_bar_space if bar_space else compute_daily_space
    starts, refs, xs, cs, lens = [], [], [], [], []
    for tf_days, p, prefix, k in jobs:
        canon_j = canon.copy()
        canon_j[: p] = True  # enough canonical closes in the prefix to seed
        _, st0 = compute(ts[:prefix], close[:prefix], canon_j[:prefix], "X", tf_days, [p])
        start = st0[p]
        rows, st1 = compute(ts[prefix:prefix + k], close[prefix:prefix + k], canon_j[prefix:prefix + k], "X",
                            tf_days, [p], {p: start})
        starts.append(start)
        refs.append((rows, st1[p]))
        xs.append(close[prefix:prefix + k])
        cs.append(canon_j[prefix:prefix + k])
        lens.append(k)
    tf_days = np.array([j[0] for j in jobs])
    per = np.array([j[1] for j in jobs])
    last_ema = np.array([s.last_ema for s in starts])
    if bar_space:
        got = continue_emas(np.concatenate(xs), np.concatenate(cs), np.array(lens), 2.0 / (tf_days * per + 1),
                            last_ema, 2.0 / (per + 1), np.array([s.last_bar_ema for s in starts]))
    else:
        got = continue_emas(np.concatenate(xs), np.concatenate(cs), np.array(lens), 2.0 / (tf_days * per + 1),
                            last_ema)
    start_at, _ = block_index(np.array(lens))
    for j, (rows, state) in enumerate(refs):
        sl = slice(start_at[j], start_at[j] + lens[j])
        assert got.ema[sl].tobytes() == rows["ema"].to_numpy(np.float64).tobytes()
        assert got.ema_bar[sl].tobytes() == rows["ema_bar"].to_numpy(np.float64, na_value=np.nan).tobytes()
        assert got.last_ema[j] == state.last_ema
        if bar_space:
            assert got.last_bar_ema[j] == state.last_bar_ema


def test_worked_example_from_the_docstring() -> None:
    got = continue_emas(np.array([12.0, 14.0]), np.array([False, False]), np.array([2]), np.array([0.5]),
                        np.array([10.0]))
    assert got.ema.tolist() == [11.0, 12.5]
    assert np.isnan(got.ema_bar).all()


@given(st.lists(st.floats(1, 1e6), min_size=1, max_size=12), st.integers(0, 12))
def test_median3_of_the_new_days_equals_the_grid_median3(closes: list[float], cut: int) -> None:
    c = np.array(closes)
    cut = min(cut, len(c))
    before = c[max(0, cut - 2):cut]
    assert median3_tail(before, c[cut:]).tobytes() == median3(c)[cut:].tobytes()


WINDOWED = sorted(SEEDED.values(), key=lambda t: t.tf)


@pytest.mark.parametrize("tf", WINDOWED, ids=lambda t: t.tf)
@given(first=st.integers(0, 3000), n=st.integers(1, 900), gap=st.sampled_from([0.0, 0.1, 0.5]),
       seed=st.integers(0, 1000), widen=st.integers(0, 3))
@settings(max_examples=25, deadline=None)
def test_canonical_upper_bound_never_undercounts(tf: object, first: int, n: int, gap: float, seed: int,
                                                 widen: int) -> None:
    """A series declared unseedable by the bound must really have fewer canonical closes."""
    rng = np.random.default_rng(seed)
    days = np.datetime64("2015-01-01", "D") + first + np.flatnonzero(np.r_[True, rng.random(n - 1) >= gap])
    w = assign_windows(days, tf, days[0])  # type: ignore[arg-type]
    actual = int((~np.isnat(w.win_start) & (w.win_end == days)).sum())
    bound = canonical_upper_bound(days[0] - widen, days[-1] + widen, tf)
    assert bound >= actual
    if gap == 0.0 and widen == 0:
        assert bound == actual  # a dense grid: the bound is exact
