"""THE core promise: for any split of the source history into consecutive as-of runs, every
bar, EMA, reject and state table equals a one-shot full build (bookkeeping columns aside).

Twin assets carry the same history: one is refreshed after each as-of cut (sometimes one
day at a time, often inside an unfinished bar), the other once at the end.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ta_lab2.refresh.runner import plan_components
from tests.support.warehouse import all_tables, assert_twins_equal, history, load_rows, new_asset_ids, refresh

BARS = plan_components(["bars"])
ALL = plan_components(["bars", "emas"])
SMALL_EMA = {"tfs": ("7D", "14D", "1W_CAL_US", "1W_CAL_ISO", "1M_CAL", "1W_CAL_ANCHOR_US",
                     "1W_CAL_ANCHOR_ISO", "1M_CAL_ANCHOR"), "periods": (2, 3, 5)}
PROFILE = settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))


def _cuts(draw: st.DrawFn, n_days: int) -> list[int]:
    k = draw(st.integers(1, 6))
    cuts = sorted(set(draw(st.lists(st.integers(1, n_days), min_size=k, max_size=k))))
    return [*cuts, n_days + 1]


WIDE_EMA = {"tfs": ("1D", "7D", "30D", "90D", "1M_CAL", "3M_CAL", "1W_CAL_ANCHOR_ISO", "3M_CAL_ANCHOR"),
            "periods": (2, 5)}


@st.composite
def scenario(draw: st.DrawFn, max_days: int = 120, min_days: int = 15) -> tuple[int, int, list[int], float]:
    n = draw(st.integers(min_days, max_days))
    return draw(st.integers(0, 10**6)), n, _cuts(draw, n), draw(st.sampled_from([0.0, 0.05, 0.2]))


def _run_twins(url: str, seed: int, n: int, cuts: list[int], gap: float, components: list[str],
               modes: Counter[str] | None = None, **opts: object) -> tuple[int, int]:
    """``modes`` (when given) counts the snapshot series' refresh modes of the incremental runs
    and, as "1d runs", the runs that wrote 1d rows."""
    inc, full = new_asset_ids()
    # the 1d corruption guard (its own tests: test_failure_policy) is not under test here: a long
    # first run of a history with its random broken times can pass max(10, 1 %) repairs
    opts.setdefault("corruption_pct", 100.0)
    rows = history(seed, n, gap_prob=gap)
    start = rows[0]["timeopen"]
    for asset in (inc, full):
        load_rows(url, asset, rows)
    for c in cuts:
        for result in refresh(url, inc, components, start + timedelta(days=c), **opts):
            if modes is not None:
                modes.update(result.details.get("modes", {}))
                modes["1d runs"] += result.component == "bars.1d" and result.rows_written > 0
    refresh(url, full, components, start + timedelta(days=cuts[-1]), **opts)
    return inc, full


@given(scenario())
@PROFILE
def test_bars_incremental_equals_full_for_any_as_of_slicing(session_db_url: str, sc: tuple) -> None:
    inc, full = _run_twins(session_db_url, *sc, BARS)
    assert_twins_equal(session_db_url, inc, full, all_tables("bars"))


# every family, short and long bars (a year-long bar stays open across most appends)
APPEND_TFS = ("3D", "7D", "30D", "365D", "1W_CAL_US", "2W_CAL_ISO", "1M_CAL", "3M_CAL", "1Y_CAL", "1W_CAL_ANCHOR_US",
              "2W_CAL_ANCHOR_ISO", "1M_CAL_ANCHOR", "6M_CAL_ANCHOR", "1Y_CAL_ANCHOR")


@given(scenario(max_days=240, min_days=30))
@PROFILE
def test_snapshot_appends_of_new_days_equal_a_full_build(session_db_url: str, sc: tuple) -> None:
    """Runs after the first only add days (one or several, across gaps and bar boundaries):
    every series with a stored row takes the append path (from its newest row and the new 1d
    rows only) and the snapshot rows and states equal a one-shot full build, bit for bit."""
    modes: Counter[str] = Counter()
    inc, full = _run_twins(session_db_url, *sc, BARS, modes, tfs=APPEND_TFS)
    assert_twins_equal(session_db_url, inc, full, all_tables("bars"))
    if modes["1d runs"] > 1:  # a run after the first added days
        assert modes["append"] > 0, modes


@given(scenario(max_days=90, min_days=30))  # 15 days with 20 % gaps can leave no series seedable (no rows to compare)
@PROFILE
def test_emas_incremental_equals_full_for_any_as_of_slicing(session_db_url: str, sc: tuple) -> None:
    inc, full = _run_twins(session_db_url, *sc, ALL, **SMALL_EMA)
    assert_twins_equal(session_db_url, inc, full, all_tables("emas"))


@pytest.mark.slow
@given(scenario(max_days=260, min_days=120))
@settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck))
def test_emas_on_1d_and_30d_plus_timeframes_incremental_equals_full(session_db_url: str, sc: tuple) -> None:
    """1D (every observed day is a canonical close) and timeframes of 30 days and more (few
    bars, long unfinished ones) are where slicing bugs hide."""
    # long histories carry more broken intraday times (repairs): keep them under the corruption limit
    inc, full = _run_twins(session_db_url, *sc, ALL, corruption_min_rows=1000, **WIDE_EMA)
    counts = assert_twins_equal(session_db_url, inc, full, all_tables("emas"))
    assert counts["cmc_ema_multi_tf"] > 0


@pytest.mark.slow
@given(scenario(max_days=90))
@settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck))
def test_a_full_rebuild_over_existing_state_equals_a_fresh_build(session_db_url: str, sc: tuple) -> None:
    """``full_rebuild`` after incremental runs (state, feed cursors and rows present) ends
    where a build from nothing ends, watermarks included."""
    inc, full = _run_twins(session_db_url, *sc, ALL, **SMALL_EMA)
    start = history(sc[0], sc[1], gap_prob=sc[3])[0]["timeopen"]
    refresh(session_db_url, inc, ALL, start + timedelta(days=sc[2][-1]), full_rebuild=True, **SMALL_EMA)
    assert_twins_equal(session_db_url, inc, full, all_tables("emas"))


@given(st.integers(0, 10**6), st.integers(20, 40))
@settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck))
def test_one_day_at_a_time_equals_full(session_db_url: str, seed: int, n: int) -> None:
    inc, full = _run_twins(session_db_url, seed, n, list(range(1, n + 2)), 0.1, ALL, **SMALL_EMA)
    assert_twins_equal(session_db_url, inc, full, all_tables("emas"))


def _backfill_then_revise(url: str, seed: int, n: int, split: int, k: int) -> None:
    """Load a late part first, build, then backfill the early history and revise a close deep
    in the past (beyond the 3-day lookback): the result equals one build over the final source."""
    inc, full = new_asset_ids()
    rows = history(seed, n, gap_prob=0.05)
    end = rows[-1]["timeopen"] + timedelta(days=2)
    load_rows(url, inc, rows[split:])
    refresh(url, inc, ALL, end, **SMALL_EMA)
    load_rows(url, inc, rows[:split])  # backfill before daily_min_seen
    refresh(url, inc, ALL, end, **SMALL_EMA)
    revised = [dict(r) for r in rows]
    revised[k]["close"] *= 1.01
    revised[k]["high"] = max(revised[k]["high"], revised[k]["close"])
    load_rows(url, inc, revised)  # a revision, possibly far behind the watermark
    refresh(url, inc, ALL, end, **SMALL_EMA)
    load_rows(url, full, revised)
    refresh(url, full, ALL, end, **SMALL_EMA)
    assert_twins_equal(url, inc, full, all_tables("emas"))


@given(st.integers(0, 10**6), st.integers(30, 80), st.data())
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
def test_revisions_and_backfill_propagate_like_a_full_build(session_db_url: str, seed: int, n: int,
                                                           data: st.DataObject) -> None:
    rows = history(seed, n, gap_prob=0.05)
    split = data.draw(st.integers(1, len(rows) - 2))
    _backfill_then_revise(session_db_url, seed, n, split, data.draw(st.integers(0, len(rows) - 1)))


def test_a_revision_restart_keeps_v2_state_that_saw_canonical_days_before_its_seed(session_db_url: str) -> None:
    """Regression (found by the property above): a v2 restart read ``last_canonical_ts`` from
    its stored rows, which start at the seed, and lost the canonical days before it."""
    _backfill_then_revise(session_db_url, seed=0, n=30, split=1, k=28)


@pytest.mark.parametrize("bad", ["negative_close", "bad_time"])
def test_bad_rows_are_rejected_or_repaired_identically_incrementally(session_db_url: str, bad: str) -> None:
    rows = history(5, 40, bad_time_prob=0.3 if bad == "bad_time" else 0.0,
                   bad_price_prob=0.2 if bad == "negative_close" else 0.0)
    inc, full = new_asset_ids()
    for a in (inc, full):
        load_rows(session_db_url, a, rows)
    start = rows[0]["timeopen"]
    for c in (10, 11, 25, 41):
        refresh(session_db_url, inc, BARS, start + timedelta(days=c), corruption_min_rows=1000)
    refresh(session_db_url, full, BARS, start + timedelta(days=41), corruption_min_rows=1000)
    assert_twins_equal(session_db_url, inc, full, all_tables("bars"))


# the newest row a snapshot state carries since D-engine-9 (NULL in state rows written before)
CARRIED = ("last_ts", "last_pos_in_bar", "last_time_open", "last_time_high", "last_time_low", "last_open", "last_high",
           "last_low", "last_volume", "last_count_days", "last_first_missing_day", "last_last_missing_day")


def test_snapshot_state_rows_from_before_the_carried_row_take_window_once_then_append(session_db_url: str) -> None:
    """A state row without the newest row it resumes from (written before the ``last_*``
    columns existed) is not trusted for an append: its series takes 'window' once (the open
    bar recomputed from the 1d rows), which writes the carried row, and appends again after;
    every table equals a one-shot full build."""
    import psycopg
    from psycopg import sql

    from ta_lab2.registry import SNAPSHOT_FAMILIES

    inc, full = new_asset_ids()
    rows = history(4242, 120, gap_prob=0.05)
    start = rows[0]["timeopen"]
    for asset in (inc, full):
        load_rows(session_db_url, asset, rows)
    refresh(session_db_url, inc, BARS, start + timedelta(days=100), tfs=APPEND_TFS)
    with psycopg.connect(session_db_url, autocommit=True) as conn:
        for fam in SNAPSHOT_FAMILIES:
            conn.execute(sql.SQL("UPDATE {} SET {} WHERE id = %s").format(
                sql.Identifier(fam.state_table), sql.SQL(", ").join(
                    sql.SQL("{} = NULL").format(sql.Identifier(c)) for c in CARRIED)), (inc,))
    modes: list[Counter[str]] = []
    for day in (101, 102):
        results = refresh(session_db_url, inc, BARS, start + timedelta(days=day), tfs=APPEND_TFS)
        modes.append(sum((Counter(r.details.get("modes", {})) for r in results if r.component != "bars.1d"),
                         Counter()))
    assert modes[0]["window"] > 0 and modes[0]["append"] == 0, modes  # nothing appended from an unknown row
    assert modes[1]["append"] > 0 and modes[1]["window"] == 0, modes  # the window run wrote the carried rows
    refresh(session_db_url, full, BARS, start + timedelta(days=102), tfs=APPEND_TFS)
    assert_twins_equal(session_db_url, inc, full, all_tables("bars"))
