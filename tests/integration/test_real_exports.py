"""Real-format CoinMarketCap exports through ``load`` and ``assets`` against real Postgres
(the acceptance cases of issue 11, part 1 and 2)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ta_lab2.cli import main
from ta_lab2.refresh.plan import resolve_ids
from ta_lab2.store import db

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "cmc"
SOLANA = "Solana_11_1_2025-3_27_2026_historical_data_coinmarketcap.csv"


@pytest.fixture
def cli_db(fresh_db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("TA_LAB2_DB_URL", fresh_db_url)
    return fresh_db_url


def _q(url: str, stmt: str) -> list[tuple]:
    with db.connect(url) as conn:
        return conn.execute(stmt).fetchall()


def test_the_solana_export_loads_without_an_id_with_its_circulating_supply(
        cli_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["load", str(FIXTURES / SOLANA)]) == 0
    assert f"{SOLANA}: inserted 147, updated 0, unchanged 0, rejected 0" in capsys.readouterr().out
    rows = _q(cli_db, 'SELECT id, name, count(*), count(circulating_supply), min("timestamp")::date::text, '
                      'max("timestamp")::date::text FROM cmc_price_histories7 GROUP BY id, name')
    assert rows == [(5426, "Solana", 147, 147, "2025-11-01", "2026-03-27")]
    assert _q(cli_db, "SELECT circulating_supply FROM cmc_price_histories7 WHERE \"timestamp\"::date = '2026-03-27'") \
        == [(46171815757.28,)]
    assert main(["load", str(FIXTURES / SOLANA)]) == 0  # idempotent
    assert "inserted 0, updated 0, unchanged 147, rejected 0" in capsys.readouterr().out


def test_an_unknown_coin_is_refused_in_one_line_and_loads_after_assets_import(
        cli_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pepe = tmp_path / SOLANA.replace("Solana", "Pepe")
    shutil.copy(FIXTURES / SOLANA, pepe)
    assert main(["load", str(pepe)]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: {pepe}: unknown asset (file name 'Pepe', name '2781'): pass --id N, or register it "
                   "with `python -m ta_lab2 assets import MAP.json|CSV` (CoinMarketCap /v1/cryptocurrency/map)\n")
    assert _q(cli_db, "SELECT count(*) FROM cmc_price_histories7") == [(0,)]
    cmc_map = tmp_path / "map.json"
    cmc_map.write_text(json.dumps({"status": {"error_code": 0}, "data": [
        {"id": 24478, "rank": 30, "name": "Pepe", "symbol": "PEPE", "slug": "pepe", "is_active": 1,
         "first_historical_data": "2023-04-17T00:00:00.000Z", "platform": None},
        {"id": 5426, "name": "Solana", "symbol": "SOL", "slug": "solana", "is_active": 1}]}))
    assert main(["assets", "import", str(cmc_map)]) == 0
    assert "map.json: 1 assets added, 1 updated" in capsys.readouterr().out
    assert main(["load", str(pepe)]) == 0
    assert _q(cli_db, "SELECT id, count(*) FROM cmc_price_histories7 GROUP BY id") == [(24478, 147)]


def test_a_multi_word_coin_resolves_by_its_file_name(cli_db: str) -> None:
    assert main(["load", str(FIXTURES / "Shiba Inu_1_1_2026-1_31_2026_historical_data_coinmarketcap.csv")]) == 0
    assert _q(cli_db, "SELECT id, count(*) FROM cmc_price_histories7 GROUP BY id") == [(5994, 31)]


def test_seeded_coins_without_data_are_not_refreshed_by_ids_all(cli_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["load", str(FIXTURES / "Bitcoin_1_28_2021-2_27_2021_historical_data_coinmarketcap.csv")]) == 0
    with db.connect(cli_db) as conn:
        assert resolve_ids(conn, None) == [1]
        assert resolve_ids(conn, [5426]) == [5426]  # an explicit id may still be asked for
    capsys.readouterr()
    assert main(["assets", "list"]) == 0
    out = capsys.readouterr().out
    assert "15 assets; 1 active with data (refreshed by ids=all)" in out
    assert any(line.split()[:3] == ["1", "BTC", "Bitcoin"] and "2021-02-27" in line for line in out.splitlines())


def test_an_assets_csv_registers_and_a_bad_map_is_one_line(cli_db: str, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "assets.csv"
    f.write_text("id,symbol,name,slug\n24478,PEPE,Pepe,pepe\n")
    assert main(["assets", "import", str(f)]) == 0
    assert _q(cli_db, "SELECT id, symbol, name, slug, is_active, first_seen FROM dim_assets WHERE id = 24478") \
        == [(24478, "PEPE", "Pepe", "pepe", True, None)]
    g = tmp_path / "bad.json"
    g.write_text('{"data": [{"id": "x"}]}')
    assert main(["assets", "import", str(g)]) == 2
    assert capsys.readouterr().err.count("\n") == 1
