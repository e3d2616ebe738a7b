"""The whole DAG through Airflow's own test runner (``dag.test()``) against a real Postgres.

One module-scoped warehouse with four synthetic assets:

* 101, 102: clean histories ending the day before the run;
* 103: poisoned: 15 of its closes are negative (above the max(10, 1 %) corruption threshold),
  so its ``bars.1d`` fails with a critical data-corruption error;
* 104: stale: its history ends five days before the run (48 h threshold).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ta_lab2.registry import BAR_FAMILY_NAMES, EMA_FAMILY_NAMES
from ta_lab2.store import db
from tests.support.warehouse import history, load_rows

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
START = datetime(2025, 1, 1, tzinfo=UTC)
DAYS = 90
RUN_AT = START + timedelta(days=DAYS, hours=6)  # logical date == data-interval end == as-of
CLEAN, POISONED, STALE = (101, 102), 103, 104
CLEAN2 = (106, 107)  # batch-mates of the poisoned asset in the batch-of-5 test


def _poison(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = [dict(r) for r in rows]
    for r in out[10:25]:
        r["close"] = -abs(r["close"])
    return out


@pytest.fixture(scope="module")
def warehouse(pg_server_url: str, airflow_home: Path) -> Any:
    from tests.conftest import create_database, drop_database

    url = create_database(pg_server_url, "ta_lab2_dagtest")
    from ta_lab2.store import schema

    with db.connect(url) as conn:
        schema.apply_schema(conn)
    for a in CLEAN + CLEAN2:
        load_rows(url, a, history(a, DAYS, gap_prob=0.0, start=START))
    load_rows(url, POISONED, _poison(history(POISONED, DAYS, gap_prob=0.0, start=START)))
    load_rows(url, STALE, history(STALE, DAYS - 5, gap_prob=0.0, start=START))
    mp = pytest.MonkeyPatch()
    mp.setenv("AIRFLOW_CONN_TA_LAB2_DB", db.airflow_conn_uri(url))
    yield url
    mp.undo()
    drop_database(pg_server_url, url)


@pytest.fixture(scope="module")
def dag(airflow_home: Path) -> Any:
    """A loader, not a DAG: ``dag.test()`` merges a run's conf into the DAG object's params in
    place, so every run parses the file afresh (as each Airflow worker does)."""
    from airflow.dag_processing.dagbag import DagBag

    def load() -> Any:
        with pytest.MonkeyPatch.context() as mp:
            # Airflow 3.3.2's dag.test() crashes when a run of a DAG with a DeadlineAlert succeeds
            # (it passes the serialized alert where the alert's id is expected); the deadline is
            # tested on the real scheduler (tests/e2e/test_alert_quality.py)
            mp.setenv("TA_LAB2_DEADLINE_HOURS", "off")
            bag = DagBag(dag_folder=str(ROOT / "dags"))
        assert bag.import_errors == {}
        return bag.get_dag("ta_lab2_daily_refresh")

    return load


def _run(load: Any, conf: dict[str, Any], at: datetime = RUN_AT) -> tuple[str, str, dict[tuple[str, int], str]]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    dag = load()
    dr = dag.test(logical_date=at, run_conf=conf)
    with create_session() as session:
        tis = session.query(TaskInstance).filter_by(dag_id=dag.dag_id, run_id=dr.run_id).all()
        states = {(ti.task_id, ti.map_index): str(ti.state) for ti in tis}
    return dr.run_id, str(dr.state), states


def _labels(run_id: str) -> dict[tuple[str, int], str | None]:
    """``rendered_map_index`` of every mapped task instance of the run."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.query(TaskInstance).filter(TaskInstance.run_id == run_id, TaskInstance.map_index >= 0).all()
        return {(ti.task_id, ti.map_index): ti.rendered_map_index for ti in tis}


def _xcom(run_id: str, task_id: str, map_index: int) -> Any:
    import json

    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.query(XComModel).filter_by(run_id=run_id, task_id=task_id, map_index=map_index,
                                                  key="return_value").one()
        return json.loads(row.value) if isinstance(row.value, str) else row.value


def _count(url: str, sql: str, *params: Any) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql, params).fetchone()
    assert row is not None
    return int(row[0])


