"""The ``publish`` task through ``dag.test()`` against a real Postgres: one Asset event per
table whose family succeeded, with the run's metadata, read back from Airflow's metadata DB.

Warehouse: 201 clean, 203 poisoned (its ``bars.1d`` fails: nothing of it is refreshed), 204
stale (bars refresh, the freshness gate skips its EMAs)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ta_lab2.airflow_assets import ASSETS, PUBLISHED_TABLES
from ta_lab2.store import db
from tests.support.warehouse import history, load_rows

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
START = datetime(2025, 1, 1, tzinfo=UTC)
DAYS = 60
RUN_AT = START + timedelta(days=DAYS, hours=6)
CLEAN, POISONED, STALE = 201, 203, 204


@pytest.fixture(scope="module")
def warehouse(pg_server_url: str, airflow_home: Path) -> Any:
    from ta_lab2.store import schema
    from tests.conftest import create_database, drop_database

    url = create_database(pg_server_url, "ta_lab2_publish")
    with db.connect(url) as conn:
        schema.apply_schema(conn)
    load_rows(url, CLEAN, history(CLEAN, DAYS, gap_prob=0.0, start=START))
    poisoned = history(POISONED, DAYS, gap_prob=0.0, start=START)
    for r in poisoned[5:20]:
        r["close"] = -abs(r["close"])
    load_rows(url, POISONED, poisoned)
    load_rows(url, STALE, history(STALE, DAYS - 5, gap_prob=0.0, start=START))
    mp = pytest.MonkeyPatch()
    mp.setenv("AIRFLOW_CONN_TA_LAB2_DB", db.airflow_conn_uri(url))
    # dag.test() of a DAG with a DeadlineAlert crashes on Airflow 3.3.2 (see tests/dag/test_dag_run.py)
    mp.setenv("TA_LAB2_DEADLINE_HOURS", "off")
    yield url
    mp.undo()
    drop_database(pg_server_url, url)


def _run(conf: dict[str, Any]) -> tuple[str, str, dict[str, dict[str, Any]]]:
    """One ``dag.test()`` of a freshly parsed DAG; the run's asset events by URI."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {}
    dr = bag.get_dag("ta_lab2_daily_refresh").test(logical_date=RUN_AT, run_conf=conf)
    with create_session() as session:
        rows = (session.query(AssetEvent, AssetModel.uri).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
                .filter(AssetEvent.source_run_id == dr.run_id).all())
        events = {uri: {"extra": dict(ev.extra or {}), "task": ev.source_task_id} for ev, uri in rows}
        assert len(events) == len(rows), "more than one event for a table in one run"
    return dr.run_id, str(dr.state), events


def test_publish_emits_one_event_per_table_with_the_run_metadata(warehouse: str) -> None:
    run_id, state, events = _run({"ids": [CLEAN, POISONED]})
    assert state == "failed"  # summary still fails the run: publish is its sibling, not its child
    assert set(events) == {ASSETS[t.table].uri for t in PUBLISHED_TABLES}
    with db.connect(warehouse) as conn:
        rows = dict(conn.execute("SELECT component, rows_written FROM refresh_run_assets WHERE run_id = %s "
                                 "AND asset_id = %s", (run_id, CLEAN)).fetchall())
    for t in PUBLISHED_TABLES:
        ev = events[ASSETS[t.table].uri]
        assert ev["task"] == "publish"
        extra = ev["extra"]
        assert extra["run_id"] == run_id and extra["dag_id"] == "ta_lab2_daily_refresh"
        assert extra["as_of"] == RUN_AT.isoformat() and extra["as_of_day"] == (RUN_AT - timedelta(days=1)).date().isoformat()
        assert (extra["table"], extra["component"]) == (t.table, t.component)
        assert (extra["assets_ok"], extra["assets_failed"], extra["assets_skipped"]) == ([CLEAN], [POISONED], [])
        assert extra["rows_written"] == rows[t.component], t  # the component's total (60 days: no 1M EMAs)
    assert events[ASSETS["cmc_ema_multi_tf"].uri]["extra"]["rows_written"] > 0


def test_families_that_did_not_succeed_publish_nothing(warehouse: str) -> None:
    _, state, events = _run({"ids": [STALE]})  # bars refresh; the gate skips the EMAs
    assert state == "success"
    assert set(events) == {ASSETS[t.table].uri for t in PUBLISHED_TABLES if t.kind == "bars"}
    assert all(e["extra"]["assets_ok"] == [STALE] for e in events.values())
    _, state, events = _run({"ids": [POISONED]})  # nothing refreshed at all
    assert state == "failed" and events == {}
    _, state, events = _run({"ids": [CLEAN], "dry_run": True})
    assert state == "success" and events == {}
