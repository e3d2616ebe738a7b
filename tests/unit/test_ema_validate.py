"""EMA validation: rejects for NaN/inf/negative and for values outside the median3 close bounds."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ta_lab2.emas.compute import compute_bar_space, compute_daily_space
from ta_lab2.emas.validate import REJECT_COLUMNS, median3, nonfinite_mask, running_bounds, validate_emas

DAY = np.timedelta64(1, "D")
T0 = np.datetime64("2024-01-01", "ns")
N = 200
SPIKE = 150  # a mid-week day: a roll row of the 7D bars below


def smooth_grid(spike_at: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    close = 100.0 + 5.0 * np.sin(np.arange(N) / 20.0)
    if spike_at is not None:
        close[spike_at] *= 1000.0
    return T0 + np.arange(N) * DAY, close, np.arange(N) % 7 == 6


def both_spaces(grid: tuple[np.ndarray, np.ndarray, np.ndarray]) -> dict[str, pd.DataFrame]:
    return {
        "bar": compute_bar_space(*grid, "7D", 7, [10])[0],
        "v2": compute_daily_space(*grid, "7D", 7, [10])[0],
    }


def hand_rows(ema: list[float], ema_bar: list[float]) -> pd.DataFrame:
    n = len(ema)
    return pd.DataFrame(
        {
            "tf": "7D",
            "ts": pd.date_range("2024-01-01", periods=n, tz="UTC"),
            "period": 10,
            "tf_days": 7,
            "roll": True,
            "ema": ema,
            "ema_bar": ema_bar,
        }
    )


def test_trailing_median3_drops_isolated_spikes_including_on_the_newest_day() -> None:
    assert list(median3(np.array([1.0, 9.0, 2.0, 3.0, 50.0]))) == [1.0, 5.0, 2.0, 3.0, 3.0]
    assert list(median3(np.array([100.0, 101.0, 100000.0, 102.0, 103.0]))) == [100, 100.5, 101, 102, 103]
    assert list(median3(np.array([4.0, 6.0]))) == [4.0, 5.0]
    lower, upper = running_bounds(np.array([100.0, 101.0, 100000.0, 102.0, 103.0]))
    assert list(lower) == [50.0] * 5
    assert list(upper) == [200.0, 201.0, 202.0, 204.0, 206.0]  # each day's bound sees only its past


def test_a_rows_bounds_do_not_change_when_later_days_arrive() -> None:
    closes = np.array([10.0, 11.0, 10.5, 12.0, 11.0, 300.0, 320.0, 330.0])
    for n in range(1, len(closes) + 1):
        lo, hi = running_bounds(closes[:n])
        full_lo, full_hi = running_bounds(closes)
        assert list(lo) == list(full_lo[:n]) and list(hi) == list(full_hi[:n])


def test_median3_keeps_a_move_that_lasts_two_days_from_its_second_day() -> None:
    assert list(median3(np.array([1.0, 1.0, 1.0, 5.0, 5.0, 5.0]))) == [1, 1, 1, 1, 5, 5]


@pytest.mark.parametrize("space", ["bar", "v2"])
def test_a_one_day_x1000_close_is_flagged(space: str) -> None:
    grid = smooth_grid(spike_at=SPIKE)
    rows = both_spaces(grid)[space]
    # The literal spec bounds could never see it: the spike raises max(close) with the EMA.
    assert rows["ema"].max() < 2.0 * grid[1].max()
    rejects = validate_emas(rows, grid[0], grid[1])
    spike_ts = pd.Timestamp(grid[0][SPIKE], tz="UTC")
    on_spike = rejects[rejects["ts"] == spike_ts]
    assert "above_upper_bound" in set(on_spike["violation_type"])
    assert (rejects["ts"] >= spike_ts).all()
    assert on_spike["source_close"].iloc[0] == grid[1][SPIKE]
    if space == "bar":  # the roll-row preview spikes; bar_ema (canonical closes only) never does
        bar = rejects[rejects["violation_type"].str.endswith("_bar")]
        assert list(bar["ts"]) == [spike_ts] and bar["violation_type"].iloc[0] == "above_upper_bound_bar"


@pytest.mark.parametrize("space", ["bar", "v2"])
def test_a_x1000_close_on_the_newest_day_is_flagged(space: str) -> None:
    grid = smooth_grid(spike_at=N - 1)
    rejects = validate_emas(both_spaces(grid)[space], grid[0], grid[1])
    assert list(rejects["ts"].unique()) == [pd.Timestamp(grid[0][-1], tz="UTC")]


def test_a_clean_random_walk_has_no_rejects() -> None:
    rng = np.random.default_rng(7)
    n = 1500
    ts, close = T0 + np.arange(n) * DAY, 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.05, n)))
    frames = []
    for tf_days in (1, 3, 7, 30):
        canon = np.arange(n) % tf_days == tf_days - 1
        for fn in (compute_bar_space, compute_daily_space):
            frames.append(fn(ts, close, canon, f"{tf_days}D", tf_days, [6, 10, 20, 50])[0])
    rows = pd.concat(frames, ignore_index=True)
    assert len(rows) > 10_000
    assert validate_emas(rows, ts, close).empty


def test_a_real_doubling_that_persists_is_not_flagged() -> None:
    ts, close, canon = smooth_grid()
    close[120:] *= 2.0
    for rows in both_spaces((ts, close, canon)).values():
        assert validate_emas(rows, ts, close).empty


def test_nan_inf_and_negative_values_are_flagged_with_their_type() -> None:
    rows = hand_rows(
        ema=[np.nan, np.inf, -np.inf, -1.0, 10.0, 10.0, 1.0, 1000.0],
        ema_bar=[np.nan, 10.0, 10.0, 10.0, np.inf, -2.0, 10.0, 10.0],
    )
    rejects = validate_emas(rows, rows["ts"], np.full(len(rows), 10.0))
    assert list(rejects.columns) == list(REJECT_COLUMNS)
    got = list(zip(rejects["ts"].dt.day, rejects["violation_type"], strict=True))
    assert got == [
        (1, "nan"),  # ema_bar NaN is NULL, not a violation
        (2, "inf"),
        (3, "inf"),
        (4, "negative"),  # not also below_lower_bound: one type per value
        (5, "inf_bar"),
        (6, "negative_bar"),
        (7, "below_lower_bound"),
        (8, "above_upper_bound"),
    ]
    assert np.isnan(rejects["ema_value"].iloc[0]) and rejects["ema_value"].iloc[3] == -1.0


def test_bounds_are_json_and_describe_the_span() -> None:
    rows = hand_rows(ema=[10.0, 10.0, 99.0], ema_bar=[np.nan] * 3)
    grid_ts = pd.date_range("2023-12-30", periods=6, tz="UTC")  # the grid starts before the series
    rejects = validate_emas(rows, grid_ts, [10.0, 12.0, 10.0, 11.0, 10.0, 30.0])
    assert len(rejects) == 1
    bounds = json.loads(json.dumps(rejects["bounds"].iloc[0]))
    assert bounds == {
        "lower": 5.0,
        "upper": 22.0,  # trailing median3 up to the row's day: 10, 11, 10, 11, 10; 30 is after the row
        "span_start": "2023-12-30T00:00:00+00:00",
        "span_end": "2024-01-03T00:00:00+00:00",
        "method": "median3",
    }
    assert rejects["source_close"].iloc[0] == 10.0


def test_no_rows_give_an_empty_frame_with_the_reject_columns() -> None:
    empty = validate_emas(hand_rows([], []), [T0], [1.0])
    assert empty.empty and list(empty.columns) == list(REJECT_COLUMNS)


def test_nonfinite_mask_treats_a_null_ema_bar_as_fine() -> None:
    rows = hand_rows(ema=[1.0, np.nan, np.inf, 1.0, 1.0], ema_bar=[np.nan, 1.0, 1.0, -np.inf, 1.0])
    assert list(nonfinite_mask(rows)) == [False, True, True, True, False]


def test_rows_before_the_grid_are_rejected() -> None:
    with pytest.raises(ValueError, match="before the first grid day"):
        validate_emas(hand_rows([1.0], [1.0]), [T0 + DAY], [1.0])
