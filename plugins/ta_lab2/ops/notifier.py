"""``TelegramNotifier``: the DAG's Telegram callbacks, one message per incident.

One notifier class (an ``airflow.sdk.BaseNotifier``) for every callback of the DAG, chosen by
its ``event``: ``task_failure`` (``on_failure_callback`` of every task), ``dag_failure`` and
``dag_success`` (the DAG run's callbacks) and ``deadline_missed`` (the ``DeadlineAlert``
callback, run by the triggerer through ``async_notify``). It sends through
:func:`ta_lab2.ops.alerts.send_alert` (connection ``telegram_default`` with its optional
``base_url``, HTML escaping, severities, the token never logged, never raises).

Policy (docs/operations/DAILY_REFRESH.md §9, "What an operator receives"):

- A run that ends with failed assets sends ONE message: the ``summary`` task's digest
  (:func:`send_digest`): what failed, why, which assets, what to clear, a link to the grid.
- A failed task sends its own message only when the digest cannot report it: a task outside
  the mapped ``asset`` group (``prepare``, the summary crashing, the warehouse unreachable after
  the retries of ``prepare``/``validate_global``/``summary``, any task added after ``summary``),
  unless its exception carries ``alert_in_digest = True`` (the summary failing on purpose, a
  cross-asset validation FAIL the digest lists). Tasks of the ``asset`` group are in the digest.
- The DAG-run failure sends only when nothing was alerted for that run before (a run failed
  by hand, or every alert failed to go out).
- ``alert_per_task`` (param, or env ``TA_LAB2_ALERT_PER_TASK=true`` for every run) restores one
  message per failed task and per failed run, on top of the digest.
- A run that had alerted a failure and then finishes ``success`` (cleared and resumed) sends one
  ``Resolved`` message. "Had alerted" is an Airflow Variable ``ta_lab2_alerted__<dag>__<run>``
  written when a failure message was delivered, deleted by the resolution (it lives in
  Airflow's metadata database, so it works when the warehouse was the problem, and survives
  the clear, which deletes the cleared tasks' XComs).
- A scheduled run not finished ``TA_LAB2_DEADLINE_HOURS`` (default 4, read when the DAG file
  is parsed) after its logical date: one ``late`` message (:func:`deadline_alert`). Backfill
  runs and runs without a logical date have no such alert.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import BaseNotifier

from ta_lab2.ops.alerts import (
    CONN_ID,
    Severity,
    _attr,
    alerts_enabled,
    asend_alert,
    dag_failure_message,
    param_flag,
    run_url,
    send_alert,
    summary_message,
    task_failure_message,
)

log = logging.getLogger(__name__)

EVENTS = ("task_failure", "dag_failure", "dag_success", "deadline_missed")
ENV_PER_TASK = "TA_LAB2_ALERT_PER_TASK"
ENV_DEADLINE_HOURS = "TA_LAB2_DEADLINE_HOURS"
DEFAULT_DEADLINE_HOURS = 4.0
MARKER_PREFIX = "ta_lab2_alerted"
IN_DIGEST = "alert_in_digest"  # exception attribute: the run digest reports this failure
_TRUE = frozenset({"1", "true", "yes", "on"})


# -- policy (pure) ----------------------------------------------------------------------------
def per_task_enabled(context: Mapping[str, Any]) -> bool:
    """``alert_per_task`` param of the run, or env ``TA_LAB2_ALERT_PER_TASK`` true (every run)."""
    return param_flag(context, "alert_per_task", False) or \
        os.environ.get(ENV_PER_TASK, "").strip().lower() in _TRUE


def task_failure_decision(context: Mapping[str, Any], per_task: bool) -> tuple[bool, str]:
    """(send?, why) for a task's final failure (see the module doc)."""
    if per_task:
        return True, "alert_per_task is on"
    exc = context.get("exception")
    if getattr(exc, IN_DIGEST, False):
        return False, "the run digest reports this failure"
    map_index = _attr(context.get("ti") or context.get("task_instance"), "map_index")
    if isinstance(map_index, int) and not isinstance(map_index, bool) and map_index >= 0:
        return False, "a task of the mapped asset group: the summary digest reports it"
    return True, "the digest cannot report this task"


