"""Telegram alerts: severity filter, config resolution, HTML messages, message builders.

Contract (OPERATIONS.md §7): a summary alert (the run's digest) when a run is not clean, failure
alerts for what the digest cannot report (the Airflow side: :mod:`ta_lab2.ops.notifier`, whose
policy decides which callbacks send), severities ``critical > error > warning > info`` with a minimum
(default ``error``), HTML-escaped messages, and an alert that fails is logged, never raised.

Configuration, resolved by :func:`resolve_config` (one place):

1. inside Airflow (``airflow=True``): connection ``telegram_default`` — token in the password,
   chat id in the host or in extra ``chat_id``, optional extra ``base_url`` (a Bot API mirror,
   a proxy, or the local fake used by the tests);
2. env ``TELEGRAM_BOT_TOKEN`` + ``TELEGRAM_CHAT_ID`` (+ optional ``TELEGRAM_API_BASE_URL``);
3. neither: one info line ``Telegram not configured: alert not sent: <first line>``, nothing else.

The minimum severity comes from the ``min_severity`` argument, else env
``TA_LAB2_ALERT_MIN_SEVERITY`` (``critical|error|warning|info``), else ``error``.

The bot token never reaches a log: it is masked in our messages (:func:`_redact`) and in
the records that httpx and python-telegram-bot emit while an alert is being sent (they log
the request URL, which contains the token).

Example::

    from ta_lab2.ops.alerts import send_alert, summary_message
    send_alert(*summary_message(summary), airflow=True)
"""

from __future__ import annotations

import asyncio
import functools
import html
import logging
import os
import re
import ssl
from collections.abc import Callable, Coroutine, Generator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any
from urllib.parse import quote

log = logging.getLogger(__name__)

CONN_ID = "telegram_default"
ENV_TOKEN = "TELEGRAM_BOT_TOKEN"
ENV_CHAT_ID = "TELEGRAM_CHAT_ID"
ENV_BASE_URL = "TELEGRAM_API_BASE_URL"
ENV_MIN_SEVERITY = "TA_LAB2_ALERT_MIN_SEVERITY"
DEFAULT_BASE_URL = "https://api.telegram.org/bot"
MAX_MESSAGE_LENGTH = 4096  # Telegram's limit (UTF-16 code units)
MAX_TITLE_LENGTH = 200
MAX_LIST_LINES = 20  # skipped-asset reasons etc. listed in a summary before "... and N more"
SEND_TIMEOUT_S = 10.0
TRUNCATION_MARK = "\n… (truncated)"
# Loggers that print request URLs (and with them the token) while python-telegram-bot works.
_TOKEN_LEAKING_LOGGERS = (
    "httpx",
    "httpcore",
    "telegram",
    "telegram.Bot",
    "telegram.BaseRequest",
    "telegram.HTTPXRequest",
)
_BOT_URL_TOKEN = re.compile(r"(/bot)[^/\s'\"<>]+")
_CONNECTION_FAILURE = re.compile(
    r"connection refused|could not connect|connection (?:timed out|reset)|server closed the connection"
    r"|could not translate host name|no route to host",
    re.IGNORECASE,
)
_ASSET_KEYS = ("asset_id", "asset_ids", "asset", "assets", "ids", "id", "batch")
_FALSE_STRINGS = frozenset({"false", "0", "no", "off"})


class Severity(IntEnum):
    """Alert severity; larger is more severe, so ``Severity.ERROR >= Severity.WARNING``."""

    INFO = 10
    WARNING = 20
    ERROR = 30
    CRITICAL = 40

    @classmethod
    def parse(cls, value: Severity | str) -> Severity:
        """``"error"``/``"ERROR"``/``Severity.ERROR`` -> ``Severity.ERROR``; unknown names raise."""
        if isinstance(value, Severity):
            return value
        try:
            return cls[str(value).strip().upper()]
        except KeyError:
            names = ", ".join(s.name.lower() for s in sorted(cls, reverse=True))
            raise ValueError(f"unknown alert severity {value!r}; expected one of: {names}") from None


