"""The run params are one set: the CLI's ``refresh`` flags and the DAG's params both come from
``ta_lab2.params.RUN_PARAMS`` (names, defaults); plus the pure parts of progress and logging."""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import sys
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ta_lab2 import cli, logsetup, params
from ta_lab2.progress import ProgressReporter, human_duration, result_line
from ta_lab2.refresh.context import ComponentResult

ROOT = Path(__file__).resolve().parents[2]
SHORTCUTS = {"bars", "emas", "all"}


def _refresh_parser() -> argparse.ArgumentParser:
    sub = next(a for a in cli._parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["refresh"]


def _refresh_dests() -> dict[str, argparse.Action]:
    return {a.dest: a for a in _refresh_parser()._actions if a.dest != "help"}


@pytest.fixture(scope="module")
def dag_params() -> dict[str, Any]:
    spec = importlib.util.spec_from_file_location("ta_lab2_daily_refresh", ROOT / "dags" / "ta_lab2_daily_refresh.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return dict(module.dag.params.dump())


def test_cli_flags_and_dag_params_are_the_same_set(dag_params: dict[str, Any]) -> None:
    dests = set(_refresh_dests())
    cli_only = set(cli.CLI_ONLY_REFRESH)
    assert cli_only <= dests and SHORTCUTS <= dests
    assert dests - SHORTCUTS - cli_only == set(dag_params), (dests, set(dag_params))
    assert set(params.PARAM_NAMES) == set(dag_params)
    # the flag spells the param: --name-with-dashes (and --no-… for the on-by-default booleans)
    actions = _refresh_dests()
    for p in params.RUN_PARAMS:
        assert set(p.flags) <= set(actions[p.name].option_strings), (p.name, actions[p.name].option_strings)


def test_cli_defaults_equal_the_dag_defaults(dag_params: dict[str, Any]) -> None:
    args = _refresh_parser().parse_args(["--all"])
    assert cli.refresh_params(args) == dag_params


def test_every_dag_param_has_a_cli_spelling_that_round_trips(dag_params: dict[str, Any]) -> None:
    argv = ["--targets", "emas", "--ids", "1,52", "--builders", "1d", "--refreshers", "v2", "--tfs", "7D",
            "--periods", "10,20", "--tf-period-combos", "7D:10", "--full-rebuild", "--dry-run",
            "--skip-stale-check", "--staleness-hours", "12.5", "--no-validate", "--no-continue-on-error",
            "--no-alert-on-error", "--alert-per-task", "--batch-size", "25"]
    got = cli.refresh_params(_refresh_parser().parse_args(argv))
    assert got == {"targets": ["emas"], "ids": "1,52", "builders": ["1d"], "refreshers": ["v2"], "tfs": ["7D"],
                   "periods": [10, 20], "tf_period_combos": ["7D:10"], "full_rebuild": True, "dry_run": True,
                   "skip_stale_check": True, "staleness_hours": 12.5, "validate": False,
                   "continue_on_error": False, "alert_on_error": False, "alert_per_task": True,
                   "batch_size": 25}
    assert set(got) == set(dag_params)


def test_adding_a_param_is_one_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    extra = params.RunParam("notify_on_success", True, "one message per clean run", "toggle", {"type": "boolean"})
    monkeypatch.setattr(params, "RUN_PARAMS", (*params.RUN_PARAMS, extra))
    assert "notify_on_success" in params.airflow_params()
    args = _refresh_parser().parse_args(["--all", "--no-notify-on-success"])
    assert cli.refresh_params(args)["notify_on_success"] is False


@pytest.mark.parametrize(("argv", "fragment"), [
    ([], "--bars, --emas or --all"),
    (["--ids", "1"], "--bars, --emas or --all"),
    (["--targets", "bars", "--emas"], "--targets and --emas"),
    (["--all", "--staleness-hours", "0"], "--staleness-hours: '0'"),
    (["--all", "--batch-size", "0"], "--batch-size: '0'"),
    (["--all", "--batch-size", "10001"], "<= 10000"),
    (["--all", "--staleness-hours", "soon"], "'soon' is not a number"),
])
def test_refresh_refusals(argv: list[str], fragment: str) -> None:
    with pytest.raises(cli.UsageError, match=None) as err:
        cli.refresh_params(_refresh_parser().parse_args(argv))
    assert fragment in str(err.value)


def test_target_shortcuts() -> None:
    parse = _refresh_parser().parse_args
    assert cli.refresh_params(parse(["--bars"]))["targets"] == ["bars"]
    assert cli.refresh_params(parse(["--emas"]))["targets"] == ["emas"]
    assert cli.refresh_params(parse(["--emas", "--bars"]))["targets"] == ["bars", "emas"]
    assert cli.refresh_params(parse(["--all"]))["targets"] == ["bars", "emas"]


def test_a_param_kind_mismatch_is_refused_at_definition() -> None:
    with pytest.raises(ValueError, match="toggle"):
        params.RunParam("x", False, "h", "toggle")
    with pytest.raises(ValueError, match="flag"):
        params.RunParam("x", True, "h", "flag")


def test_the_params_module_is_cheap_to_import() -> None:
    """The DAG file imports it at every parse: no pandas, no numpy, no Airflow."""
    import subprocess

    code = "import sys, ta_lab2.params; print(*(m in sys.modules for m in ('pandas', 'numpy', 'airflow')))"

    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'plugins'}{os.pathsep}{ROOT}"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "False"], out


# ---------------------------------------------------------------------------------------------
# progress: ETA from the run's own pace


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_eta_is_the_remaining_steps_at_the_run_pace(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    rep = ProgressReporter([1, 2], ["bars.1d", "bars.multi_tf", "emas.v2"], clock=clock, heartbeat_s=1e9)
    assert rep.eta_seconds() is None
    with caplog.at_level("INFO", logger="ta_lab2.progress"):
        clock.t = 60.0
        rep.on_result(ComponentResult(1, "bars.1d", rows_written=245, duration_s=3.21))
        assert rep.eta_seconds() == pytest.approx(300.0)  # 60 s per step, 5 steps left
        clock.t = 120.0
        rep.on_result(ComponentResult(2, "bars.1d", status="failed", error="boom", duration_s=0.1))
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["Processing ID 1... bars.1d: 245 rows written (3.2s)",
                     "Processing ID 2... bars.1d FAILED (0.1s): boom",
                     "bars.1d complete: 2/2 assets (failed 1, skipped 0); 1/3 components complete, "
                     "~4 minutes remaining"]
    assert [r.levelname for r in caplog.records] == ["INFO", "ERROR", "INFO"]


def test_heartbeat_line_inside_a_long_component(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    rep = ProgressReporter(list(range(1, 11)), ["bars.1d"], clock=clock, heartbeat_s=30)
    with caplog.at_level("INFO", logger="ta_lab2.progress"):
        for k in range(1, 5):
            clock.t = 10.0 * k
            rep.on_result(ComponentResult(k, "bars.1d"))
    beats = [r.getMessage() for r in caplog.records if not r.getMessage().startswith("Processing")]
    assert beats == ["bars.1d: 3/10 assets; run 30% done, ~70 seconds remaining"]


@pytest.mark.parametrize(("seconds", "text"), [(0.2, "~1 second"), (45, "~45 seconds"), (480, "~8 minutes"),
                                               (5400, "~1.5 hours")])
def test_human_duration(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


def test_result_lines_for_every_status() -> None:
    r = ComponentResult(825, "emas.cal", status="skipped", error="Skipping ID 825 EMAs (bars stale: …)")
    assert result_line(r) == "Processing ID 825... emas.cal skipped: Skipping ID 825 EMAs (bars stale: …)"
    assert result_line(replace(r, status="not_run", error="run stopped")) == \
        "Processing ID 825... emas.cal not run: run stopped"
    assert result_line(replace(r, status="dry_run", rows_written=3, duration_s=1)) == \
        "Processing ID 825... emas.cal: DRY RUN, 3 rows would be written (1.0s)"


# ---------------------------------------------------------------------------------------------
# log retention


def test_prune_deletes_only_dated_refresh_logs_past_the_retention(tmp_path: Path) -> None:
    today = date(2026, 11, 30)
    names = {f"refresh-{today - timedelta(days=d):%Y-%m-%d}.log": d for d in (0, 29, 30, 31, 400)}
    for name in [*names, "refresh-notadate.log", "refresh-2020-13-01.log", "notes.txt"]:
        (tmp_path / name).write_text("x")
        os.utime(tmp_path / name, (0, 0))  # ancient mtimes: the name's day decides, not the mtime
    removed = logsetup.prune(tmp_path, 30, today)
    assert sorted(p.name for p in removed) == sorted(n for n, d in names.items() if d > 30)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [n for n, d in names.items() if d <= 30] + ["refresh-notadate.log", "refresh-2020-13-01.log", "notes.txt"])


def test_log_dir_and_retention_from_flag_env_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(logsetup.ENV_LOG_DIR, raising=False)
    monkeypatch.delenv(logsetup.ENV_RETENTION, raising=False)
    assert logsetup.log_dir(None) == Path(".logs") and logsetup.retention_days(None) == 30
    monkeypatch.setenv(logsetup.ENV_LOG_DIR, str(tmp_path))
    monkeypatch.setenv(logsetup.ENV_RETENTION, "7")
    assert logsetup.log_dir(None) == tmp_path and logsetup.retention_days(None) == 7
    assert logsetup.log_dir(Path("x")) == Path("x") and logsetup.retention_days(3) == 3
    monkeypatch.setenv(logsetup.ENV_RETENTION, "0")
    with pytest.raises(ValueError, match="TA_LAB2_LOG_RETENTION_DAYS"):
        logsetup.retention_days(None)


def test_open_run_log_names_the_file_by_utc_day(tmp_path: Path) -> None:
    try:
        path, removed = logsetup.open_run_log(tmp_path / "logs", 30, datetime(2026, 3, 4, 23, 59, tzinfo=UTC))
    finally:
        logsetup.close_run_log()
    assert path == tmp_path / "logs" / "refresh-2026-03-04.log" and path.exists() and removed == []


def test_the_operator_guide_lists_every_param_as_a_flag_and_as_a_param() -> None:
    """docs/operations/DAILY_REFRESH.md: §2's params table and §11's flags table follow RUN_PARAMS."""
    text = (ROOT / "docs" / "operations" / "DAILY_REFRESH.md").read_text()
    params_table = text[text.index("## 2. Params"):text.index("## 3. ")]
    flags_table = text[text.index("| Flag | DAG param |"):text.index("CLI-only run controls")]
    documented = set(re.findall(r"^\| `(\w+)` \|", params_table, re.M))
    assert documented == set(params.PARAM_NAMES), documented ^ set(params.PARAM_NAMES)
    rows = dict(re.findall(r"^\| (.+?) \| `(\w+)` \|", flags_table, re.M))
    assert set(rows.values()) == set(params.PARAM_NAMES)
    for flag_cell, name in rows.items():
        for flag in params.by_name(name).flags if name != "targets" else ("--targets",):
            assert f"`{flag}" in flag_cell or f"/ `{flag}`" in flag_cell, (name, flag, flag_cell)
