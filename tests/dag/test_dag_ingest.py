"""Ingest as the DAG's first step, through ``dag.test()`` against real Postgres, a ``file://``
inbox (``airflow.sdk.ObjectStoragePath``) and the fake CoinMarketCap API via the Airflow
connection ``cmc_api``: files dropped before a run are refreshed in that run (bars and EMAs),
re-dropped files are no-ops, changed files are reloaded, and the API fills exactly the
missing days of every active asset."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ta_lab2.store import db
from tests.support.fake_cmc import FakeCmc

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "cmc"
SOLANA = "Solana_11_1_2025-3_27_2026_historical_data_coinmarketcap.csv"  # 2025-11-01 .. 2026-03-27
SHIBA = "Shiba Inu_1_1_2026-1_31_2026_historical_data_coinmarketcap.csv"  # 2026-01-01 .. 2026-01-31
SOL, SHIB = 5426, 5994


@pytest.fixture(scope="module")
def setup(pg_server_url: str, airflow_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from tests.conftest import create_database, drop_database

    url = create_database(pg_server_url, "ta_lab2_dagingest")  # empty: ingest applies the schema itself
    inbox = tmp_path_factory.mktemp("inbox")
    mp = pytest.MonkeyPatch()
    # price levels near the fixtures' last closes, so the fetched days continue the series
    with FakeCmc(keys={"dag-key"}, latest=date(2026, 3, 29), levels={SOL: 0.66, SHIB: 1.0}) as cmc:
        mp.setenv("AIRFLOW_CONN_TA_LAB2_DB", db.airflow_conn_uri(url))
        mp.setenv("AIRFLOW_CONN_CMC_API", json.dumps({"conn_type": "http", "host": cmc.url, "password": "dag-key"}))
        mp.setenv("TA_LAB2_INBOX", f"file://{inbox}")
        mp.delenv("CMC_API_KEY", raising=False)
        # dag.test() of a DAG with a DeadlineAlert crashes on Airflow 3.3.2 (see tests/dag/test_dag_run.py)
        mp.setenv("TA_LAB2_DEADLINE_HOURS", "off")
        yield url, inbox, cmc
    mp.undo()
    drop_database(pg_server_url, url)


def _run(at: datetime) -> tuple[str, str, dict[str, Any]]:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    dag = bag.get_dag("ta_lab2_daily_refresh")
    dr = dag.test(logical_date=at, run_conf={})
    with create_session() as session:
        row = session.query(XComModel).filter_by(run_id=dr.run_id, task_id="ingest", key="return_value").one()
    value = row.value if isinstance(row.value, dict) else json.loads(row.value)
    return dr.run_id, str(dr.state), value


def _q(url: str, stmt: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(stmt, params).fetchall()


def test_dropped_files_and_missing_api_days_are_refreshed_in_the_same_run_and_only_once(setup: Any) -> None:
    url, inbox, cmc = setup
    shutil.copy(FIXTURES / SOLANA, inbox / SOLANA)
    shutil.copy(FIXTURES / SHIBA, inbox / SHIBA)

    # run 1 (as-of 2026-03-28 06:00): both files load; the API fills Shiba Inu up to the 27th
    run1, state, ing = _run(datetime(2026, 3, 28, 6, tzinfo=UTC))
    assert state == "success"
    assert sorted(ing["files_loaded"]) == sorted([SOLANA, SHIBA]) and ing["files_changed"] == []
    assert ing["days_fetched"] == 55 and ing["api_assets"] == 1  # 2026-02-01 .. 2026-03-27
    assert [(r.ids, r.params["time_start"], r.params["time_end"]) for r in cmc.requests] == [
        ([SHIB], "2026-01-31", "2026-03-27")]
    bars = dict(_q(url, 'SELECT id, count(*) FROM cmc_price_bars_1d GROUP BY id'))
    assert bars == {SOL: 147, SHIB: 31 + 55}  # seeded coins without data are not refreshed
    emas = dict(_q(url, "SELECT id, count(*) FROM cmc_ema_multi_tf GROUP BY id"))
    assert emas[SOL] > 0 and emas[SHIB] > 0
    (text,) = _q(url, "SELECT summary_text FROM refresh_runs WHERE run_id = %s", run1)[0]
    assert ("ingest: files loaded 2 (changed 0, unchanged 0, refused 0); API days fetched 55 for 1 assets; "
            "rows inserted 233, updated 0, rejected 0") in text

    # run 2 (as-of 2026-03-30 06:00): Solana re-dropped under another name (no-op), Shiba Inu revised
    # (reloaded and reported), the API fetches the 28th and 29th of both in one request
    shutil.copy(FIXTURES / SOLANA, inbox / "Solana (1)_historical_data_coinmarketcap.csv")
    lines = (FIXTURES / SHIBA).read_text().splitlines()
    newest = lines[1].split(";")  # the export is newest first: 2026-01-31
    assert newest[0] == '"2026-01-31T00:00:00.000Z"'
    newest[8] = '"1.0042"'  # CoinMarketCap revised that close
    (inbox / SHIBA).write_text("\n".join([lines[0], ";".join(newest), *lines[2:]]) + "\n")
    cmc.requests.clear()
    run2, state, ing = _run(datetime(2026, 3, 30, 6, tzinfo=UTC))
    assert state == "success"
    assert ing["files_loaded"] == [SHIBA] and ing["files_changed"] == [SHIBA] and ing["files_unchanged"] == 2
    assert ing["days_fetched"] == 4 and ing["updated"] == 1
    assert [(r.ids, r.params["time_start"], r.params["time_end"]) for r in cmc.requests] == [
        ([SOL, SHIB], "2026-03-27", "2026-03-29")]
    last = dict(_q(url, 'SELECT id, max("timestamp")::date FROM cmc_price_bars_1d GROUP BY id'))
    assert last == {SOL: date(2026, 3, 29), SHIB: date(2026, 3, 29)}
    assert _q(url, "SELECT close FROM cmc_price_bars_1d WHERE id = %s AND \"timestamp\"::date = '2026-01-31'",
              SHIB) == [(1.0042,)]
    (text,) = _q(url, "SELECT summary_text FROM refresh_runs WHERE run_id = %s", run2)[0]
    assert f"ingest: changed file reloaded: {SHIBA}" in text
    assert _q(url, "SELECT count(*) FROM source_files") == [(3,)]


def test_a_refused_key_fails_ingest_at_once_but_the_refresh_runs_and_the_summary_fails_the_run(
        setup: Any) -> None:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    url, inbox, cmc = setup
    loaded = _q(url, "SELECT to_regclass('dim_assets') IS NOT NULL")[0][0] and _q(
        url, "SELECT 1 FROM dim_assets WHERE first_seen IS NOT NULL")
    if not loaded:  # run alone: give it an asset first
        shutil.copy(FIXTURES / SOLANA, inbox / SOLANA)
        _run(datetime(2026, 3, 28, 6, tzinfo=UTC))
    cmc.keys.clear()  # the key was revoked
    cmc.requests.clear()
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(ROOT / "dags")).get_dag("ta_lab2_daily_refresh")
    dr = dag.test(logical_date=datetime(2026, 4, 2, 6, tzinfo=UTC), run_conf={"validate": False})
    with create_session() as session:
        states = {ti.task_id: str(ti.state) for ti in session.query(TaskInstance).filter_by(
            dag_id=dag.dag_id, run_id=dr.run_id, map_index=-1)}
        tries = {ti.task_id: ti.try_number for ti in session.query(TaskInstance).filter_by(
            dag_id=dag.dag_id, run_id=dr.run_id, task_id="ingest")}
    assert str(dr.state) == "failed"
    assert (states["ingest"], states["prepare"], states["summary"]) == ("failed", "success", "failed")
    assert tries["ingest"] == 1 and len(cmc.requests) == 1  # no retry of a 401
    (text,) = _q(url, "SELECT summary_text FROM refresh_runs WHERE run_id = %s", dr.run_id)[0]
    assert "ingest: FAILED or did not run (see the ingest task log)" in text
    assert _q(url, "SELECT count(*) FROM refresh_run_assets WHERE run_id = %s AND component = 'bars.1d' "
                   "AND status = 'ok'", dr.run_id)[0][0] >= 1  # the refresh still ran
