"""Candle charts with EMA lines and the missing days marked: ONE implementation for the CLI
(``python -m ta_lab2 chart``, PNG), ``make demo`` and the Airflow UI warehouse page (SVG).

Pure: :func:`chart_figure` takes a :class:`ChartData` (read by ``store.charts.load_chart``)
and returns a matplotlib ``Figure`` (no pyplot, so it is thread-safe in the API server, and
the Agg canvas: no display needed). Its artists carry ids a test can check: each candle
body is a rectangle with gid ``candles``, each EMA is a ``Line2D``
with gid ``ema-<period>``, each run of missing days one span with gid ``missing``.

What is drawn: the last N bars of the chosen bar family and timeframe (a snapshot family's bar
is its latest snapshot row, so the current bar may be partial), a candle centred on each
bar's days (width 70 % of them; green when close >= open), the EMAs of the family's EMA table
at the bar closes (``roll = false``), and every calendar day in the window without a 1d bar
shaded (merged into runs).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ta_lab2.registry import EMA_VARIANTS, bar_family

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

DEFAULT_PERIODS = (10, 50)
DEFAULT_BARS = 120
UP, DOWN, MISSING = "#26a269", "#c01c28", "#f6d32d"
EMA_COLOURS = ("#1c71d8", "#e66100", "#9141ac", "#2ec27e", "#865e3c")


class ChartError(ValueError):
    """A chart request that cannot be drawn (unknown asset, family, timeframe, no bars)."""


@dataclass(frozen=True)
class ChartData:
    asset_id: int
    symbol: str
    family: str
    tf: str
    bars: pd.DataFrame  # time_open, timestamp, open, high, low, close, is_missing_days (oldest first)
    emas: pd.DataFrame  # period, ts, ema
    days_1d: Sequence[date]  # days with a 1d bar within the window
    periods: tuple[int, ...] = DEFAULT_PERIODS
    notes: list[str] = field(default_factory=list)


def ema_table_for(family: str) -> str:
    """The EMA table whose bars are this family's: the first EMA variant whose bar family has
    the same roll policy and calendar scheme (the 1d family's 1D EMAs live in multi_tf's, D20)."""
    fam = bar_family(family)
    for v in EMA_VARIANTS:
        b = bar_family(v.bar_family)
        if (b.roll_policy, b.scheme) == (fam.roll_policy, fam.scheme):
            return v.table
    raise ChartError(f"no EMA table for bar family {family!r}")


def missing_runs(first: date, last: date, present: Sequence[date]) -> list[tuple[date, date]]:
    """Runs ``(start, end)`` (inclusive) of days in ``[first, last]`` not in ``present``.

    >>> missing_runs(date(2025, 1, 1), date(2025, 1, 6), [date(2025, 1, 1), date(2025, 1, 4)])
    [(datetime.date(2025, 1, 2), datetime.date(2025, 1, 3)), (datetime.date(2025, 1, 5), datetime.date(2025, 1, 6))]
    """
    have, runs = set(present), []
    day, start = first, None
    while day <= last:
        if day not in have and start is None:
            start = day
        if day in have and start is not None:
            runs.append((start, day - timedelta(days=1)))
            start = None
        day += timedelta(days=1)
    if start is not None:
        runs.append((start, last))
    return runs


def _num(values: Any) -> Any:
    import matplotlib.dates as mdates
    import pandas as pd

    return mdates.date2num(pd.DatetimeIndex(values).tz_convert(None).to_pydatetime())


def chart_figure(data: ChartData, *, width: float = 11.0, height: float = 5.5) -> Figure:
    """The chart as a Figure (title: symbol, id, family, timeframe)."""
    import pandas as pd
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    if data.bars.empty:
        raise ChartError(f"asset {data.asset_id}: no {data.family} bars at {data.tf}")
    bars = data.bars
    start, close = _num(bars["time_open"]), _num(bars["timestamp"])
    centre, span = (start + close) / 2, (close - start)
    fig = Figure(figsize=(width, height), dpi=100)
    ax = fig.add_subplot()
    up = (bars["close"] >= bars["open"]).to_numpy()
    colours = [UP if u else DOWN for u in up]
    ax.vlines(centre, bars["low"], bars["high"], colors=colours, linewidth=0.8, gid="wicks")
    body = (bars["close"] - bars["open"]).abs().to_numpy()
    floor = max(float(bars["high"].max() - bars["low"].min()) * 1e-3, 1e-12)
    ax.bar(centre, [max(b, floor) for b in body], width=span * 0.7, bottom=bars[["open", "close"]].min(axis=1),
           color=colours, edgecolor=colours, linewidth=0.5, gid="candles")
    by_close = dict(zip(close, centre, strict=True))
    for k, period in enumerate(data.periods):
        e = data.emas[data.emas["period"] == period]
        if e.empty:
            continue
        xs = [by_close.get(x, x) for x in _num(e["ts"])]
        ax.plot(xs, e["ema"].to_numpy(), color=EMA_COLOURS[k % len(EMA_COLOURS)], linewidth=1.4,
                gid=f"ema-{period}", label=f"EMA {period}")
    first = pd.Timestamp(bars["time_open"].iloc[0]).date()
    last = pd.Timestamp(bars["timestamp"].iloc[-1]).date()
    runs = missing_runs(first, last, data.days_1d)
    n_missing = sum((b - a).days + 1 for a, b in runs)
    for k, (a, b) in enumerate(runs):
        lo, hi = _num([pd.Timestamp(a, tz="UTC"), pd.Timestamp(b + timedelta(days=1), tz="UTC")])
        ax.axvspan(lo, hi, color=MISSING, alpha=0.45, linewidth=0, gid="missing",
                   label=f"missing days ({n_missing})" if k == 0 else None)
    locator = AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    ax.grid(True, alpha=0.25)
    ax.set_title(f"{data.symbol} (id {data.asset_id}) · {data.family} bars · {data.tf} · "
                 f"{len(bars)} bars to {last:%Y-%m-%d}", loc="left", fontsize=11)
    ax.set_ylabel("price")
    handles, labels = ax.get_legend_handles_labels()
    candles = [Patch(color=UP, label=f"{data.tf} bar up"), Patch(color=DOWN, label=f"{data.tf} bar down")]
    ax.legend(handles=candles + handles, labels=[h.get_label() for h in candles] + labels, loc="upper left",
              fontsize=9, framealpha=0.85)
    fig.tight_layout()
    return fig


def save_png(fig: Figure, path: Path) -> Path:
    """Write the figure as PNG (or SVG for a ``.svg`` path) with the Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, format=path.suffix.lstrip(".").lower() or "png")
    return path


def to_svg(fig: Figure) -> str:
    """The figure as an inline ``<svg>`` element (no XML prolog), for server-rendered HTML."""
    from matplotlib.backends.backend_svg import FigureCanvasSVG

    FigureCanvasSVG(fig)
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    text = buf.getvalue()
    return text[text.index("<svg"):]
