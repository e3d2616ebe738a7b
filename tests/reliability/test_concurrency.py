"""Concurrent runs, black-box through the CLI (and ``airflow dags test`` for the DAG): each pair
runs at once, a few rounds; no run may deadlock (Postgres ``40P01`` "deadlock detected",
retried or not, is a failure here) or fail, and the tables end equal to one clean run. Runs
over different assets overlap in time.

The lock order the runs rely on is in docs/operations/STATE_MANAGEMENT.md ("Locks")."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import psycopg
import pytest

from tests.reliability.conftest import (
    ASSETS,
    FINAL_AS_OF,
    MID_AS_OF,
    CleanBuild,
    dag_conf,
    refresh_argv,
    state_invariants,
)
from tests.support.faults import (
    assert_no_traceback,
    diff_snapshots,
    run_cli,
    snapshot,
    start_cli,
    start_dag_test,
)

pytestmark = pytest.mark.slow
ROUNDS = 2


def run_together(url: str, *argvs: Sequence[str], timeout: float = 300) -> list[subprocess.CompletedProcess[str]]:
    """Start every command at once; wait for all; their results in order."""
    procs = [start_cli(url, *argv) for argv in argvs]
    out = []
    for argv, p in zip(argvs, procs, strict=True):
        stdout, stderr = p.communicate(timeout=timeout)
        out.append(subprocess.CompletedProcess(list(argv), p.returncode, stdout, stderr))
    return out


def assert_clean_exit(results: list[subprocess.CompletedProcess[str]]) -> None:
    for r in results:
        assert_no_traceback(r.stdout, r.stderr)
        assert "deadlock detected" not in r.stderr, f"{r.args}: {r.stderr[-3000:]}"
        assert r.returncode == 0, f"{r.args}: exit {r.returncode}: {r.stderr[-3000:]}"


def test_two_identical_refreshes_at_once_equal_one_clean_run(loaded_db: str, clean_build: CleanBuild) -> None:
    for _ in range(ROUNDS):
        assert_clean_exit(run_together(loaded_db, refresh_argv(), refresh_argv()))
        assert state_invariants(loaded_db) == []
        assert diff_snapshots(snapshot(loaded_db), clean_build.tables) == []


def test_a_dry_run_and_a_real_run_at_once_do_not_deadlock(loaded_db: str, clean_build: CleanBuild) -> None:
    for k in range(ROUNDS + 1):
        argv = refresh_argv() if k % 2 == 0 else [*refresh_argv(as_of=FINAL_AS_OF), "--full-rebuild"]
        assert_clean_exit(run_together(loaded_db, [*argv, "--dry-run"], argv))
        assert diff_snapshots(snapshot(loaded_db), clean_build.tables) == []


def test_a_refresh_racing_a_load_of_revisions_converges(loaded_db: str, revised_build: CleanBuild) -> None:
    load = ["load", *map(str, revised_build.files.values())]
    assert_clean_exit(run_together(loaded_db, refresh_argv(), load))
    assert state_invariants(loaded_db) == []
    assert_clean_exit([run_cli(loaded_db, *refresh_argv())])  # the next scheduled run picks the revisions up
    assert diff_snapshots(snapshot(loaded_db), revised_build.tables) == []


def test_two_backfill_runs_with_different_as_of_at_once_then_a_run_equal_a_clean_build(
        loaded_db: str, clean_build: CleanBuild) -> None:
    for _ in range(ROUNDS):
        assert_clean_exit(run_together(loaded_db, refresh_argv(as_of=MID_AS_OF), refresh_argv(as_of=FINAL_AS_OF)))
        assert state_invariants(loaded_db) == []
    assert_clean_exit([run_cli(loaded_db, *refresh_argv())])
    assert diff_snapshots(snapshot(loaded_db), clean_build.tables) == []


def _span(url: str, run_id: str) -> tuple[datetime, datetime]:
    """First step start and last step end of a run, from its audit rows."""
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT min(recorded_at - make_interval(secs => duration_s)), max(recorded_at) "
                           "FROM refresh_run_assets WHERE run_id = %s", (run_id,)).fetchone()
    assert row is not None and row[0] is not None, run_id
    return row[0], row[1]


def test_refreshes_of_different_assets_proceed_in_parallel(loaded_db: str) -> None:
    a, b = ASSETS[0], ASSETS[1]
    assert_clean_exit(run_together(loaded_db, [*refresh_argv(ids=(a,)), "--run-id", "par-a"],
                                   [*refresh_argv(ids=(b,)), "--run-id", "par-b"]))
    (a0, a1), (b0, b1) = _span(loaded_db, "par-a"), _span(loaded_db, "par-b")
    overlap = (min(a1, b1) - max(a0, b0)).total_seconds()
    shorter = min((a1 - a0).total_seconds(), (b1 - b0).total_seconds())
    assert overlap > 0.5 * shorter, (a0, a1, b0, b1)  # not serialised behind each other's locks


def _last_dag_run(dag_id: str = "ta_lab2_daily_refresh") -> tuple[str, str, dict[tuple[str, int], tuple[str, int]]]:
    """(run id, state, {(task, map index): (state, try number)}) of the DAG's newest run in this
    session's metadata DB (where ``airflow dags test`` ran it)."""
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        dr = session.query(DagRun).filter_by(dag_id=dag_id).order_by(DagRun.id.desc()).first()
        assert dr is not None, "no DAG run recorded"
        tis = session.query(TaskInstance).filter_by(dag_id=dag_id, run_id=dr.run_id).all()
        return dr.run_id, str(dr.state), {(t.task_id, t.map_index): (str(t.state), t.try_number) for t in tis}


