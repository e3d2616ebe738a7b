"""``python -m ta_lab2 ingest``: the inbox (load once by checksum) and the CoinMarketCap API
(the fake server of tests/support/fake_cmc.py) against real Postgres."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from ta_lab2.cli import main
from ta_lab2.store import db
from tests.support.fake_cmc import FakeCmc

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "cmc"
SOLANA = "Solana_11_1_2025-3_27_2026_historical_data_coinmarketcap.csv"
SHIBA = "Shiba Inu_1_1_2026-1_31_2026_historical_data_coinmarketcap.csv"
AS_OF = "2026-03-29T06:00:00Z"  # last closed day: 2026-03-28


@pytest.fixture
def env(fresh_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TA_LAB2_DB_URL", fresh_db_url)
    monkeypatch.delenv("CMC_API_KEY", raising=False)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    monkeypatch.setenv("TA_LAB2_INBOX", str(inbox))
    return inbox


@pytest.fixture
def cmc(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeCmc]:
    with FakeCmc(keys={"good-key"}, latest=date(2026, 3, 29)) as fake:
        monkeypatch.setenv("CMC_API_KEY", "good-key")
        monkeypatch.setenv("CMC_API_BASE_URL", fake.url)
        yield fake


def _q(stmt: str, *params: object) -> list[tuple]:
    import os

    with db.connect(os.environ["TA_LAB2_DB_URL"]) as conn:
        return conn.execute(stmt, params).fetchall()


def _ingest(capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    code = main(["ingest", "--as-of", AS_OF, *extra])
    return code, capsys.readouterr().out


def test_inbox_files_load_once_renames_are_no_ops_and_changes_reload(env: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copy(FIXTURES / SOLANA, env / SOLANA)
    code, out = _ingest(capsys)
    assert code == 0
    assert ("ingest: files loaded 1 (changed 0, unchanged 0, refused 0); API days fetched 0 for 0 assets; rows "
            "inserted 147, updated 0, rejected 0") in out
    assert _q("SELECT file_name, asset_id, rows_inserted FROM source_files") == [(SOLANA, 5426, 147)]
    # again, and the same content under another name in a sub-folder: nothing to do
    (env / "old").mkdir()
    shutil.copy(FIXTURES / SOLANA, env / "old" / "solana-copy_historical_data_coinmarketcap.csv")
    code, out = _ingest(capsys)
    assert "files loaded 0 (changed 0, unchanged 2, refused 0)" in out and "rows inserted 0, updated 0" in out
    # a changed file (CMC revised one close) is reloaded and reported
    text = (env / SOLANA).read_text()
    (env / SOLANA).write_text(text.replace('"0.66540248";"1938959239"', '"0.66540300";"1938959239"', 1))
    code, out = _ingest(capsys)
    assert "files loaded 1 (changed 1, unchanged 1, refused 0)" in out and "updated 1" in out
    assert f"ingest: changed file reloaded: {SOLANA}" in out
    assert _q("SELECT close FROM cmc_price_histories7 WHERE \"timestamp\"::date = '2026-03-27'") == [(0.665403,)]
    assert sorted(p.name for p in env.rglob("*.csv")) == sorted([SOLANA, "solana-copy_historical_data_coinmarketcap.csv"])


def test_an_unknown_coin_in_the_inbox_is_refused_in_one_line_and_loads_after_assets_import(
        env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pepe = SOLANA.replace("Solana", "Pepe")
    shutil.copy(FIXTURES / SOLANA, env / pepe)
    code, out = _ingest(capsys)
    assert code == 1  # not clean: the operator has something to fix
    assert (f"ingest: refused {pepe}: unknown asset (file name 'Pepe', name '2781'): pass --id N, or register "
            "it with `python -m ta_lab2 assets import MAP.json|CSV`") in out
    assert _q("SELECT count(*) FROM cmc_price_histories7") == [(0,)]
    assert _q("SELECT count(*) FROM source_files") == [(0,)]
    (tmp_path / "map.json").write_text(json.dumps({"data": [{"id": 24478, "name": "Pepe", "symbol": "PEPE",
                                                             "slug": "pepe", "is_active": 1}]}))
    assert main(["assets", "import", str(tmp_path / "map.json")]) == 0
    code, out = _ingest(capsys)
    assert code == 0 and "files loaded 1 (changed 0, unchanged 0, refused 0)" in out
    assert _q("SELECT id, count(*) FROM cmc_price_histories7 GROUP BY id") == [(24478, 147)]


def test_the_api_fetches_exactly_the_missing_days_of_every_active_asset(
        env: Path, cmc: FakeCmc, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copy(FIXTURES / SOLANA, env / SOLANA)  # ends 2026-03-27
    shutil.copy(FIXTURES / SHIBA, env)  # ends 2026-01-31
    code, out = _ingest(capsys)
    assert code == 0, out
    # Solana misses the 28th; Shiba Inu 2026-02-01 .. 2026-03-28 (56 days); seeded coins without data: nothing
    assert "API days fetched 57 for 2 assets" in out
    assert sorted((r.ids, r.params["time_start"], r.params["time_end"]) for r in cmc.requests) == [
        ([5426], "2026-03-27", "2026-03-28"), ([5994], "2026-01-31", "2026-03-28")]
    rows = dict(_q('SELECT id, max("timestamp")::date FROM cmc_price_histories7 GROUP BY id'))
    assert rows == {5426: date(2026, 3, 28), 5994: date(2026, 3, 28)}
    assert _q("SELECT count(*) FROM cmc_price_histories7 WHERE id = 5994") == [(31 + 56,)]
    api_row = _q("SELECT open, close, timehigh::text FROM cmc_price_histories7 WHERE id = 5426 AND "
                 "\"timestamp\"::date = '2026-03-28'")
    usd = cmc.candle(5426, date(2026, 3, 28))["quote"]["USD"]
    assert api_row == [(usd["open"], usd["close"], "2026-03-28 15:00:00+00")]
    cmc.requests.clear()
    code, out = _ingest(capsys)  # nothing missing any more
    assert "API days fetched 0 for 0 assets" in out and cmc.requests == []


def test_a_partial_answer_loads_what_came_and_reports_the_rest(
        env: Path, cmc: FakeCmc, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copy(FIXTURES / SOLANA, env / SOLANA)
    cardano = (FIXTURES / SOLANA).read_text().replace('"0.66540248"', '"0.66540249"', 1)  # not the same bytes
    (env / SOLANA.replace("Solana", "Cardano")).write_text(cardano)  # 2010, same last day
    assert main(["ingest", "--as-of", "2026-03-26T06:00:00Z"]) == 0  # files only: nothing missing yet
    cmc.omit.add(2010)
    cmc.malformed.add((5426, date(2026, 3, 28)))
    code, out = _ingest(capsys)
    assert code == 0, out  # an id absent from the answer is a note, not an error
    assert "ingest: API: no quotes for id 2010 (2026-03-28..2026-03-28)" in out
    assert "rows inserted 0, updated 0, rejected 1" in out
    assert [r.ids for r in cmc.requests] == [[2010, 5426]]  # one batched request
    assert _q("SELECT reason FROM cmc_load_rejects WHERE source_file LIKE %s", "cmc_api:%") == [
        ("quote 1: KeyError: 'quote'",)]


def test_a_wrong_key_is_one_clear_line_and_exit_1(env: Path, cmc: FakeCmc, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copy(FIXTURES / SOLANA, env / SOLANA)
    monkeypatch.setenv("CMC_API_KEY", "expired")
    assert main(["ingest", "--as-of", AS_OF]) == 1
    err = capsys.readouterr().err
    assert err == ("error: CoinMarketCap API refused the key (HTTP 401: This API Key is invalid.): set the password "
                   "of Airflow connection 'cmc_api' or CMC_API_KEY\n")
    assert len(cmc.requests) == 1
    assert _q("SELECT count(*) FROM source_files") == [(1,)]  # the inbox part stays loaded


def test_nothing_configured_is_a_logged_no_op(fresh_db_url: str, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TA_LAB2_DB_URL", fresh_db_url)
    for var in ("TA_LAB2_INBOX", "CMC_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    assert main(["ingest"]) == 0
    assert "ingest: nothing configured (no TA_LAB2_INBOX, no cmc_api / CMC_API_KEY)" in capsys.readouterr().out


def test_a_dry_run_says_what_it_would_do_and_writes_nothing(env: Path, cmc: FakeCmc,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copy(FIXTURES / SHIBA, env)
    assert main(["load", str(FIXTURES / SOLANA)]) == 0
    before = _q("SELECT count(*), max(load_ts) FROM cmc_price_histories7")
    code, out = _ingest(capsys, "--dry-run")
    assert code == 0
    assert "ingest (DRY RUN): files loaded 1" in out
    assert "ingest: API would fetch 2026-03-28..2026-03-28 for ids [5426]" in out
    assert cmc.requests == []
    assert _q("SELECT count(*), max(load_ts) FROM cmc_price_histories7") == before
    assert _q("SELECT count(*) FROM source_files") == [(0,)]


def test_with_ids_only_their_files_load_and_the_others_wait(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copy(FIXTURES / SOLANA, env / SOLANA)
    shutil.copy(FIXTURES / SHIBA, env / SHIBA)
    code, out = _ingest(capsys, "--ids", "5426")
    assert code == 0 and "files loaded 1 (" in out
    assert f"ingest: left for a run with its asset in ids: {SHIBA}" in out
    assert _q("SELECT DISTINCT id FROM cmc_price_histories7") == [(5426,)]
    code, out = _ingest(capsys)
    assert "files loaded 1 (changed 0, unchanged 1, refused 0)" in out
    assert sorted(_q("SELECT DISTINCT id FROM cmc_price_histories7")) == [(5426,), (5994,)]


def test_inbox_and_api_land_through_the_load_path_rejects_duplicates_and_audit(
        env: Path, cmc: FakeCmc, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
    """An inbox file's bad line and second line for a day are rejects with their line numbers
    (duplicates found in SQL), the API's malformed quote too; every file and API answer has
    its balanced cmc_load_audit row under the run's load id."""
    lines = (FIXTURES / SOLANA).read_text().splitlines()
    (env / SOLANA).write_text("\n".join([*lines[:3], '"2026-03-25";"broken"', lines[2].replace('"0.6', '"0.7', 1),
                                         *lines[3:]]) + "\n")
    cmc.malformed.add((5426, date(2026, 3, 28)))
    with caplog.at_level("WARNING", logger="ta_lab2.ingest"):
        code, out = _ingest(capsys)
    assert code == 0, out
    assert "rows inserted 147, updated 0, rejected 3" in out
    assert _q("SELECT source_file, line_no, split_part(reason, ' (', 1) FROM cmc_load_rejects ORDER BY 1, 2") == [
        (SOLANA, 4, "expected 13 fields, found 2"),
        (SOLANA, 5, "duplicate timestamp 2026-03-26 23:59:59.999+00:00"),
        ("cmc_api:/v2/cryptocurrency/ohlcv/historical?id=5426&time_start=2026-03-28&time_end=2026-03-28", 1,
         "quote 1: KeyError: 'quote'")]
    audit = _q("SELECT load_id, source_file, lines_read, inserted, unchanged, rejected, refused FROM cmc_load_audit "
               "ORDER BY source_file")
    assert {a[0] for a in audit} == {next(iter({a[0] for a in audit}))} and audit[0][0].startswith("ingest__")
    assert [a[1:] for a in audit] == [
        (SOLANA, 149, 147, 0, 2, None),
        ("cmc_api:/v2/cryptocurrency/ohlcv/historical?id=5426&time_start=2026-03-28&time_end=2026-03-28",
         1, 0, 0, 1, None)]
    assert f"rejected {SOLANA}:4: expected 13 fields, found 2" in caplog.text
