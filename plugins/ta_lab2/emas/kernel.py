"""The EMA kernel: SMA-seeded exponential moving averages, bit-exact and incremental.

Every update in the package is ``new = alpha * x + (1.0 - alpha) * prev`` evaluated in that
order in float64 (two multiplications, one addition, no FMA, no closed forms), so a series
continued from its last value equals the series computed in one pass, bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def sma_seed(values: np.ndarray | Sequence[float], p: int) -> float:
    """The seed of an EMA of period ``p``: the mean of the first ``p`` values.

    Computed as ``math.fsum(values[:p]) / p`` (exactly rounded, independent of summation
    order), the single definition used everywhere. ``sma_seed([1, 2, 3, 9], 3) == 2.0``.
    """
    if p < 1:
        raise ValueError(f"period must be >= 1, got {p}")
    if len(values) < p:
        raise ValueError(f"need {p} values to seed, got {len(values)}")
    return math.fsum(values[:p]) / p


def ema_recursion(
    x: np.ndarray,
    alpha: np.ndarray,
    init: np.ndarray,
    seed_at: np.ndarray,
    seed: np.ndarray,
) -> np.ndarray:
    """Run ``S`` EMA recursions over one input series ``x`` (length ``T``) at once.

    ``out[t, s] = alpha[s] * x[t] + (1.0 - alpha[s]) * out[t - 1, s]`` with
    ``out[-1, s] = init[s]``, except that ``out[seed_at[s], s] = seed[s]`` when
    ``0 <= seed_at[s] < T`` (the recursion restarts from the seed there). Pass ``init = NaN``
    and a seed index for a series built from scratch (NaN before its seed), or ``init`` = the
    last value and ``seed_at = -1`` to continue a series. Loops over time, one numpy step per
    day across all series; each element is computed exactly as the scalar formula.

    Example: ``x = [1, 2, 3, 4, 5]``, ``alpha = [0.5]``, ``init = [nan]``, ``seed_at = [2]``,
    ``seed = [2.0]`` gives the column ``[nan, nan, 2, 3, 4]``.
    """
    x = np.asarray(x, dtype=np.float64)
    alpha = np.asarray(alpha, dtype=np.float64)
    seed_at = np.asarray(seed_at, dtype=np.int64)
    n_t, n_s = len(x), len(alpha)
    if not (len(init) == len(seed_at) == len(seed) == n_s):
        raise ValueError("alpha, init, seed_at and seed must have one entry per series")
    out = np.full((n_t, n_s), np.nan)
    if n_t == 0 or n_s == 0:
        return out
    ax = x[:, None] * alpha[None, :]  # alpha * x, elementwise, for every (t, s)
    one_minus = 1.0 - alpha
    seed = np.asarray(seed, dtype=np.float64)
    seeds_by_t: dict[int, list[int]] = {}
    for s in np.flatnonzero((seed_at >= 0) & (seed_at < n_t)):
        seeds_by_t.setdefault(int(seed_at[s]), []).append(int(s))
    # Before the first seed of a scratch series (init NaN) there is nothing to compute.
    t0 = 0 if np.any(seed_at < 0) else min(seeds_by_t, default=n_t)
    prev = np.asarray(init, dtype=np.float64).copy()
    for t in range(t0, n_t):
        row = out[t]
        np.multiply(one_minus, prev, out=row)
        row += ax[t]
        cols = seeds_by_t.get(t)
        if cols is not None:
            row[cols] = seed[cols]
        prev = row
    return out


def sma_seeded_ema(x: np.ndarray | Sequence[float], p: int) -> np.ndarray:
    """EMA of period ``p`` seeded with the simple mean of the first ``p`` values (TA-Lib).

    ``e[p-1] = mean(x[0..p-1])`` (``sma_seed``), then ``e[j] = a * x[j] + (1 - a) * e[j-1]``
    with ``a = 2 / (p + 1)``; ``e[j]`` is NaN for ``j < p - 1`` (undefined, no row is written)
    and the whole result is NaN when ``len(x) < p``. Unlike pandas ``ewm(adjust=False)``,
    which seeds with ``x[0]``. Example: ``sma_seeded_ema([1, 2, 3, 4, 5], 3)`` is
    ``[nan, nan, 2.0, 3.0, 4.0]``.
    """
    if p < 1:
        raise ValueError(f"period must be >= 1, got {p}")
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"x must be one-dimensional, got shape {x.shape}")
    if len(x) < p:
        return np.full(len(x), np.nan)
    alpha = np.array([2.0 / (p + 1)])
    seed = np.array([sma_seed(x, p)])
    return ema_recursion(x, alpha, np.array([np.nan]), np.array([p - 1]), seed)[:, 0]
