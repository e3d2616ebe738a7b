"""``python -m ta_lab2 refresh`` as cron and a terminal run it (real subprocesses, real Postgres):
the target refusal, streaming progress, ``--quiet``, the daily log file and its retention, the
freshness gate, validation, the DAG's summary, ``continue_on_error``, and no pgserver chatter.

The warehouse: three synthetic assets of 60 days, the middle one poisoned (15 negative closes:
its ``bars.1d`` fails with ``DataCorruptionError``), built at an as-of one day after the last.
"""

from __future__ import annotations

import atexit
import os
import pty
import re
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ta_lab2 import orchestration, params
from ta_lab2.store import db
from tests.conftest import SHARED_CMC, create_database, drop_database
from tests.integration.conftest import query
from tests.support.warehouse import history, load_rows

ROOT = Path(__file__).resolve().parents[2]
START = datetime(2025, 1, 1, tzinfo=UTC)
AS_OF = (START + timedelta(days=60)).isoformat()
GOOD, POISONED, GOOD2, STALE = 7101, 7102, 7103, 7104
SMALL = ["--tfs", "7D", "--periods", "10"]  # a quick run: one timeframe, one period
IDS = f"{GOOD},{POISONED},{GOOD2}"


def run_cli(url: str, *argv: str, log_dir: Path | None = None, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "TA_LAB2_DB_URL": url, "PYTHONPATH": f"{ROOT / 'plugins'}{os.pathsep}{ROOT}",
            **(env or {})}
    if log_dir is not None:
        full["TA_LAB2_LOG_DIR"] = str(log_dir)
    return subprocess.run([sys.executable, "-m", "ta_lab2", *argv], cwd=ROOT, env=full, capture_output=True,
                          text=True, timeout=180, check=False)