def dag_failure_decision(already_alerted: bool, per_task: bool) -> tuple[bool, str]:
    """(send?, why) for the DAG run's failure callback."""
    if per_task:
        return True, "alert_per_task is on"
    if already_alerted:
        return False, "this run already alerted its failure"
    return True, "nothing was alerted for this run"


def resolved_message(dag_id: str, run_id: str, marker: Mapping[str, Any],
                     base_url: str | None = None) -> tuple[Severity, str, list[str]]:
    """The one short message for a failed run that was resumed and finished successfully."""
    lines = [f"run: {run_id}", "finished successfully after it was cleared"]
    if marker.get("title"):
        lines.append(f"earlier alert: {marker['title']}")
    lines.append(f"grid: {run_url(dag_id, run_id, base_url)}")
    return Severity.INFO, f"Resolved: {dag_id}", lines


def deadline_message(context: Mapping[str, Any], hours: float | None,
                     base_url: str | None = None) -> tuple[Severity, str, list[str]]:
    """The dead-man's switch message from the triggerer's deadline context (``dag_run``: the
    run as the REST API shows it, ``deadline``: ``deadline_time``)."""
    run = context.get("dag_run") or {}
    dag_id, run_id = str(run.get("dag_id") or "?"), str(run.get("dag_run_id") or run.get("run_id") or "?")
    deadline = (context.get("deadline") or {}).get("deadline_time")
    after = f"{_hours(hours)} after its logical date" if hours else "by its deadline"
    lines = [f"run: {run_id}", f"not finished {after}"]
    if run.get("logical_date"):
        lines.append(f"logical date: {_iso(run['logical_date'])}")
    if deadline:
        lines.append(f"deadline: {_iso(deadline)}")
    if run.get("state"):
        lines.append(f"state when the deadline passed: {run['state']}")
    if "?" not in (dag_id, run_id):
        lines.append(f"grid: {run_url(dag_id, run_id, base_url)}")
    return Severity.ERROR, f"Run late: {dag_id}", lines


def _hours(hours: float) -> str:
    return f"{hours:g} h" if hours >= 1 else f"{hours * 60:g} min"


def _iso(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="seconds")
    return str(value)


