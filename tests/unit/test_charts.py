"""The chart drawing (pure): candles, one line per EMA period, missing days as spans."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pandas as pd
import pytest

from ta_lab2.charts import ChartData, ChartError, chart_figure, ema_table_for, missing_runs
from ta_lab2.registry import BAR_FAMILY_NAMES

DAY = timedelta(days=1)
T0 = datetime(2025, 1, 6, tzinfo=UTC)


def _data(n: int = 5, periods: tuple[int, ...] = (10, 50), holes: tuple[int, ...] = (9, 10, 20)) -> ChartData:
    """``n`` 7-day bars; EMAs at the closes; the 1d days of the window minus ``holes`` (offsets)."""
    opens = [T0 + 7 * i * DAY for i in range(n)]
    closes = [o + 7 * DAY - timedelta(milliseconds=1) for o in opens]
    bars = pd.DataFrame({"timestamp": closes, "time_open": opens, "open": [10.0, 11, 12, 11, 13][:n],
                         "high": [12.0, 13, 13, 14, 15][:n], "low": [9.0, 10, 10, 10, 12][:n],
                         "close": [11.0, 12, 11, 13, 14][:n], "is_missing_days": [False] * n})
    emas = pd.DataFrame([{"period": p, "ts": c, "ema": 10 + k + p / 100} for p in periods
                         for k, c in enumerate(closes)])
    days = [(T0 + k * DAY).date() for k in range(7 * n) if k not in holes]
    return ChartData(1, "BTC", "multi_tf", "7D", bars, emas, days, periods)


def test_the_figure_has_one_candle_per_bar_two_ema_lines_and_the_missing_days() -> None:
    fig = chart_figure(_data())
    ax = fig.axes[0]
    candles = [p for p in ax.patches if p.get_gid() == "candles"]
    assert len(candles) == 5
    heights = [round(p.get_height(), 6) for p in candles]
    assert heights == [1.0, 1.0, 1.0, 2.0, 1.0]  # |close - open|
    lines = {ln.get_gid(): ln for ln in ax.get_lines()}
    assert set(lines) == {"ema-10", "ema-50"}
    assert list(lines["ema-50"].get_ydata()) == [10.5, 11.5, 12.5, 13.5, 14.5]
    # the EMA point of a bar sits on its candle (same x)
    assert list(lines["ema-10"].get_xdata()) == [p.get_x() + p.get_width() / 2 for p in candles]
    spans = [p for p in ax.patches if p.get_gid() == "missing"]
    assert len(spans) == 2  # days 9-10 and day 20
    labels = ax.get_legend_handles_labels()[1]
    assert "missing days (3)" in labels and "EMA 10" in labels and "EMA 50" in labels


def test_a_period_without_rows_draws_no_line_and_no_bars_is_refused() -> None:
    data = _data(periods=(10,))
    data = ChartData(1, "BTC", "multi_tf", "7D", data.bars, data.emas, data.days_1d, (10, 200))
    assert [ln.get_gid() for ln in chart_figure(data).axes[0].get_lines()] == ["ema-10"]
    empty = ChartData(1, "BTC", "multi_tf", "7D", data.bars.iloc[:0], data.emas, [], (10,))
    with pytest.raises(ChartError, match="asset 1: no multi_tf bars at 7D"):
        chart_figure(empty)


@pytest.mark.parametrize(("present", "runs"), [
    ([1, 2, 3, 4, 5], []),
    ([1, 5], [(2, 4)]),
    ([2, 3], [(1, 1), (4, 5)]),
    ([], [(1, 5)]),
])
def test_missing_runs(present: list[int], runs: list[tuple[int, int]]) -> None:
    d = [date(2025, 1, k) for k in present]
    assert missing_runs(date(2025, 1, 1), date(2025, 1, 5), d) == \
        [(date(2025, 1, a), date(2025, 1, b)) for a, b in runs]


def test_every_bar_family_has_the_ema_table_of_its_bars() -> None:
    tables = {f: ema_table_for(f) for f in BAR_FAMILY_NAMES}
    assert tables == {"1d": "cmc_ema_multi_tf", "multi_tf": "cmc_ema_multi_tf",
                      "cal_iso": "cmc_ema_multi_tf_cal_iso", "cal_us": "cmc_ema_multi_tf_cal_us",
                      "cal_anchor_iso": "cmc_ema_multi_tf_cal_anchor_iso",
                      "cal_anchor_us": "cmc_ema_multi_tf_cal_anchor_us"}
