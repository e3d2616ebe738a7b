"""Acceptance: the CLI contract (``python -m ta_lab2 ...``) against a real Postgres.

* bad ids, dates, builders, refreshers, timeframes and periods exit 2 with ONE line on stderr
  and write nothing (run as real subprocesses, the way an operator or cron runs them);
* ``--as-of`` is an exclusive cutoff on the source ``"timestamp"``;
* a bad source row is repaired (counted in the 1d state and the audit) or rejected with its
  reason; nothing disappears (source rows = 1d rows + rejects).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SHARED_CMC, create_database, drop_database
from tests.integration.conftest import query

ROOT = Path(__file__).resolve().parents[2]
PERCOIN_HEAD = "SNo,Name,Symbol,Date,High,Low,Open,Close,Volume,Marketcap\n"
EXPORT_HEAD = "timeOpen;timeClose;timeHigh;timeLow;name;open;high;low;close;volume;marketCap;timestamp\n"

# (case id, argv, a fragment the one-line message must contain). Asset 1 exists in the module DB.
# A refresh names its target (--all), else the target refusal would come first.
BAD_REQUESTS: list[tuple[str, list[str], str]] = [
    ("ids-not-int", ["refresh", "--all", "--ids", "abc"], "'abc'"),
    ("ids-negative", ["refresh", "--all", "--ids", "1,-3"], "positive"),
    ("ids-empty", ["refresh", "--all", "--ids", ""], "--ids"),
    ("ids-unknown", ["refresh", "--all", "--ids", "1,999"], "[999]"),
    ("validate-ids-unknown", ["validate", "--ids", "999"], "[999]"),
    ("as-of-bad-day", ["refresh", "--all", "--ids", "1", "--as-of", "2021-02-30"], "2021-02-30"),
    ("as-of-us-format", ["refresh", "--all", "--ids", "1", "--as-of", "02/27/2021"], "02/27/2021"),
    ("builder-unknown", ["refresh", "--all", "--ids", "1", "--builders", "1d,weekly"], "weekly"),
    ("refresher-unknown", ["refresh", "--all", "--ids", "1", "--refreshers", "v3"], "v3"),
    ("targets-unknown", ["refresh", "--ids", "1", "--targets", "bars,candles"], "candles"),
    ("targets-empty", ["refresh", "--ids", "1", "--targets", ""], "targets"),
    ("tf-unknown", ["refresh", "--all", "--ids", "1", "--tfs", "7D,8X"], "8X"),
    ("combo-tf-unknown", ["refresh", "--all", "--ids", "1", "--tf-period-combos", "8X:10"], "8X"),
    ("combo-malformed", ["refresh", "--all", "--ids", "1", "--tf-period-combos", "7D-10"], "7D-10"),
    ("period-zero", ["refresh", "--all", "--ids", "1", "--periods", "10,0"], "positive"),
    ("period-negative", ["refresh", "--all", "--ids", "1", "--periods=-5"], "positive"),
    ("period-not-int", ["refresh", "--all", "--ids", "1", "--periods", "ten"], "'ten'"),
    ("period-unknown", ["refresh", "--all", "--ids", "1", "--periods", "11"], "[11]"),
    ("combo-period-zero", ["refresh", "--all", "--ids", "1", "--tf-period-combos", "7D:0"], "positive"),
    # argparse-level refusals are one line too (not the usage block)
    ("load-id-zero", ["load", "--id", "0", str(SHARED_CMC / "coin_XRP.csv")], "'0'"),
    ("unknown-option", ["refresh", "--idz", "1"], "--idz"),
]


def run_cli(url: str, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TA_LAB2_DB_URL": url, "PYTHONPATH": f"{ROOT / 'plugins'}{os.pathsep}{ROOT}"}
    return subprocess.run([sys.executable, "-m", "ta_lab2", *argv], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def small_db(pg_server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database with the schema and three BTC days (so asset 1 exists)."""
    url = create_database(pg_server_url, "ta_lab2_cli")
    f = tmp_path_factory.mktemp("cli") / "coin_Bitcoin.csv"
    f.write_text(PERCOIN_HEAD + "".join(f"{i},Bitcoin,BTC,2021-01-0{i},12,9,10,11,100,1000\n" for i in (1, 2, 3)))
    done = run_cli(url, "load", str(f))
    assert done.returncode == 0, done.stderr
    yield url
    drop_database(pg_server_url, url)


