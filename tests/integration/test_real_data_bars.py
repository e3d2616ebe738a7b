"""Acceptance: the bar families on the real CoinMarketCap files (BARS.md), checked against SQL
written here, independent of the builders.

The warehouse (``real_wh``, tests/integration/conftest.py) is the four real files loaded and
refreshed through the CLI: a full build, then two incremental as-of runs. An extra bars-only
run builds every non-canonical seeded timeframe, so "all seeded timeframes" are covered.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from ta_lab2.registry import SNAPSHOT_FAMILIES
from ta_lab2.store import db
from tests.conftest import create_database, drop_database
from tests.integration.conftest import ASSETS, FINAL_AS_OF, LAST_DAY, RealWarehouse, audit_rows, query

FAMILY_TABLES = {f.name: f.table for f in SNAPSHOT_FAMILIES}
# Which dim_timeframe rows a family builds, spelled out from BARS.md (not from the registry code).
FAMILY_FILTER = {
    "multi_tf": "roll_policy = 'rolling' AND tf <> '1D'",
    "cal_iso": "roll_policy = 'calendar' AND coalesce(calendar_scheme, 'ISO') = 'ISO'",
    "cal_us": "roll_policy = 'calendar' AND coalesce(calendar_scheme, 'US') = 'US'",
    "cal_anchor_iso": "roll_policy = 'calendar_anchor' AND coalesce(calendar_scheme, 'ISO') = 'ISO'",
    "cal_anchor_us": "roll_policy = 'calendar_anchor' AND coalesce(calendar_scheme, 'US') = 'US'",
}
USDT_GAP_DAYS = [date(2015, 2, 27), date(2015, 2, 28), date(2015, 3, 1), date(2015, 3, 4), date(2015, 3, 5)]

# Every completed bar that the data implies, recomputed from cmc_price_bars_1d, FULL-joined
# with the stored completed rows (is_partial_end = false) of one family table.
#
# A day e closes a bar of tf when e + 1 starts a unit (a day / a week starting Sunday (US) or
# Monday (ISO) / a month / a year) and the window s = e + 1 - tf_qty units is on the family's
# grid: rolling -> (s - f) is a multiple of tf_qty days from the asset's first day f;
# calendar -> whole tf_qty-unit blocks from the first full unit on or after f; anchored ->
# tf_qty-unit blocks from the epoch (weeks from 1970-01-04 US / 1970-01-05 ISO, months from
# January, years from year 0). The bar's aggregates are those of its 1d rows in [s, e].
COMPLETED_BARS_SQL = ["""
CREATE TEMP TABLE _d1 ON COMMIT DROP AS
SELECT id, (time_open AT TIME ZONE 'UTC')::date AS day, time_open, time_close, time_high, time_low,
       open, high, low, close, volume, market_cap,
       lag((time_open AT TIME ZONE 'UTC')::date) OVER (PARTITION BY id ORDER BY "timestamp") AS prev_day
