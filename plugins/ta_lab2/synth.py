"""Realistic synthetic daily candles for demos, tests and benchmarks (pure, seeded).

Prices follow a geometric random walk with fat-ish tails (Student-t shocks, daily vol
drawn per asset between 2% and 6%); intraday high/low stretch beyond open/close; intraday
high/low instants fall inside the day. A few imperfections real feeds have are injected on
purpose: occasional missing days (gaps of 1–3 days, ~0.5% of days) and a few candles whose
``timeHigh``/``timeLow`` lie outside their day (~0.2%), which the 1d builder must repair.
Files use the CoinMarketCap export layout with name ``SYN<id>`` (the loader maps that name
to the id).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np

SYNTH_ID_BASE = 100_000
ISO_MS = "%Y-%m-%dT%H:%M:%S.%f"
EXPORT_HEADER_LINE = "timeOpen;timeClose;timeHigh;timeLow;name;open;high;low;close;volume;marketCap;timestamp"


def _iso(t: datetime) -> str:
    return t.strftime(ISO_MS)[:-3] + "Z"


def synth_asset(asset_id: int, days: int, seed: int, start: date = date(2020, 1, 1)) -> list[str]:
    """Export-layout lines (with header) for one synthetic asset."""
    rng = np.random.default_rng([seed, asset_id])
    vol = rng.uniform(0.02, 0.06)
    shocks = rng.standard_t(4, size=days) * vol / np.sqrt(2.0)
    close = rng.uniform(0.5, 50_000) * np.exp(np.cumsum(shocks))
    open_ = np.r_[close[0] / np.exp(shocks[0]), close[:-1]]
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, vol / 2, days)))
    low = np.minimum(open_, close) * (1 - np.minimum(np.abs(rng.normal(0, vol / 2, days)), 0.9))
    volume = rng.lognormal(16, 1, days)
    keep = rng.random(days) > 0.005
    keep[0] = True
    bad_time = rng.random(days) < 0.002
    name = f"SYN{asset_id}"
    lines = [EXPORT_HEADER_LINE]
    for i in np.flatnonzero(keep):
        t0 = datetime(start.year, start.month, start.day, tzinfo=UTC) + timedelta(days=int(i))
        t1 = t0 + timedelta(days=1) - timedelta(milliseconds=1)
        th = t0 + timedelta(seconds=int(rng.integers(0, 86_400)))
        tl = t0 + timedelta(seconds=int(rng.integers(0, 86_400)))
        if bad_time[i]:
            th = t0 - timedelta(days=2)  # a broken feed timestamp outside the day
        lines.append(";".join([_iso(t0), _iso(t1), _iso(th), _iso(tl), name, *(f"{v:.10g}" for v in (
            open_[i], high[i], low[i], close[i], volume[i], close[i] * 1e7)), _iso(t1)]))
    return lines


def write_synth(out_dir: Path, assets: int, days: int, seed: int, start: date = date(2020, 1, 1)) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(assets):
        path = out_dir / f"synth_{SYNTH_ID_BASE + k + 1}.csv"
        path.write_text("\n".join(synth_asset(SYNTH_ID_BASE + k + 1, days, seed, start)) + "\n")
        paths.append(path)
    return paths