DEFAULT_MIN_SEVERITY = Severity.ERROR


def min_severity_from_env() -> Severity:
    """``TA_LAB2_ALERT_MIN_SEVERITY`` or ``error``; an invalid value is logged and ignored."""
    raw = os.environ.get(ENV_MIN_SEVERITY, "").strip()
    if not raw:
        return DEFAULT_MIN_SEVERITY
    try:
        return Severity.parse(raw)
    except ValueError as exc:
        log.warning("%s ignored (%s): using %s", ENV_MIN_SEVERITY, exc, DEFAULT_MIN_SEVERITY.name.lower())
        return DEFAULT_MIN_SEVERITY


@dataclass(frozen=True)
class TelegramConfig:
    """Where alerts go. ``repr`` leaves the token out."""

    token: str = field(repr=False)
    chat_id: str
    base_url: str = DEFAULT_BASE_URL
    source: str = "env"


# -- configuration ----------------------------------------------------------------------------
def resolve_config(airflow: bool = False, *, conn_id: str = CONN_ID) -> TelegramConfig | None:
    """Connection ``telegram_default`` (when ``airflow``), else env, else None (see module doc)."""
    if airflow:
        config = _config_from_connection(conn_id)
        if config is not None:
            return config
    return _config_from_env()


def _config_from_connection(conn_id: str) -> TelegramConfig | None:
    try:
        from airflow.sdk import BaseHook

        conn = BaseHook.get_connection(conn_id)
    except Exception as exc:  # AirflowNotFoundException, or no Airflow / no supervisor at all
        level = logging.DEBUG if type(exc).__name__ == "AirflowNotFoundException" else logging.WARNING
        log.log(level, "Telegram connection %r not usable (%s): trying env", conn_id, type(exc).__name__)
        return None
    return _config_from_conn(conn, conn_id)


def _config_from_conn(conn: Any, conn_id: str) -> TelegramConfig | None:
    extra = conn.extra_dejson if isinstance(conn.extra_dejson, dict) else {}
    token = conn.password or ""
    chat_id = str(extra.get("chat_id") or conn.host or "")
    if not (token and chat_id):
        log.debug("Telegram connection %r lacks a token (password) or chat id (host): trying env", conn_id)
        return None
    base_url = str(extra.get("base_url") or DEFAULT_BASE_URL)
    return TelegramConfig(token=token, chat_id=chat_id, base_url=base_url, source=f"connection {conn_id}")


async def _aconfig_from_connection(conn_id: str) -> TelegramConfig | None:
    try:
        from airflow.sdk import BaseHook

        conn = await BaseHook.aget_connection(conn_id)
    except Exception as exc:
        level = logging.DEBUG if type(exc).__name__ == "AirflowNotFoundException" else logging.WARNING
        log.log(level, "Telegram connection %r not usable (%s): trying env", conn_id, type(exc).__name__)
        return None
    return _config_from_conn(conn, conn_id)


def _config_from_env() -> TelegramConfig | None:
    token = os.environ.get(ENV_TOKEN, "").strip()
    chat_id = os.environ.get(ENV_CHAT_ID, "").strip()
    if not (token and chat_id):
        return None
    base_url = os.environ.get(ENV_BASE_URL, "").strip() or DEFAULT_BASE_URL
    return TelegramConfig(token=token, chat_id=chat_id, base_url=base_url, source="env")


