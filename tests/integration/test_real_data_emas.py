"""Acceptance: the EMA refreshers on the real CoinMarketCap files (EMAS.md), recomputed here in
plain Python and compared with ``==`` on float64.

``real_wh`` (tests/integration/conftest.py) is the real warehouse: full build, then two
incremental as-of runs (two new days, then one). Selection and corruption tests use small
databases of their own.
"""

from __future__ import annotations

import json
import math
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from ta_lab2.registry import EMA_FAMILIES, EMA_VARIANTS, bar_family
from tests.integration.conftest import ASSETS, FINAL_AS_OF, LAST_DAY, RealWarehouse, audit_rows, query

EMA_TABLES = {v.alignment_source: v.table for v in EMA_VARIANTS}


def sma_seeded(x: list[float], p: int) -> list[float | None]:
    """EMAS.md's kernel, written out: mean of the first p values (exactly rounded sum / p),
    then e = a*x + (1 - a)*prev with a = 2/(p + 1). None before the seed."""
    if len(x) < p:
        return [None] * len(x)
    a = 2 / (p + 1)
    out: list[float | None] = [None] * (p - 1)
    e = math.fsum(x[:p]) / p
    out.append(e)
    for v in x[p:]:
        e = a * v + (1 - a) * e
        out.append(e)
    return out


def daily_grid(url: str, asset: int) -> tuple[list[Any], list[float]]:
    rows = query(url, 'SELECT time_close, close FROM cmc_price_bars_1d WHERE id = %s ORDER BY "timestamp"', (asset,))
    return [r[0] for r in rows], [r[1] for r in rows]


def ema_rows(url: str, table: str, asset: int, tf: str, period: int) -> list[tuple[Any, bool, float, float | None]]:
    return query(url, sql.SQL("SELECT ts, roll, ema, ema_bar FROM {} WHERE id = %s AND tf = %s AND period = %s "
                              "ORDER BY ts").format(sql.Identifier(table)), (asset, tf, period))


def series_by_table(url: str) -> dict[str, set[tuple[str, int]]]:
    out = {}
    for source, table in EMA_TABLES.items():
        rows = query(url, sql.SQL("SELECT DISTINCT tf, period FROM {}").format(sql.Identifier(table)))
        out[source] = {(tf, p) for tf, p in rows}
    return out


def _cli(url: str, monkeypatch: pytest.MonkeyPatch, *argv: str) -> int:
    from ta_lab2.cli import main

    monkeypatch.setenv("TA_LAB2_DB_URL", url)
    return main(list(argv))


# ---------------------------------------------------------------------------------------------
# The numbers


def test_btc_7d_p10_canonical_ema_bar_equals_the_sma_seeded_recursion_of_the_bar_closes(
        real_wh: RealWarehouse) -> None:
    url = real_wh.url
    ts, close = daily_grid(url, 1)
    assert len(ts) == 2862  # BTC has no gaps: the 7D bar k closes on grid day 7k (1-based)
    bar_ts, bar_close = ts[6::7], close[6::7]
    stored_bars = query(url, "SELECT time_close, close FROM cmc_price_bars_multi_tf WHERE id = 1 AND tf = '7D' "
                             "AND NOT is_partial_end ORDER BY bar_seq")
    assert stored_bars == list(zip(bar_ts, bar_close, strict=True))
    expected = sma_seeded(bar_close, 10)
    rows = ema_rows(url, "cmc_ema_multi_tf", 1, "7D", 10)
    canonical = [(t, b) for t, roll, _, b in rows if not roll]
    assert [t for t, _ in canonical] == bar_ts[9:]  # the seed is the 10th completed bar
    assert [b for _, b in canonical] == expected[9:]  # exact float64 equality
    assert canonical[0][1] == math.fsum(bar_close[:10]) / 10