FROM cmc_price_bars_1d WHERE id = ANY(%(ids)s)
""", """
CREATE TEMP TABLE _ends ON COMMIT DROP AS
WITH tf AS (
    SELECT tf, base_unit, tf_qty, tf_days_nominal, roll_policy,
           CASE WHEN calendar_scheme = 'ISO' THEN date '1970-01-05' ELSE date '1970-01-04' END AS wk0
    FROM dim_timeframe WHERE tf = ANY(%(tfs)s)
), firsts AS (
    SELECT id, min(day) AS f FROM _d1 GROUP BY id
), cand AS (
    SELECT d.id, d.day AS e, firsts.f, tf.*,
           (d.day + 1 - CASE tf.base_unit WHEN 'D' THEN make_interval(days => tf.tf_qty)
                                          WHEN 'W' THEN make_interval(days => 7 * tf.tf_qty)
                                          WHEN 'M' THEN make_interval(months => tf.tf_qty)
                                          ELSE make_interval(years => tf.tf_qty) END)::date AS s,
           CASE tf.base_unit
               WHEN 'D' THEN firsts.f
               WHEN 'W' THEN firsts.f + (7 - (firsts.f - tf.wk0) %% 7) %% 7
               WHEN 'M' THEN CASE WHEN extract(day FROM firsts.f) = 1 THEN firsts.f
                                  ELSE (date_trunc('month', firsts.f) + interval '1 month')::date END
               ELSE CASE WHEN extract(doy FROM firsts.f) = 1 THEN firsts.f
                         ELSE make_date(extract(year FROM firsts.f)::int + 1, 1, 1) END
           END AS full_start
    FROM _d1 d JOIN firsts USING (id) CROSS JOIN tf
    WHERE CASE tf.base_unit WHEN 'D' THEN true
                            WHEN 'W' THEN (d.day + 1 - tf.wk0) %% 7 = 0
                            WHEN 'M' THEN extract(day FROM d.day + 1) = 1
                            ELSE extract(doy FROM d.day + 1) = 1 END
), units AS (  -- absolute unit numbers of the window start and of the family's origin
    SELECT c.*,
           CASE c.base_unit WHEN 'D' THEN c.s - date '1970-01-01' WHEN 'W' THEN (c.s - c.wk0) / 7
                WHEN 'M' THEN extract(year FROM c.s)::int * 12 + extract(month FROM c.s)::int - 1
                ELSE extract(year FROM c.s)::int END AS us,
           CASE c.base_unit WHEN 'D' THEN c.full_start - date '1970-01-01'
                WHEN 'W' THEN (c.full_start - c.wk0) / 7
                WHEN 'M' THEN extract(year FROM c.full_start)::int * 12 + extract(month FROM c.full_start)::int - 1
                ELSE extract(year FROM c.full_start)::int END AS uo
    FROM cand c
)
SELECT id, tf, tf_days_nominal, e, s, f,
       CASE WHEN roll_policy = 'calendar_anchor' THEN us / tf_qty ELSE (us - uo) / tf_qty + 1 END AS bar_seq
FROM units
WHERE CASE WHEN roll_policy = 'calendar_anchor' THEN us %% tf_qty = 0
           ELSE us >= uo AND (us - uo) %% tf_qty = 0 END