# -- "this run alerted a failure" (an Airflow Variable) ----------------------------------------
def marker_key(dag_id: str, run_id: str) -> str:
    """``ta_lab2_alerted__<dag>__<run>`` with every character but ``[A-Za-z0-9_.-]`` as ``_``
    (run ids hold ``:`` and ``+``; the key travels in URL paths)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", f"{MARKER_PREFIX}__{dag_id}__{run_id}")[:250]


def mark_alerted(dag_id: str, run_id: str, title: str) -> None:
    """Remember that a failure message for this run went out. Never raises."""
    try:
        from airflow.sdk import Variable

        value = {"dag_id": dag_id, "run_id": run_id, "title": title,
                 "at": datetime.now(UTC).isoformat(timespec="seconds")}
        Variable.set(marker_key(dag_id, run_id), json.dumps(value),
                     description="ta_lab2: this run alerted a failure (deleted when it is resolved)")
    except Exception as exc:
        log.warning("could not record that run %s alerted (%s): no 'resolved' message will follow",
                    run_id, type(exc).__name__)


def alerted_before(dag_id: str, run_id: str) -> dict[str, Any] | None:
    """The marker of this run, or None (also when Variables cannot be read)."""
    try:
        from airflow.sdk import Variable

        raw = Variable.get(marker_key(dag_id, run_id), default=None)
    except Exception as exc:
        log.warning("could not read the alert marker of run %s (%s)", run_id, type(exc).__name__)
        return None
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except (TypeError, ValueError):
        value = {}
    return value if isinstance(value, dict) else {}


def forget(dag_id: str, run_id: str) -> None:
    try:
        from airflow.sdk import Variable

        Variable.delete(marker_key(dag_id, run_id))
    except Exception as exc:
        log.warning("could not delete the alert marker of run %s (%s)", run_id, type(exc).__name__)


# -- the digest (called by the summary task) --------------------------------------------------
def send_digest(summary: Mapping[str, Any], *, dag_id: str, batches: Sequence[Sequence[int]] | None,
                conn_id: str = CONN_ID) -> bool:
    """Send the run's digest (:func:`ta_lab2.ops.alerts.summary_message` with what to clear and
    the grid link); remember the run alerted when it was delivered at ``error`` or above."""
    map_indexes = {int(a): i for i, batch in enumerate(batches or []) for a in batch}
    severity, title, lines = summary_message(summary, dag_id=dag_id, map_indexes=map_indexes)
    sent = send_alert(severity, title, lines, airflow=True, conn_id=conn_id)
    if sent and severity >= Severity.ERROR:
        mark_alerted(dag_id, str(summary.get("run_id")), title)
    return sent


# -- the notifier -----------------------------------------------------------------------------
class TelegramNotifier(BaseNotifier):
    """Telegram alerts as an Airflow notifier (usable as any ``on_*_callback``).

    :param event: ``task_failure``, ``dag_failure``, ``dag_success`` or ``deadline_missed``.
    :param conn_id: the Telegram connection (default ``telegram_default``; env fallback).
    :param min_severity: overrides env ``TA_LAB2_ALERT_MIN_SEVERITY`` for this notifier.
    :param hours: the deadline interval, for the ``deadline_missed`` message.
    :param context: set by the triggerer when it builds the notifier for a deadline.

    Never raises: a notifier must not fail a task, the DAG processor or the triggerer.
    """

    def __init__(self, event: str = "task_failure", *, conn_id: str = CONN_ID,
                 min_severity: str | None = None, hours: float | None = None,
                 context: Any = None) -> None:
        if event not in EVENTS:
            raise ValueError(f"TelegramNotifier event {event!r}: expected one of {', '.join(EVENTS)}")
        super().__init__(context=context)
        self.event, self.conn_id, self.min_severity, self.hours = event, conn_id, min_severity, hours

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        """No templated fields: nothing to render (and no DAG template env to build)."""

    def __call__(self, *args: Any) -> None:
        try:
            super().__call__(*args)
        except Exception as exc:  # BaseNotifier re-raises; a callback must not
            log.warning("Telegram %s notifier failed: %s", self.event, type(exc).__name__)

    def notify(self, context: Any) -> None:
        try:
            if self.event == "deadline_missed":
                self._run_sync_deadline(context)
            elif not alerts_enabled(context):
                log.info("alert_on_error is off: no Telegram alert (%s)", self.event)
            elif self.event == "task_failure":
                self._task_failure(context)
            elif self.event == "dag_failure":
                self._dag_failure(context)
            else:
                self._dag_success(context)
        except Exception as exc:  # never fail the task / DAG processor
            log.warning("Telegram %s alert not built: %s", self.event, type(exc).__name__)

    async def async_notify(self, context: Any) -> None:
        try:
            if self.event != "deadline_missed":
                import asyncio

                await asyncio.to_thread(self.notify, context)
                return
            run = (context or {}).get("dag_run") or {}
            if not self._deadline_applies(run):
                return
            await asend_alert(*deadline_message(context, self.hours), airflow=True, conn_id=self.conn_id,
                              min_severity=self.min_severity)
        except Exception as exc:  # never fail the triggerer
            log.warning("Telegram %s alert not built: %s", self.event, type(exc).__name__)

    # -- events -----------------------------------------------------------------------------
    def _send(self, message: tuple[Severity, str, list[str]], **kwargs: Any) -> bool:
        kwargs.setdefault("min_severity", self.min_severity)
        return send_alert(*message, airflow=True, conn_id=self.conn_id, **kwargs)

    def _task_failure(self, context: Mapping[str, Any]) -> None:
        send, why = task_failure_decision(context, per_task_enabled(context))
        ti = context.get("ti") or context.get("task_instance")
        if not send:
            log.info("no Telegram alert for %s: %s", _attr(ti, "task_id"), why)
            return
        message = task_failure_message(context)
        if self._send(message) and message[0] >= Severity.ERROR:
            mark_alerted(str(_attr(ti, "dag_id")), str(_attr(ti, "run_id")), message[1])

    def _dag_failure(self, context: Mapping[str, Any]) -> None:
        dag_id, run_id = _dag_and_run(context)
        send, why = dag_failure_decision(alerted_before(dag_id, run_id) is not None, per_task_enabled(context))
        if not send:
            log.info("no Telegram alert for the failure of run %s: %s", run_id, why)
            return
        message = dag_failure_message(context)
        if self._send(message):
            mark_alerted(dag_id, run_id, message[1])

    def _dag_success(self, context: Mapping[str, Any]) -> None:
        dag_id, run_id = _dag_and_run(context)
        marker = alerted_before(dag_id, run_id)
        if marker is None:
            return
        # a resolution is sent whatever the minimum severity: it closes an alert that was sent
        if self._send(resolved_message(dag_id, run_id, marker), min_severity=Severity.INFO):
            forget(dag_id, run_id)

    def _deadline_applies(self, run: Mapping[str, Any]) -> bool:
        if str(run.get("run_type") or "") == "backfill":
            log.info("run %s is a backfill: no deadline alert", run.get("dag_run_id"))
            return False
        conf = run.get("conf") or {}
        if isinstance(conf, Mapping) and str(conf.get("alert_on_error", True)).strip().lower() in ("false", "0"):
            log.info("alert_on_error is off for run %s: no deadline alert", run.get("dag_run_id"))
            return False
        return True

    def _run_sync_deadline(self, context: Mapping[str, Any]) -> None:
        run = (context or {}).get("dag_run") or {}
        if self._deadline_applies(run):
            self._send(deadline_message(context, self.hours))


def _dag_and_run(context: Mapping[str, Any]) -> tuple[str, str]:
    dag_id = _attr(context.get("dag"), "dag_id") or _attr(context.get("dag_run"), "dag_id") or "?"
    run_id = context.get("run_id") or _attr(context.get("dag_run"), "run_id") or "?"
    return str(dag_id), str(run_id)


# -- the dead-man's switch --------------------------------------------------------------------
def deadline_hours(environ: Mapping[str, str] | None = None) -> float | None:
    """N of "not finished N hours after its logical date": env ``TA_LAB2_DEADLINE_HOURS``
    (a positive number; ``0``/``off`` disables), else 4. An invalid value is logged and the
    default used. Read when the DAG file is parsed: a DAG's deadline is fixed then."""
    raw = (os.environ if environ is None else environ).get(ENV_DEADLINE_HOURS, "").strip().lower()
    if not raw:
        return DEFAULT_DEADLINE_HOURS
    if raw in ("0", "off", "none", "false"):
        return None
    try:
        hours = float(raw)
        if not hours > 0 or hours != hours or hours == float("inf"):
            raise ValueError
    except ValueError:
        log.warning("%s=%r ignored (expected hours > 0, or off): using %g", ENV_DEADLINE_HOURS, raw,
                    DEFAULT_DEADLINE_HOURS)
        return DEFAULT_DEADLINE_HOURS
    return hours


def deadline_alert(hours: float | None = None, conn_id: str = CONN_ID) -> Any:
    """The DAG's ``DeadlineAlert`` (None when disabled): the triggerer builds
    ``TelegramNotifier(event="deadline_missed", ...)`` and awaits it when a run has not finished
    ``hours`` after its logical date."""
    from airflow.sdk.definitions.callback import AsyncCallback
    from airflow.sdk.definitions.deadline import DeadlineAlert, DeadlineReference

    hours = deadline_hours() if hours is None else hours
    if hours is None:
        return None
    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_LOGICAL_DATE,
        interval=timedelta(hours=hours),
        callback=AsyncCallback(TelegramNotifier, kwargs={"event": "deadline_missed", "hours": hours,
                                                         "conn_id": conn_id}),
        name="ta_lab2_daily_refresh_late",
    )
