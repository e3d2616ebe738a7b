"""Telegram alerts against a real local HTTP server that speaks the Bot API (no mocks of the bot)."""

from __future__ import annotations

import asyncio
import html
import json
import logging
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from ta_lab2.ops import alerts
from ta_lab2.ops.alerts import (
    MAX_MESSAGE_LENGTH,
    Severity,
    TelegramConfig,
    _redact,
    dag_failure_message,
    format_message,
    resolve_config,
    send_alert,
    summary_message,
    task_failure_message,
)
from ta_lab2.ops.notifier import TelegramNotifier
from tests.support.fake_telegram import FakeTelegram, check_html, utf16_len

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "123456789:AAH-secretPART_0123456789abcdefXYZ"
SECRET = TOKEN.split(":", 1)[1]
CHAT = "-1001234567"
EVIL = '<bad> & "x"'


BASE = "http://airflow.example:8793/sub"  # a non-default port and a path prefix


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (alerts.ENV_TOKEN, alerts.ENV_CHAT_ID, alerts.ENV_BASE_URL, alerts.ENV_MIN_SEVERITY,
                 "TA_LAB2_ALERT_PER_TASK", "TA_LAB2_DEADLINE_HOURS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_TELEGRAM_DEFAULT", raising=False)
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", BASE + "/")


@pytest.fixture
def tg() -> Iterator[FakeTelegram]:
    with FakeTelegram() as server:
        yield server


@pytest.fixture
def config(tg: FakeTelegram) -> TelegramConfig:
    return TelegramConfig(token=TOKEN, chat_id=CHAT, base_url=tg.base_url)