# -- message formatting -----------------------------------------------------------------------
def format_message(severity: Severity | str, title: str, lines: Sequence[str]) -> str:
    """``<b>[SEVERITY] title</b>`` then one line each, all escaped, at most 4096 UTF-16 units.

    >>> format_message("error", "x < y", ["a & b"])
    '<b>[ERROR] x &lt; y</b>\\na &amp; b'
    """
    sev = Severity.parse(severity)
    header = f"<b>[{sev.name}] {html.escape(_shorten(str(title), MAX_TITLE_LENGTH))}</b>"
    body = "\n".join(html.escape(str(line)) for line in lines)
    text = f"{header}\n{body}" if body else header
    if _utf16_len(text) <= MAX_MESSAGE_LENGTH:
        return text
    budget = MAX_MESSAGE_LENGTH - _utf16_len(header) - 1 - _utf16_len(TRUNCATION_MARK)
    return f"{header}\n{_cut_escaped(body, budget)}{TRUNCATION_MARK}"


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _cut_escaped(escaped: str, budget: int) -> str:
    """First ``budget`` UTF-16 units of HTML-escaped text, never splitting a pair or an entity."""
    cut = escaped.encode("utf-16-le")[: max(budget, 0) * 2].decode("utf-16-le", errors="ignore")
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _redact(text: str, token: str | None) -> str:
    """``text`` with the bot token (and any ``/bot<token>`` URL segment) replaced by ``***``."""
    if token:
        variants = {token, quote(token, safe=""), quote(token)}
        secret = token.split(":", 1)[-1]
        if len(secret) >= 8:  # the secret half alone (e.g. a split or re-encoded token)
            variants.add(secret)
        for variant in sorted(variants, key=len, reverse=True):
            text = text.replace(variant, "***")
    return _BOT_URL_TOKEN.sub(r"\1***", text)


# -- sending ----------------------------------------------------------------------------------
def _above_minimum(severity: Severity | str, title: str,
                   min_severity: Severity | str | None) -> tuple[Severity, str] | None:
    """(severity, first line of the message) when the alert is at or above the minimum severity
    (the argument, else ``TA_LAB2_ALERT_MIN_SEVERITY``); None, logged at debug, when below."""
    sev = Severity.parse(severity)
    minimum = Severity.parse(min_severity) if min_severity is not None else min_severity_from_env()
    first_line = f"[{sev.name}] {(str(title).splitlines() or [''])[0]}"
    if sev < minimum:
        log.debug("alert below minimum severity %s, not sent: %s", minimum.name, first_line)
        return None
    return sev, first_line


def send_alert(
    severity: Severity | str,
    title: str,
    lines: Sequence[str],
    *,
    config: TelegramConfig | None = None,
    min_severity: Severity | str | None = None,
    airflow: bool = False,
    conn_id: str = CONN_ID,
) -> bool:
    """Send one alert; True when Telegram accepted it. Never raises.

    Below the minimum severity nothing is sent (False). ``config=None`` resolves it with
    :func:`resolve_config` (``airflow=True`` inside Airflow tasks and callbacks). Not configured:
    one info line, False. Any error (network, HTTP 5xx, bad token...): one warning without the
    token, False.
    """
    token: str | None = config.token if config is not None else None
    try:
        gated = _above_minimum(severity, title, min_severity)
        if gated is None:
            return False
        sev, first_line = gated
        cfg = config if config is not None else resolve_config(airflow, conn_id=conn_id)
        if cfg is None:
            log.info("Telegram not configured: alert not sent: %s", first_line)
            return False
        token = cfg.token
        text = format_message(sev, title, lines)
        with _redacting_library_logs(token):
            _run_coroutine(lambda: _deliver(cfg, text))
        log.info("Telegram alert sent to chat %s: %s", cfg.chat_id, _redact(first_line, token))
        return True
    except Exception as exc:
        log.warning("Telegram alert not sent: %s: %s", type(exc).__name__, _redact(str(exc), token))
        return False


