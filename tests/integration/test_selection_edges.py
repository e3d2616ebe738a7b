"""Edges of series selection and state recovery that users hit from the trigger form:
1D EMAs, a combo naming a non-canonical timeframe, and a state row deleted by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg

from ta_lab2.emas.kernel import sma_seed
from ta_lab2.ops.validation import run_validation
from ta_lab2.refresh.runner import plan_components
from tests.support.warehouse import all_tables, assert_twins_equal, history, load_rows, new_asset_ids, refresh

ALL = plan_components(["bars", "emas"])
START = datetime(2024, 1, 1, tzinfo=UTC)
END = START + timedelta(days=80)


def test_1d_emas_are_the_plain_daily_ema(session_db_url: str) -> None:
    (a,) = new_asset_ids(1)
    load_rows(session_db_url, a, history(a, 40, gap_prob=0.0, start=START))
    refresh(session_db_url, a, ALL, END, tfs=("1D",), periods=(3,))
    with psycopg.connect(session_db_url) as conn:
        closes = [r[0] for r in conn.execute("SELECT close FROM cmc_price_bars_1d WHERE id = %s ORDER BY "
                                             "\"timestamp\"", (a,))]
        multi = conn.execute("SELECT ema, ema_bar, roll FROM cmc_ema_multi_tf WHERE id = %s AND tf = '1D' "
                             "AND period = 3 ORDER BY ts", (a,)).fetchall()
        v2 = conn.execute("SELECT ema FROM cmc_ema_multi_tf_v2 WHERE id = %s AND tf = '1D' AND period = 3 "
                          "ORDER BY ts", (a,)).fetchall()
    expected = [sma_seed(closes, 3)]
    for c in closes[3:]:
        expected.append(0.5 * c + 0.5 * expected[-1])  # alpha = 2 / (3 + 1)
    assert [r[0] for r in multi] == expected and [r[1] for r in multi] == expected
    assert not any(r[2] for r in multi)  # every observed day closes a 1D bar
    assert [r[0] for r in v2] == expected


def test_a_combo_on_a_non_canonical_timeframe_builds_its_bars_too(session_db_url: str) -> None:
    (a,) = new_asset_ids(1)
    load_rows(session_db_url, a, history(a, 60, start=START))
    refresh(session_db_url, a, ALL, END, tfs=("7D",), tf_period_combos=(("2D", 3),))
    with psycopg.connect(session_db_url) as conn:
        bars = conn.execute("SELECT count(*) FROM cmc_price_bars_multi_tf WHERE id = %s AND tf = '2D'",
                            (a,)).fetchone()
        bar_tfs = {r[0] for r in conn.execute("SELECT DISTINCT tf FROM cmc_price_bars_multi_tf WHERE id = %s",
                                              (a,))}
        series = conn.execute("SELECT DISTINCT tf, period FROM cmc_ema_multi_tf WHERE id = %s", (a,)).fetchall()
    assert bars is not None and bars[0] > 0
    assert series == [("2D", 3)] and bar_tfs == {"2D", "7D"}  # --tfs plus the combos' timeframes
    report = run_validation(session_db_url, [a], "combo-2d", persist=False)
    assert report.worst != "FAIL", report.format()


def test_deleting_the_1d_state_row_forces_a_clean_rebuild(session_db_url: str) -> None:
    inc, full = new_asset_ids()
    rows = history(inc, 50, start=START)
    for a in (inc, full):
        load_rows(session_db_url, a, rows)
    opts = {"tfs": ("7D", "1W_CAL_US", "1M_CAL_ANCHOR"), "periods": (2, 3)}
    refresh(session_db_url, inc, ALL, START + timedelta(days=30), **opts)
    with psycopg.connect(session_db_url) as conn:
        conn.execute("DELETE FROM cmc_price_bars_1d_state WHERE id = %s", (inc,))
    refresh(session_db_url, inc, ALL, END, **opts)
    refresh(session_db_url, full, ALL, END, **opts)
    assert_twins_equal(session_db_url, inc, full, all_tables("emas"))
