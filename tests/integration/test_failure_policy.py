"""OPERATIONS.md §4 on real components: transient warehouse errors are retried, data errors
are not; a failing asset in a batch does not stop the others; an unreachable warehouse is a
clear, retryable error that writes nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from ta_lab2 import orchestration
from ta_lab2.refresh.context import RunOptions
from ta_lab2.refresh.runner import run_step
from ta_lab2.store import db
from tests.support.warehouse import history, load_rows, new_asset_ids

DEAD = "postgresql://postgres@127.0.0.1:1/nowhere?connect_timeout=2"
START = datetime(2025, 1, 1, tzinfo=UTC)


def _context(**params: Any) -> dict[str, Any]:
    """A task context as Airflow passes it to the task bodies (the DAG's param defaults)."""
    defaults = {"targets": ["bars", "emas"], "ids": "all", "builders": [], "refreshers": [], "tfs": [],
                "periods": [], "tf_period_combos": [], "full_rebuild": False, "dry_run": False,
                "skip_stale_check": False, "staleness_hours": 48, "validate": True, "alert_on_error": False,
                "batch_size": 1}
    return {"params": {**defaults, **params}, "run_id": "policy-test",
            "data_interval_end": START + timedelta(days=61)}


def test_unreachable_warehouse_is_transient_retried_and_reported() -> None:
    opts = RunOptions(as_of=START)
    res = run_step(DEAD, "bars.1d", 1, opts, retries=2, backoff_s=0.01, record=False)
    assert res.status == "failed"
    assert res.details["transient"] is True and res.details["attempts"] == 3
    assert "OperationalError" in (res.error or "")


def test_classified_maps_errors_to_retry_or_fail() -> None:
    @orchestration.classified
    def down() -> None:
        psycopg.connect(DEAD)

    @orchestration.classified
    def bad_data() -> None:
        raise ValueError("close is NaN on 2024-01-03")

    @orchestration.classified
    def stale() -> None:
        raise AirflowSkipException("stale")

    with pytest.raises(orchestration.TransientWarehouseError, match="down: OperationalError"):
        down()
    with pytest.raises(AirflowFailException, match="bad_data: ValueError: close is NaN"):
        bad_data()
    with pytest.raises(AirflowSkipException):
        stale()


def test_a_poisoned_asset_fails_its_batch_task_but_the_batch_mates_are_built(
        session_db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_TA_LAB2_DB", db.airflow_conn_uri(session_db_url))
    good, poisoned, good2 = new_asset_ids(3)
    for a in (good, good2):
        load_rows(session_db_url, a, history(a, 60, start=START))
    rows = history(poisoned, 60, start=START)
    for r in rows[5:20]:
        r["close"] = -r["close"]  # 15 of 60 rows: above max(10, 1 %) -> corruption
    load_rows(session_db_url, poisoned, rows)
    with pytest.raises(AirflowFailException, match=f"asset {poisoned} bars.1d: DataCorruptionError") as err:
        orchestration.run_component("bars.1d", [good, poisoned, good2], _context())
    assert getattr(err.value, "alert_severity", None) == "critical"
    with psycopg.connect(session_db_url) as conn:
        counts = dict(conn.execute("SELECT id, count(*) FROM cmc_price_bars_1d WHERE id = ANY(%s) GROUP BY id",
                                   ([good, poisoned, good2],)).fetchall())
        audit = dict(conn.execute("SELECT asset_id, status FROM refresh_run_assets WHERE run_id = 'policy-test' "
                                  "AND component = 'bars.1d' AND asset_id = ANY(%s)",
                                  ([good, poisoned, good2],)).fetchall())
    assert counts.get(poisoned) is None and counts[good] > 0 and counts[good2] > 0
    assert audit == {good: "ok", poisoned: "failed", good2: "ok"}


def test_a_component_outside_the_selection_is_a_no_op(session_db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_TA_LAB2_DB", db.airflow_conn_uri(session_db_url))
    out = orchestration.run_component("emas.v2", [1], _context(targets=["bars"]))
    assert out == {"component": "emas.v2", "status": "not_selected"}


def test_bad_params_fail_without_retry() -> None:
    with pytest.raises(AirflowFailException, match="unknown builders"):
        orchestration.run_options(_context(builders=["weekly"]))
    with pytest.raises(AirflowFailException, match="ids must be"):
        orchestration.parse_ids_param("1;52")


def test_freshness_waits_for_bars_behind_the_source_and_audits_every_verdict(
        session_db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk import PokeReturnValue

    from ta_lab2.refresh.runner import run_asset

    monkeypatch.setenv("AIRFLOW_CONN_TA_LAB2_DB", db.airflow_conn_uri(session_db_url))
    behind, fresh = new_asset_ids(2)
    for a in (behind, fresh):
        load_rows(session_db_url, a, history(a, 60, start=START))
    ctx = _context()
    as_of = ctx["data_interval_end"]
    run_asset(session_db_url, fresh, ["bars.1d"], RunOptions(as_of=as_of), record=False)
    run_asset(session_db_url, behind, ["bars.1d"], RunOptions(as_of=START + timedelta(days=50)), record=False)

    def verdicts() -> dict[int, tuple[str, str | None]]:
        with psycopg.connect(session_db_url) as conn:
            rows = conn.execute("SELECT asset_id, status, error_text FROM refresh_run_assets WHERE run_id = "
                                "'policy-test' AND component = 'freshness' AND asset_id = ANY(%s)",
                                ([behind, fresh],)).fetchall()
        return {r[0]: (r[1], r[2]) for r in rows}

    poke = orchestration.freshness([behind, fresh], ctx)
    assert isinstance(poke, PokeReturnValue) and poke.is_done is False  # wait: reschedule, no slot held
    v = verdicts()
    assert v[behind][0] == "skipped" and "timed out waiting: bars behind source" in (v[behind][1] or "")
    assert v[fresh][0] == "skipped" and f"waiting for its batch: {behind}" in (v[fresh][1] or "")
    run_asset(session_db_url, behind, ["bars.1d"], RunOptions(as_of=as_of), record=False)  # bars catch up
    poke = orchestration.freshness([behind, fresh], ctx)
    assert poke.is_done is True and poke.xcom_value == [behind, fresh]
    assert verdicts() == {behind: ("ok", None), fresh: ("ok", None)}


def test_an_audit_row_survives_its_session_being_terminated_after_the_data_commit(session_db_url: str) -> None:
    """The audit rows are what the DAG's later tasks read (``orchestration.runnable``): a
    connection cut between a step's commit and its audit write must not lose the ``ok`` row
    (the next task would hold the asset back as a data failure that no retry fixes)."""
    from ta_lab2.refresh.context import ComponentResult
    from ta_lab2.refresh.records import Session, record_results

    (asset,) = new_asset_ids(1)
    sess = Session(session_db_url, [asset])
    try:
        pid = sess.connection().info.backend_pid
        with psycopg.connect(session_db_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        record_results(sess, "audit-cut", [ComponentResult(asset, "bars.1d", status="ok")])
    finally:
        sess.close()
    with psycopg.connect(session_db_url) as conn:
        row = conn.execute("SELECT status FROM refresh_run_assets WHERE run_id = 'audit-cut' AND asset_id = %s",
                           (asset,)).fetchone()
    assert row == ("ok",)
