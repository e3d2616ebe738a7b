"""Loader against real Postgres: idempotent upsert, reported bad lines, real CMC files."""

from __future__ import annotations

from pathlib import Path

import pytest

from ta_lab2.cli import main
from ta_lab2.store import db

REAL = {"coin_Bitcoin.csv": (1, 2862), "coin_Ethereum.csv": (1027, 2031), "coin_Tether.csv": (825, 2189),
        "coin_XRP.csv": (52, 2893)}


@pytest.fixture
def cli_db(fresh_db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("TA_LAB2_DB_URL", fresh_db_url)
    return fresh_db_url


def _source(url: str) -> list[tuple]:
    with db.connect(url) as conn:
        return conn.execute("SELECT * FROM cmc_price_histories7 ORDER BY id, \"timestamp\"").fetchall()


def test_loading_the_real_files_twice_changes_nothing_the_second_time(
        cli_db: str, shared_cmc_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = [str(shared_cmc_dir / f) for f in REAL]
    assert main(["load", *files]) == 0
    first = _source(cli_db)
    assert main(["load", *files]) == 0
    out = capsys.readouterr().out
    assert "total: inserted 0, updated 0, unchanged 9975, rejected 0" in out
    assert _source(cli_db) == first  # load_ts included: nothing was touched
    with db.connect(cli_db) as conn:
        counts = dict(conn.execute("SELECT id, count(*) FROM cmc_price_histories7 GROUP BY id").fetchall())
        assets = conn.execute("SELECT id, symbol FROM dim_assets ORDER BY id").fetchall()
    assert counts == {i: n for i, n in REAL.values()}
    assert assets == [(1, "BTC"), (52, "XRP"), (825, "USDT"), (1027, "ETH")]


def test_a_broken_line_is_reported_with_file_and_line_and_the_rest_loads(
        cli_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "coin_Bitcoin.csv"
    f.write_text("SNo,Name,Symbol,Date,High,Low,Open,Close,Volume,Marketcap\n"
                 "1,Bitcoin,BTC,2013-04-29,147.48,134,134.44,144.54,0,1603768865\n"
                 "2,Bitcoin,BTC,2013-04-30,146.9,oops,144,139,0,1542813125\n"
                 "3,Bitcoin,BTC,2013-05-01,139.8,107.7\n"
                 "4,Bitcoin,BTC,2013-05-02,125.6,92.3,116.4,-105.2,0,1168517495\n")
    assert main(["load", str(f)]) == 0
    out, err = capsys.readouterr()
    assert "coin_Bitcoin.csv:3: column Low: 'oops' is not a number" in err
    assert "coin_Bitcoin.csv:4: expected 10 fields, found 6" in err
    assert "inserted 2, updated 0, unchanged 0, rejected 2 (of 4 lines read)" in out
    with db.connect(cli_db) as conn:
        rej = conn.execute("SELECT line_no, reason FROM cmc_load_rejects ORDER BY line_no").fetchall()
        closes = [r[0] for r in conn.execute('SELECT close FROM cmc_price_histories7 ORDER BY "timestamp"')]
    assert [r[0] for r in rej] == [3, 4]
    assert closes == [144.54, -105.2]  # the negative close is raw data: the 1d builder rejects it


def test_a_revised_value_is_updated_and_restamped(cli_db: str, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """A changed value replaces the stored one and moves ``load_ts`` (the 1d builder's signal
    for a revision behind its lookback); an identical reload leaves ``load_ts`` alone."""
    head = "SNo,Name,Symbol,Date,High,Low,Open,Close,Volume,Marketcap\n"
    f = tmp_path / "x.csv"
    f.write_text(head + "1,XRP,XRP,2020-01-01,2,1,1.5,1.6,10,100\n2,XRP,XRP,2020-01-02,2,1,1.5,1.6,10,100\n")

    def stored() -> dict[str, tuple[float, object]]:
        with db.connect(cli_db) as conn:
            rows = conn.execute('SELECT "timestamp"::date::text, close, load_ts FROM cmc_price_histories7').fetchall()
        return {r[0]: (r[1], r[2]) for r in rows}

    assert main(["load", str(f)]) == 0
    before = stored()
    f.write_text(head + "1,XRP,XRP,2020-01-01,2,1,1.5,1.7,10,100\n2,XRP,XRP,2020-01-02,2,1,1.5,1.6,10,100\n")
    assert main(["load", str(f)]) == 0
    assert "inserted 0, updated 1, unchanged 1, rejected 0" in capsys.readouterr().out
    after = stored()
    assert after["2020-01-01"][0] == 1.7  # updated
    assert after["2020-01-01"][1] > before["2020-01-01"][1]  # restamped
    assert after["2020-01-02"] == before["2020-01-02"]  # untouched: same value, same load_ts


def test_unknown_symbol_and_bad_header_are_clear_errors(cli_db: str, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "doge.csv"
    f.write_text("SNo,Name,Symbol,Date,High,Low,Open,Close,Volume,Marketcap\n"
                 "1,Dogecoin,DOGE,2020-01-01,2,1,1.5,1.6,10,100\n")
    main(["load", str(f)])
    assert "unknown asset (symbol 'DOGE', name 'Dogecoin'): pass --id N" in capsys.readouterr().err
    assert main(["load", "--id", "74", str(f)]) == 0
    g = tmp_path / "bad.csv"
    g.write_text("a,b,c\n1,2,3\n")
    assert main(["load", str(g)]) == 2
    assert "unrecognised header" in capsys.readouterr().err
    assert main(["load", str(tmp_path / "missing.csv")]) == 2