async def asend_alert(
    severity: Severity | str,
    title: str,
    lines: Sequence[str],
    *,
    config: TelegramConfig | None = None,
    min_severity: Severity | str | None = None,
    airflow: bool = False,
    conn_id: str = CONN_ID,
) -> bool:
    """:func:`send_alert` for async callers (the triggerer runs deadline callbacks in its event
    loop): the connection is read with ``BaseHook.aget_connection`` and the message is sent on
    the caller's loop. Same contract: True when sent, never raises, the token never logged."""
    token: str | None = config.token if config is not None else None
    try:
        gated = _above_minimum(severity, title, min_severity)
        if gated is None:
            return False
        sev, first_line = gated
        cfg = config
        if cfg is None and airflow:
            cfg = await _aconfig_from_connection(conn_id)
        if cfg is None:
            cfg = _config_from_env()
        if cfg is None:
            log.info("Telegram not configured: alert not sent: %s", first_line)
            return False
        token = cfg.token
        text = format_message(sev, title, lines)
        with _redacting_library_logs(token):
            await asyncio.wait_for(_deliver(cfg, text), timeout=4 * SEND_TIMEOUT_S)
        log.info("Telegram alert sent to chat %s: %s", cfg.chat_id, _redact(first_line, token))
        return True
    except Exception as exc:
        log.warning("Telegram alert not sent: %s: %s", type(exc).__name__, _redact(str(exc), token))
        return False


async def _deliver(config: TelegramConfig, text: str) -> None:
    import telegram  # python-telegram-bot; imported here so DAG parsing stays light
    from telegram.request import HTTPXRequest

    def request() -> HTTPXRequest:
        t = SEND_TIMEOUT_S
        return HTTPXRequest(
            read_timeout=t,
            write_timeout=t,
            connect_timeout=t,
            pool_timeout=t,
            httpx_kwargs={"verify": _ssl_context()},
        )

    bot = telegram.Bot(
        config.token, base_url=config.base_url, request=request(), get_updates_request=request()
    )
    async with bot:  # initialize (getMe: checks the token) ... shutdown (closes the HTTP clients)
        await bot.send_message(config.chat_id, text, parse_mode="HTML")


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """httpx's default TLS context, built once (loading the CA bundle costs ~80 ms per client)."""
    import httpx

    return httpx.create_ssl_context()