def table_counts(url: str) -> dict[str, int]:
    tables = [r[0] for r in query(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
    return {t: query(url, f'SELECT count(*) FROM "{t}"')[0][0] for t in tables}


@pytest.fixture(scope="module")
def wh(pg_server_url: str) -> Iterator[str]:
    from ta_lab2.store import schema

    url = create_database(pg_server_url, "ta_lab2_cli_progress")
    with db.connect(url) as conn:
        schema.apply_schema(conn)
    for a in (GOOD, GOOD2):
        load_rows(url, a, history(a, 60, start=START, gap_prob=0.0))
    rows = history(POISONED, 60, start=START, gap_prob=0.0)
    for r in rows[5:20]:
        r["close"] = -r["close"]  # above max(10, 1 %) of the rows -> DataCorruptionError
    load_rows(url, POISONED, rows)
    # STALE ends 20 days before AS_OF (100 days: enough 7D bars for a period-10 EMA)
    load_rows(url, STALE, history(STALE, 100, start=START - timedelta(days=60), gap_prob=0.0))
    yield url
    drop_database(pg_server_url, url)


# ---------------------------------------------------------------------------------------------
# the target is required


def test_a_bare_refresh_is_refused_and_changes_nothing(wh: str, tmp_path: Path) -> None:
    before = table_counts(wh)
    for argv in (["refresh"], ["refresh", "--ids", IDS, *SMALL], ["refresh", "--full-rebuild", "--ids", "all"]):
        done = run_cli(wh, *argv, log_dir=tmp_path / "logs")
        assert done.returncode == 2, done
        assert done.stdout == "" and len(done.stderr.splitlines()) == 1, done
        assert done.stderr.startswith("error: refresh needs a target: --bars, --emas or --all"), done.stderr
    unknown = run_cli(wh, "refresh", "--all", "--ids", "999999", log_dir=tmp_path / "logs")
    assert unknown.returncode == 2 and unknown.stderr.startswith("error: unknown asset ids [999999]"), unknown
    assert table_counts(wh) == before
    assert not (tmp_path / "logs").exists()  # a refused request opens no log file


# ---------------------------------------------------------------------------------------------
# one run (default console), one --quiet run: progress, summary, log, validation


@pytest.fixture(scope="module")
def default_run(wh: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    logs = tmp_path_factory.mktemp("logs")
    done = run_cli(wh, "refresh", "--all", "--ids", IDS, *SMALL, "--as-of", AS_OF, "--run-id", "progress-default",
                   "--no-alert-on-error", log_dir=logs)
    return {"done": done, "logs": logs}


def test_default_console_streams_a_line_per_asset_and_component(default_run: dict[str, Any], wh: str) -> None:
    done = default_run["done"]
    assert done.returncode == 1, done  # the poisoned asset failed
    out = done.stdout
    audit = {(a, c): (s, n) for a, c, s, n in query(
        wh, "SELECT asset_id, component, status, rows_written FROM refresh_run_assets WHERE run_id = %s "
            "AND component <> 'freshness'", ("progress-default",))}
    assert len(audit) == 3 * 10
    for (asset, comp), (status, rows) in audit.items():
        if status == "ok":
            assert re.search(rf"^Processing ID {asset}\.\.\. {re.escape(comp)}: {rows} rows written \(\d+\.\ds\)$",
                             out, re.M), (asset, comp, rows)
        elif comp == "bars.1d":
            assert (asset, status) == (POISONED, "failed")
        else:
            assert (asset, status) == (POISONED, "skipped"), (asset, comp, status)
            assert f"Processing ID {asset}... {comp} skipped: upstream failed: bars.1d" in out
    assert audit[(GOOD, "bars.1d")][1] == 60
    gate = dict(query(wh, "SELECT asset_id, status FROM refresh_run_assets WHERE run_id = 'progress-default' "
                          "AND component = 'freshness'"))
    assert gate == {GOOD: "ok", GOOD2: "ok"}  # the gate ran before the EMAs; not for the failed asset
    assert re.search(rf"^ERROR: Processing ID {POISONED}\.\.\. bars\.1d FAILED \(\d+\.\ds\): DataCorruptionError",
                     done.stderr, re.M), done.stderr
    # a progress line per component, done/total and an ETA, in order
    done_counts = [int(m) for m in re.findall(r"complete: 3/3 assets .*; (\d+)/10 components complete, ", out)]
    assert done_counts == list(range(1, 11)), out
    assert re.search(r"1/10 components complete, ~\d+ (second|seconds|minutes) remaining$", out, re.M)
    assert out.rstrip().splitlines()[-1] == f"log: {default_run['logs'] / f'refresh-{datetime.now(UTC):%Y-%m-%d}.log'}"


def test_the_cli_prints_and_persists_the_dags_summary_and_validates(default_run: dict[str, Any], wh: str) -> None:
    out = default_run["done"].stdout
    (text, status, dag_id), = query(wh, "SELECT summary_text, status, dag_id FROM refresh_runs "
                                        "WHERE run_id = 'progress-default'")
    assert (status, dag_id) == ("failed", "ta_lab2_cli")
    assert text in out and "component" in text and "totals: assets 3 (ok 2, failed 1, skipped 0)" in text
    # validation ran (default --validate) and counted in the summary
    (checks,), = query(wh, "SELECT count(*) FROM validation_results WHERE run_id = 'progress-default'")
    assert checks > 0
    assert re.search(r"validation FAIL \d+ WARN \d+", text)


def test_quiet_prints_only_errors_and_the_summary(wh: str, tmp_path: Path) -> None:
    done = run_cli(wh, "refresh", "--all", "--ids", IDS, *SMALL, "--as-of", AS_OF, "--run-id", "progress-quiet",
                   "--quiet", "--no-alert-on-error", log_dir=tmp_path)
    assert done.returncode == 1
    (text,), = query(wh, "SELECT summary_text FROM refresh_runs WHERE run_id = 'progress-quiet'")
    log_file = tmp_path / f"refresh-{datetime.now(UTC):%Y-%m-%d}.log"
    assert done.stdout == f"{text}\nlog: {log_file}\n"
    errors = done.stderr.strip().splitlines()
    assert errors and all(line.startswith("ERROR: ") for line in errors), errors
    assert any(f"Processing ID {POISONED}... bars.1d FAILED" in line for line in errors)
    # the file has the full verbose stream the console did not show
    logged = log_file.read_text()
    assert f"INFO ta_lab2.progress: Processing ID {GOOD}... bars.1d: " in logged
    assert "DEBUG ta_lab2" in logged and "components complete" in logged and text in logged


def test_the_log_file_appends_and_old_logs_are_pruned(wh: str, tmp_path: Path) -> None:
    today = datetime.now(UTC).date()
    dated = {d: tmp_path / f"refresh-{today - timedelta(days=d):%Y-%m-%d}.log" for d in (1, 7, 8, 45)}
    other = tmp_path / "keep-me.txt"
    for path in [*dated.values(), other]:
        path.write_text("old\n")
        os.utime(path, (time.time() - 60 * 86400,) * 2)
    log_file = tmp_path / f"refresh-{today:%Y-%m-%d}.log"
    log_file.write_text("earlier run\n")
    done = run_cli(wh, "refresh", "--bars", "--builders", "1d", "--ids", str(GOOD), "--as-of", AS_OF, "--quiet",
                   "--run-id", "progress-prune", env={"TA_LAB2_LOG_RETENTION_DAYS": "7"}, log_dir=tmp_path)
    assert done.returncode == 0, done
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([log_file.name, other.name, dated[1].name,
                                                                 dated[7].name])
    text = log_file.read_text()
    assert text.startswith("earlier run\n") and "progress-prune" in text
    assert f"removed 2 logs older than 7 days: {dated[45].name}, {dated[8].name}" in text
    # --log-dir wins over the env, --log-retention-days too
    flag_dir = tmp_path / "by-flag"
    done = run_cli(wh, "refresh", "--bars", "--builders", "1d", "--ids", str(GOOD), "--as-of", AS_OF, "--quiet",
                   "--log-dir", str(flag_dir), "--log-retention-days", "1", log_dir=tmp_path)
    assert done.returncode == 0 and done.stdout.endswith(f"log: {flag_dir / log_file.name}\n"), done
    assert dated[1].exists()  # the env's folder was not pruned by the flag's run


def test_verbose_adds_each_steps_own_lines_and_debug_detail(wh: str, default_run: dict[str, Any],
                                                             tmp_path: Path) -> None:
    done = run_cli(wh, "refresh", "--bars", "--builders", "1d", "--ids", str(GOOD), "--as-of", AS_OF, "--verbose",
                   "--run-id", "progress-verbose", "--no-validate", log_dir=tmp_path)
    assert done.returncode == 0, done
    assert re.search(rf"INFO ta_lab2\.progress: Processing ID {GOOD}\.\.\. bars\.1d: \d+ rows written", done.stdout)
    assert re.search(rf"DEBUG ta_lab2\.refresh\.bars_1d: asset {GOOD} bars\.1d: \d+ rows written", done.stdout)
    assert " DEBUG ta_lab2" in done.stdout
    default = default_run["done"].stdout  # the default console has the progress lines only
    assert "ta_lab2.refresh" not in default and "DEBUG" not in default
    assert not re.search(r"^asset \d+ bars\.1d: ", default, re.M)


# ---------------------------------------------------------------------------------------------
# the DAG's gate, validation switch and continue_on_error


def test_the_freshness_gate_skips_stale_emas_unless_skip_stale_check(wh: str) -> None:
    done = run_cli(wh, "refresh", "--all", "--ids", str(STALE), *SMALL, "--as-of", AS_OF, "--run-id", "gate",
                   "--no-validate", "--no-alert-on-error")
    assert done.returncode == 0, done  # a skipped asset is reported, not failed
    assert f"Skipping ID {STALE} EMAs (bars stale: last_src_ts=" in done.stdout
    assert f"WARNING: Skipping ID {STALE} EMAs" in done.stderr
    statuses = dict(query(wh, "SELECT component, status FROM refresh_run_assets WHERE run_id = 'gate'"))
    assert statuses["freshness"] == "skipped" and statuses["bars.1d"] == "ok"
    assert {s for c, s in statuses.items() if c.startswith("emas.")} == {"skipped"}
    assert query(wh, "SELECT count(*) FROM cmc_ema_multi_tf WHERE id = %s", (STALE,)) == [(0,)]
    assert query(wh, "SELECT count(*) FROM validation_results WHERE run_id = 'gate'") == [(0,)]  # --no-validate
    done = run_cli(wh, "refresh", "--emas", "--ids", str(STALE), *SMALL, "--as-of", AS_OF, "--run-id", "gate2",
                   "--skip-stale-check", "--no-validate", "--no-alert-on-error")
    assert done.returncode == 0, done
    assert query(wh, "SELECT count(*) > 0 FROM cmc_ema_multi_tf WHERE id = %s", (STALE,)) == [(True,)]
    assert query(wh, "SELECT count(*) FROM refresh_run_assets WHERE run_id = 'gate2' "
                     "AND component = 'freshness'") == [(0,)]


def test_no_continue_on_error_stops_at_the_first_failure(wh: str) -> None:
    done = run_cli(wh, "refresh", "--all", "--ids", IDS, *SMALL, "--as-of", AS_OF, "--run-id", "failfast",
                   "--no-continue-on-error", "--no-validate", "--no-alert-on-error")
    assert done.returncode == 1
    rows = {(a, c): (s, e) for a, c, s, e in query(
        wh, "SELECT asset_id, component, status, error_text FROM refresh_run_assets WHERE run_id = 'failfast'")}
    assert rows[(GOOD, "bars.1d")][0] == "ok" and rows[(POISONED, "bars.1d")][0] == "failed"
    stopped = f"run stopped after asset {POISONED} bars.1d failed (continue_on_error=false)"
    assert rows[(GOOD2, "bars.1d")] == ("not_run", stopped)
    assert rows[(GOOD, "emas.v2")] == ("not_run", stopped)
    assert f"Processing ID {GOOD2}... bars.1d not run: {stopped}" in done.stdout


def test_the_dag_honours_continue_on_error_false(wh: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The DAG side of the same param: a task starting after a failure of its run records
    ``not_run`` and skips (``orchestration.run_component``, as Airflow calls it)."""
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    monkeypatch.setenv("AIRFLOW_CONN_TA_LAB2_DB", db.airflow_conn_uri(wh))
    context = {"params": {**params.defaults(), "continue_on_error": False, "tfs": ["7D"], "periods": [10]},
               "run_id": "dag-failfast", "data_interval_end": START + timedelta(days=60)}
    with pytest.raises(AirflowFailException):
        orchestration.run_component("bars.1d", [POISONED], context)
    with pytest.raises(AirflowSkipException, match=f"run stopped after asset {POISONED} bars.1d failed"):
        orchestration.run_component("bars.1d", [GOOD2], context)
    assert query(wh, "SELECT status FROM refresh_run_assets WHERE run_id = 'dag-failfast' AND asset_id = %s",
                 (GOOD2,)) == [("not_run",)]
    context["params"]["continue_on_error"] = True  # the default: the other assets carry on
    assert orchestration.run_component("bars.1d", [GOOD2], context)["status"] == "ok"


# ---------------------------------------------------------------------------------------------
# a terminal: the live bar redraws in place


def test_on_a_terminal_the_progress_redraws_in_place(wh: str) -> None:
    env = {**os.environ, "TA_LAB2_DB_URL": wh, "PYTHONPATH": f"{ROOT / 'plugins'}{os.pathsep}{ROOT}",
           "COLUMNS": "120", "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    pid, fd = pty.fork()
    if pid == 0:  # child: the CLI on the pty
        os.chdir(ROOT)
        os.execve(sys.executable, [sys.executable, "-m", "ta_lab2", "refresh", "--bars", "--ids", str(GOOD),
                                   "--tfs", "7D", "--as-of", AS_OF, "--run-id", "tty", "--no-validate"], env)
    chunks = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 1)
        if not ready:
            continue
        try:
            data = os.read(fd, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    _, status = os.waitpid(pid, 0)
    out = b"".join(chunks).decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 0, out[-3000:]
    assert "\x1b[?25l" in out  # rich's live display hides the cursor while it redraws
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out)
    assert re.search(r"bars\.\w+ 1/1 assets \S+ \d/6 steps", plain), plain[-3000:]
    assert f"Processing ID {GOOD}... bars.1d: " in out and "6/6 components complete" in out
    assert "totals: assets 1 (ok 1" in out


# ---------------------------------------------------------------------------------------------
# the embedded Postgres: its INFO lines stay out of the console


@pytest.mark.slow  # initdb of a throwaway embedded server: ~10 s
def test_pgserver_chatter_stays_out_of_the_console(tmp_path: Path) -> None:
    env = {"TA_LAB2_LOCAL_DIR": str(tmp_path / "local"), "TA_LAB2_LOG_DIR": str(tmp_path / "logs")}
    base = {k: v for k, v in os.environ.items() if k != "TA_LAB2_DB_URL"}
    try:
        def run(*argv: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "ta_lab2", *argv], cwd=ROOT, capture_output=True, text=True,
                                  timeout=180, check=False,
                                  env={**base, **env, "PYTHONPATH": f"{ROOT / 'plugins'}{os.pathsep}{ROOT}"})

        first = run("load", str(SHARED_CMC / "coin_XRP.csv"))  # starts the server
        assert first.returncode == 0, first
        # the server is already running: pgserver says so at INFO
        again = run("refresh", "--bars", "--builders", "1d", "--ids", "52", "--no-validate")
        verbose = run("-v", "schema")
    finally:
        import pgserver

        server = pgserver.get_server(tmp_path / "local" / "pgdata", cleanup_mode="stop")
        server.cleanup()  # this process holds the last handle: stops the server
        atexit.unregister(server._cleanup)  # already done (it would log into pytest's closed streams at exit)
    assert "a postgres server is already running" in verbose.stdout + verbose.stderr  # the chatter is real
    for done in (first, again):
        assert "postgres server is already running" not in done.stdout + done.stderr, done
        assert "PostmasterInfo" not in done.stdout + done.stderr, done
        assert "XDG_RUNTIME_DIR" not in done.stdout + done.stderr, done  # platformdirs' warning: verbose only
    assert again.returncode == 0 and "Processing ID 52... bars.1d: " in again.stdout, again
    logged = (tmp_path / "logs" / f"refresh-{datetime.now(UTC):%Y-%m-%d}.log").read_text()
    assert "INFO pgserver: a postgres server is already running" in logged  # the file keeps it