def test_btc_7d_p10_ema_is_the_daily_recursion_from_the_seed_and_roll_rows_preview(real_wh: RealWarehouse) -> None:
    url = real_wh.url
    ts, close = daily_grid(url, 1)
    rows = ema_rows(url, "cmc_ema_multi_tf", 1, "7D", 10)
    seed_i = 7 * 10 - 1  # grid index of the 10th 7D close
    assert [r[0] for r in rows] == ts[seed_i:]  # one row per grid day from the seed to the last day
    a_daily, a_bar = 2 / (7 * 10 + 1), 2 / (10 + 1)
    ema = rows[0][3]  # started from the seed row's ema_bar
    bar_ema = rows[0][3]
    for k, (t, roll, got_ema, got_bar) in enumerate(rows):
        i = seed_i + k
        if k:
            ema = a_daily * close[i] + (1 - a_daily) * ema
        assert got_ema == ema, (t, got_ema, ema)
        assert roll == ((i + 1) % 7 != 0), t
        if roll:  # preview from the latest canonical bar_ema strictly before today, never fed back
            assert got_bar == a_bar * close[i] + (1 - a_bar) * bar_ema, t
        else:
            bar_ema = got_bar


@pytest.mark.parametrize("asset", sorted(ASSETS))
def test_v2_7d_p10_starts_on_the_70th_observed_day(real_wh: RealWarehouse, asset: int) -> None:
    url = real_wh.url
    ts, close = daily_grid(url, asset)
    rows = ema_rows(url, "cmc_ema_multi_tf_v2", asset, "7D", 10)
    assert rows[0][0] == ts[69]
    assert [r[0] for r in rows] == ts[69:]
    assert [r[2] for r in rows] == sma_seeded(close, 70)[69:]
    assert all(r[3] is None for r in rows)
    if asset == 825:  # USDT: two 2015 gaps, so the 70th observed day is not first day + 69
        assert (ts[69] - ts[0]).days == 69 + 5


BAR_TABLE = {v.alignment_source: bar_family(v.bar_family).table for v in EMA_VARIANTS}


def bar_space_expected(ts: list[Any], close: list[float], canon_ts: list[Any], canon_close: list[float],
                       tf_days: int, p: int) -> list[tuple[Any, bool, float, float]]:
    """EMAS.md rules 1-3 over a daily grid and the canonical bar closes, in plain Python."""
    bar = sma_seeded(canon_close, p)
    if len(canon_close) < p:
        return []
    a_bar, a_daily = 2 / (p + 1), 2 / (tf_days * p + 1)
    canon = dict(zip(canon_ts, bar, strict=True))
    start = ts.index(canon_ts[p - 1])
    out, latest, ema = [], None, None
    for i in range(start, len(ts)):
        if ts[i] in canon:
            latest = canon[ts[i]]
            ema_bar = latest
        else:
            ema_bar = a_bar * close[i] + (1 - a_bar) * latest
        ema = ema_bar if ema is None else a_daily * close[i] + (1 - a_daily) * ema
        out.append((ts[i], ts[i] not in canon, ema, ema_bar))
    return out


@pytest.mark.parametrize("source", [s for s in EMA_TABLES if s != "multi_tf_v2"])
def test_every_bar_space_series_of_period_10_equals_the_spec_recomputed_from_its_bar_table(
        real_wh: RealWarehouse, source: str) -> None:
    """All assets, every timeframe of the table, period 10: ema_bar, roll and ema row by row
    (==), from the completed bars of the family's bar table (1D: every 1d close)."""
    url, table = real_wh.url, EMA_TABLES[source]
    tf_days = dict(query(url, "SELECT tf, tf_days_nominal FROM dim_timeframe"))
    checked = 0
    for asset in sorted(ASSETS):
        ts, close = daily_grid(url, asset)
        tfs = [r[0] for r in query(url, sql.SQL("SELECT DISTINCT tf FROM {} WHERE id = %s AND period = 10")
                                   .format(sql.Identifier(table)), (asset,))]
        assert tfs, (table, asset)
        for tf in tfs:
            if tf == "1D":
                canon_ts, canon_close = ts, close
            else:
                bars = query(url, sql.SQL("SELECT time_close, close FROM {} WHERE id = %s AND tf = %s "
                                          "AND NOT is_partial_end ORDER BY \"timestamp\"")
                             .format(sql.Identifier(BAR_TABLE[source])), (asset, tf))
                canon_ts, canon_close = [b[0] for b in bars], [b[1] for b in bars]
            expected = bar_space_expected(ts, close, canon_ts, canon_close, tf_days[tf], 10)
            assert ema_rows(url, table, asset, tf, 10) == expected, (table, asset, tf)
            checked += len(expected)
    assert checked > 10_000