def test_one_failing_asset_leaves_the_others_finished_and_is_audited(warehouse: str, dag: Any) -> None:
    ids = [*CLEAN, POISONED]
    with psycopg.connect(warehouse) as conn:  # an asset without a known symbol (labelled by its id)
        conn.execute("UPDATE dim_assets SET symbol = '' WHERE id = %s", (CLEAN[1],))
    try:
        run_id, state, ti = _run(dag, {"ids": ids})
    finally:
        with psycopg.connect(warehouse) as conn:
            conn.execute("UPDATE dim_assets SET symbol = %s WHERE id = %s", (f"A{CLEAN[1]}", CLEAN[1]))
    assert state == "failed"  # summary fails the run: an asset failed
    # map_index_template through the real task runner: every instance that ran names its asset,
    # the failed one included (task instances that never ran have no label)
    want = {0: f"A{CLEAN[0]}", 1: f"id {CLEAN[1]}", 2: f"A{POISONED}"}
    ran = {k: label for k, label in _labels(run_id).items() if ti[k] in ("success", "failed")}
    per_instance = len(BAR_FAMILY_NAMES) + len(EMA_FAMILY_NAMES) + 2  # + freshness, validate
    # the poisoned instance: bars.1d and every later component ran (all_done) and failed; not the gate
    held = len(BAR_FAMILY_NAMES) - 1 + len(EMA_FAMILY_NAMES)
    assert len(ran) == 2 * per_instance + 1 + held and ti[("asset.bars.1d", 2)] == "failed", ran
    assert all(label == want[mi] for (_, mi), label in ran.items()), ran
    idx = {a: ids.index(a) for a in ids}  # map index = position in the resolved (sorted) ids
    for a in CLEAN:
        for task in [f"asset.bars.{b}" for b in BAR_FAMILY_NAMES] + [f"asset.emas.{e}" for e in EMA_FAMILY_NAMES]:
            assert ti[(task, idx[a])] == "success", (a, task)
    assert ti[("asset.bars.1d", idx[POISONED])] == "failed"
    # all_done + the run's audit rows (orchestration.runnable): nothing of its batch is ready
    for task in [f"asset.bars.{b}" for b in BAR_FAMILY_NAMES[1:]] + [f"asset.emas.{e}" for e in EMA_FAMILY_NAMES]:
        assert ti[(task, idx[POISONED])] == "failed", task  # held back by its failed bars.1d: a clear resumes it
    assert ti[("asset.freshness", idx[POISONED])] == "skipped"  # nothing to judge; the EMA tasks judge it on resume
    # none_failed: not validated before the asset is repaired, and "clear only failed" reruns it
    assert ti[("asset.validate", idx[POISONED])] == "upstream_failed"
    assert ti[("summary", -1)] == "failed"
    with psycopg.connect(warehouse) as conn:
        audit = dict(conn.execute("SELECT component, status FROM refresh_run_assets WHERE run_id = %s AND "
                                  "asset_id = %s", (run_id, POISONED)).fetchall())
        run = conn.execute("SELECT status, assets_ok, assets_failed, summary_text FROM refresh_runs "
                           "WHERE run_id = %s", (run_id,)).fetchone()
    assert audit["bars.1d"] == "failed"
    assert {audit[f"emas.{e}"] for e in EMA_FAMILY_NAMES} == {"not_run"}  # recorded by the summary
    assert run is not None and run[:3] == ("failed", 2, 1)
    assert "bars.1d" in run[3] and "upstream failed: bars.1d" in run[3]
    assert _count(warehouse, "SELECT count(*) FROM cmc_price_bars_1d WHERE id = %s", POISONED) == 0
    for a in CLEAN:
        assert _count(warehouse, "SELECT count(*) FROM cmc_price_bars_1d WHERE id = %s", a) == DAYS
        assert _count(warehouse, "SELECT count(*) FROM cmc_ema_multi_tf WHERE id = %s", a) > 0