def test_cli_refreshes_during_a_dag_run_of_the_same_assets_do_not_deadlock(
        loaded_db: str, clean_build: CleanBuild, airflow_home: Path, tmp_path: Path) -> None:
    """CLI + DAG: while a DAG run (``airflow dags test``, every task in turn; one batch of all
    the assets, as the DAG batches a large universe) refreshes them, CLI refreshes of the same assets run back to back (incremental, then
    ``--full-rebuild``, alternating). Every run succeeds at its first try (a retried deadlock
    would hide behind the DAG's task retries), the two overlap in the database, and the tables
    equal one clean run. Two rounds (the second a DAG full rebuild): each ``airflow dags test``
    pays Airflow's start-up, and the suite has a 20-minute budget."""
    for k in range(ROUNDS):
        output = tmp_path / f"dag_test_{k}.log"
        dag = start_dag_test(loaded_db, FINAL_AS_OF, dag_conf(full_rebuild=k == 1, batch_size=len(ASSETS)), output)
        clis = []
        while dag.poll() is None:
            extra = ("--full-rebuild",) if len(clis) % 2 else ()
            clis.append(run_cli(loaded_db, *refresh_argv(), "--run-id", f"cli-{k}-{len(clis)}", *extra))
        dag.wait()
        out = output.read_text()
        assert_clean_exit(clis)
        run_id, state, tis = _last_dag_run()
        assert "deadlock detected" not in out and "Traceback (most recent call last)" not in out, out[-5000:]
        assert dag.returncode == 0 and state == "success", out[-5000:]
        assert {s for s, _ in tis.values()} == {"success"}, tis
        assert max(n for _, n in tis.values()) == 1, tis  # no task retried (a deadlock is a transient error)
        d0, d1 = _span(loaded_db, run_id)
        spans = [_span(loaded_db, c.args[c.args.index("--run-id") + 1]) for c in clis]
        assert any(min(d1, c1) > max(d0, c0) for c0, c1 in spans), (d0, d1, spans)  # they did run at once
        assert state_invariants(loaded_db) == []
        assert diff_snapshots(snapshot(loaded_db), clean_build.tables) == []