@pytest.mark.parametrize("asset", sorted(ASSETS))
def test_every_v2_series_of_period_10_is_the_daily_sma_seeded_ema_with_multi_tf_roll_flags(
        real_wh: RealWarehouse, asset: int) -> None:
    url = real_wh.url
    ts, close = daily_grid(url, asset)
    tfs = dict(query(url, "SELECT DISTINCT v.tf, t.tf_days_nominal FROM cmc_ema_multi_tf_v2 v "
                          "JOIN dim_timeframe t USING (tf) WHERE v.id = %s AND v.period = 10", (asset,)))
    assert "7D" in tfs
    for tf, days in tfs.items():
        n = days * 10
        closes_at = {b[0] for b in query(url, "SELECT time_close FROM cmc_price_bars_multi_tf WHERE id = %s "
                                              "AND tf = %s AND NOT is_partial_end", (asset, tf))} if tf != "1D" else set(ts)
        expected = [(t, t not in closes_at, e, None) for t, e in zip(ts[n - 1:], sma_seeded(close, n)[n - 1:],
                                                                       strict=True)]
        assert ema_rows(url, "cmc_ema_multi_tf_v2", asset, tf, 10) == expected, (asset, tf)


def test_every_ema_table_has_the_canonical_series_and_no_rejects(real_wh: RealWarehouse) -> None:
    """Default run: canonical tfs x default periods with enough history; the real data is clean."""
    got = series_by_table(real_wh.url)
    assert ("7D", 10) in got["multi_tf"] and ("365D", 10) not in got["multi_tf"]  # 7 BTC 365D bars < 10
    assert {p for _, p in got["multi_tf"]} <= {10, 14, 20, 21, 30, 50, 100, 200, 252, 365}
    assert ("1M_CAL", 50) in got["multi_tf_cal_us"] and ("1W_CAL_ISO", 10) in got["multi_tf_cal_iso"]
    assert ("1W_CAL_ANCHOR_US", 10) in got["multi_tf_cal_anchor_us"]
    assert ("1W_CAL_ANCHOR_ISO", 10) in got["multi_tf_cal_anchor_iso"]
    assert query(real_wh.url, "SELECT count(*) FROM ema_rejects") == [(0,)]


@pytest.mark.parametrize("variant", EMA_VARIANTS, ids=[v.alignment_source for v in EMA_VARIANTS])
def test_ema_state_is_the_last_row_of_each_series(real_wh: RealWarehouse, variant: Any) -> None:
    """EMAS.md state per (id, tf, period): last_ts / last_ema = the last row; bar-space
    last_canonical_ts / last_bar_ema = the last canonical row and canonical_count = canonical
    closes seen (the p-th is the seed row); v2 keeps no bar EMA."""
    bar_space = variant.alignment_source != "multi_tf_v2"
    rows = query(real_wh.url, sql.SQL("""
        WITH last AS (SELECT DISTINCT ON (id, tf, period) id, tf, period, ts, ema FROM {t}
                      ORDER BY id, tf, period, ts DESC),
             canon AS (SELECT id, tf, period, max(ts) AS cts, count(*) AS n,
                              (array_agg(ema_bar ORDER BY ts DESC))[1] AS bar FROM {t} WHERE NOT roll
                       GROUP BY id, tf, period)
        SELECT l.id, l.tf, l.period, s.id IS NOT NULL, s.last_ts = l.ts, s.last_ema = l.ema,
               CASE WHEN %(bar)s THEN s.last_canonical_ts = c.cts AND s.last_bar_ema = c.bar
                                      AND s.canonical_count = c.n + l.period - 1
                    ELSE s.last_bar_ema IS NULL AND s.last_canonical_ts >= c.cts END
        FROM last l LEFT JOIN canon c USING (id, tf, period) LEFT JOIN {s} s USING (id, tf, period)""").format(
        t=sql.Identifier(variant.table), s=sql.Identifier(variant.state_table)), {"bar": bar_space})
    assert len(rows) > 50 and all(all(r[3:]) for r in rows), [r for r in rows if not all(r[3:])][:3]
    n_state = query(real_wh.url, sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(variant.state_table)))
    assert n_state == [(len(rows),)]