def test_a_stale_asset_has_its_emas_skipped_with_the_reason(warehouse: str, dag: Any) -> None:
    ids = [CLEAN[0], STALE]
    run_id, state, ti = _run(dag, {"ids": ids})
    assert state == "success"  # stale is a skip, not a failure
    assert ti[("asset.freshness", 1)] == "skipped"
    for e in EMA_FAMILY_NAMES:
        assert ti[(f"asset.emas.{e}", 1)] == "skipped"
        assert ti[(f"asset.emas.{e}", 0)] == "success"
    assert _count(warehouse, "SELECT count(*) FROM cmc_ema_multi_tf WHERE id = %s", STALE) == 0
    with psycopg.connect(warehouse) as conn:
        row = conn.execute("SELECT status, assets_skipped, summary_text FROM refresh_runs WHERE run_id = %s",
                           (run_id,)).fetchone()
    assert row is not None and row[0] == "warning" and row[1] == 1
    assert f"Skipping ID {STALE} EMAs (bars stale: last_src_ts=" in row[2]


def test_skip_stale_check_bypasses_the_gate(warehouse: str, dag: Any) -> None:
    _, state, ti = _run(dag, {"ids": [STALE], "skip_stale_check": True, "targets": ["bars", "emas"]})
    assert state == "success" and ti[("asset.emas.multi_tf", 0)] == "success"
    assert _count(warehouse, "SELECT count(*) FROM cmc_ema_multi_tf WHERE id = %s", STALE) > 0


def test_dry_run_writes_nothing_anywhere(warehouse: str, dag: Any) -> None:
    tables = ["cmc_price_histories7", "cmc_price_bars_1d", "cmc_price_bars_1d_state", "cmc_price_bars_multi_tf",
              "cmc_ema_multi_tf", "cmc_ema_multi_tf_state", "refresh_runs", "refresh_run_assets",
              "validation_results"]
    with psycopg.connect(warehouse) as conn:
        conn.execute("INSERT INTO cmc_price_histories7 SELECT 105, name, timeopen + interval '1 day' * 0, timeclose,"
                     " timehigh, timelow, \"timestamp\", open, high, low, close, volume, marketcap, source_file,"
                     " load_ts FROM cmc_price_histories7 WHERE id = %s", (CLEAN[0],))
        conn.execute("INSERT INTO dim_assets (id, symbol, name) VALUES (105, 'NEW', 'never built')")
    before = {t: _count(warehouse, f"SELECT count(*) FROM {t}") for t in tables}
    run_id, state, ti = _run(dag, {"ids": [CLEAN[1], 105], "dry_run": True, "full_rebuild": True},
                        at=RUN_AT + timedelta(days=1))
    assert state == "success"
    assert ti[("asset.bars.1d", 1)] == "success" and ti[("asset.emas.v2", 1)] == "success"
    assert {t: _count(warehouse, f"SELECT count(*) FROM {t}") for t in tables} == before
    # the plan is exact: the EMAs of the never-built asset see the bars this run would build
    planned = _xcom(run_id, "asset.emas.multi_tf", 1)
    assert planned["status"] == "dry_run" and planned["rows_written"] > 0, planned


def test_unknown_ids_fail_prepare_with_the_list(warehouse: str, dag: Any, capfd: pytest.CaptureFixture) -> None:
    _, state, ti = _run(dag, {"ids": [CLEAN[0], 999_999, 999_998]})
    assert state == "failed" and ti[("prepare", -1)] == "failed"
    assert ti[("summary", -1)] == "failed"  # all_done: it runs and says prepare did not succeed
    out = capfd.readouterr()
    assert "unknown" in (out.out + out.err) and "999999" in (out.out + out.err)
    assert "999998" in (out.out + out.err)