@pytest.fixture
def env_config(tg: FakeTelegram, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(alerts.ENV_TOKEN, TOKEN)
    monkeypatch.setenv(alerts.ENV_CHAT_ID, CHAT)
    monkeypatch.setenv(alerts.ENV_BASE_URL, tg.base_url)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ti(**overrides: Any) -> SimpleNamespace:
    values = {
        "dag_id": "ta_lab2_daily_refresh",
        "run_id": "manual__2025-01-02T06:00:00+00:00",
        "task_id": "asset.bars.multi_tf",
        "map_index": 3,
        "rendered_map_index": "asset 825",
        "try_number": 2,
        "max_tries": 2,
        "log_url": "http://localhost:8080/dags/ta_lab2_daily_refresh/runs/r1/tasks/asset.bars.multi_tf/mapped/3",
    }
    return SimpleNamespace(**{**values, **overrides})


# -- sending ----------------------------------------------------------------------------------
def test_alert_arrives_html_escaped_with_parse_mode_html(tg: FakeTelegram, config: TelegramConfig) -> None:
    assert send_alert(
        "error", "Task <x> failed", [f"error: {EVIL}", "log: http://h/a?b=1&c=2"], config=config
    )

    [message] = tg.messages
    assert (message.token, message.chat_id, message.parse_mode) == (TOKEN, CHAT, "HTML")
    assert message.text.startswith("<b>[ERROR] Task &lt;x&gt; failed</b>\n")
    assert "error: &lt;bad&gt; &amp; &quot;x&quot;" in message.text
    assert "b=1&amp;c=2" in message.text
    assert f"error: {EVIL}" in html.unescape(message.text)


def test_fake_server_rejects_html_telegram_would_reject() -> None:
    assert check_html(f"<b>{EVIL}</b>") is not None
    assert check_html("a & b") is not None
    assert check_html("<b>open") is not None
    assert check_html("<b>ok</b> &lt;fine&gt; &amp; &quot;") is None


@pytest.mark.parametrize(
    ("severity", "min_arg", "min_env", "sent"),
    [
        ("warning", None, None, False),  # default minimum is error
        ("error", None, None, True),
        ("critical", None, None, True),
        ("error", None, "critical", False),
        ("warning", None, "warning", True),
        ("info", "info", "critical", True),  # the argument wins over the env
        ("error", Severity.CRITICAL, None, False),
    ],
)
def test_severity_below_minimum_sends_nothing(
    tg: FakeTelegram,
    config: TelegramConfig,
    monkeypatch: pytest.MonkeyPatch,
    severity: str,
    min_arg: Severity | str | None,
    min_env: str | None,
    sent: bool,
) -> None:
    if min_env:
        monkeypatch.setenv(alerts.ENV_MIN_SEVERITY, min_env)
    assert send_alert(severity, "t", ["x"], config=config, min_severity=min_arg) is sent
    assert len(tg.messages) == (1 if sent else 0)
    if not sent:
        assert tg.calls == []


def test_severity_order_and_parsing(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    assert Severity.CRITICAL > Severity.ERROR > Severity.WARNING > Severity.INFO
    assert Severity.parse(" Warning ") is Severity.WARNING
    with pytest.raises(ValueError, match="critical, error, warning, info"):
        Severity.parse("loud")
    monkeypatch.setenv(alerts.ENV_MIN_SEVERITY, "loud")
    assert alerts.min_severity_from_env() is Severity.ERROR
    assert "TA_LAB2_ALERT_MIN_SEVERITY ignored" in caplog.text


def test_server_error_returns_false_and_does_not_raise(
    tg: FakeTelegram, config: TelegramConfig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    tg.fail_next(5, status=500)

    assert send_alert("critical", "warehouse down", ["x"], config=config) is False

    assert tg.messages == []
    assert [status for _, status in tg.calls] == [500]
    warnings = [r for r in caplog.records if r.name == alerts.__name__ and r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "Telegram alert not sent" in warnings[0].getMessage()
    assert TOKEN not in caplog.text and SECRET not in caplog.text


def test_unreachable_server_returns_false(caplog: pytest.LogCaptureFixture) -> None:
    config = TelegramConfig(token=TOKEN, chat_id=CHAT, base_url=f"http://127.0.0.1:{_closed_port()}/bot")
    caplog.set_level(logging.DEBUG)
    assert send_alert("error", "t", ["x"], config=config) is False
    assert "NetworkError" in caplog.text
    assert SECRET not in caplog.text


def test_not_configured_logs_one_line_and_sends_nothing(
    tg: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    assert send_alert("critical", "Refresh run failures", ["run: r1"]) is False

    assert [r.getMessage() for r in caplog.records] == [
        "Telegram not configured: alert not sent: [CRITICAL] Refresh run failures"
    ]
    assert caplog.records[0].levelno == logging.INFO
    assert tg.calls == []


def test_token_never_appears_in_logs_on_success_or_failure(
    tg: FakeTelegram, config: TelegramConfig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # httpx (INFO) and python-telegram-bot (DEBUG) log request URLs
    caplog.set_level(logging.DEBUG, logger="httpx")  # Airflow's logging config caps httpx at WARNING

    assert send_alert("error", "ok", ["x"], config=config)
    tg.fail_next(1, status=502)
    assert not send_alert("error", "fails", ["x"], config=config)

    assert "/bot***/sendMessage" in caplog.text  # the library records were there, and masked
    assert TOKEN not in caplog.text and SECRET not in caplog.text
    assert all(SECRET not in r.getMessage() for r in caplog.records)
    assert all(logging.getLogger(n).filters == [] for n in alerts._TOKEN_LEAKING_LOGGERS)


def test_rejected_token_error_is_redacted(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with FakeTelegram(token="999:another-token-entirely") as strict:  # ours gets 401
        config = TelegramConfig(token=TOKEN, chat_id=CHAT, base_url=strict.base_url)
        assert send_alert("error", "t", ["x"], config=config) is False
    assert "InvalidToken" in caplog.text  # python-telegram-bot puts the token in this message
    assert SECRET not in caplog.text


@pytest.mark.parametrize(
    ("text", "token", "expected"),
    [
        (
            f"POST http://127.0.0.1:1/bot{TOKEN}/sendMessage",
            TOKEN,
            "POST http://127.0.0.1:1/bot***/sendMessage",
        ),
        (f"The token `{TOKEN}` was rejected", TOKEN, "The token `***` was rejected"),
        ("url http://h/bot123%3AAH-secretPART_0123456789abcdefXYZ/x", TOKEN, "url http://h/bot***/x"),
        (f"only the secret {SECRET}", TOKEN, "only the secret ***"),
        ("https://api.telegram.org/bot42:unknown/getMe", None, "https://api.telegram.org/bot***/getMe"),
        ("nothing to hide", TOKEN, "nothing to hide"),
    ],
)
def test_redact_masks_the_token(text: str, token: str | None, expected: str) -> None:
    assert _redact(text, token) == expected


def test_library_log_filter_masks_messages_and_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="httpx")  # Airflow's logging config caps httpx at WARNING
    with alerts._redacting_library_logs(TOKEN):
        logging.getLogger("httpx").info("HTTP Request: POST http://h/bot%s/sendMessage", TOKEN)
        try:
            raise RuntimeError(f"token {TOKEN} rejected")
        except RuntimeError:
            logging.getLogger("telegram.Bot").exception("failed")
    logging.getLogger("httpx").info("after: %s", TOKEN)  # the filter is gone once the send is over
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == "HTTP Request: POST http://h/bot***/sendMessage"
    assert messages[1].startswith("failed\nTraceback") and "token *** rejected" in messages[1]
    assert SECRET not in caplog.text.replace(f"after: {TOKEN}", "")


def test_config_repr_hides_the_token(config: TelegramConfig) -> None:
    assert TOKEN not in repr(config)


# -- formatting and truncation ----------------------------------------------------------------
@pytest.mark.parametrize("line", ["x" * 10_000, "&" * 3_000, "<>" * 2_500, "😀" * 5_000, "é\n" * 4_000])
def test_long_message_is_truncated_to_telegram_limit(
    tg: FakeTelegram, config: TelegramConfig, line: str
) -> None:
    text = format_message("error", "big", [line])
    assert utf16_len(text) <= MAX_MESSAGE_LENGTH
    assert text.endswith(alerts.TRUNCATION_MARK)
    assert check_html(text) is None  # no entity or surrogate pair cut in half
    assert send_alert("error", "big", [line], config=config)
    assert tg.messages[0].text == text


def test_short_message_is_not_truncated() -> None:
    text = format_message(Severity.INFO, "t", ["a" * 100])
    assert text == "<b>[INFO] t</b>\n" + "a" * 100


# -- message builders -------------------------------------------------------------------------
def test_task_failure_message_lists_the_failed_instance() -> None:
    ti = _ti()
    context = {
        "ti": ti,
        "exception": ValueError(EVIL),
        "task": SimpleNamespace(op_kwargs={"asset_ids": [825]}),
    }

    severity, title, lines = task_failure_message(context)

    assert severity is Severity.ERROR
    assert title == "Task failed: ta_lab2_daily_refresh.asset.bars.multi_tf[3]"
    assert lines == [
        "dag: ta_lab2_daily_refresh",
        f"run: {ti.run_id}",
        "task: asset.bars.multi_tf",
        "map index: 3 (asset 825)",
        "asset: 825",
        "try: 2 of 3 (retries exhausted)",
        f"error: ValueError: {EVIL}",
        # built from [api] base_url (not the TI's own log_url), run id URL-quoted
        f"log: {BASE}/dags/ta_lab2_daily_refresh/runs/manual__2025-01-02T06%3A00%3A00%2B00%3A00"
        "/tasks/asset.bars.multi_tf/mapped/3?try_number=2",
    ]
    text = format_message(severity, title, lines)
    assert "ValueError: &lt;bad&gt; &amp; &quot;x&quot;" in text and check_html(text) is None


def test_task_failure_message_reads_the_batch_passed_positionally() -> None:
    # the DAG calls each task with its batch as the first positional argument: op_args == [[825]]
    context = {"ti": _ti(), "exception": ValueError("x"), "task": SimpleNamespace(op_kwargs={}, op_args=[[825]])}

    assert "asset: 825" in task_failure_message(context)[2]
    context["task"] = SimpleNamespace(op_kwargs={}, op_args=[[1, 52]])
    assert "asset: 1, 52" in task_failure_message(context)[2]
    context["task"] = SimpleNamespace(op_kwargs={}, op_args=["not ids"])
    assert not any(line.startswith("asset:") for line in task_failure_message(context)[2])


class _BrokenTI:
    dag_id, run_id, task_id, map_index, try_number = "d", "r", "t", -1, 1

    @property
    def log_url(self) -> str:
        raise RuntimeError("no config")


class OperationalError(Exception):
    """Named like psycopg's, which the builder recognises by name."""


class _Corruption(Exception):
    alert_severity = "critical"


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (ValueError("bad row"), Severity.ERROR),
        (_Corruption("12% of 1d rows rejected"), Severity.CRITICAL),
        (OperationalError('connection to server at "db" failed: Connection refused'), Severity.CRITICAL),
        (OperationalError("deadlock detected"), Severity.ERROR),
        (None, Severity.ERROR),
    ],
)
def test_task_failure_severity(exc: BaseException | None, expected: Severity) -> None:
    assert task_failure_message({"ti": _ti(), "exception": exc})[0] is expected


def test_task_failure_message_tolerates_missing_and_raising_attributes() -> None:
    severity, title, lines = task_failure_message({"ti": _BrokenTI()})
    assert title == "Task failed: d.t"
    assert lines == ["dag: d", "run: r", "task: t", "try: 1", f"log: {BASE}/dags/d/runs/r/tasks/t?try_number=1"]
    assert task_failure_message({})[1] == "Task failed: ?.?"


def test_dag_failure_message() -> None:
    context = {
        "dag": SimpleNamespace(dag_id="ta_lab2_daily_refresh"),
        "run_id": "r1",
        "reason": "task_failure",
    }
    assert dag_failure_message(context) == (
        Severity.ERROR,
        "DAG run failed: ta_lab2_daily_refresh",
        ["dag: ta_lab2_daily_refresh", "run: r1", "reason: task_failure",
         f"grid: {BASE}/dags/ta_lab2_daily_refresh/runs/r1"],
    )
    context["ti"] = SimpleNamespace(task_id="summary", state="failed")
    assert dag_failure_message(context)[2][-2:] == ["last task: summary (failed)",
                                                    f"grid: {BASE}/dags/ta_lab2_daily_refresh/runs/r1"]
    context["ti"] = SimpleNamespace(task_id="summary", state=None)  # the DAG processor's last_ti: no "state ?"
    assert "last task: summary" in dag_failure_message(context)[2]
    assert not any("?" in line for line in dag_failure_message(context)[2])


CLEAN: dict[str, Any] = {
    "run_id": "r1",
    "assets_ok": 3,
    "assets_failed": 0,
    "assets_skipped": [],
    "validation_fail": 0,
    "validation_warn": 0,
    "rejects": 0,
    "repairs": 0,
    "critical": [],
}


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, Severity.INFO),
        ({"rejects": 4, "repairs": 2}, Severity.INFO),
        ({"assets_skipped": ["Skipping ID 825 EMAs (bars stale: last_src_ts=…, 61.2h)"]}, Severity.WARNING),
        ({"validation_warn": 1}, Severity.WARNING),
        ({"assets_failed": 1, "validation_warn": 1}, Severity.ERROR),
        ({"assets_failed": [825]}, Severity.ERROR),
        ({"validation_fail": 2}, Severity.ERROR),
        ({"critical": ["ID 52: 14% of 1d rows rejected"], "assets_failed": 1}, Severity.CRITICAL),
    ],
)
def test_summary_severity_rules(changes: dict[str, Any], expected: Severity) -> None:
    assert summary_message({**CLEAN, **changes})[0] is expected


def test_summary_lines() -> None:
    skipped = [f"Skipping ID {i} EMAs (bars stale)" for i in range(25)]
    summary = {**CLEAN, "assets_failed": [825, 1027], "assets_skipped": skipped, "critical": ["db <down>"]}
    severity, title, lines = summary_message(summary)
    assert (severity, title) == (Severity.CRITICAL, "Refresh run CRITICAL problems")
    assert lines[:4] == [
        "run: r1",
        "CRITICAL: db <down>",
        "assets: 3 ok, 2 failed, 25 skipped",
        "failed: 825, 1027",
    ]
    assert skipped[0] in lines and skipped[20] not in lines and "... and 5 more" in lines
    assert lines[-2:] == ["validation: 0 FAIL, 0 WARN", "rows: 0 rejected, 0 repaired"]
    assert summary_message(CLEAN)[1] == "Refresh run clean"


# -- configuration ----------------------------------------------------------------------------
def test_env_config_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_config(False) is None
    monkeypatch.setenv(alerts.ENV_TOKEN, TOKEN)
    assert resolve_config(False) is None  # a token without a chat id is not a configuration
    monkeypatch.setenv(alerts.ENV_CHAT_ID, CHAT)
    assert resolve_config(False) == TelegramConfig(TOKEN, CHAT, alerts.DEFAULT_BASE_URL, "env")
    monkeypatch.setenv(alerts.ENV_BASE_URL, "http://proxy.local/bot")
    assert resolve_config(False) == TelegramConfig(TOKEN, CHAT, "http://proxy.local/bot", "env")


def test_env_config_is_used_by_send_alert(tg: FakeTelegram, env_config: None) -> None:
    assert send_alert("error", "via env", ["x"])
    assert tg.messages[0].chat_id == CHAT


def test_airflow_connection_wins_over_env(monkeypatch: pytest.MonkeyPatch, env_config: None) -> None:
    conn: dict[str, Any] = {"conn_type": "telegram", "password": "777:conn-token", "host": "-100777"}
    monkeypatch.setenv("AIRFLOW_CONN_TELEGRAM_DEFAULT", json.dumps(conn))
    assert resolve_config(True) == TelegramConfig(
        "777:conn-token", "-100777", alerts.DEFAULT_BASE_URL, "connection telegram_default"
    )
    conn["extra"] = {"chat_id": "@alerts", "base_url": "http://mirror/bot"}
    monkeypatch.setenv("AIRFLOW_CONN_TELEGRAM_DEFAULT", json.dumps(conn))
    assert resolve_config(True) == TelegramConfig(
        "777:conn-token", "@alerts", "http://mirror/bot", "connection telegram_default"
    )
    assert resolve_config(False).source == "env"  # type: ignore[union-attr]


def test_missing_airflow_connection_falls_back_to_env(env_config: None) -> None:
    config = resolve_config(True)
    assert config is not None and config.source == "env"


# -- the notifier (callbacks) ------------------------------------------------------------------
def _conn_env(monkeypatch: pytest.MonkeyPatch, tg: FakeTelegram) -> None:
    conn = {"conn_type": "telegram", "password": TOKEN, "host": CHAT, "extra": {"base_url": tg.base_url}}
    monkeypatch.setenv("AIRFLOW_CONN_TELEGRAM_DEFAULT", json.dumps(conn))


def _fail_exc(message: str = "bad data", in_digest: bool = False) -> Exception:
    from airflow.sdk.exceptions import AirflowFailException

    exc = AirflowFailException(message)
    exc.alert_in_digest = in_digest  # type: ignore[attr-defined]
    return exc


def test_task_notifier_sends_through_the_connection_for_an_unmapped_task(
    tg: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    _conn_env(monkeypatch, tg)
    ti = _ti(task_id="prepare", map_index=-1, try_number=1, max_tries=2)

    TelegramNotifier("task_failure")({"ti": ti, "exception": _fail_exc(EVIL), "params": {"alert_on_error": True}})

    [message] = tg.messages
    assert message.text.startswith("<b>[ERROR] Task failed: ta_lab2_daily_refresh.prepare</b>")
    assert "AirflowFailException: &lt;bad&gt; &amp; &quot;x&quot;" in message.text
    assert "not retried: data error" in message.text and "try:" not in message.text
    assert f"log: {BASE}/dags/ta_lab2_daily_refresh/runs/" in message.text


def test_mapped_asset_task_failure_is_left_to_the_digest_unless_per_task(
    tg: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    _conn_env(monkeypatch, tg)
    context: dict[str, Any] = {"ti": _ti(), "exception": _fail_exc(), "params": {"alert_per_task": False}}
    TelegramNotifier("task_failure")(context)
    assert tg.calls == []

    context["params"] = {"alert_per_task": True}  # the param, for one run
    TelegramNotifier("task_failure")(context)
    assert len(tg.messages) == 1

    context["params"] = {}
    monkeypatch.setenv("TA_LAB2_ALERT_PER_TASK", "true")  # the env, for every run
    TelegramNotifier("task_failure")(context)
    assert len(tg.messages) == 2


@pytest.mark.parametrize(
    ("task_id", "map_index", "exc", "per_task", "send"),
    [
        ("asset.bars.1d", 0, "data", False, False),  # in the digest
        ("asset.bars.1d", 4, "transient", False, False),  # in the digest (critical line), or summary fails
        ("prepare", -1, "data", False, True),  # nothing runs: no digest
        ("prepare", -1, "transient", False, True),  # warehouse unreachable after the retries
        ("summary", -1, "digest", False, False),  # fails the run on purpose after sending the digest
        ("summary", -1, "transient", False, True),  # the digest could not be built
        ("validate_global", -1, "digest", False, False),  # cross-asset FAIL: listed in the digest
        ("publish", -1, "data", False, True),  # a task after summary: the digest never sees it
        ("summary", -1, "digest", True, True),  # alert_per_task: every failed task
        ("asset.bars.1d", 0, "data", True, True),
    ],
)
def test_task_failure_policy(task_id: str, map_index: int, exc: str, per_task: bool, send: bool) -> None:
    from ta_lab2.ops.notifier import task_failure_decision
    from ta_lab2.orchestration import TransientWarehouseError

    error = {"data": _fail_exc(), "digest": _fail_exc(in_digest=True),
             "transient": TransientWarehouseError("connection refused")}[exc]
    context = {"ti": _ti(task_id=task_id, map_index=map_index), "exception": error}
    assert task_failure_decision(context, per_task)[0] is send


def test_dag_failure_policy() -> None:
    from ta_lab2.ops.notifier import dag_failure_decision

    assert dag_failure_decision(already_alerted=True, per_task=False)[0] is False
    assert dag_failure_decision(already_alerted=False, per_task=False)[0] is True  # e.g. failed by hand
    assert dag_failure_decision(already_alerted=True, per_task=True)[0] is True


def test_try_line_is_truthful() -> None:
    from ta_lab2.orchestration import TransientWarehouseError

    assert alerts.try_line(_fail_exc(), 1, 2) == "not retried: data error"
    assert alerts.try_line(TransientWarehouseError("x"), 3, 2) == "try: 3 of 3 (retries exhausted)"
    assert alerts.try_line(ValueError("x"), 1, 0) == "try: 1 of 1 (retries exhausted)"
    assert alerts.try_line(ValueError("x"), None, 2) is None


@pytest.mark.parametrize("flag", [False, "false"])
def test_alert_on_error_false_suppresses_callbacks(
    tg: FakeTelegram, monkeypatch: pytest.MonkeyPatch, flag: object
) -> None:
    _conn_env(monkeypatch, tg)
    TelegramNotifier("task_failure")({"ti": _ti(map_index=-1), "exception": ValueError("x"),
                                      "params": {"alert_on_error": flag}})
    dag = SimpleNamespace(dag_id="d", params={"alert_on_error": flag})
    TelegramNotifier("dag_failure")({"dag": dag, "run_id": "r1", "reason": "task_failure"})
    assert tg.calls == []


def test_dag_failure_sends_when_nothing_was_alerted_and_not_after_an_alert(
    tg: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    _conn_env(monkeypatch, tg)
    context = {"dag": SimpleNamespace(dag_id="d", params={}), "run_id": "r1", "reason": "task_failure"}
    TelegramNotifier("dag_failure")(context)
    [message] = tg.messages
    assert message.text.startswith("<b>[ERROR] DAG run failed: d</b>")
    assert f"grid: {BASE}/dags/d/runs/r1" in message.text
    # the run's marker (an Airflow Variable; here from the env, as Airflow's env secrets backend reads it)
    monkeypatch.setenv("AIRFLOW_VAR_TA_LAB2_ALERTED__D__R1", json.dumps({"title": "Refresh run failures"}))
    TelegramNotifier("dag_failure")(context)
    assert len(tg.messages) == 1


def test_success_after_an_alerted_failure_sends_one_resolved_message(
    tg: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    _conn_env(monkeypatch, tg)
    context = {"dag": SimpleNamespace(dag_id="d", params={}), "run_id": "r1", "reason": "success"}
    TelegramNotifier("dag_success")(context)
    assert tg.calls == []  # a run that never alerted: nothing to resolve
    monkeypatch.setenv("AIRFLOW_VAR_TA_LAB2_ALERTED__D__R1", json.dumps({"title": "Refresh run failures"}))
    TelegramNotifier("dag_success")(context)  # INFO, sent although the minimum is error
    [message] = tg.messages
    assert message.text.splitlines() == [
        "<b>[INFO] Resolved: d</b>", "run: r1", "finished successfully after it was cleared",
        "earlier alert: Refresh run failures", f"grid: {BASE}/dags/d/runs/r1"]


async def _awaited(notifier: TelegramNotifier) -> None:
    await notifier  # what the triggerer does with the object it built


def test_notifiers_never_raise(tg: FakeTelegram, monkeypatch: pytest.MonkeyPatch) -> None:
    _conn_env(monkeypatch, tg)
    tg.fail_next(10)
    TelegramNotifier("task_failure")({"ti": _BrokenTI(), "params": object()})  # params without .get
    TelegramNotifier("task_failure")({"ti": _ti(map_index="not-an-int", max_tries="x")})
    TelegramNotifier("dag_failure")({})
    asyncio.run(_awaited(TelegramNotifier("deadline_missed", context={"dag_run": "not a dict"})))
    assert tg.messages == [] and len(tg.calls) == 3  # three tried, none raised
    with pytest.raises(ValueError, match="event 'later'"):
        TelegramNotifier("later")


# -- the digest and the deadline ------------------------------------------------------------------
def test_digest_says_what_failed_why_what_to_clear_and_links_the_grid() -> None:
    summary = {**CLEAN, "run_id": "manual__2026-01-02T06:00:00+00:00", "assets_ok": [1, 52],
               "assets_failed": [825], "critical": ["asset 825 bars.1d: DataCorruptionError: 15 rows"],
               "failures": [{"asset_id": 825, "component": "bars.1d", "error": "DataCorruptionError: 15 rows",
                             "transient": False, "corruption": True},
                            {"asset_id": 7, "component": "emas.cal", "error": "OperationalError: gone",
                             "transient": True, "corruption": False}]}
    severity, title, lines = summary_message(summary, dag_id="ta_lab2_daily_refresh", map_indexes={825: 2})
    assert (severity, title) == (Severity.CRITICAL, "Refresh run CRITICAL problems")
    # the critical failure is said once, marked CRITICAL, with why it was not retried
    assert "CRITICAL: asset 825 bars.1d: DataCorruptionError: 15 rows (not retried: data error)" in lines
    assert sum("DataCorruptionError" in line for line in lines) == 1
    assert "asset 7 emas.cal: OperationalError: gone (warehouse error: retried, last retry failed)" in lines
    assert "clear: asset.bars.1d map index 2 (asset 825)" in lines
    assert "clear: asset.emas.cal of asset 7" in lines
    assert "clear with Downstream on and Only failed off, after fixing the cause" in lines
    assert lines[-1] == f"grid: {BASE}/dags/ta_lab2_daily_refresh/runs/manual__2026-01-02T06%3A00%3A00%2B00%3A00"
    assert check_html(format_message(severity, title, lines)) is None


def test_ui_base_url_falls_back_to_the_api_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW__API__BASE_URL")
    monkeypatch.setenv("AIRFLOW__API__PORT", "9181")
    assert alerts.ui_base_url() == "http://localhost:9181"


DEADLINE_CONTEXT: dict[str, Any] = {
    "dag_run": {"dag_id": "ta_lab2_daily_refresh", "dag_run_id": "scheduled__2026-01-02T06:00:00+00:00",
                "logical_date": "2026-01-02T06:00:00Z", "run_type": "scheduled", "state": "running", "conf": {}},
    "deadline": {"id": "x", "deadline_time": "2026-01-02T10:00:00Z"},
}


def test_deadline_message() -> None:
    from ta_lab2.ops.notifier import deadline_message

    severity, title, lines = deadline_message(DEADLINE_CONTEXT, 4.0)
    assert (severity, title) == (Severity.ERROR, "Run late: ta_lab2_daily_refresh")
    assert lines[:5] == ["run: scheduled__2026-01-02T06:00:00+00:00", "not finished 4 h after its logical date",
                         "logical date: 2026-01-02T06:00:00Z", "deadline: 2026-01-02T10:00:00Z",
                         "state when the deadline passed: running"]
    assert lines[-1].startswith(f"grid: {BASE}/dags/ta_lab2_daily_refresh/runs/scheduled__")
    assert deadline_message(DEADLINE_CONTEXT, 0.25)[2][1] == "not finished 15 min after its logical date"


def test_deadline_notifier_awaited_as_the_triggerer_does_sends_once(
    tg: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``CallbackTrigger`` imports the class, calls it with the kwargs and ``context`` and awaits it."""
    from airflow.triggers.callback import CallbackTrigger

    from ta_lab2.ops.notifier import deadline_alert

    _conn_env(monkeypatch, tg)
    alert = deadline_alert(hours=4.0)
    trigger = CallbackTrigger(alert.callback.path, {**alert.callback.kwargs, "context": DEADLINE_CONTEXT})

    async def run() -> list[Any]:
        return [event.payload async for event in trigger.run()]

    events = asyncio.run(run())
    assert events[-1]["state"] == "success", events
    [message] = tg.messages
    assert message.text.startswith("<b>[ERROR] Run late: ta_lab2_daily_refresh</b>")

    backfill = {**DEADLINE_CONTEXT, "dag_run": {**DEADLINE_CONTEXT["dag_run"], "run_type": "backfill"}}
    asyncio.run(_awaited(TelegramNotifier("deadline_missed", hours=4.0, context=backfill)))
    assert len(tg.messages) == 1  # a backfill of past dates is late by construction: no alert


@pytest.mark.parametrize(("raw", "hours"), [(None, 4.0), ("6", 6.0), ("0.01", 0.01), ("off", None), ("0", None),
                                            ("-3", 4.0), ("soon", 4.0)])
def test_deadline_hours_setting(raw: str | None, hours: float | None, monkeypatch: pytest.MonkeyPatch) -> None:
    from ta_lab2.ops.notifier import deadline_alert, deadline_hours

    assert deadline_hours({} if raw is None else {"TA_LAB2_DEADLINE_HOURS": raw}) == hours
    if raw is not None:
        monkeypatch.setenv("TA_LAB2_DEADLINE_HOURS", raw)
    alert = deadline_alert()  # what the DAG file calls at parse time
    if hours is None:
        assert alert is None
    else:
        assert alert.interval.total_seconds() == hours * 3600
        assert alert.callback.path == "ta_lab2.ops.notifier.TelegramNotifier"


def test_a_notifier_instance_is_no_deadline_callback() -> None:
    """Why ``deadline_alert`` wraps the class in an ``AsyncCallback`` (AIRFLOW_NOTES)."""
    from datetime import timedelta

    from airflow.sdk.definitions.deadline import DeadlineAlert, DeadlineReference

    with pytest.raises(ValueError, match="not currently supported"):
        DeadlineAlert(reference=DeadlineReference.DAGRUN_LOGICAL_DATE, interval=timedelta(hours=1),
                      callback=TelegramNotifier("deadline_missed"))  # type: ignore[arg-type]


def test_send_alert_works_inside_a_running_event_loop(tg: FakeTelegram, config: TelegramConfig) -> None:
    async def caller() -> bool:
        return send_alert("error", "from async code", ["x"], config=config)

    assert asyncio.run(caller()) is True
    assert tg.messages[0].text.startswith("<b>[ERROR] from async code</b>")


# -- the fake server itself -------------------------------------------------------------------
def _post(url: str, body: bytes, content_type: str) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_fake_accepts_json_and_form_bodies(tg: FakeTelegram) -> None:
    url = f"{tg.base_url}{TOKEN}/sendMessage"
    status, body = _post(url, json.dumps({"chat_id": 5, "text": "json"}).encode(), "application/json")
    assert status == 200 and body["result"]["chat"] == {"id": 5, "type": "private"}
    status, body = _post(url, b"chat_id=6&text=form&parse_mode=HTML", "application/x-www-form-urlencoded")
    assert status == 200 and body["result"]["text"] == "form"
    status, body = _post(f"{tg.base_url}{TOKEN}/getMe", b"", "application/json")
    assert body["result"]["is_bot"] is True
    assert [(m.chat_id, m.text, m.parse_mode) for m in tg.messages] == [
        ("5", "json", None),
        ("6", "form", "HTML"),
    ]


def test_fake_cli_records_messages_from_another_process(tmp_path: Path) -> None:
    record, port_file = tmp_path / "tg.jsonl", tmp_path / "port"
    cmd = [sys.executable, "-m", "tests.support.fake_telegram", "--port", "0"]
    proc = subprocess.Popen([*cmd, "--record", str(record), "--port-file", str(port_file)], cwd=ROOT)
    try:
        deadline = time.monotonic() + 10
        while not (port_file.exists() and port_file.read_text()) and time.monotonic() < deadline:
            time.sleep(0.02)
        config = TelegramConfig(TOKEN, CHAT, f"http://127.0.0.1:{port_file.read_text()}/bot")
        assert send_alert("error", "cross-process", [EVIL], config=config)
        control = f"http://127.0.0.1:{port_file.read_text()}/_fake/messages"
        with urllib.request.urlopen(control, timeout=5) as response:
            assert [m["chat_id"] for m in json.loads(response.read())] == [CHAT]
    finally:
        proc.terminate()
        assert proc.wait(timeout=5) == 0
    [line] = record.read_text().splitlines()
    assert json.loads(line) | {"date": 0} == {
        "token": TOKEN,
        "chat_id": CHAT,
        "text": "<b>[ERROR] cross-process</b>\n&lt;bad&gt; &amp; &quot;x&quot;",
        "parse_mode": "HTML",
        "message_id": 1,
        "date": 0,
    }
