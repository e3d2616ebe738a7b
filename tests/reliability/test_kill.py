"""SIGKILL at random points: a killed refresh leaves state consistent with its rows, and a
rerun converges to a clean build; a killed load leaves its file fully loaded or not at all,
and the next load completes it. Black-box: real CLI subprocesses, real Postgres."""

from __future__ import annotations

import random
import signal
import subprocess
import time

import psycopg
import pytest

from tests.reliability.conftest import FINAL_AS_OF, MID_AS_OF, CleanBuild, refresh_argv, state_invariants
from tests.support.faults import (
    EXPORT_HEAD,
    assert_no_traceback,
    diff_snapshots,
    run_cli,
    snapshot,
    start_cli,
)

pytestmark = pytest.mark.slow
KILLS = 20


def _kill_after(url: str, argv: list[str], delay: float) -> int | None:
    """Start the CLI, SIGKILL it after ``delay`` s (None: it finished first, its exit code)."""
    return _wait_or_kill(start_cli(url, *argv), delay)


def _wait_or_kill(proc: subprocess.Popen[str], delay: float) -> int | None:
    """SIGKILL ``proc`` unless it ends within ``delay`` s: None when killed, else its exit code
    (and then no traceback reached its output)."""
    try:
        proc.wait(timeout=delay)
        out, err = proc.communicate()
        assert_no_traceback(out, err)
        return proc.returncode
    except Exception:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        return None


def test_twenty_random_sigkills_of_a_refresh_then_a_rerun_equal_a_clean_build(
        loaded_db: str, clean_build: CleanBuild) -> None:
    rng = random.Random(20261130)
    budget = time.monotonic() + 240  # a guard only: ~50 s on a quiet machine
    killed = 0
    while killed < KILLS and time.monotonic() < budget:
        argv = refresh_argv(as_of=rng.choice([MID_AS_OF, FINAL_AS_OF, FINAL_AS_OF]))  # incremental, then catch-up
        if rng.random() < 0.2:
            argv.append("--full-rebuild")
        # from just after start-up to the end of a whole clean refresh
        if _kill_after(loaded_db, argv, rng.uniform(0.5, min(clean_build.seconds, 5.0))) is None:
            killed += 1
        assert state_invariants(loaded_db) == []
    assert killed >= KILLS, f"only {killed} kills landed in the time budget"
    done = run_cli(loaded_db, *refresh_argv())
    assert done.returncode == 0, done.stderr[-3000:]
    assert diff_snapshots(snapshot(loaded_db), clean_build.tables) == []


def _kill_mid_load(url: str, argv: list[str], delay: float) -> int | None:
    """Start a load, SIGKILL it ``delay`` s after its file transaction began staging rows (seen
    from outside: its session runs a COPY); None when killed, else its exit code. A fixed delay
    from start-up lands mid-load only on a slow machine: a 40,000-line load takes ~1 s."""
    dbname = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    proc = start_cli(url, *argv)
    deadline = time.monotonic() + 60
    with psycopg.connect(url, autocommit=True) as conn:
        while proc.poll() is None and time.monotonic() < deadline:
            if conn.execute("SELECT 1 FROM pg_stat_activity WHERE datname = %s AND query LIKE 'COPY%%' "
                            "AND pid <> pg_backend_pid()", (dbname,)).fetchone():
                break
            time.sleep(0.01)
    return _wait_or_kill(proc, delay)


def _source_count(url: str, asset: int) -> tuple[int, int]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT count(*) FROM cmc_price_histories7 WHERE id = %s", (asset,)).fetchone()
        audits = conn.execute("SELECT count(*) FROM cmc_load_audit WHERE source_file = 'big.csv'").fetchone()
    assert rows is not None and audits is not None
    return rows[0], audits[0]


def test_a_killed_load_leaves_its_file_all_or_nothing_and_the_next_load_completes_it(
        pg_server_url: str, tmp_path: pytest.TempPathFactory) -> None:
    from datetime import UTC, datetime, timedelta

    from tests.conftest import create_database, drop_database

    n = 40_000
    path = tmp_path / "big.csv"  # type: ignore[operator]
    t0 = datetime(1900, 1, 1, tzinfo=UTC)
    with path.open("w") as fh:
        fh.write(EXPORT_HEAD + "\n")
        for d in range(n):
            t = t0 + timedelta(days=d)
            s = t.strftime("%Y-%m-%dT%H:%M:%S.000Z")
            fh.write(f"{s};{s};;;Big;1.5;2;1;1.75;10;100;{s}\n")
    url = create_database(pg_server_url, "ta_lab2_killload")
    try:
        assert run_cli(url, "schema").returncode == 0
        rng = random.Random(7)
        outcomes = []
        for _ in range(5):
            code = _kill_mid_load(url, ["load", "--id", "9199", str(path)], rng.uniform(0.0, 1.0))
            rows, audits = _source_count(url, 9199)
            assert rows in (0, n), rows  # all or nothing
            assert (rows == n) == (audits > 0)  # the audit row commits with the rows
            outcomes.append((code, rows))
        assert any(code is None for code, _ in outcomes), outcomes  # at least one kill landed mid-load
        done = run_cli(url, "load", "--id", "9199", str(path))
        assert done.returncode == 0, done.stderr
        assert _source_count(url, 9199)[0] == n
    finally:
        drop_database(pg_server_url, url)