""", """
CREATE TEMP TABLE _days ON COMMIT DROP AS
SELECT e.id, e.tf, e.e, g.day::date AS day FROM _ends e CROSS JOIN LATERAL generate_series(e.s, e.e, interval '1 day') AS g(day)
""", "ANALYZE _d1", "ANALYZE _ends", "ANALYZE _days", """
WITH expected AS (
    SELECT e.id, e.tf, e.e AS day, e.bar_seq, e.tf_days_nominal AS tf_days,
           (array_agg(d.time_open ORDER BY d.day))[1] AS time_open,
           (array_agg(d.time_close ORDER BY d.day DESC))[1] AS time_close,
           (array_agg(d.time_high ORDER BY d.high DESC, d.time_high))[1] AS time_high,
           (array_agg(d.time_low ORDER BY d.low, d.time_low))[1] AS time_low,
           (array_agg(d.open ORDER BY d.day))[1] AS open, max(d.high) AS high, min(d.low) AS low,
           (array_agg(d.close ORDER BY d.day DESC))[1] AS close,
           sum(d.volume ORDER BY d.day) AS volume,
           (array_agg(d.market_cap ORDER BY d.day DESC))[1] AS market_cap,
           e.e - e.s + 1 AS pos_in_bar, 0 AS count_days_remaining, e.s < e.f AS is_partial_start,
           count(*)::int AS count_days,
           (e.e - greatest(e.s, e.f) + 1 - count(*))::int AS count_missing_days,
           min(greatest(coalesce(d.prev_day, d.day), greatest(e.s, e.f) - 1) + 1)
               FILTER (WHERE d.day - 1 >= greatest(coalesce(d.prev_day, d.day), greatest(e.s, e.f) - 1) + 1)
               AS first_missing_day,
           max(d.day - 1)
               FILTER (WHERE d.day - 1 >= greatest(coalesce(d.prev_day, d.day), greatest(e.s, e.f) - 1) + 1)
               AS last_missing_day
    FROM _ends e JOIN _days g USING (id, tf, e) JOIN _d1 d ON d.id = g.id AND d.day = g.day
    GROUP BY e.id, e.tf, e.e, e.s, e.f, e.bar_seq, e.tf_days_nominal
), stored AS (
    SELECT id, tf, ("timestamp" AT TIME ZONE 'UTC')::date AS day, bar_seq, tf_days, time_open, time_close,
           time_high, time_low, open, high, low, close, volume, market_cap, pos_in_bar, count_days_remaining,
           is_partial_start, count_days, count_missing_days, first_missing_day, last_missing_day
    FROM {table} WHERE NOT is_partial_end AND id = ANY(%(ids)s) AND tf = ANY(%(tfs)s)
)
SELECT id, tf, day, to_jsonb(x) AS expected, to_jsonb(t) AS stored
FROM expected x FULL JOIN stored t USING (id, tf, day)
"""]
U = 2.0 ** -53  # unit roundoff of float64


def completed_bar_mismatches(url: str, table: str, ids: list[int], tfs: list[str]) -> tuple[int, list[Any]]:
    """(bars compared, mismatches) of the completed bars of ``table`` against COMPLETED_BARS_SQL.

    Everything must be equal exactly except ``volume``: a float64 sum depends on its summation
    order (BARS.md says "running sum" and fixes none), so the stored volume must be within the
    error bound of ANY summation order of the bar's n non-negative daily volumes,
    2 (n - 1) u sum(v), of the SQL sum; OHLC, times, counts and missing days are exact."""
    params = {"ids": ids, "tfs": tfs}
    with db.connect(url) as conn:
        for stmt in COMPLETED_BARS_SQL[:-1]:
            conn.execute(stmt, params)
        last = sql.SQL(COMPLETED_BARS_SQL[-1]).format(table=sql.Identifier(table))  # type: ignore[arg-type]
        rows = conn.execute(last, params).fetchall()
        conn.rollback()
    bad = []
    for asset, tf, day, expected, stored in rows:
        if expected is None or stored is None:
            bad.append((asset, tf, day, "missing in " + ("bars" if stored is None else "expected"), expected or stored))
            continue
        diff = {k: (v, stored.get(k)) for k, v in expected.items() if k not in ("day", "volume") and stored.get(k) != v}
        vol, got = expected["volume"], stored["volume"]
        if (vol is None) != (got is None) or (vol is not None and abs(got - vol) > 2 * expected["count_days"] * U * vol):
            diff["volume"] = (vol, got)
        if diff:
            bad.append((asset, tf, day, diff))
    return len(rows), bad


def family_tfs(url: str, family: str, canonical_only: bool = False) -> list[str]:
    where = FAMILY_FILTER[family] + (" AND is_canonical" if canonical_only else "")
    return [r[0] for r in query(url, f"SELECT tf FROM dim_timeframe WHERE {where} ORDER BY sort_order")]


# ---------------------------------------------------------------------------------------------
# Issue 3 (foundation) on the real files


def test_real_1d_row_counts_and_nothing_disappears(real_wh: RealWarehouse) -> None:
    counts = dict(query(real_wh.url, "SELECT id, count(*) FROM cmc_price_bars_1d GROUP BY id"))
    assert counts == {1: 2862, 1027: 2031, 825: 2189, 52: 2893}
    # Conservation per asset: source rows = 1d rows + rejects (the real files have no bad rows).
    cons = query(real_wh.url, """
        SELECT s.id, s.n, (SELECT count(*) FROM cmc_price_bars_1d b WHERE b.id = s.id),
               (SELECT count(*) FROM cmc_price_bars_1d_rejects r WHERE r.id = s.id)
        FROM (SELECT id, count(*) AS n FROM cmc_price_histories7 GROUP BY id) s ORDER BY s.id""")
    assert [(a, n) for a, n, _, _ in cons] == sorted(counts.items())
    assert all(n == kept + rejected for _, n, kept, rejected in cons), cons
    # Dense bar_seq 1..n, one row per observed day, last day = the file's last day.
    rows = query(real_wh.url, """
        SELECT id, min(bar_seq), max(bar_seq), count(DISTINCT bar_seq),
               count(DISTINCT (time_open AT TIME ZONE 'UTC')::date), max(("timestamp" AT TIME ZONE 'UTC')::date)
        FROM cmc_price_bars_1d GROUP BY id""")
    for asset, lo, hi, n_seq, n_days, last in rows:
        assert (lo, hi, n_seq, n_days, last) == (1, counts[asset], counts[asset], counts[asset], LAST_DAY[asset])


def test_real_1d_state_and_ohlc_invariants(real_wh: RealWarehouse) -> None:
    state = query(real_wh.url, """
        SELECT s.id, s.last_src_ts = m.max_ts, s.daily_min_seen = m.min_ts
        FROM cmc_price_bars_1d_state s
        JOIN (SELECT id, min("timestamp") AS min_ts, max("timestamp") AS max_ts FROM cmc_price_histories7
              GROUP BY id) m USING (id)""")
    assert sorted(state) == [(a, True, True) for a in sorted(ASSETS)]
    broken = query(real_wh.url, """
        SELECT id, "timestamp" FROM cmc_price_bars_1d
        WHERE NOT (low <= least(open, close) AND greatest(open, close) <= high
                   AND time_open <= time_low AND time_low <= time_close
                   AND time_open <= time_high AND time_high <= time_close)""")
    assert broken == []


# ---------------------------------------------------------------------------------------------
# Issue 4 (bars)


@pytest.fixture(scope="module")
def all_seeded(real_wh: RealWarehouse) -> RealWarehouse:
    """The real warehouse plus every NON-canonical seeded timeframe (bars only), built on request."""
    extra = [r[0] for r in query(real_wh.url, "SELECT tf FROM dim_timeframe WHERE NOT is_canonical ORDER BY tf")]
    assert len(extra) >= 15
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TA_LAB2_DB_URL", real_wh.url)
        from ta_lab2.cli import main

        assert main(["refresh", "--targets", "bars", "--ids", "all", "--tfs", ",".join(extra),
                     "--as-of", FINAL_AS_OF, "--run-id", "extra-tfs"]) == 0
    return real_wh


@pytest.mark.parametrize("family", list(FAMILY_TABLES))
def test_every_completed_bar_equals_its_1d_aggregate_recomputed_in_sql(all_seeded: RealWarehouse,
                                                                       family: str) -> None:
    url, table = all_seeded.url, FAMILY_TABLES[family]
    tfs = family_tfs(url, family)
    built = {r[0] for r in query(url, sql.SQL("SELECT DISTINCT tf FROM {}").format(sql.Identifier(table)))}
    assert built == set(tfs), f"{table}: built {sorted(built)}, seeded {tfs}"
    n, bad = completed_bar_mismatches(url, table, sorted(ASSETS), tfs)
    assert bad == [], f"{len(bad)} of {n} completed bars differ, first: {bad[:3]}"
    per_series = dict(((r[0], r[1]), r[2]) for r in query(url, sql.SQL(
        "SELECT id, tf, count(*) FROM {} WHERE NOT is_partial_end GROUP BY id, tf").format(sql.Identifier(table))))
    assert len(per_series) == len(ASSETS) * len(tfs)  # every (asset, tf) has completed bars to compare
    assert n == sum(per_series.values()) > 1000


def test_missing_day_flags_and_counts_agree_on_every_row(all_seeded: RealWarehouse) -> None:
    for table in ["cmc_price_bars_1d", *FAMILY_TABLES.values()]:
        bad = query(all_seeded.url, sql.SQL(
            "SELECT count(*) FROM {} WHERE is_missing_days <> (count_missing_days > 0)").format(sql.Identifier(table)))
        assert bad == [(0,)], table
    for table in FAMILY_TABLES.values():
        bad = query(all_seeded.url, sql.SQL("""
            SELECT count(*) FILTER (WHERE NOT is_partial_start AND count_days + count_missing_days <> pos_in_bar),
                   count(*) FILTER (WHERE is_missing_days AND NOT first_missing_day <= last_missing_day),
                   count(*) FILTER (WHERE NOT is_missing_days AND (first_missing_day IS NOT NULL
                                                                   OR last_missing_day IS NOT NULL))
            FROM {}""").format(sql.Identifier(table)))
        assert bad == [(0, 0, 0)], table


def test_no_duplicate_keys_and_one_row_per_day_per_bar(all_seeded: RealWarehouse) -> None:
    url = all_seeded.url
    assert query(url, 'SELECT id, "timestamp" FROM cmc_price_bars_1d GROUP BY 1, 2 HAVING count(*) > 1') == []
    assert query(url, "SELECT id, (time_open AT TIME ZONE 'UTC')::date FROM cmc_price_bars_1d "
                      "GROUP BY 1, 2 HAVING count(*) > 1") == []
    for table in FAMILY_TABLES.values():
        t = sql.Identifier(table)
        assert query(url, sql.SQL('SELECT 1 FROM {} GROUP BY id, tf, bar_seq, "timestamp" HAVING count(*) > 1')
                     .format(t)) == [], table
        # A day belongs to one bar per tf; a bar completes at most once; its rows are its observed days.
        assert query(url, sql.SQL('SELECT 1 FROM {} GROUP BY id, tf, "timestamp" HAVING count(*) > 1')
                     .format(t)) == [], table
        assert query(url, sql.SQL("SELECT 1 FROM {} WHERE NOT is_partial_end GROUP BY id, tf, bar_seq "
                                  "HAVING count(*) > 1").format(t)) == [], table
        assert query(url, sql.SQL("""
            SELECT id, tf, bar_seq FROM {} GROUP BY id, tf, bar_seq
            HAVING count(*) <> max(count_days) OR count(*) <> count(DISTINCT "timestamp")""").format(t)) == [], table


def test_bar_seq_is_continuous_except_where_a_source_gap_swallows_whole_bars(all_seeded: RealWarehouse) -> None:
    """BARS.md: bar_seq continuous per (id, tf) except across source gaps that swallow a whole bar.
    Rolling and calendar bars count from 1; anchored bars are the grid index of the first window."""
    jumps: dict[tuple[str, int, str], list[tuple[int, int]]] = {}
    for family, table in FAMILY_TABLES.items():
        rows = query(all_seeded.url, sql.SQL("""
            WITH b AS (
                SELECT id, tf, bar_seq, min(("timestamp" AT TIME ZONE 'UTC')::date) AS first_day,
                       max(("timestamp" AT TIME ZONE 'UTC')::date) AS last_day
                FROM {} GROUP BY id, tf, bar_seq
            ), l AS (
                SELECT b.*, lag(bar_seq) OVER w AS prev_seq, lag(last_day) OVER w AS prev_last
                FROM b WINDOW w AS (PARTITION BY id, tf ORDER BY bar_seq)
            )
            SELECT l.id, l.tf, l.prev_seq, l.bar_seq, l.first_day - l.prev_last - 1 AS days_between, t.tf_days_min
            FROM l JOIN dim_timeframe t USING (tf)
            WHERE l.prev_seq IS NOT NULL AND l.bar_seq <> l.prev_seq + 1""").format(sql.Identifier(table)))
        for asset, tf, a, b, between, min_days in rows:
            # the skipped bars lie wholly inside a run of days absent from the 1d table
            assert between >= (b - a - 1) * min_days, (table, asset, tf, a, b, between)
            jumps.setdefault((family, asset, tf), []).append((a, b))
        starts = query(all_seeded.url, sql.SQL("SELECT DISTINCT tf, min(bar_seq) OVER (PARTITION BY id, tf) FROM {}")
                       .format(sql.Identifier(table)))
        if not family.startswith("cal_anchor"):
            assert {s for _, s in starts} == {1}, (table, starts)
    # On the real data only USDT's 2015 gaps (3 days, then 2 days) swallow whole bars: 2-day bars
    # 2 (02-28..03-01) and 4 (03-04..03-05) of the 2D series starting 2015-02-26.
    assert jumps == {("multi_tf", 825, "2D"): [(1, 3), (3, 5)]}


def test_anchored_bar_seq_is_the_grid_index(all_seeded: RealWarehouse) -> None:
    """BTC's first day 2013-04-29 (a Monday): 1W anchored windows are epoch-week indices, months
    year*12/N + (month-1)/N, years year/N."""
    rows = dict(query(all_seeded.url, """
        SELECT tf, min(bar_seq) FROM cmc_price_bars_multi_tf_cal_anchor_us WHERE id = 1 GROUP BY tf"""))
    epoch_us = (date(2013, 4, 29) - date(1970, 1, 4)).days // 7
    assert rows["1W_CAL_ANCHOR_US"] == epoch_us
    assert rows["2W_CAL_ANCHOR_US"] == epoch_us // 2
    assert rows["1M_CAL_ANCHOR"] == 2013 * 12 + 3
    assert rows["3M_CAL_ANCHOR"] == 2013 * 4 + 1
    assert rows["6M_CAL_ANCHOR"] == 2013 * 2
    assert rows["1Y_CAL_ANCHOR"] == 2013


def test_usdt_2015_gaps_are_missing_days_in_the_bars_that_contain_them(all_seeded: RealWarehouse) -> None:
    url = all_seeded.url
    gaps_1d = query(url, """SELECT id, ("timestamp" AT TIME ZONE 'UTC')::date, count_missing_days
                            FROM cmc_price_bars_1d WHERE is_missing_days ORDER BY 1, 2""")
    assert gaps_1d == [(825, date(2015, 3, 2), 3), (825, date(2015, 3, 6), 2)]
    first = date(2015, 2, 26)
    checked = flagged = 0
    for table in FAMILY_TABLES.values():
        rows = query(url, sql.SQL("""
            SELECT tf, ("timestamp" AT TIME ZONE 'UTC')::date, pos_in_bar, count_missing_days, is_missing_days,
                   first_missing_day, last_missing_day
            FROM {} WHERE id = 825 AND "timestamp" < '2015-07-01'""").format(sql.Identifier(table)))
        for tf, day, pos, n_missing, is_missing, first_m, last_m in rows:
            start = max(date.fromordinal(day.toordinal() - pos + 1), first)
            expected = [g for g in USDT_GAP_DAYS if start <= g <= day]
            got = (n_missing, is_missing, first_m, last_m)
            assert got == (len(expected), bool(expected), min(expected, default=None), max(expected, default=None)), \
                (table, tf, day)
            checked += 1
            flagged += bool(expected)
    assert checked > 1000 and flagged > 50
    # and in every family some bar containing the gap completes and carries it
    for table in FAMILY_TABLES.values():
        n = query(url, sql.SQL("""SELECT count(DISTINCT tf) FROM {} WHERE id = 825 AND NOT is_partial_end
                                  AND first_missing_day <= '2015-03-05' AND last_missing_day >= '2015-02-27'""")
                  .format(sql.Identifier(table)))[0][0]
        assert n >= 1, table


def test_state_tables_describe_the_bars(all_seeded: RealWarehouse) -> None:
    """BARS.md "State for bars": one state row per built (id, tf) with the 1d bounds, the last
    bar_seq and the last time_close; the 1d state's bounds are the source's."""
    url = all_seeded.url
    assert query(url, """
        SELECT count(*) FILTER (WHERE s.daily_min_seen = d.lo AND s.daily_max_seen = d.hi AND s.last_src_ts = d.hi)
        FROM cmc_price_bars_1d_state s
        JOIN (SELECT id, min("timestamp") AS lo, max("timestamp") AS hi FROM cmc_price_histories7 GROUP BY id) d
        USING (id)""") == [(len(ASSETS),)]
    for family in SNAPSHOT_FAMILIES:
        rows = query(url, sql.SQL("""
            WITH last AS (SELECT DISTINCT ON (id, tf) id, tf, bar_seq, time_close FROM {t}
                          ORDER BY id, tf, "timestamp" DESC),
                 d AS (SELECT id, min("timestamp") AS lo, max("timestamp") AS hi FROM cmc_price_bars_1d GROUP BY id)
            SELECT l.id, l.tf, s.id IS NOT NULL, s.daily_min_seen = d.lo, s.daily_max_seen = d.hi,
                   s.last_bar_seq = l.bar_seq, s.last_time_close = l.time_close
            FROM last l JOIN d USING (id) LEFT JOIN {s} s USING (id, tf)""").format(
            t=sql.Identifier(family.table), s=sql.Identifier(family.state_table)))
        assert rows and all(all(r[2:]) for r in rows), [r for r in rows if not all(r[2:])][:3]
        n_state = query(url, sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(family.state_table)))[0][0]
        assert n_state == len(rows), family.state_table


def test_a_daily_run_writes_only_the_new_days_snapshot_rows(real_wh: RealWarehouse) -> None:
    """Step B adds two days and step C one day per asset after the full build: each snapshot
    table gains exactly (new days) rows per (asset, tf) series the days belong to, the audit's
    rows_written says the same, and no earlier row is rewritten."""
    url = real_wh.url
    for step, before, new_days in (("B", "A", 2), ("C", "B", 1)):
        audit = real_wh.audit[step]
        for asset in ASSETS:
            assert real_wh.delta(step, before, "cmc_price_bars_1d", asset) == new_days
            assert audit[(asset, "bars.1d")]["rows_written"] == new_days
            for family, table in FAMILY_TABLES.items():
                n_series = len(family_tfs(url, family, canonical_only=True))  # the new days are inside a bar of each
                assert real_wh.delta(step, before, table, asset) == new_days * n_series, (step, table, asset)
                assert audit[(asset, f"bars.{family}")]["rows_written"] == new_days * n_series, (step, table, asset)
            assert all(v["status"] == "ok" for (a, _), v in audit.items() if a == asset)
    # Rows stamped by run C (before the extra-timeframe run touches anything) are exactly the last days.
    canonical = [r[0] for r in query(url, "SELECT tf FROM dim_timeframe WHERE is_canonical")]
    for table in ["cmc_price_bars_1d", *FAMILY_TABLES.values()]:
        rows = query(url, sql.SQL("""SELECT id, ("timestamp" AT TIME ZONE 'UTC')::date, count(*) FROM {}
                                     WHERE ingested_at >= %s AND tf = ANY(%s) GROUP BY 1, 2""")
                     .format(sql.Identifier(table)), (real_wh.step_started["C"], canonical))
        assert {(a, d) for a, d, _ in rows} == set(LAST_DAY.items()), table


def test_a_rerun_with_nothing_new_writes_nothing(real_wh: RealWarehouse) -> None:
    """Run D repeats run C's command: every component of every asset is ok, writes 0 rows,
    repairs and rejects nothing, and no table changes."""
    audit = real_wh.audit["D"]
    assert len(audit) == len(ASSETS) * 10  # 6 builders + 4 refreshers per asset
    assert {(v["status"], v["rows_written"], v["repairs"], v["rejects"]) for v in audit.values()} == {("ok", 0, 0, 0)}
    assert real_wh.counts["D"] == real_wh.counts["C"]


def test_a_timeframe_added_to_dim_timeframe_is_built_with_no_code_change(
        pg_server_url: str, shared_cmc_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """4D (rolling), 2M_CAL (calendar, both schemes) and 2M_CAL_ANCHOR (anchored) are not seeded;
    inserting their dim_timeframe rows makes the CLI accept and the builders build them, and the
    bars equal the independent SQL aggregate. The EMA refreshers pick them up too."""
    from ta_lab2.cli import main
    from ta_lab2.store import schema

    url = create_database(pg_server_url, "ta_lab2_newtf")
    try:
        with db.connect(url) as conn:
            schema.apply_schema(conn)
            conn.execute("""
                INSERT INTO dim_timeframe (tf, base_unit, tf_qty, tf_days_nominal, alignment_type, calendar_scheme,
                    roll_policy, allow_partial_start, allow_partial_end, tf_days_min, tf_days_max, is_canonical,
                    sort_order)
                VALUES ('4D', 'D', 4, 4, 'tf_day', NULL, 'rolling', false, true, 4, 4, false, 40),
                       ('2M_CAL', 'M', 2, 60, 'calendar', NULL, 'calendar', false, true, 59, 62, false, 5060),
                       ('2M_CAL_ANCHOR', 'M', 2, 60, 'calendar', NULL, 'calendar_anchor', true, true, 59, 62,
                        false, 7060)""")
            conn.commit()
        monkeypatch.setenv("TA_LAB2_DB_URL", url)
        assert main(["load", str(shared_cmc_dir / "coin_Ethereum.csv")]) == 0
        new = ["4D", "2M_CAL", "2M_CAL_ANCHOR"]
        assert main(["refresh", "--all", "--ids", "1027", "--tfs", ",".join(new), "--periods", "10",
                     "--as-of", FINAL_AS_OF, "--run-id", "newtf", "--skip-stale-check"]) == 0
        built = {}
        for family, table in FAMILY_TABLES.items():
            built[family] = {r[0] for r in query(url, sql.SQL("SELECT DISTINCT tf FROM {}").format(
                sql.Identifier(table)))}
            mine = [t for t in family_tfs(url, family) if t in new]
            n, bad = completed_bar_mismatches(url, table, [1027], mine)
            assert bad == [], (family, bad[:3])
            assert n > 0, family
        assert built == {"multi_tf": {"4D"}, "cal_iso": {"2M_CAL"}, "cal_us": {"2M_CAL"},
                         "cal_anchor_iso": {"2M_CAL_ANCHOR"}, "cal_anchor_us": {"2M_CAL_ANCHOR"}}
        # 4D bars from ETH's first day 2015-08-08: 2031 days -> 507 full bars + a partial one
        assert query(url, "SELECT count(DISTINCT bar_seq), count(*) FILTER (WHERE NOT is_partial_end) "
                          "FROM cmc_price_bars_multi_tf WHERE tf = '4D'") == [(508, 507)]
        # 2M_CAL: first full month September 2015, blocks Sep-Oct, Nov-Dec, ...
        assert query(url, "SELECT min(time_open), min(\"timestamp\") FILTER (WHERE NOT is_partial_end) "
                          "FROM cmc_price_bars_multi_tf_cal_us WHERE tf = '2M_CAL'")[0][1].date() == date(2015, 10, 31)
        emas = {r[0]: r[1] for r in query(url, "SELECT alignment_source, array_agg(DISTINCT tf) "
                                               "FROM cmc_ema_multi_tf_u GROUP BY 1")}
        assert emas == {"multi_tf": ["4D"], "multi_tf_v2": ["4D"], "multi_tf_cal_us": ["2M_CAL"],
                        "multi_tf_cal_iso": ["2M_CAL"], "multi_tf_cal_anchor_us": ["2M_CAL_ANCHOR"],
                        "multi_tf_cal_anchor_iso": ["2M_CAL_ANCHOR"]}
        assert all(r["status"] == "ok" for r in audit_rows(url, "newtf").values())
    finally:
        drop_database(pg_server_url, url)
