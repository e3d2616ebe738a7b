"""Bar-space and daily-space EMA rows: worked examples, and incremental == full, bit for bit."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ta_lab2.emas.compute import EMA_COLUMNS, EmaState, compute_bar_space, compute_daily_space

DAY = np.timedelta64(1, "D")
T0 = np.datetime64("2024-01-01", "ns")
Compute = Callable[..., tuple[pd.DataFrame, dict[int, EmaState]]]


def worked_grid() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """EMAS.md: closes 10..18 on days 1-9 (2024-01-01..09), 3D bars closing on days 3, 6, 9."""
    canon = np.zeros(9, dtype=bool)
    canon[[2, 5, 8]] = True
    return T0 + np.arange(9) * DAY, np.arange(10.0, 19.0), canon


def run_incremental(
    fn: Compute,
    grid: tuple[np.ndarray, np.ndarray, np.ndarray],
    tf_days: int,
    periods: Sequence[int],
    cuts: Sequence[int],
) -> tuple[pd.DataFrame, dict[int, EmaState]]:
    """Refresh the grid in runs ending at each cut: seeded series continue from their state,
    unseeded ones are recomputed from the start of the grid (as the refresher does)."""
    ts, close, canon = grid
    states: dict[int, EmaState] = {}
    frames, done = [], 0
    for end in [*cuts, len(ts)]:
        started, fresh = sorted(states), [p for p in periods if p not in states]
        if started:
            rows, new = fn(
                ts[done:end], close[done:end], canon[done:end], "X", tf_days, started, dict(states)
            )
            frames.append(rows)
            states.update(new)
        if fresh:
            rows, new = fn(ts[:end], close[:end], canon[:end], "X", tf_days, fresh)
            frames.append(rows)
            states.update(new)
        done = end
    frames = [f for f in frames if len(f)] or frames[:1]
    rows = pd.concat(frames, ignore_index=True).sort_values(
        ["period", "ts"], kind="stable", ignore_index=True
    )
    return rows, states


def assert_rows_identical(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert list(got.columns) == list(EMA_COLUMNS)
    assert np.array_equal(got["ema"].to_numpy(), want["ema"].to_numpy(), equal_nan=True)
    assert np.array_equal(got["ema_bar"].to_numpy(), want["ema_bar"].to_numpy(), equal_nan=True)
    pd.testing.assert_frame_equal(got, want, check_exact=True)


# --- worked examples -------------------------------------------------------------------------


def test_spec_worked_example_bar_space() -> None:
    rows, states = compute_bar_space(*worked_grid(), "3D", 3, [2])
    assert list(rows.columns) == list(EMA_COLUMNS)
    assert list(rows["ts"]) == list(pd.date_range("2024-01-06", "2024-01-09", tz="UTC"))
    assert list(rows["roll"]) == [False, True, True, False]
    # alpha_bar = 2/3: 2/3*16 + (1 - 2/3)*13.5 and 2/3*17 + (1 - 2/3)*13.5, in float64.
    assert list(rows["ema_bar"]) == [13.5, 15.166666666666668, 15.833333333333332, 16.5]
    # alpha_daily = 2/7 from the seed 13.5 over closes 16, 17, 18.
    assert list(rows["ema"]) == [13.5, 14.214285714285714, 15.01020408163265, 15.864431486880465]
    assert states == {
        2: EmaState(T0 + 8 * DAY, T0 + 8 * DAY, 16.5, 15.864431486880465, canonical_count=3),
    }


def test_spec_printed_values_are_within_one_ulp_of_the_formula() -> None:
    """EMAS.md prints 15.166666666666666 and 15.010204081632653: those are the exact rationals
    rounded; ``a*x + (1-a)*prev`` in float64 lands one ulp away (the spec's 4th ema value,
    15.864431486880465, is the formula's). The formula is the contract; this pins the gap."""
    rows, _ = compute_bar_space(*worked_grid(), "3D", 3, [2])
    for got, printed in [(rows["ema_bar"][1], 15.166666666666666), (rows["ema"][2], 15.010204081632653)]:
        assert got != printed and abs(got - printed) == np.spacing(printed)


def test_v2_worked_example_lags_a_ramp_by_one_and_a_half_days() -> None:
    """tf_days 2, p 2: n = 4, alpha = 0.4; seed on day 4 = mean(10, 11, 12, 13) = 11.5.
    On a ramp the lag stays 1.5: 0.4*14 + 0.6*11.5 = 12.5, 0.4*15 + 0.6*12.5 = 13.5, ..."""
    rows, states = compute_daily_space(*worked_grid(), "2D", 2, [2])
    assert list(rows["ts"]) == list(pd.date_range("2024-01-04", "2024-01-09", tz="UTC"))
    assert list(rows["ema"]) == [11.5, 12.5, 13.5, 14.5, 15.5, 16.5]
    assert rows["ema_bar"].isna().all()
    assert list(rows["roll"]) == [True, True, False, True, True, False]
    assert states == {2: EmaState(T0 + 8 * DAY, T0 + 8 * DAY, None, 16.5, canonical_count=3)}


def test_v2_7d_period_10_starts_on_the_70th_observed_day() -> None:
    ts = T0 + np.concatenate([np.arange(30), np.arange(32, 102)]) * DAY  # a 2-day hole: observed days count
    close = np.linspace(50.0, 80.0, 100)
    rows, _ = compute_daily_space(ts, close, np.arange(100) % 7 == 6, "7D", 7, [10])
    assert rows["ts"].iloc[0] == pd.Timestamp(ts[69], tz="UTC")
    assert rows["ema"].iloc[0] == math.fsum(close[:70]) / 70
    assert len(rows) == 31


def test_too_few_canonical_closes_yield_no_rows_and_no_state() -> None:
    ts, close, canon = worked_grid()
    rows, states = compute_bar_space(ts, close, canon, "3D", 3, [4, 10])
    assert rows.empty and list(rows.columns) == list(EMA_COLUMNS) and states == {}
    rows, states = compute_daily_space(ts, close, canon, "3D", 3, [4])
    assert rows.empty and states == {}


def test_only_seeded_periods_get_rows_and_state() -> None:
    rows, states = compute_bar_space(*worked_grid(), "3D", 3, [4, 3, 2])
    assert sorted(states) == [2, 3]
    assert list(rows["period"]) == [2, 2, 2, 2, 3]


def test_seed_row_is_a_canonical_close_where_ema_equals_ema_bar_and_never_snaps_back() -> None:
    rows, _ = compute_bar_space(*worked_grid(), "3D", 3, [2])
    assert not rows["roll"].iloc[0] and rows["ema"].iloc[0] == rows["ema_bar"].iloc[0]
    assert not rows["roll"].iloc[-1] and rows["ema"].iloc[-1] != rows["ema_bar"].iloc[-1]


def test_tz_aware_timestamps_give_the_same_rows() -> None:
    ts, close, canon = worked_grid()
    aware = pd.DatetimeIndex(ts).tz_localize("UTC").tz_convert("America/New_York")
    assert_rows_identical(
        compute_bar_space(aware, close, canon, "3D", 3, [2])[0],
        compute_bar_space(ts, close, canon, "3D", 3, [2])[0],
    )


# --- continuation contract ---------------------------------------------------------------------


@pytest.mark.parametrize("fn", [compute_bar_space, compute_daily_space])
def test_worked_example_one_day_at_a_time_equals_one_shot(fn: Compute) -> None:
    full, full_states = fn(*worked_grid(), "X", 2, [1, 2, 3])
    rows, states = run_incremental(fn, worked_grid(), 2, [1, 2, 3], cuts=range(1, 9))
    assert_rows_identical(rows, full)
    assert states == full_states


@pytest.mark.parametrize("fn", [compute_bar_space, compute_daily_space])
def test_continuing_with_no_new_days_returns_the_state_unchanged(fn: Compute) -> None:
    ts, close, canon = worked_grid()
    _, states = fn(ts, close, canon, "3D", 3, [2])
    rows, again = fn(ts[9:], close[9:], canon[9:], "3D", 3, [2], states)
    assert rows.empty and again == states


def test_started_and_fresh_periods_in_one_call() -> None:
    ts, close, canon = worked_grid()
    _, states = compute_bar_space(ts[:6], close[:6], canon[:6], "3D", 3, [2])
    rows, new = compute_bar_space(ts[6:], close[6:], canon[6:], "3D", 3, [1, 2], states)
    assert sorted(new) == [1, 2]
    assert list(rows["period"]) == [1, 2, 2, 2]  # period 1 seeds on day 9 from the given arrays


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"periods": [0]}, "periods"),
        ({"periods": [2, 2]}, "periods"),
        ({"tf_days": 0}, "tf_days"),
        ({"starts": {5: EmaState(T0, T0, 1.0, 1.0, 9)}}, "not in periods"),
        ({"starts": {2: EmaState(T0 + 3 * DAY, T0, 1.0, 1.0, 2)}}, "after last_ts"),
        ({"starts": {2: EmaState(T0 - DAY, None, None, 1.0, 0)}}, "seeded"),
        ({"starts": {2: EmaState(T0 - DAY, T0 - DAY, 1.0, 1.0, 1)}}, "seeded"),
        ({"starts": {2: EmaState(T0 - DAY, T0 - DAY, 1.0, np.inf, 2)}}, "finite"),
    ],
)
def test_bad_arguments_are_rejected(kwargs: dict, message: str) -> None:
    args = {"tf": "3D", "tf_days": 3, "periods": [2], **kwargs}
    with pytest.raises(ValueError, match=message):
        compute_bar_space(*worked_grid(), **args)


