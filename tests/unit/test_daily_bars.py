"""1d builder rules (BARS.md §1) on hand-made frames with exact expected values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ta_lab2.bars.daily import DAILY_COLUMNS, build_daily, build_daily_many

DAY = pd.Timedelta(days=1)
MS = pd.Timedelta(milliseconds=1)


def src(days: list[str], **over: list) -> pd.DataFrame:
    t0 = pd.to_datetime(days).tz_localize("UTC")
    n = len(days)
    df = pd.DataFrame({
        "id": 1, "name": "X", "timeopen": t0, "timeclose": t0 + DAY - MS,
        "timehigh": t0 + pd.Timedelta(hours=12), "timelow": t0 + pd.Timedelta(hours=6),
        "timestamp": t0 + DAY - MS, "open": [10.0] * n, "high": [12.0] * n, "low": [9.0] * n,
        "close": [11.0] * n, "volume": [100.0] * n, "marketcap": [1e6] * n, "source_file": "f",
        "load_ts": pd.Timestamp("2024-06-01", tz="UTC"),
    })
    for k, v in over.items():
        df[k] = v
    return df


def test_output_has_exactly_the_table_columns() -> None:
    out = build_daily(src(["2024-01-01"]), 1)
    assert tuple(c for c in out.bars.columns if c != "day") == DAILY_COLUMNS


def test_dense_bar_seq_and_gap_counts() -> None:
    out = build_daily(src(["2024-01-01", "2024-01-02", "2024-01-05"]), 1)
    assert list(out.bars["bar_seq"]) == [1, 2, 3]
    assert list(out.bars["count_missing_days"]) == [0, 0, 2]
    assert list(out.bars["is_missing_days"]) == [False, False, True]


def test_continuation_uses_previous_bar_seq_and_day() -> None:
    out = build_daily(src(["2024-01-05"]), 1, prev_bar_seq=7, prev_day=pd.Timestamp("2024-01-02"))
    assert out.bars["bar_seq"].tolist() == [8]
    assert out.bars["count_missing_days"].tolist() == [2]


def test_timehigh_outside_the_day_is_repaired_and_counted() -> None:
    s = src(["2024-01-01", "2024-01-02"])
    s.loc[0, "timehigh"] = pd.Timestamp("2023-12-25", tz="UTC")
    out = build_daily(s, 1)
    row = out.bars.iloc[0]
    assert row["time_high"] == row["time_close"]  # close 11 >= open 10 -> the close time
    assert row["high"] == 11.0  # max(open, close): the reported extreme is unusable
    assert out.repaired_timehigh.tolist() == [True, False]
    assert out.repaired_timelow.tolist() == [False, False]


def test_timelow_outside_the_day_uses_open_time_when_close_above_open() -> None:
    s = src(["2024-01-01"])
    s.loc[0, "timelow"] = pd.Timestamp("2024-01-03", tz="UTC")
    out = build_daily(s, 1)
    assert out.bars.iloc[0]["time_low"] == out.bars.iloc[0]["time_open"]
    assert out.bars.iloc[0]["low"] == 10.0
    assert out.repaired_timelow.tolist() == [True]


def test_missing_times_are_filled_but_the_reported_extremes_kept() -> None:
    s = src(["2024-01-01"], timehigh=[None], timelow=[None])
    s["timehigh"] = pd.to_datetime(s["timehigh"], utc=True)
    s["timelow"] = pd.to_datetime(s["timelow"], utc=True)
    out = build_daily(s, 1)
    row = out.bars.iloc[0]
    assert (row["high"], row["low"]) == (12.0, 9.0)
    assert row["time_high"] == row["time_close"] and row["time_low"] == row["time_open"]
    assert out.filled_times.tolist() == [True]
    assert not out.repaired_timehigh.any()


def test_high_below_close_is_raised_to_the_close() -> None:
    out = build_daily(src(["2024-01-01"], high=[10.5]), 1)
    assert out.bars.iloc[0]["high"] == 11.0
    assert out.repaired_ohlc.tolist() == [True]


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [("close", -1.0, "close<=0"), ("open", 0.0, "open<=0"), ("high", np.nan, "high NaN"),
     ("low", np.inf, "low infinite"), ("close", None, "close missing")],
)
def test_bad_prices_go_to_rejects_with_their_reason(column: str, value: float | None, reason: str) -> None:
    s = src(["2024-01-01", "2024-01-02"])
    s[column] = s[column].astype(object)
    s.loc[1, column] = value
    out = build_daily(s, 1)
    assert out.bars["timestamp"].tolist() == [s.loc[0, "timestamp"]]
    assert out.rejects["reason"].tolist() == [reason]
    assert out.rejects["timestamp"].tolist() == [s.loc[1, "timestamp"]]


def test_null_volume_and_market_cap_never_reject_a_row() -> None:
    out = build_daily(src(["2024-01-01"], volume=[None], marketcap=[None]), 1)
    assert len(out.bars) == 1 and out.rejects.empty
    assert np.isnan(out.bars.iloc[0]["volume"])


def test_duplicate_day_keeps_the_later_load_and_rejects_the_other() -> None:
    s = src(["2024-01-01", "2024-01-01"])
    s.loc[1, "timestamp"] = s.loc[1, "timestamp"] - pd.Timedelta(hours=1)  # another source's key
    s.loc[1, "close"] = 11.5
    s.loc[1, "load_ts"] = pd.Timestamp("2024-07-01", tz="UTC")
    out = build_daily(s, 1)
    assert out.bars["close"].tolist() == [11.5]
    assert out.rejects["reason"].tolist() == ["duplicate"]
    assert out.rejects["timestamp"].tolist() == [s.loc[0, "timestamp"]]


def test_time_order_violation_is_rejected() -> None:
    s = src(["2024-01-01"])
    s.loc[0, "timeclose"] = s.loc[0, "timeopen"] - pd.Timedelta(hours=1)
    out = build_daily(s, 1)
    assert out.bars.empty
    assert out.rejects["reason"].tolist() == ["time_order"]


def test_many_assets_in_one_pass_equal_each_asset_built_alone() -> None:
    a = src(["2024-01-01", "2024-01-02", "2024-01-05"], close=[11.0, -1.0, 11.0])
    b = src(["2024-01-03", "2024-01-03", "2024-01-04"]).assign(id=2)
    b.loc[1, "timestamp"] = b.loc[1, "timestamp"] - pd.Timedelta(hours=1)
    prev = pd.DataFrame({"bar_seq": [7], "day": [pd.Timestamp("2024-01-01")]}, index=[2])
    many = build_daily_many(pd.concat([b, a], ignore_index=True), prev)
    alone = [build_daily(a, 1), build_daily(b, 2, 7, pd.Timestamp("2024-01-01"))]
    pd.testing.assert_frame_equal(many.bars, pd.concat([x.bars for x in alone], ignore_index=True))
    pd.testing.assert_frame_equal(many.rejects, pd.concat([x.rejects for x in alone], ignore_index=True))
    assert many.bars["bar_seq"].tolist() == [1, 2, 8, 9]
    assert many.bars["count_missing_days"].tolist() == [0, 3, 1, 0]