def test_a_daily_run_writes_new_days_times_series_rows_per_asset(real_wh: RealWarehouse) -> None:
    """After the full build, run B adds two days and run C one day per asset: every EMA table
    gains exactly (new days x series) rows per asset, as the audit's rows_written says, and
    only rows of the new days are written."""
    by_family = {f.name: [v.table for v in f.variants] for f in EMA_FAMILIES}
    for step, before, new_days in (("B", "A", 2), ("C", "B", 1)):
        for asset in ASSETS:
            for family, tables in by_family.items():
                written = 0
                for table in tables:
                    n_series = real_wh.series[before][(table, asset)]
                    assert n_series == real_wh.series[step][(table, asset)] > 0  # no series seeded this late
                    assert real_wh.delta(step, before, table, asset) == new_days * n_series, (step, table, asset)
                    written += new_days * n_series
                res = real_wh.audit[step][(asset, f"emas.{family}")]
                assert (res["status"], res["rows_written"], res["rejects"]) == ("ok", written, 0), (step, family)
    for table in EMA_TABLES.values():
        rows = query(real_wh.url, sql.SQL("SELECT id, (ts AT TIME ZONE 'UTC')::date, count(DISTINCT (tf, period)) "
                                          "FROM {} WHERE ingested_at >= %s GROUP BY 1, 2").format(sql.Identifier(table)),
                     (real_wh.step_started["C"],))
        assert {(a, d): n for a, d, n in rows} == {(a, d): real_wh.series["C"][(table, a)] for a, d in LAST_DAY.items()}


# ---------------------------------------------------------------------------------------------
# Selection: --periods / --tfs / --tf-period-combos


