"""Validation checks against a real Postgres: clean data passes, each kind of corruption is caught
and named, results are persisted, the real CMC files produce no FAIL."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from ta_lab2.ops.validation import CheckResult, ValidationReport, run_validation
from ta_lab2.registry import BAR_1D, EMA_VARIANTS, SNAPSHOT_FAMILIES, bar_family
from ta_lab2.store import db
from tests.support.warehouse import history, load_rows, new_asset_ids, refresh

BAR_COMPONENTS = ["bars.1d", *(f"bars.{f.name}" for f in SNAPSHOT_FAMILIES)]
AS_OF = datetime(2030, 1, 1, tzinfo=UTC)
EMA = EMA_VARIANTS[0]  # cmc_ema_multi_tf
START = datetime(2024, 1, 1, tzinfo=UTC)


def _rows(url: str, query: sql.Composable | str, params: Any = None) -> list[tuple[Any, ...]]:
    with db.transaction(url) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


def _build(url: str, asset_id: int, rows: list[dict[str, Any]]) -> None:
    load_rows(url, asset_id, rows)
    refresh(url, asset_id, BAR_COMPONENTS, AS_OF)


def _by_name(report: ValidationReport, asset_id: int) -> dict[str, CheckResult]:
    return {r.check_name: r for r in report.results if r.asset_id == asset_id}


def _not_pass(report: ValidationReport) -> dict[str, str]:
    return {r.check_name: r.severity for r in report.results if r.severity != "PASS"}


def _day(i: int) -> str:
    return (START + timedelta(days=i)).date().isoformat()


@pytest.fixture
def built(fresh_db_url: str) -> tuple[str, int]:
    """One asset, 400 days with random source gaps (so some bars never complete), bars built."""
    (asset,) = new_asset_ids(1)
    _build(fresh_db_url, asset, history(11, 400, bad_time_prob=0.0))
    return fresh_db_url, asset


def test_clean_build_passes_or_only_warns_about_incomplete_bars_and_is_persisted(
    built: tuple[str, int],
) -> None:
    url, asset = built
    report = run_validation(url, [asset], "run-clean")
    checks = _by_name(report, asset)
    for fam in SNAPSHOT_FAMILIES:
        for suffix in (
            "ohlcv_matches_1d",
            "missing_days_consistency",
            "ohlc_consistency",
            "bar_seq_continuity",
            "incomplete_bars",
        ):
            assert f"bars.{fam.name}.{suffix}" in checks
    for var in EMA_VARIANTS:
        assert {f"emas.{var.alignment_source}.values", f"emas.{var.alignment_source}.row_counts"} <= set(
            checks
        )
    assert report.worst == "WARN"  # the random gaps leave bars that never complete
    assert {name.rsplit(".", 1)[1] for name in _not_pass(report)} == {"incomplete_bars"}
    warn = checks["bars.multi_tf.incomplete_bars"]
    assert warn.observed and warn.details["examples"][0]["scheduled_end"]
    assert checks["bars_1d.gaps"].details["source_gaps"] > 0
    assert checks["bars.multi_tf.ohlcv_matches_1d"].details["checked"] > 50
    assert _by_name(report, 0)["global.duplicate_keys"].severity == "PASS"

    stored = _rows(
        url, "SELECT asset_id, check_name, severity FROM validation_results WHERE run_id = %s", ("run-clean",)
    )
    assert sorted(stored) == sorted((r.asset_id, r.check_name, r.severity) for r in report.results)
    run_validation(url, [asset], "run-clean")  # upsert: a rerun of the same run id replaces its rows
    (n,) = _rows(url, "SELECT count(*) FROM validation_results WHERE run_id = 'run-clean'")[0]
    assert n == len(report.results)
    assert "worst WARN" in report.format() and report.counts()["FAIL"] == 0


def test_a_corrupted_snapshot_high_fails_ohlcv_matches_1d_naming_the_tf(built: tuple[str, int]) -> None:
    url, asset = built
    corrupted = {}
    for fam in SNAPSHOT_FAMILIES:
        tf, seq = _rows(
            url,
            sql.SQL(
                "SELECT tf, bar_seq FROM {} WHERE id = %s AND NOT is_partial_end ORDER BY tf DESC, bar_seq LIMIT 1"
            ).format(sql.Identifier(fam.table)),
            (asset,),
        )[0]
        _rows(
            url,
            sql.SQL(
                "UPDATE {} SET high = high * 1.5 WHERE id = %s AND tf = %s AND bar_seq = %s "
                "AND NOT is_partial_end"
            ).format(sql.Identifier(fam.table)),
            (asset, tf, seq),
        )
        corrupted[fam.name] = (tf, seq)
    checks = _by_name(run_validation(url, [asset], "run-high", persist=False), asset)
    for fam, (tf, seq) in corrupted.items():
        check = checks[f"bars.{fam}.ohlcv_matches_1d"]
        assert check.severity == "FAIL" and check.observed == 1
        assert tf in check.message and check.details["bad_by_tf"] == {tf: 1}
        assert check.details["examples"][0]["bar_seq"] == seq and check.details["examples"][0]["columns"] == [
            "high"
        ]
        assert checks[f"bars.{fam}.ohlc_consistency"].severity == "PASS"  # a higher high is still consistent
    assert checks["bars_1d.ohlc_consistency"].severity == "PASS"


def test_a_wrong_is_missing_days_flag_fails(built: tuple[str, int]) -> None:
    url, asset = built
    for fam in SNAPSHOT_FAMILIES:
        _rows(
            url,
            sql.SQL(
                'UPDATE {t} SET is_missing_days = NOT is_missing_days WHERE (id, tf, bar_seq, "timestamp") '
                '= (SELECT id, tf, bar_seq, "timestamp" FROM {t} WHERE id = %s ORDER BY "timestamp" LIMIT 1)'
            ).format(t=sql.Identifier(fam.table)),
            (asset,),
        )
    report = run_validation(url, [asset], "run-flag", persist=False)
    checks = _by_name(report, asset)
    for fam in SNAPSHOT_FAMILIES:
        check = checks[f"bars.{fam.name}.missing_days_consistency"]
        assert check.severity == "FAIL" and check.observed == 1
        assert check.details["by_kind"]["flag"] == 1
    assert {n for n, s in _not_pass(report).items() if s == "FAIL"} == {
        f"bars.{f.name}.missing_days_consistency" for f in SNAPSHOT_FAMILIES
    }


def test_broken_ohlc_order_and_a_second_1d_row_on_one_day_fail(built: tuple[str, int]) -> None:
    url, asset = built
    daily, multi = sql.Identifier(BAR_1D.table), sql.Identifier(bar_family("multi_tf").table)
    day_ts = START + timedelta(days=100)
    (ts,) = _rows(
        url,
        sql.SQL('SELECT min("timestamp") FROM {} WHERE id = %s AND "timestamp" > %s').format(daily),
        (asset, day_ts),
    )[0]
    _rows(
        url,
        sql.SQL('UPDATE {} SET low = high * 1.01 WHERE id = %s AND "timestamp" = %s').format(daily),
        (asset, ts),
    )
    _rows(
        url,
        sql.SQL("""UPDATE {} SET time_high = time_close + interval '1 hour'
                   WHERE id = %s AND tf = '30D' AND "timestamp" = %s""").format(multi),
        (asset, ts),
    )
    _rows(
        url,
        sql.SQL("""INSERT INTO {t} SELECT id, tf, bar_seq + 100000, "timestamp" - interval '1 hour', time_open,
                   time_close, time_high, time_low, open, high, low, close, volume, market_cap, is_partial_start,
                   is_partial_end, is_missing_days, count_missing_days FROM {t} WHERE id = %s AND "timestamp" = %s
                """).format(t=daily),
        (asset, ts),
    )
    checks = _by_name(run_validation(url, [asset], "run-ohlc", persist=False), asset)
    assert checks["bars_1d.ohlc_consistency"].severity == "FAIL"
    assert checks["bars_1d.ohlc_consistency"].observed == 2  # the row and its same-day copy
    snap = checks["bars.multi_tf.ohlc_consistency"]
    assert snap.severity == "FAIL" and snap.details["bad_by_tf"] == {"30D": 1}
    dup = checks["bars_1d.one_row_per_day"]
    assert dup.severity == "FAIL" and dup.observed == 1
    assert dup.details["days"][0]["day"] == ts.astimezone(UTC).date().isoformat()


def test_source_gaps_and_rejected_days_pass_listed_but_a_1d_row_lost_from_a_kept_source_day_fails(
    fresh_db_url: str,
) -> None:
    url = fresh_db_url
    (asset,) = new_asset_ids(1)
    rows = history(5, 120, gap_prob=0.0, bad_time_prob=0.0)
    rows[40]["close"] = -1.0  # rejected by the 1d builder: its day is missing from the 1d bars
    _build(url, asset, rows[:20] + rows[23:])  # days 20-22 are a source gap
    gaps = _by_name(run_validation(url, [asset], "run-gap"), asset)["bars_1d.gaps"]
    assert gaps.severity == "PASS" and gaps.observed == 0
    assert gaps.details["source_gap_days"] == [_day(20), _day(21), _day(22)]
    assert gaps.details["rejected_days"] == [_day(40)]

    _rows(
        url,
        sql.SQL('DELETE FROM {} WHERE id = %s AND "timestamp" = %s').format(sql.Identifier(BAR_1D.table)),
        (asset, rows[70]["timestamp"]),
    )
    checks = _by_name(run_validation(url, [asset], "run-gap-2", persist=False), asset)
    gaps = checks["bars_1d.gaps"]
    assert gaps.severity == "FAIL" and gaps.observed == 1 and _day(70) in gaps.message
    assert gaps.details["unexplained_days"] == [_day(70)]
    assert gaps.details["source_gap_days"] == [_day(20), _day(21), _day(22)]
    assert checks["bars_1d.count_missing_days"].severity == "FAIL"  # the next row's gap is now wrong
    assert checks["bars_1d.bar_seq_dense"].severity == "FAIL"


def test_a_source_row_loaded_after_the_last_refresh_is_pending_not_failed(fresh_db_url: str) -> None:
    (asset,) = new_asset_ids(1)
    rows = history(6, 60, gap_prob=0.0, bad_time_prob=0.0)
    _build(fresh_db_url, asset, rows[:30] + rows[31:])
    load_rows(fresh_db_url, asset, [rows[30]], source_file="late")  # late backfill, not refreshed yet
    gaps = _by_name(run_validation(fresh_db_url, [asset], "run-late", persist=False), asset)["bars_1d.gaps"]
    assert gaps.severity == "WARN" and gaps.details["pending_days"] == [_day(30)]


def test_a_bar_seq_jump_passes_only_when_a_1d_gap_swallows_the_bar(fresh_db_url: str) -> None:
    url = fresh_db_url
    (asset,) = new_asset_ids(1)
    rows = history(8, 200, gap_prob=0.0, bad_time_prob=0.0)
    _build(url, asset, rows[:50] + rows[66:])  # 16 missing days swallow at least one whole 7D / 1W bar
    checks = _by_name(run_validation(url, [asset], "run-seq", persist=False), asset)
    for fam in SNAPSHOT_FAMILIES:
        check = checks[f"bars.{fam.name}.bar_seq_continuity"]
        assert check.severity == "PASS" and check.details["jumps"] >= 1, check
    multi = bar_family("multi_tf").table
    _rows(
        url,
        sql.SQL("DELETE FROM {} WHERE id = %s AND tf = '7D' AND bar_seq = 20").format(sql.Identifier(multi)),
        (asset,),
    )
    check = _by_name(run_validation(url, [asset], "run-seq-2", persist=False), asset)[
        "bars.multi_tf.bar_seq_continuity"
    ]
    assert check.severity == "FAIL" and "7D" in check.message
    assert check.details["examples"][0]["from_seq"] == 19 and check.details["examples"][0]["to_seq"] == 21


def _insert_ema_series(url: str, asset: int, tf: str, period: int) -> None:
    """A well-formed series of ``EMA`` (values irrelevant): canonical rows on the completed bars of
    its bar family from the period-th on, roll rows on every other 1d day after the seed."""
    stmt = sql.SQL("""
        WITH bars AS (SELECT time_close, close, row_number() OVER (ORDER BY time_close) AS k
                      FROM {bars} WHERE id = %(id)s AND tf = %(tf)s AND NOT is_partial_end),
             seed AS (SELECT time_close FROM bars WHERE k = %(p)s)
        INSERT INTO {ema} (id, tf, ts, period, tf_days, roll, ema, ema_bar)
        SELECT %(id)s, %(tf)s, d.time_close, %(p)s, 7, b.time_close IS NULL, d.close, d.close
        FROM {daily} d LEFT JOIN bars b ON b.time_close = d.time_close
        WHERE d.id = %(id)s AND d.time_close >= (SELECT time_close FROM seed)
    """).format(
        bars=sql.Identifier(bar_family(EMA.bar_family).table),
        ema=sql.Identifier(EMA.table),
        daily=sql.Identifier(BAR_1D.table),
    )
    _rows(url, stmt, {"id": asset, "tf": tf, "p": period})


def test_ema_row_counts_match_completed_bars_until_a_canonical_row_goes_missing(
    built: tuple[str, int],
) -> None:
    url, asset = built
    _insert_ema_series(url, asset, "7D", 3)
    name = f"emas.{EMA.alignment_source}.row_counts"
    check = _by_name(run_validation(url, [asset], "run-ema", persist=False), asset)[name]
    assert check.severity == "PASS" and check.details["series"] == 1
    _rows(
        url,
        sql.SQL(
            "DELETE FROM {} WHERE (id, tf, period, ts) = (SELECT id, tf, period, max(ts) FROM {} "
            "WHERE id = %s AND NOT roll GROUP BY id, tf, period)"
        ).format(sql.Identifier(EMA.table), sql.Identifier(EMA.table)),
        (asset,),
    )
    check = _by_name(run_validation(url, [asset], "run-ema-2", persist=False), asset)[name]
    assert check.severity == "FAIL" and "7D/3" in check.message
    (mismatch,) = check.details["mismatches"]
    assert mismatch["canonical_rows"] == mismatch["completed_bars"] - 1


def test_a_negative_ema_and_an_ema_reject_fail(built: tuple[str, int]) -> None:
    url, asset = built
    ts = datetime(2024, 6, 1, 23, 59, 59, 999000, tzinfo=UTC)
    _rows(
        url,
        sql.SQL(
            "INSERT INTO {} (id, tf, ts, period, tf_days, roll, ema, ema_bar) "
            "VALUES (%s, '7D', %s, 10, 7, true, -5.0, 1.0)"
        ).format(sql.Identifier(EMA.table)),
        (asset, ts),
    )
    _rows(
        url,
        "INSERT INTO ema_rejects (alignment_source, id, tf, period, ts, ema_value, violation_type, bounds, "
        "source_close) VALUES ('multi_tf', %s, '14D', 20, %s, 999.0, 'above_upper_bound', '{}', 100.0)",
        (asset, ts),
    )
    checks = _by_name(run_validation(url, [asset], "run-neg", persist=False), asset)
    values = checks[f"emas.{EMA.alignment_source}.values"]
    assert values.severity == "FAIL" and values.observed == 1
    assert values.details["examples"][0]["ema"] == "-5"
    rejects = checks["emas.rejects"]
    assert rejects.severity == "FAIL" and "above_upper_bound" in rejects.message
    assert rejects.details["examples"] == [
        {
            "alignment_source": "multi_tf",
            "tf": "14D",
            "period": 20,
            "ts": "2024-06-01T23:59:59.999+00:00",
            "violation_type": "above_upper_bound",
            "ema_value": "999",
        }
    ]
    for var in EMA_VARIANTS[1:]:
        assert checks[f"emas.{var.alignment_source}.values"].severity == "PASS"


def test_duplicates_are_reported_when_a_primary_key_is_missing(built: tuple[str, int]) -> None:
    url, asset = built
    table = SNAPSHOT_FAMILIES[0].table
    _rows(
        url,
        sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
            sql.Identifier(table), sql.Identifier(f"{table}_pkey")
        ),
    )
    report = run_validation(url, [asset], "run-pk", persist=False, per_asset=False)
    (dup,) = report.results
    assert (dup.check_name, dup.severity, dup.observed) == ("global.duplicate_keys", "WARN", 0)
    assert table in dup.message
    _rows(
        url,
        sql.SQL("INSERT INTO {t} SELECT * FROM {t} WHERE id = %s LIMIT 2").format(t=sql.Identifier(table)),
        (asset,),
    )
    (dup,) = run_validation(url, [asset], "run-pk-2", persist=False, per_asset=False).results
    assert dup.severity == "FAIL" and dup.observed == 2 and dup.details["tables"][table]["duplicates"] == 2


def test_a_check_that_cannot_run_fails_alone_and_the_others_still_run(built: tuple[str, int]) -> None:
    url, asset = built
    _rows(url, sql.SQL("DROP TABLE {} CASCADE").format(sql.Identifier(EMA_VARIANTS[-1].table)))
    report = run_validation(url, [asset], "run-broken", persist=False)
    fails = {r.check_name: r.message for r in report.results if r.severity == "FAIL"}
    prefix = f"emas.{EMA_VARIANTS[-1].alignment_source}."
    assert set(fails) == {prefix + "values", prefix + "row_counts"}
    assert all("could not run" in m for m in fails.values())
    assert _by_name(report, 0)["global.duplicate_keys"].severity == "WARN"  # the table is missing


def test_report_worst_counts_and_format() -> None:
    report = ValidationReport(
        [
            CheckResult(1, "a", "PASS", 0.0, 0.0, "fine", {}),
            CheckResult(1, "b", "WARN", 2.0, 0.0, "two", {}),
            CheckResult(0, "c", "FAIL", 0.5, 0.0, "half", {}),
        ]
    )
    assert report.worst == "FAIL" and ValidationReport([]).worst == "PASS"
    assert report.counts() == {"PASS": 1, "WARN": 1, "FAIL": 1}
    lines = report.format().splitlines()
    assert lines[0].split() == ["asset", "check", "severity", "observed", "message"]
    assert lines[3].split() == ["1", "b", "WARN", "2", "two"] and lines[4].split()[3] == "0.5"


@pytest.mark.slow
def test_the_real_cmc_files_validate_without_fail(
    fresh_db_url: str, shared_cmc_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ta_lab2.cli import main

    monkeypatch.setenv("TA_LAB2_DB_URL", fresh_db_url)
    assert main(["load", *map(str, sorted(shared_cmc_dir.glob("coin_*.csv")))]) == 0
    assets = [1, 52, 825, 1027]  # BTC, XRP, USDT, ETH
    for asset in assets:
        refresh(fresh_db_url, asset, BAR_COMPONENTS, AS_OF)
    start = time.perf_counter()
    report = run_validation(fresh_db_url, assets, "run-real")
    elapsed = time.perf_counter() - start
    assert report.counts()["FAIL"] == 0, report.format()
    assert {r.check_name.rsplit(".", 1)[1] for r in report.results if r.severity == "WARN"} <= {
        "incomplete_bars"
    }
    # a generous guard against a pathological slowdown (a lost index, a per-row query), not a
    # benchmark: the real figure is measured by `make bench` (docs/BENCHMARKS.md)
    assert elapsed < 30.0 * len(assets), f"validation took {elapsed:.1f}s"
    btc = _by_name(report, 1)
    assert btc["bars_1d.gaps"].severity == "PASS"
    assert btc["bars.multi_tf.ohlcv_matches_1d"].details["checked"] > 300
