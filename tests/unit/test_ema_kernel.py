"""The EMA kernel: TA-Lib seeding and bit-exact agreement with the scalar update."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ta_lab2.emas.kernel import ema_recursion, sma_seed, sma_seeded_ema

FINITE = st.floats(min_value=1e-3, max_value=1e6, allow_nan=False, allow_infinity=False)


def scalar_ema(x: list[float], p: int) -> list[float]:
    """Reference: the spec's formula, one Python float at a time."""
    alpha = 2.0 / (p + 1)
    out = [math.nan] * len(x)
    if len(x) < p:
        return out
    out[p - 1] = math.fsum(x[:p]) / p
    for j in range(p, len(x)):
        out[j] = alpha * x[j] + (1.0 - alpha) * out[j - 1]
    return out


def test_spec_example_is_seeded_with_the_simple_mean() -> None:
    got = sma_seeded_ema(np.array([1.0, 2.0, 3.0, 4.0, 5.0]), 3)
    assert np.array_equal(got, [np.nan, np.nan, 2.0, 3.0, 4.0], equal_nan=True)


def test_period_one_is_the_input_itself() -> None:
    x = np.array([3.5, 1.25, 7.0])
    assert np.array_equal(sma_seeded_ema(x, 1), x)


def test_too_short_input_is_all_undefined() -> None:
    assert np.isnan(sma_seeded_ema([1.0, 2.0], 3)).all()
    assert len(sma_seeded_ema([], 3)) == 0


def test_seed_is_the_exactly_rounded_mean() -> None:
    # A naive left-to-right sum gives 0.0 here; fsum gives the exact 1.0.
    assert sma_seed([1e16, 1.0, -1e16], 3) == 1.0 / 3
    assert sma_seeded_ema([1e16, 1.0, -1e16], 3)[2] == 1.0 / 3


def test_differs_from_pandas_ewm_which_seeds_with_the_first_value() -> None:
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    ewm = pd.Series(x).ewm(span=3, adjust=False).mean().to_numpy()
    assert ewm[2] != sma_seeded_ema(x, 3)[2]


@pytest.mark.parametrize("p", [0, -1])
def test_period_below_one_is_rejected(p: int) -> None:
    with pytest.raises(ValueError, match="period"):
        sma_seeded_ema([1.0, 2.0], p)


def test_two_dimensional_input_is_rejected() -> None:
    with pytest.raises(ValueError, match="one-dimensional"):
        sma_seeded_ema(np.ones((3, 2)), 2)


@settings(deadline=None, max_examples=150)
@given(st.lists(FINITE, max_size=80), st.integers(1, 30))
def test_matches_the_scalar_formula_bit_for_bit(x: list[float], p: int) -> None:
    assert np.array_equal(sma_seeded_ema(x, p), scalar_ema(x, p), equal_nan=True)


@settings(deadline=None, max_examples=150)
@given(st.lists(FINITE, min_size=1, max_size=60), st.lists(st.integers(1, 40), min_size=1, max_size=6))
def test_many_series_at_once_equal_each_series_alone(x: list[float], periods: list[int]) -> None:
    alpha = np.array([2.0 / (p + 1) for p in periods])
    seed = np.array([sma_seed(x, p) if p <= len(x) else np.nan for p in periods])
    out = ema_recursion(np.array(x), alpha, np.full(len(periods), np.nan), np.array(periods) - 1, seed)
    for s, p in enumerate(periods):
        assert np.array_equal(out[:, s], scalar_ema(x, p), equal_nan=True)


@settings(deadline=None, max_examples=150)
@given(st.lists(FINITE, min_size=2, max_size=60), st.integers(1, 10), st.data())
def test_continuing_from_the_last_value_equals_one_pass(x: list[float], p: int, data: st.DataObject) -> None:
    assume(p < len(x))
    full = sma_seeded_ema(x, p)
    cut = data.draw(st.integers(p, len(x) - 1))
    alpha = np.array([2.0 / (p + 1)])
    tail = ema_recursion(np.array(x[cut:]), alpha, full[cut - 1 : cut], np.array([-1]), np.array([np.nan]))
    assert np.array_equal(tail[:, 0], full[cut:], equal_nan=True)


def test_recursion_rejects_mismatched_series_vectors() -> None:
    with pytest.raises(ValueError, match="one entry per series"):
        ema_recursion(np.ones(3), np.array([0.5, 0.5]), np.array([np.nan]), np.array([0]), np.array([1.0]))
