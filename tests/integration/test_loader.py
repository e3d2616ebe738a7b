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
        assets = conn.execute("SELECT id, symbol FROM dim_assets WHERE first_seen IS NOT NULL ORDER BY id").fetchall()
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


def test_unknown_coin_is_refused_whole_and_bad_header_is_a_clear_error(
        cli_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "pepe.csv"
    f.write_text("SNo,Name,Symbol,Date,High,Low,Open,Close,Volume,Marketcap\n"
                 "1,Pepe,PEPE,2020-01-01,2,1,1.5,1.6,10,100\n"
                 "2,Pepe,PEPE,2020-01-02,2,1,1.5,1.6,10,100\n")
    assert main(["load", str(f)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "unknown asset (name 'Pepe', symbol 'PEPE'): pass --id N, or register it with" in err
    assert _source(cli_db) == []  # nothing of the refused file is loaded
    assert main(["load", "--id", "24478", str(f)]) == 0
    assert {r[0] for r in _source(cli_db)} == {24478}
    g = tmp_path / "bad.csv"
    g.write_text("a,b,c\n1,2,3\n")
    assert main(["load", str(g)]) == 2
    assert "unrecognised header" in capsys.readouterr().err
    assert main(["load", str(tmp_path / "missing.csv")]) == 2


def test_a_seeded_coin_of_the_per_coin_layout_needs_no_id(cli_db: str, tmp_path: Path) -> None:
    f = tmp_path / "coin_Dogecoin.csv"
    f.write_text("SNo,Name,Symbol,Date,High,Low,Open,Close,Volume,Marketcap\n"
                 "1,Dogecoin,DOGE,2020-01-01,2,1,1.5,1.6,10,100\n")
    assert main(["load", str(f)]) == 0
    assert [(r[0], r[1]) for r in _source(cli_db)] == [(74, "Dogecoin")]


def test_binary_garbage_lines_are_stored_as_rejects(cli_db: str, tmp_path: Path) -> None:
    f = tmp_path / "coin_Bitcoin.csv"
    f.write_bytes(b"SNo,Name,Symbol,Date,High,Low,Open,Close,Volume,Marketcap\n"
                  b"1,Bitcoin,BTC,2013-04-29,147.48,134,134.44,144.54,0,1603768865\n"
                  b"2,Bitcoin,BTC,2013-04-30,146.9,\xff\x00,144,139,0,1542813125\n"
                  b"3,Bitcoin,BTC,2013-05-01,1\x0047,1,2,3,0,5\n")
    assert main(["load", str(f)]) == 0
    with db.connect(cli_db) as conn:
        rej = conn.execute("SELECT line_no, reason, raw_line FROM cmc_load_rejects ORDER BY line_no").fetchall()
    assert [(r[0], r[1]) for r in rej] == [(3, "line is not valid UTF-8"),
                                           (4, "column High: '1\\x0047' is not a number")]
    assert rej[0][2] == "2,Bitcoin,BTC,2013-04-30,146.9,\\xff\\x00,144,139,0,1542813125"


def test_a_duplicate_day_in_a_later_chunk_is_rejected_and_the_first_kept(
        cli_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Duplicates are resolved where the file is staged (SQL), across the chunks of a stream."""
    import ta_lab2.loader

    monkeypatch.setattr(ta_lab2.loader, "CHUNK_ROWS", 2)
    head = "SNo,Name,Symbol,Date,High,Low,Open,Close,Volume,Marketcap\n"
    f = tmp_path / "coin_XRP.csv"
    f.write_text(head + "".join(f"{d},XRP,XRP,2020-01-0{d},2,1,1.5,1.6,10,100\n" for d in range(1, 6))
                 + "6,XRP,XRP,2020-01-02,2,1,1.5,9.9,10,100\n")
    assert main(["load", str(f)]) == 0
    out, err = capsys.readouterr()
    assert "coin_XRP.csv: inserted 5, updated 0, unchanged 0, rejected 1 (of 6 lines read)" in out
    assert err == ("rejected coin_XRP.csv:7: duplicate timestamp 2020-01-02 23:59:59.999+00:00 "
                   "(first seen on line 3; kept)\n")
    with db.connect(cli_db) as conn:
        assert conn.execute("SELECT close FROM cmc_price_histories7 WHERE \"timestamp\"::date = '2020-01-02'"
                            ).fetchall() == [(1.6,)]
        assert conn.execute("SELECT lines_read, inserted, rejected FROM cmc_load_audit").fetchall() == [(6, 5, 1)]


def test_a_coin_unknown_after_bad_lines_is_refused_whole_with_every_line_accounted(
        cli_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The asset comes from the first good line; when that is unknown after earlier chunks
    were staged, nothing of the file loads and every line is a reject (audit balanced)."""
    import ta_lab2.loader

    monkeypatch.setattr(ta_lab2.loader, "CHUNK_ROWS", 2)
    f = tmp_path / "pepe.csv"
    f.write_text("SNo,Name,Symbol,Date,High,Low,Open,Close,Volume,Marketcap\n"
                 "1,Pepe,PEPE,2020-01-01,2,oops,1.5,1.6,10,100\n2,Pepe,PEPE,2020-01-02,2\n"
                 "3,Pepe,PEPE,2020-01-03,2,1,1.5,1.6,10,100\n4,Pepe,PEPE,2020-01-04,2,1,1.5,1.6,10,100\n")
    assert main(["load", str(f)]) == 2
    out, err = capsys.readouterr()
    assert err.splitlines()[-1].startswith(f"error: {f}: unknown asset (name 'Pepe', symbol 'PEPE')")
    assert "pepe.csv: inserted 0, updated 0, unchanged 0, rejected 4 (of 4 lines read)" in out
    assert _source(cli_db) == []
    with db.connect(cli_db) as conn:
        rej = conn.execute("SELECT line_no, reason FROM cmc_load_rejects ORDER BY line_no").fetchall()
        audit = conn.execute("SELECT lines_read, rejected, refused FROM cmc_load_audit").fetchall()
    assert [(n, r.split(" (")[0]) for n, r in rej] == [
        (2, "column Low: 'oops' is not a number"), (3, "expected 10 fields, found 5"),
        (4, "file not loaded: unknown asset"), (5, "file not loaded: unknown asset")]
    assert audit == [(4, 4, rej[-1][1].removeprefix("file not loaded: "))]