@pytest.fixture(scope="module")
def bad_request_results(small_db: str) -> dict[str, subprocess.CompletedProcess[str]]:
    """Every bad request, run as a subprocess (in parallel to keep the suite quick)."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {case: pool.submit(run_cli, small_db, *argv) for case, argv, _ in BAD_REQUESTS}
        return {case: f.result() for case, f in futures.items()}


@pytest.mark.parametrize(("case", "argv", "fragment"), BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS])
def test_a_bad_request_exits_2_with_one_line(bad_request_results: dict[str, subprocess.CompletedProcess[str]],
                                             case: str, argv: list[str], fragment: str) -> None:
    done = bad_request_results[case]
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, (argv, done.returncode, done.stderr[-2000:])
    assert len(lines) == 1, (argv, done.stderr[-2000:])
    assert lines[0].startswith("error: ") and fragment in lines[0], lines[0]
    assert done.stdout == "", done.stdout


def test_refused_requests_wrote_nothing(bad_request_results: dict[str, Any], small_db: str) -> None:
    assert len(bad_request_results) == len(BAD_REQUESTS)
    assert query(small_db, "SELECT count(*) FROM refresh_run_assets") == [(0,)]
    assert query(small_db, "SELECT count(*) FROM cmc_price_bars_1d") == [(0,)]
    assert query(small_db, "SELECT count(*), min(id) FROM cmc_price_histories7") == [(3, 1)]  # only the fixture's
    assert query(small_db, "SELECT count(*) FROM validation_results") == [(0,)]


def test_a_good_request_exits_0_through_the_same_entry_point(pg_server_url: str, tmp_path: Path) -> None:
    url = create_database(pg_server_url, "ta_lab2_cli_ok")
    try:
        f = tmp_path / "coin_Bitcoin.csv"
        f.write_text(PERCOIN_HEAD + "".join(f"{i},Bitcoin,BTC,2021-01-0{i},12,9,10,11,100,1000\n" for i in (1, 2, 3)))
        assert run_cli(url, "load", str(f)).returncode == 0
        done = run_cli(url, "refresh", "--targets", "bars", "--builders", "1d", "--ids", "1",
                       "--as-of", "2021-01-03", "--run-id", "ok-run")
        assert done.returncode == 0, done.stderr[-2000:]
        assert "bars.1d" in done.stdout
        assert query(url, "SELECT count(*) FROM cmc_price_bars_1d") == [(2,)]  # 01-03 is not before the as-of
        assert query(url, "SELECT status FROM refresh_run_assets WHERE run_id = 'ok-run'") == [("ok",)]
    finally:
        drop_database(pg_server_url, url)


# ---------------------------------------------------------------------------------------------
# --as-of


def test_as_of_is_an_exclusive_cutoff_on_the_source_timestamp(fresh_db_url: str, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from ta_lab2.cli import main

    monkeypatch.setenv("TA_LAB2_DB_URL", fresh_db_url)
    f = tmp_path / "coin_XRP.csv"
    f.write_text(PERCOIN_HEAD + "".join(f"{i},XRP,XRP,2020-01-{i:02d},1.2,0.9,1,1.1,10,100\n" for i in range(1, 31)))
    assert main(["load", str(f)]) == 0

    def visible() -> tuple[int, Any, Any]:
        return query(fresh_db_url, """
            SELECT (SELECT count(*) FROM cmc_price_bars_1d WHERE id = 52),
                   (SELECT max("timestamp") FROM cmc_price_bars_multi_tf WHERE id = 52),
                   (SELECT max(ts) FROM cmc_ema_multi_tf_v2 WHERE id = 52)""")[0]

    # a cutoff exactly at a row's timestamp excludes that row ...
    opts = ["--periods", "6", "--tfs", "2D"]  # v2 2D p=6 seeds on day 12
    assert main(["refresh", "--all", "--ids", "52", "--as-of", "2020-01-20T23:59:59.999Z", *opts]) == 0
    n, bar_max, ema_max = visible()
    last = datetime(2020, 1, 19, 23, 59, 59, 999000, tzinfo=UTC)
    assert (n, bar_max, ema_max) == (19, last, last)
    state = query(fresh_db_url, "SELECT last_src_ts FROM cmc_price_bars_1d_state WHERE id = 52")
    assert state == [(last,)]
    # ... one microsecond later it is visible; a bare date means midnight UTC
    assert main(["refresh", "--all", "--ids", "52", "--as-of", "2020-01-20T23:59:59.999001+00:00", *opts]) == 0
    assert visible()[0] == 20
    assert main(["refresh", "--all", "--ids", "52", "--as-of", "2020-01-25", *opts]) == 0
    n, bar_max, ema_max = visible()
    last = datetime(2020, 1, 24, 23, 59, 59, 999000, tzinfo=UTC)
    assert (n, bar_max, ema_max) == (24, last, last)
    capsys.readouterr()


# ---------------------------------------------------------------------------------------------
# Repairs and rejects: counted, reasoned, nothing lost


def _export_line(day: int, open_: float, close: float, high_at: str | None = None, low_at: str | None = None,
                 low: float | None = None) -> str:
    d = f"2024-01-{day:02d}"
    t_open, t_close = f"{d}T00:00:00.000Z", f"{d}T23:59:59.999Z"
    high_at = high_at or f"{d}T10:00:00.000Z"
    low_at = low_at or f"{d}T04:00:00.000Z"
    hi, lo = max(open_, close) + 1, min(open_, close) - 1 if low is None else low
    return f"{t_open};{t_close};{high_at};{low_at};Testcoin;{open_};{hi};{lo};{close};1000;50000;{t_close}\n"


def test_a_bad_time_is_repaired_and_counted_a_negative_close_rejected_and_nothing_disappears(
        fresh_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from ta_lab2.cli import main

    monkeypatch.setenv("TA_LAB2_DB_URL", fresh_db_url)
    f = tmp_path / "testcoin_export.csv"
    f.write_text(EXPORT_HEAD
                 + _export_line(1, 10, 11)
                 + _export_line(2, 11, 12, high_at="2023-12-29T12:00:00.000Z")  # timehigh 3 days before its day
                 + _export_line(3, 12, 11)
                 + _export_line(4, 11, -5, low=10.5)  # negative close (the rest of the row is fine)
                 + _export_line(5, 11, 10, low_at="2024-01-07T01:00:00.000Z")  # timelow after its day
                 + _export_line(6, 10, 12))
    assert main(["load", "--id", "9001", str(f)]) == 0
    assert "inserted 6, updated 0, unchanged 0, rejected 0" in capsys.readouterr().out
    assert main(["refresh", "--targets", "bars", "--ids", "9001", "--as-of", "2024-02-01", "--run-id", "r1"]) == 0
    out = capsys.readouterr().out
    assert "repairs 2; rejects 1" in out, out

    state = query(fresh_db_url, "SELECT last_upserted, last_repaired_timehigh, last_repaired_timelow, last_rejected "
                                "FROM cmc_price_bars_1d_state WHERE id = 9001")
    assert state == [(5, 1, 1, 1)]
    audit = query(fresh_db_url, "SELECT status, rows_written, repairs, rejects FROM refresh_run_assets "
                                "WHERE run_id = 'r1' AND asset_id = 9001 AND component = 'bars.1d'")
    assert audit == [("ok", 5, 2, 1)]
    rejects = query(fresh_db_url, "SELECT \"timestamp\", reason, raw->>'close' FROM cmc_price_bars_1d_rejects "
                                  "WHERE id = 9001")
    assert rejects == [(datetime(2024, 1, 4, 23, 59, 59, 999000, tzinfo=UTC), "close<=0", "-5.0")]
    bars = query(fresh_db_url, """SELECT extract(day FROM time_open AT TIME ZONE 'UTC')::int, bar_seq, time_high,
                                         time_close, time_low, time_open, high, low, count_missing_days
                                  FROM cmc_price_bars_1d WHERE id = 9001 ORDER BY "timestamp" """)
    assert [(b[0], b[1]) for b in bars] == [(1, 1), (2, 2), (3, 3), (5, 4), (6, 5)]  # rejected day: no number
    day2, day5 = bars[1], bars[3]
    assert day2[2] == day2[3] and day2[6] == 12  # close >= open: time_high -> close time, high -> max(open, close)
    assert day5[4] == day5[3] and day5[7] == 10  # close <= open: time_low -> close time, low -> min(open, close)
    assert day5[8] == 1  # the rejected day is a gap in the 1d series
    counts = query(fresh_db_url, """SELECT (SELECT count(*) FROM cmc_price_histories7 WHERE id = 9001),
                                           (SELECT count(*) FROM cmc_price_bars_1d WHERE id = 9001),
                                           (SELECT count(*) FROM cmc_price_bars_1d_rejects WHERE id = 9001)""")
    assert counts == [(6, 5, 1)]

    # Counters are per run and true: a rerun with nothing new repairs and rejects nothing again.
    assert main(["refresh", "--targets", "bars", "--ids", "9001", "--as-of", "2024-02-02", "--run-id", "r2"]) == 0
    capsys.readouterr()
    state = query(fresh_db_url, "SELECT last_upserted, last_repaired_timehigh, last_repaired_timelow, last_rejected "
                                "FROM cmc_price_bars_1d_state WHERE id = 9001")
    assert state == [(0, 0, 0, 0)]
    assert query(fresh_db_url, "SELECT count(*) FROM cmc_price_bars_1d_rejects WHERE id = 9001") == [(1,)]