def test_bad_grids_are_rejected() -> None:
    ts, close, canon = worked_grid()
    with pytest.raises(ValueError, match="strictly increasing"):
        compute_bar_space(ts[::-1], close, canon, "3D", 3, [2])
    with pytest.raises(ValueError, match="boolean"):
        compute_bar_space(ts, close, canon.astype(int), "3D", 3, [2])
    with pytest.raises(ValueError, match="finite"):
        compute_daily_space(ts, np.where(canon, np.nan, close), canon, "3D", 3, [2])
    with pytest.raises(ValueError, match="same length"):
        compute_daily_space(ts, close[:-1], canon, "3D", 3, [2])


# --- the core property --------------------------------------------------------------------------


@st.composite
def histories(draw: st.DrawFn, max_days: int = 400) -> tuple:
    """A lognormal random walk on observed days (with holes), bars closing every k-th day with
    some closes missing (unobserved bar ends), random periods and random split points."""
    n = draw(st.integers(1, max_days))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    k = draw(st.integers(1, 10))
    canon = (np.arange(n) % k == draw(st.integers(0, k - 1))) & (
        rng.random(n) >= draw(st.sampled_from([0, 0.2]))
    )
    ts = T0 + np.cumsum(rng.integers(1, 3, n)) * DAY
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.04, n)))
    periods = draw(st.lists(st.integers(1, 30), min_size=1, max_size=5, unique=True))
    cuts = sorted(draw(st.sets(st.integers(1, max(n - 1, 1)), max_size=6))) if n > 1 else []
    return (ts, close, canon), k, periods, cuts


@pytest.mark.parametrize("fn", [compute_bar_space, compute_daily_space])
@settings(deadline=None, max_examples=150)
@given(history=histories())
def test_incremental_refresh_equals_full_rebuild_for_any_split(fn: Compute, history: tuple) -> None:
    grid, tf_days, periods, cuts = history
    full, full_states = fn(*grid, "X", tf_days, periods)
    rows, states = run_incremental(fn, grid, tf_days, periods, cuts)
    assert_rows_identical(rows, full)
    assert states == full_states


@pytest.mark.parametrize("fn", [compute_bar_space, compute_daily_space])
@settings(deadline=None, max_examples=30)
@given(history=histories(max_days=120))
def test_one_day_at_a_time_equals_full_rebuild(fn: Compute, history: tuple) -> None:
    grid, tf_days, periods, _ = history
    full, full_states = fn(*grid, "X", tf_days, periods)
    rows, states = run_incremental(fn, grid, tf_days, periods, cuts=range(1, len(grid[0])))
    assert_rows_identical(rows, full)
    assert states == full_states