def test_periods_and_tfs_restrict_every_ema_table(fresh_db_url: str, shared_cmc_dir: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    url = fresh_db_url
    assert _cli(url, monkeypatch, "load", str(shared_cmc_dir / "coin_Ethereum.csv")) == 0
    assert _cli(url, monkeypatch, "refresh", "--all", "--ids", "1027", "--periods", "10", "--tfs", "7D,1M_CAL",
                "--as-of", FINAL_AS_OF, "--skip-stale-check") == 0
    assert series_by_table(url) == {
        "multi_tf": {("7D", 10)}, "multi_tf_v2": {("7D", 10)},
        "multi_tf_cal_us": {("1M_CAL", 10)}, "multi_tf_cal_iso": {("1M_CAL", 10)},
        "multi_tf_cal_anchor_us": set(), "multi_tf_cal_anchor_iso": set(),
    }
    bars = {t: {r[0] for r in query(url, sql.SQL("SELECT DISTINCT tf FROM {}").format(sql.Identifier(t)))}
            for t in ("cmc_price_bars_multi_tf", "cmc_price_bars_multi_tf_cal_us", "cmc_price_bars_multi_tf_cal_iso",
                      "cmc_price_bars_multi_tf_cal_anchor_us", "cmc_price_bars_multi_tf_cal_anchor_iso")}
    assert bars == {"cmc_price_bars_multi_tf": {"7D"}, "cmc_price_bars_multi_tf_cal_us": {"1M_CAL"},
                    "cmc_price_bars_multi_tf_cal_iso": {"1M_CAL"}, "cmc_price_bars_multi_tf_cal_anchor_us": set(),
                    "cmc_price_bars_multi_tf_cal_anchor_iso": set()}
    # the state tables agree: one state row per written series
    states = {}
    for v in EMA_VARIANTS:
        states[v.alignment_source] = {tuple(r) for r in query(url, sql.SQL("SELECT tf, period FROM {}").format(
            sql.Identifier(v.state_table)))}
    assert states == series_by_table(url)


def test_tf_period_combos_write_only_those_series_and_win_over_tfs_x_periods(
        fresh_db_url: str, shared_cmc_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = fresh_db_url
    files = [str(shared_cmc_dir / f) for f in ("coin_Ethereum.csv", "coin_Tether.csv")]
    assert _cli(url, monkeypatch, "load", *files) == 0
    only = {"multi_tf": {("7D", 10)}, "multi_tf_v2": {("7D", 10)}, "multi_tf_cal_us": set(),
            "multi_tf_cal_iso": set(), "multi_tf_cal_anchor_us": set(), "multi_tf_cal_anchor_iso": set()}
    assert _cli(url, monkeypatch, "refresh", "--all", "--ids", "1027", "--tf-period-combos", "7D:10",
                "--as-of", FINAL_AS_OF, "--skip-stale-check") == 0
    assert series_by_table(url) == only
    assert _cli(url, monkeypatch, "refresh", "--targets", "emas", "--ids", "1027", "--periods", "20,50",
                "--tfs", "14D,1M_CAL", "--tf-period-combos", "7D:10", "--as-of", FINAL_AS_OF,
                "--skip-stale-check") == 0
    assert series_by_table(url) == only
    n = query(url, "SELECT count(*) FROM cmc_ema_multi_tf WHERE id = 1027")[0][0]
    assert n == 2031 - 69  # from the 10th 7D close (day 70) to ETH's last day


# ---------------------------------------------------------------------------------------------
# Validation: a corrupted close lands in ema_rejects


def test_a_corrupted_close_lands_in_ema_rejects_and_the_run_succeeds(
        fresh_db_url: str, shared_cmc_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url, spike_day = fresh_db_url, date(2019, 6, 15)
    lines = (shared_cmc_dir / "coin_Ethereum.csv").read_text().splitlines()
    out, original = [], None
    for line in lines:
        f = line.split(",")
        if f[3].startswith(spike_day.isoformat()):
            original = float(f[7])
            f[7] = repr(original * 1000)
        out.append(",".join(f))
    assert original is not None
    corrupted = tmp_path / "coin_Ethereum.csv"
    corrupted.write_text("\n".join(out) + "\n")
    assert _cli(url, monkeypatch, "load", str(corrupted), str(shared_cmc_dir / "coin_Tether.csv")) == 0
    assert _cli(url, monkeypatch, "refresh", "--all", "--ids", "all", "--tfs", "7D,1M_CAL,1W_CAL_ANCHOR_US",
                "--periods", "10", "--as-of", FINAL_AS_OF, "--run-id", "spike", "--skip-stale-check",
                "--no-validate") == 0  # every step succeeds; validation would FAIL emas.rejects (as in the DAG)
    audit = audit_rows(url, "spike")
    assert {k[1] for k in audit} >= {"bars.1d", "emas.multi_tf", "emas.cal", "emas.cal_anchor", "emas.v2"}
    assert all(v["status"] == "ok" for v in audit.values()), audit
    assert all(v["rejects"] == 0 for (a, _), v in audit.items() if a == 825)

    rejects = query(url, "SELECT alignment_source, id, tf, period, ts, ema_value, violation_type, bounds, "
                         "source_close FROM ema_rejects ORDER BY ts")
    assert rejects and {r[1] for r in rejects} == {1027}
    assert {r[0] for r in rejects} == {"multi_tf", "multi_tf_v2", "multi_tf_cal_us", "multi_tf_cal_iso",
                                       "multi_tf_cal_anchor_us"}
    for source, _, tf, period, ts, value, violation, bounds, _ in rejects:
        bounds = bounds if isinstance(bounds, dict) else json.loads(bounds)
        assert violation in ("above_upper_bound", "above_upper_bound_bar"), violation
        assert 0 < bounds["lower"] < bounds["upper"] < value, (source, tf, ts, bounds, value)
        assert ts.date() >= spike_day
        # the bad value is still written (it is finite)
        column = "ema_bar" if violation.endswith("_bar") else "ema"
        stored = query(url, sql.SQL("SELECT {} FROM {} WHERE id = 1027 AND tf = %s AND period = %s AND ts = %s")
                       .format(sql.Identifier(column), sql.Identifier(EMA_TABLES[source])), (tf, period, ts))
        assert stored == [(value,)]
    first = [r for r in rejects if r[4].date() == spike_day]
    assert first and all(r[8] == original * 1000 for r in first)
    per_component = sum(v["rejects"] for (a, c), v in audit.items() if a == 1027 and c.startswith("emas."))
    assert per_component == len(rejects)
    # EMAS.md keys ema_rejects by (id, tf, period, ts, violation_type): multi_tf and v2 (both 7D)
    # flag the same day, so that key would collide; the table adds alignment_source to it.
    spec_keys = {(r[1], r[2], r[3], r[4], r[6]) for r in rejects}
    assert len(spec_keys) < len(rejects)