def _run_coroutine(factory: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """``asyncio.run`` the coroutine; from inside a running loop, in a worker thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(factory())
        return
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="telegram-alert")
    try:
        pool.submit(lambda: asyncio.run(factory())).result(timeout=4 * SEND_TIMEOUT_S)
    finally:
        pool.shutdown(wait=False)  # on a timeout, do not wait for the stuck thread


class _RedactFilter(logging.Filter):
    """Masks the token in records of the HTTP/Telegram libraries (they log request URLs)."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is not ours to fix
            return True
        redacted = _redact(message, self.token)
        if record.exc_info:  # tracebacks carry exception messages (and their causes')
            trace = logging.Formatter().formatException(record.exc_info)
            if _redact(trace, self.token) != trace:
                redacted = f"{redacted}\n{_redact(trace, self.token)}"
                record.exc_info, record.exc_text = None, None
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


@contextmanager
def _redacting_library_logs(token: str) -> Generator[None, None, None]:
    loggers = [logging.getLogger(name) for name in _TOKEN_LEAKING_LOGGERS]
    flt = _RedactFilter(token)
    for lg in loggers:
        lg.addFilter(flt)
    try:
        yield
    finally:
        for lg in loggers:
            lg.removeFilter(flt)


# -- message builders (pure) ------------------------------------------------------------------
def ui_base_url() -> str:
    """Airflow's UI/API base URL: ``[api] base_url``, else ``http://localhost:<[api] port>``.

    Never ``http://localhost:8080`` by default: behind a non-default port (or a proxy) the
    links in the alerts must open. Outside Airflow (no config): ``http://localhost:8080``.
    """
    try:
        from airflow.configuration import conf

        base = (conf.get("api", "base_url", fallback="") or "").strip()
        if base:
            return base.rstrip("/")
        return f"http://localhost:{conf.get('api', 'port', fallback='8080')}"
    except Exception:  # no Airflow config at all (CLI, unit tests)
        return "http://localhost:8080"


def run_url(dag_id: str, run_id: str, base: str | None = None) -> str:
    """The run's grid in the Airflow UI: ``<base>/dags/<dag_id>/runs/<run_id>``."""
    return f"{(base or ui_base_url()).rstrip('/')}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"


def task_url(dag_id: str, run_id: str, task_id: str, map_index: int | None = None,
             try_number: int | None = None, base: str | None = None) -> str:
    """One task instance (its log tab) in the Airflow UI, as Airflow's own ``log_url`` builds it."""
    url = f"{run_url(dag_id, run_id, base)}/tasks/{quote(task_id, safe='')}"
    if isinstance(map_index, int) and map_index >= 0:
        url += f"/mapped/{map_index}"
    if isinstance(try_number, int) and try_number > 0:
        url += f"?try_number={try_number}"
    return url


def is_data_error(exc: Any) -> bool:
    """True for errors Airflow does not retry (``AirflowFailException``: data or params)."""
    return isinstance(exc, BaseException) and any(
        c.__name__ == "AirflowFailException" for c in type(exc).__mro__)


def try_line(exc: Any, try_number: Any, max_tries: Any) -> str | None:
    """``not retried: data error`` for errors that are never retried, else ``try: N of M``
    (M = retries + 1: the failure callback runs after the last of them), else None."""
    if is_data_error(exc):
        return "not retried: data error"
    if not isinstance(try_number, int) or isinstance(try_number, bool):
        return None
    if isinstance(max_tries, int) and not isinstance(max_tries, bool):
        return f"try: {try_number} of {max(max_tries + 1, try_number)} (retries exhausted)"
    return f"try: {try_number}"


def task_failure_message(context: Mapping[str, Any], base_url: str | None = None) -> tuple[Severity, str, list[str]]:
    """(severity, title, lines) for an Airflow task failure callback context.

    Lines: dag, run id, task (the component), map index with the rendered map index, asset id(s)
    from the task's ``op_kwargs`` or its positional batch when present, the try line
    (:func:`try_line`), the exception, the task's link built from :func:`ui_base_url`.
    Severity is ``error``; ``critical`` when the exception says so (``alert_severity =
    "critical"`` on its class or instance) or is a database ``OperationalError`` about an
    unreachable server (the failure callback runs after the last retry).
    """
    ti = context.get("ti") or context.get("task_instance")
    dag_id = _attr(ti, "dag_id") or _attr(context.get("dag"), "dag_id") or "?"
    run_id = _attr(ti, "run_id") or context.get("run_id") or "?"
    task_id = _attr(ti, "task_id") or _attr(context.get("task"), "task_id") or "?"
    map_index = _attr(ti, "map_index")
    mapped = isinstance(map_index, int) and map_index >= 0
    exc = context.get("exception")
    lines = [f"dag: {dag_id}", f"run: {run_id}", f"task: {task_id}"]
    if mapped:
        rendered = _attr(ti, "rendered_map_index")
        lines.append(f"map index: {map_index}" + (f" ({rendered})" if rendered else ""))
    asset = _asset_ids(context)
    if asset is not None:
        lines.append(f"asset: {asset}")
    try_number = _attr(ti, "try_number")
    if (tries := try_line(exc, try_number, _attr(ti, "max_tries"))) is not None:
        lines.append(tries)
    if exc is not None:
        lines.append(f"error: {_exception_text(exc)}")
    if "?" not in (dag_id, run_id, task_id):
        lines.append(f"log: {task_url(dag_id, run_id, task_id, map_index, try_number, base_url)}")
    title = f"Task failed: {dag_id}.{task_id}" + (f"[{map_index}]" if mapped else "")
    return _exception_severity(exc), title, lines


def dag_failure_message(context: Mapping[str, Any], base_url: str | None = None) -> tuple[Severity, str, list[str]]:
    """(severity ``error``, title, lines) for an Airflow DAG-run failure callback context.

    The DAG processor passes ``dag``, ``run_id`` and ``reason``, plus the template context of
    the last task instance when it has one (its task id, and its state when known, are then
    included). The last line links to the run's grid.
    """
    dag_run = context.get("dag_run")
    dag_id = _attr(context.get("dag"), "dag_id") or _attr(dag_run, "dag_id") or "?"
    run_id = context.get("run_id") or _attr(dag_run, "run_id") or "?"
    lines = [f"dag: {dag_id}", f"run: {run_id}"]
    if context.get("reason"):
        lines.append(f"reason: {context['reason']}")
    ti = context.get("ti") or context.get("task_instance")
    if ti is not None and (last := _attr(ti, "task_id")):
        state = _attr(ti, "state")
        lines.append(f"last task: {last}" + (f" ({getattr(state, 'value', state)})" if state else ""))
    if "?" not in (dag_id, run_id):
        lines.append(f"grid: {run_url(dag_id, run_id, base_url)}")
    return Severity.ERROR, f"DAG run failed: {dag_id}", lines


def summary_message(summary: Mapping[str, Any], *, dag_id: str | None = None, base_url: str | None = None,
                    map_indexes: Mapping[int, int] | None = None) -> tuple[Severity, str, list[str]]:
    """(severity, title, lines) for a refresh-run summary: the run's one digest.

    Keys: ``run_id``, ``assets_ok``, ``assets_failed`` (counts or lists of ids),
    ``assets_skipped`` (list of reasons), ``validation_fail``, ``validation_warn``,
    ``rejects``, ``repairs`` (counts or lists), ``critical`` (list of messages), and
    ``failures`` (optional: one dict per failed (asset, component) with ``error``,
    ``transient``, ``corruption``). With ``dag_id`` the digest also says what to clear (the
    failed task and its map index from ``map_indexes``: asset id -> map index) and links to the
    run's grid.
    Severity: ``critical`` if any critical message; else ``error`` if an asset failed or a
    validation check FAILed; else ``warning`` if an asset was skipped (stale) or a check WARNed;
    else ``info`` (clean run).
    """
    critical = [str(c) for c in summary.get("critical") or []]
    skipped = [str(s) for s in summary.get("assets_skipped") or []]
    ok, failed = _count(summary.get("assets_ok")), _count(summary.get("assets_failed"))
    v_fail, v_warn = _count(summary.get("validation_fail")), _count(summary.get("validation_warn"))
    if critical:
        severity, verdict = Severity.CRITICAL, "CRITICAL problems"
    elif failed or v_fail:
        severity, verdict = Severity.ERROR, "failures"
    elif skipped or v_warn:
        severity, verdict = Severity.WARNING, "warnings"
    else:
        severity, verdict = Severity.INFO, "clean"
    run_id = str(summary.get("run_id", "?"))
    failures = [f for f in summary.get("failures") or [] if isinstance(f, Mapping)]
    failure_lines = [f"asset {f.get('asset_id')} {f.get('component')}: {f.get('error')}" for f in failures]
    lines = [f"run: {run_id}"]
    lines += [f"CRITICAL: {c}" for c in critical if c not in failure_lines]  # the others are said below
    lines.append(f"assets: {ok} ok, {failed} failed, {len(skipped)} skipped")
    if isinstance(summary.get("assets_failed"), list | tuple | set) and failed:
        lines.append("failed: " + ", ".join(str(a) for a in summary["assets_failed"]))
    lines += _capped([("CRITICAL: " if text in critical else "") + f"{text} ({_why(f)})"
                      for text, f in zip(failure_lines, failures, strict=True)])
    lines += _capped(skipped)
    lines.append(f"validation: {v_fail} FAIL, {v_warn} WARN")
    lines.append(
        f"rows: {_count(summary.get('rejects'))} rejected, {_count(summary.get('repairs'))} repaired"
    )
    if dag_id and failures:
        lines += _capped([f"clear: {_clear_target(f, map_indexes)}" for f in failures])
        lines.append("clear with Downstream on and Only failed off, after fixing the cause")
    if dag_id and run_id != "?":
        lines.append(f"grid: {run_url(dag_id, run_id, base_url)}")
    return severity, f"Refresh run {verdict}", lines


def _why(failure: Mapping[str, Any]) -> str:
    if failure.get("transient"):
        return "warehouse error: retried, last retry failed"
    return "not retried: data error"


def _clear_target(failure: Mapping[str, Any], map_indexes: Mapping[int, int] | None) -> str:
    task = f"asset.{failure.get('component')}"
    try:
        index = (map_indexes or {}).get(int(failure.get("asset_id")))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        index = None
    return f"{task} map index {index} (asset {failure.get('asset_id')})" if index is not None \
        else f"{task} of asset {failure.get('asset_id')}"


def _capped(items: list[str]) -> list[str]:
    if len(items) <= MAX_LIST_LINES:
        return items
    return [*items[:MAX_LIST_LINES], f"... and {len(items) - MAX_LIST_LINES} more"]


def _count(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, list | tuple | set | dict):
        return len(value)
    return int(value)


def _attr(obj: Any, name: str) -> Any:
    """``obj.name`` or None, also when the attribute is a property that raises (e.g. log_url)."""
    if obj is None:
        return None
    try:
        return getattr(obj, name, None)
    except Exception:
        return None


def _asset_ids(context: Mapping[str, Any]) -> Any:
    """The asset id(s) the failed task worked on, read from its rendered ``op_kwargs``, else
    from its first positional argument when that is an id or a list of ids (the DAG passes
    each mapped instance's batch positionally: ``op_args == [[825]]``)."""
    task = context.get("task")
    op_kwargs = _attr(task, "op_kwargs")
    if isinstance(op_kwargs, Mapping):
        for key in _ASSET_KEYS:
            value = op_kwargs.get(key)
            if isinstance(value, int | str | list | tuple):
                return ", ".join(map(str, value)) if isinstance(value, list | tuple) else value
    op_args = _attr(task, "op_args")
    if isinstance(op_args, list | tuple) and op_args:
        first = op_args[0]
        if isinstance(first, int) and not isinstance(first, bool):
            return first
        if isinstance(first, list | tuple) and first and all(
                isinstance(a, int) and not isinstance(a, bool) for a in first):
            return ", ".join(map(str, first))
    return None


def _exception_text(exc: Any) -> str:
    text = f"{type(exc).__name__}: {exc}" if isinstance(exc, BaseException) else str(exc)
    return _shorten(text, 1500)


def _exception_severity(exc: Any) -> Severity:
    declared = getattr(exc, "alert_severity", None)
    if declared is not None:
        try:
            return Severity.parse(declared)
        except ValueError:
            pass
    if type(exc).__name__ == "OperationalError" and _CONNECTION_FAILURE.search(str(exc)):
        return Severity.CRITICAL  # the warehouse is unreachable, after the task's retries
    return Severity.ERROR


# -- Airflow params ---------------------------------------------------------------------------
def param_flag(context: Mapping[str, Any], name: str, default: bool) -> bool:
    """Boolean DAG param ``name`` from the context (or the DAG's params); ``"false"`` etc. are
    false; unreadable params give ``default``."""
    params = context.get("params")
    if params is None:
        params = _attr(context.get("dag"), "params")
    try:
        value = params.get(name, default) if params is not None else default
    except Exception:
        return default
    if isinstance(value, str):
        return value.strip().lower() not in _FALSE_STRINGS
    return bool(value)


def alerts_enabled(context: Mapping[str, Any]) -> bool:
    """``params["alert_on_error"]`` from the context (or the DAG's params); default True."""
    return param_flag(context, "alert_on_error", True)
