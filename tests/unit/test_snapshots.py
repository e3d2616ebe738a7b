"""Snapshot bars: exact values on hand-made frames and Hypothesis properties (incremental
rebuild == full build, append from a tail == full build, OHLC/time invariants, completed bar ==
aggregate of its days)."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ta_lab2.bars.snapshot import SNAPSHOT_COLUMNS, TAIL_COLUMNS, build_snapshots, build_snapshots_many
from ta_lab2.bars.windows import assign_windows, window_containing
from tests.unit.test_bar_windows import SEEDED, TF

NAN = float("nan")
D = np.datetime64
PROPERTY = settings(max_examples=100, deadline=None)


def _frame(days: np.ndarray, o, h, lo, c, vol, mcap, high_min, low_min) -> pd.DataFrame:
    """A daily input frame; ``high_min``/``low_min`` are minutes after midnight of the extremes."""
    day = pd.Series(np.asarray(days, dtype="datetime64[D]").astype("datetime64[ns]"))
    t0 = day.dt.tz_localize("UTC")
    close_at = t0 + pd.Timedelta(days=1) - pd.Timedelta(milliseconds=1)
    minutes = pd.to_timedelta
    return pd.DataFrame(
        {
            "day": day, "timestamp": close_at, "time_open": t0, "time_close": close_at,
            "time_high": t0 + minutes(np.asarray(high_min), unit="min"),
            "time_low": t0 + minutes(np.asarray(low_min), unit="min"),
            "open": np.asarray(o, float), "high": np.asarray(h, float), "low": np.asarray(lo, float),
            "close": np.asarray(c, float), "volume": np.asarray(vol, float), "market_cap": np.asarray(mcap, float),
        }
    )  # fmt: skip


def _daily(rows: list[tuple]) -> pd.DataFrame:
    """rows: (day, open, high, low, close, volume, high_hour, low_hour); market_cap = 10 * close."""
    cols = list(zip(*rows, strict=True))
    days = np.array(cols[0], dtype="datetime64[D]")
    return _frame(
        days, *cols[1:5], cols[5], np.array(cols[4]) * 10, np.array(cols[6]) * 60, np.array(cols[7]) * 60
    )


def _days(series: pd.Series) -> list[str]:
    return [None if pd.isna(v) else str(v.date()) for v in series]


def _hours(series: pd.Series) -> list[str]:
    return [v.strftime("%m-%dT%H") for v in series]


def test_output_columns_and_dtypes() -> None:
    snap = build_snapshots(_daily([("2025-01-01", 1, 2, 1, 2, 5, 0, 0)]), TF["7D"], D("2025-01-01"), 52)
    assert tuple(snap.columns) == SNAPSHOT_COLUMNS
    ints = [
        "id",
        "tf_days",
        "bar_seq",
        "pos_in_bar",
        "count_days_remaining",
        "count_days",
        "count_missing_days",
    ]
    assert all(snap[c].dtype == np.int64 for c in ints)
    assert all(snap[c].dtype == bool for c in ["is_partial_start", "is_partial_end", "is_missing_days"])
    assert all(snap[c].dtype == np.float64 for c in ["open", "high", "low", "close", "volume", "market_cap"])
    assert all(
        str(snap[c].dt.tz) == "UTC" for c in ["timestamp", "time_open", "time_close", "time_high", "time_low"]
    )
    assert snap.loc[0, "tf"] == "7D" and snap.loc[0, "id"] == 52 and snap.loc[0, "tf_days"] == 7


def test_running_aggregates_and_earliest_extreme_instants() -> None:
    daily = _daily([
        ("2025-01-01", 10, 12, 9, 11, 1.0, 3, 5),
        ("2025-01-02", 11, 12, 8, 9, 2.0, 4, 6),  # equal high: time_high stays on 01-01
        ("2025-01-03", 9, 15, 8, 14, 3.0, 7, 2),  # new high; equal low: time_low stays on 01-02
        ("2025-01-04", 14, 14, 7, 13, NAN, 0, 9),  # new low; NULL volume adds nothing
    ])  # fmt: skip
    snap = build_snapshots(daily, TF["7D"], D("2025-01-01"), 1)
    assert snap["open"].tolist() == [10, 10, 10, 10]
    assert snap["high"].tolist() == [12, 12, 15, 15]
    assert snap["low"].tolist() == [9, 8, 8, 7]
    assert snap["close"].tolist() == [11, 9, 14, 13]
    assert snap["market_cap"].tolist() == [110, 90, 140, 130]
    assert snap["volume"].tolist() == [1, 3, 6, 6]
    assert _hours(snap["time_high"]) == ["01-01T03", "01-01T03", "01-03T07", "01-03T07"]
    assert _hours(snap["time_low"]) == ["01-01T05", "01-02T06", "01-02T06", "01-04T09"]
    assert _hours(snap["time_open"]) == ["01-01T00"] * 4
    assert (snap["time_close"] == daily["time_close"]).all() and (
        snap["timestamp"] == daily["timestamp"]
    ).all()
    assert snap["pos_in_bar"].tolist() == [1, 2, 3, 4]
    assert snap["count_days_remaining"].tolist() == [6, 5, 4, 3]
    assert snap["count_days"].tolist() == [1, 2, 3, 4] and snap["count_missing_days"].tolist() == [0] * 4
    assert not snap["is_partial_start"].any() and snap["is_partial_end"].all()


def test_volume_is_null_until_a_non_null_volume_is_seen() -> None:
    daily = _daily([("2025-01-01", 1, 1, 1, 1, NAN, 0, 0), ("2025-01-02", 1, 1, 1, 1, 5.0, 0, 0),
                    ("2025-01-03", 1, 1, 1, 1, NAN, 0, 0), ("2025-01-04", 1, 1, 1, 1, NAN, 0, 0)])  # fmt: skip
    snap = build_snapshots(daily, TF["3D"], D("2025-01-01"), 1)
    assert snap["volume"].tolist()[1:3] == [5.0, 5.0]
    assert np.isnan(snap["volume"].iloc[0]) and np.isnan(snap["volume"].iloc[3])  # a new bar restarts


def test_gaps_inside_a_bar_are_counted_from_the_window_start() -> None:
    days = ["2025-01-05", "2025-01-07", "2025-01-08", "2025-01-11", "2025-01-13", "2025-01-14"]
    snap = build_snapshots(
        _daily([(d, 1, 1, 1, 1, 1, 0, 0) for d in days]), TF["1W_CAL_US"], D("2025-01-05"), 1
    )
    assert snap["bar_seq"].tolist() == [1, 1, 1, 1, 2, 2]
    assert snap["pos_in_bar"].tolist() == [1, 3, 4, 7, 2, 3]
    assert snap["count_days"].tolist() == [1, 2, 3, 4, 1, 2]
    assert snap["count_missing_days"].tolist() == [0, 1, 1, 3, 1, 1]
    assert snap["is_missing_days"].tolist() == [False, True, True, True, True, True]
    assert _days(snap["first_missing_day"]) == [
        None,
        "2025-01-06",
        "2025-01-06",
        "2025-01-06",
        "2025-01-12",
        "2025-01-12",
    ]
    assert _days(snap["last_missing_day"]) == [
        None,
        "2025-01-06",
        "2025-01-06",
        "2025-01-10",
        "2025-01-12",
        "2025-01-12",
    ]
    assert snap["is_partial_end"].tolist() == [True, True, True, False, True, True]
    assert snap["count_days_remaining"].tolist() == [6, 4, 3, 0, 5, 4]


def test_bar_whose_last_day_is_missing_never_completes() -> None:
    days = ["2025-01-01", "2025-01-02", "2025-01-04", "2025-01-05", "2025-01-06", "2025-01-10"]
    snap = build_snapshots(_daily([(d, 1, 1, 1, 1, 1, 0, 0) for d in days]), TF["3D"], D("2025-01-01"), 1)
    assert snap["bar_seq"].tolist() == [1, 1, 2, 2, 2, 4]  # bar 3 (01-07..01-09) is swallowed by the gap
    assert snap["is_partial_end"].tolist() == [True, True, True, True, False, True]


def test_anchored_bar_starting_before_the_data_is_a_partial_start() -> None:
    days = [f"2025-01-0{i}" for i in range(1, 7)]
    snap = build_snapshots(
        _daily([(d, 1, 1, 1, 1, 1, 0, 0) for d in days]), TF["1W_CAL_ANCHOR_US"], D("2025-01-01"), 1
    )
    week = (D("2024-12-29") - D("1970-01-04")).astype(int) // 7
    assert snap["bar_seq"].tolist() == [week] * 4 + [week + 1] * 2
    assert snap["is_partial_start"].tolist() == [True] * 4 + [False] * 2
    assert snap["pos_in_bar"].tolist() == [4, 5, 6, 7, 1, 2]
    assert snap["count_days"].tolist() == [1, 2, 3, 4, 1, 2]
    assert snap["count_missing_days"].tolist() == [0] * 6  # days before the first day are not missing
    assert snap["is_partial_end"].tolist() == [True, True, True, False, True, True]


def test_days_before_the_first_full_calendar_period_make_no_rows() -> None:
    days = np.arange(D("2025-01-15"), D("2025-02-03"))
    snap = build_snapshots(
        _daily([(str(d), 1, 1, 1, 1, 1, 0, 0) for d in days]), TF["1M_CAL"], D("2025-01-15"), 1
    )
    assert snap["bar_seq"].tolist() == [1, 1] and _days(snap["timestamp"].dt.tz_localize(None)) == [
        "2025-02-01", "2025-02-02"]  # fmt: skip


def test_empty_input_gives_empty_frame_with_the_columns() -> None:
    snap = build_snapshots(
        _daily([("2025-01-01", 1, 1, 1, 1, 1, 0, 0)]).iloc[:0], TF["1M_CAL"], D("2025-01-01"), 1
    )
    assert snap.empty and tuple(snap.columns) == SNAPSHOT_COLUMNS and snap["bar_seq"].dtype == np.int64


def test_day_resolution_of_the_input_does_not_matter() -> None:
    daily = _daily([("2025-01-01", 1, 2, 1, 2, 5, 0, 0), ("2025-01-03", 2, 3, 1, 2, 5, 0, 0)])
    seconds = daily.assign(day=daily["day"].astype("datetime64[s]"))
    pd.testing.assert_frame_equal(
        build_snapshots(daily, TF["3M_CAL_ANCHOR"], D("2025-01-01"), 1),
        build_snapshots(seconds, TF["3M_CAL_ANCHOR"], D("2025-01-01"), 1),
    )


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda d: d.drop(columns="market_cap"), "lacks columns"),
        (lambda d: d.assign(time_high=d["time_high"].dt.tz_localize(None)), "tz-aware"),
        (lambda d: d.iloc[::-1], "sorted"),
    ],
)
def test_bad_input_is_rejected(change, match: str) -> None:
    daily = _daily([("2025-01-01", 1, 2, 1, 2, 5, 0, 0), ("2025-01-03", 2, 3, 1, 2, 5, 0, 0)])
    with pytest.raises(ValueError, match=match):
        build_snapshots(change(daily), TF["7D"], D("2025-01-01"), 1)


# --- properties --------------------------------------------------------------------------


@st.composite
def histories(draw: st.DrawFn) -> tuple[pd.DataFrame, np.datetime64]:
    """A daily history with gaps (short ones and ones that swallow whole bars) and integer
    prices (so equal highs/lows are common), some NULL volumes/market caps."""
    first = draw(st.dates(date(2015, 1, 1), date(2030, 12, 31)))
    gap = st.one_of(st.integers(0, 3), st.integers(4, 130))
    segments = draw(st.lists(st.tuples(st.integers(1, 90), gap), min_size=1, max_size=8))
    offsets = np.concatenate(
        [np.arange(s, s + run) for s, (run, _) in zip(_starts(segments), segments, strict=True)]
    )
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n, null_rate = offsets.size, draw(st.sampled_from([0.0, 0.2, 1.0]))
    o, c = rng.integers(90, 110, n), rng.integers(90, 110, n)
    vol, mcap = rng.uniform(0, 1e6, n), rng.uniform(0, 1e9, n)
    vol[rng.random(n) < null_rate] = NAN
    mcap[rng.random(n) < null_rate] = NAN
    hi, lo = np.maximum(o, c) + rng.integers(0, 3, n), np.minimum(o, c) - rng.integers(0, 3, n)
    minutes = rng.integers(0, 1440, (2, n))
    return _frame(D(first, "D") + offsets, o, hi, lo, c, vol, mcap, *minutes), D(first, "D")


def _starts(segments: list[tuple[int, int]]) -> list[int]:
    return list(np.cumsum([0] + [run + gap for run, gap in segments[:-1]]))


TF_NAMES = st.sampled_from(sorted(TF))


@PROPERTY
@given(history=histories(), tf=TF_NAMES, cut=st.floats(0, 1))
def test_rebuild_from_any_bar_start_equals_full_build(history, tf: str, cut: float) -> None:
    daily, first = history
    full = build_snapshots(daily, TF[tf], first, 7)
    last = daily["day"].iloc[-1].to_datetime64().astype("datetime64[D]")
    changed = first + int(cut * (last - first).astype(int))  # any day, observed or in a gap
    seq, start, _ = window_containing(changed, TF[tf], first)
    part = build_snapshots(daily[daily["day"] >= start].reset_index(drop=True), TF[tf], first, 7)
    pd.testing.assert_frame_equal(part, full[full["bar_seq"] >= seq].reset_index(drop=True), check_exact=True)


@PROPERTY
@given(history=histories(), tf=TF_NAMES, cut=st.floats(0, 1))
def test_prefix_build_equals_full_build_rows(history, tf: str, cut: float) -> None:
    daily, first = history
    k = max(1, int(cut * len(daily)))
    full = build_snapshots(daily, TF[tf], first, 7)
    prefix = build_snapshots(daily.iloc[:k], TF[tf], first, 7)
    expected = full[full["timestamp"] <= daily["timestamp"].iloc[k - 1]].reset_index(drop=True)
    pd.testing.assert_frame_equal(prefix, expected, check_exact=True)


@PROPERTY
@given(history=histories(), tf=TF_NAMES)
def test_snapshot_invariants(history, tf: str) -> None:
    daily, first = history
    s = build_snapshots(daily, TF[tf], first, 7)
    assert (s["low"] <= np.minimum(s["open"], s["close"])).all()
    assert (np.maximum(s["open"], s["close"]) <= s["high"]).all()
    assert ((s["time_open"] <= s["time_low"]) & (s["time_open"] <= s["time_high"])).all()
    assert ((s["time_low"] <= s["time_close"]) & (s["time_high"] <= s["time_close"])).all()
    day = s["timestamp"].dt.tz_localize(None).dt.floor("D")
    win_start = day - pd.to_timedelta(s["pos_in_bar"] - 1, unit="D")
    eff_start = win_start.clip(lower=pd.Timestamp(first))
    lead = (eff_start - win_start).dt.days  # > 0 only for a partial start
    assert ((lead > 0) == s["is_partial_start"]).all()
    assert (s["count_days"] + s["count_missing_days"] == s["pos_in_bar"] - lead).all()
    assert (s["is_missing_days"] == (s["count_missing_days"] > 0)).all()
    assert (s["is_missing_days"] == s["first_missing_day"].notna()).all()
    assert (s["is_missing_days"] == s["last_missing_day"].notna()).all()
    gaps = s[s["is_missing_days"]]
    assert (gaps["first_missing_day"] <= gaps["last_missing_day"]).all()
    assert (gaps["first_missing_day"] >= eff_start[gaps.index]).all() and (
        gaps["last_missing_day"] < day[gaps.index]
    ).all()
    observed = set(daily["day"])
    assert not (set(gaps["first_missing_day"]) | set(gaps["last_missing_day"])) & observed
    assert ((s["count_days_remaining"] == 0) == ~s["is_partial_end"]).all()
    assert (s["bar_seq"].diff().dropna() >= 0).all() and (s["pos_in_bar"] >= 1).all()
    if tf in SEEDED:
        length = s["pos_in_bar"] + s["count_days_remaining"]
        assert length.between(TF[tf].tf_days_min, TF[tf].tf_days_max).all()


@PROPERTY
@given(history=histories(), tf=TF_NAMES)
def test_completed_bar_equals_aggregate_of_its_days(history, tf: str) -> None:
    daily, first = history
    snap = build_snapshots(daily, TF[tf], first, 7)
    done = snap[~snap["is_partial_end"]].set_index("bar_seq")
    d = daily.assign(bar_seq=assign_windows(daily["day"].to_numpy(), TF[tf], first).bar_seq)
    g = d[d["bar_seq"].isin(done.index)].groupby("bar_seq")
    expected = pd.DataFrame({
        "open": g["open"].first(), "high": g["high"].max(), "low": g["low"].min(), "close": g["close"].last(),
        "volume": g["volume"].sum(min_count=1), "time_open": g["time_open"].first(),
        "time_close": g["time_close"].last(), "count_days": g.size(),
        "time_high": d.loc[g["high"].idxmax(), ["bar_seq", "time_high"]].set_index("bar_seq")["time_high"],
        "time_low": d.loc[g["low"].idxmin(), ["bar_seq", "time_low"]].set_index("bar_seq")["time_low"],
    })  # fmt: skip
    got = done[list(expected.columns)]
    pd.testing.assert_frame_equal(got, expected, check_names=False, check_exact=False, rtol=1e-12)


def _frame_of(built) -> pd.DataFrame:
    return built.rows.assign(volume_comp=built.volume_comp, which=built.which)


def _tails(stored: pd.DataFrame, n_series: int) -> pd.DataFrame:
    """The newest stored row of each series (a NaN row: none yet)."""
    return stored.groupby("which").tail(1).set_index("which").reindex(range(n_series))[list(TAIL_COLUMNS)]


@PROPERTY
@given(history=histories(), tfs=st.lists(TF_NAMES, min_size=1, max_size=4, unique=True),
       cuts=st.lists(st.floats(0, 1), min_size=1, max_size=5))
def test_append_from_the_newest_row_equals_full_build(history, tfs: list[str], cuts: list[float]) -> None:
    """Runs that each append one or more days (gaps, new bars, bars swallowed by a gap) to
    the newest stored row of every series, several timeframes in one batch, reproduce the full
    build bit for bit, volume compensation included. A series with no row yet (a calendar
    timeframe before its first full period) is built from the first day, as the refresh does."""
    daily, first = history
    full = _frame_of(build_snapshots_many([(daily, TF[tf], first, 7) for tf in tfs]))
    stored = None
    done = 0
    for k in sorted({max(1, int(c * len(daily))) for c in cuts} | {len(daily)}):
        tails = None if stored is None else _tails(stored, len(tfs))
        has = np.zeros(len(tfs), dtype=bool) if tails is None else tails["bar_seq"].notna().to_numpy()
        parts = [(daily.iloc[done if has[i] else 0:k].reset_index(drop=True), TF[tf], first, 7)
                 for i, tf in enumerate(tfs)]
        rows = _frame_of(build_snapshots_many(parts, tails))
        stored = rows if stored is None else pd.concat([stored, rows], ignore_index=True)
        done = k
    order = ["which", "timestamp"]
    pd.testing.assert_frame_equal(stored.sort_values(order, kind="stable").reset_index(drop=True),
                                  full.sort_values(order, kind="stable").reset_index(drop=True), check_exact=True)