def test_batches_gate_each_asset_and_pass_only_fresh_ones_to_the_emas(warehouse: str, dag: Any) -> None:
    fresh_one = CLEAN[1]
    with psycopg.connect(warehouse) as conn:
        conn.execute("DELETE FROM cmc_ema_multi_tf WHERE id = ANY(%s)", ([fresh_one, STALE],))
        conn.execute("DELETE FROM cmc_ema_multi_tf_state WHERE id = ANY(%s)", ([fresh_one, STALE],))
    run_id, state, ti = _run(dag, {"ids": [fresh_one, STALE], "batch_size": 2}, at=RUN_AT + timedelta(hours=1))
    assert state == "success"
    assert {k for k in ti if k[0] == "asset.emas.multi_tf"} == {("asset.emas.multi_tf", 0)}  # one batch
    labels = _labels(run_id)  # every task names its batch; which assets the gate let through is in the audit
    assert labels[("asset.bars.1d", 0)] == labels[("asset.validate", 0)] == f"A{fresh_one}, A{STALE}"
    assert labels[("asset.emas.multi_tf", 0)] == f"A{fresh_one}, A{STALE}"
    assert ti[("asset.freshness", 0)] == "success" and ti[("asset.emas.multi_tf", 0)] == "success"
    assert _count(warehouse, "SELECT count(*) FROM cmc_ema_multi_tf WHERE id = %s", fresh_one) > 0
    assert _count(warehouse, "SELECT count(*) FROM cmc_ema_multi_tf WHERE id = %s", STALE) == 0
    with psycopg.connect(warehouse) as conn:
        audit = dict(conn.execute("SELECT component, status FROM refresh_run_assets WHERE run_id = %s AND "
                                  "asset_id = %s", (run_id, STALE)).fetchall())
    assert audit["freshness"] == "skipped" and audit["emas.multi_tf"] == "skipped"
    assert audit["bars.1d"] == "ok"


def test_a_missing_warehouse_connection_fails_prepare_at_once_naming_the_fix(
        warehouse: str, dag: Any, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_TA_LAB2_DB")
    monkeypatch.setenv("TA_LAB2_DB_URL", warehouse)  # a CLI setting must not be picked up inside Airflow
    _, state, ti = _run(dag, {"ids": [CLEAN[0]]}, at=RUN_AT + timedelta(hours=4))
    assert state == "failed" and ti[("prepare", -1)] == "failed"
    out = capfd.readouterr()
    text = out.out + out.err
    line = next(x for x in text.splitlines() if "is not defined: create it" in x)
    assert "'ta_lab2_db'" in line and "airflow connections add ta_lab2_db" in line, line
    assert "Marking task as UP_FOR_RETRY" not in text  # a setup error is not retried


def test_a_poisoned_asset_in_a_batch_of_five_fails_alone_and_its_mates_get_their_emas(
        warehouse: str, dag: Any) -> None:
    """One mapped instance for five assets: the batch is redone asset by asset under
    savepoints, bars.1d fails (so clearing it resumes), and the four healthy assets still get
    every bar family and every EMA family in the same run (the later tasks run all_done); those
    later tasks fail too, for the poisoned asset alone, so that any clear of the run resumes it."""
    ids = sorted([*CLEAN, POISONED, *CLEAN2])
    run_id, state, ti = _run(dag, {"ids": ids, "batch_size": 5}, at=RUN_AT + timedelta(hours=2))
    assert state == "failed"
    assert {k for k in ti if k[0] == "asset.bars.1d"} == {("asset.bars.1d", 0)}  # one batch
    assert ti[("asset.bars.1d", 0)] == "failed"
    for task in [f"asset.bars.{b}" for b in BAR_FAMILY_NAMES[1:]] + [f"asset.emas.{e}" for e in EMA_FAMILY_NAMES]:
        assert ti[(task, 0)] == "failed", task  # after committing the four healthy assets
    with psycopg.connect(warehouse) as conn:
        audit = {(a, c): s for a, c, s in conn.execute(
            "SELECT asset_id, component, status FROM refresh_run_assets WHERE run_id = %s", (run_id,)).fetchall()}
        run = conn.execute("SELECT assets_ok, assets_failed FROM refresh_runs WHERE run_id = %s", (run_id,)).fetchone()
    assert audit[(POISONED, "bars.1d")] == "failed"
    assert not [c for (a, c) in audit if a == POISONED and c != "bars.1d" and audit[(a, c)] == "ok"]
    for a in (*CLEAN, *CLEAN2):
        for comp in [f"bars.{b}" for b in BAR_FAMILY_NAMES] + [f"emas.{e}" for e in EMA_FAMILY_NAMES]:
            assert audit[(a, comp)] == "ok", (a, comp)
    for a in CLEAN2:  # first built in this run
        assert _count(warehouse, "SELECT count(*) FROM cmc_price_bars_1d WHERE id = %s", a) == DAYS
        assert _count(warehouse, "SELECT count(*) FROM cmc_ema_multi_tf_v2 WHERE id = %s", a) > 0
    assert run is not None and run == (4, 1)
