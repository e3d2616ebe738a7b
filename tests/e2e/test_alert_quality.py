"""Alert quality on a REAL Airflow (``airflow standalone``, LocalExecutor, its own port, driven
through the REST API) with the local Bot API stand-in (``tests.support.fake_telegram``): one
incident, one Telegram message (issue 15; policy in ``ta_lab2.ops.notifier``).

One Airflow for the module, four scenarios in order:

1. A poisoned asset (825: 15 negative closes, ``bars.1d`` raises DataCorruptionError) next to a
   healthy one: exactly ONE message, the digest (what failed, why, what to clear, a grid link
   on the API's real port that answers). The failed mapped task, the summary failing on
   purpose and the DAG-run failure send nothing (their callbacks log why).
2. The source is fixed and 825's instance cleared: the run succeeds and sends ONE ``Resolved``.
3. ``prepare`` fails (an unknown asset id): exactly ONE message, prepare's own, with
   "not retried: data error" and a task link on the real port.
4. A run that has not finished 4 h (the default deadline) after its logical date (triggered
   with a logical date 4 h minus 5 s ago while the DAG is paused, so it stays queued): ONE
   ``Run late`` message, sent by the triggerer; the run then finishes and sends nothing more.

Finally no task/triggerer/DAG-processor log, message, XCom, rendered field or Variable holds
the bot token or the warehouse password (the warehouse connection uses a role with a password).

About 3 minutes on 2 cores (40 s of it starting Airflow).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import psycopg
import pytest

from ta_lab2.ops.notifier import marker_key
from ta_lab2.store import db, schema
from ta_lab2.store.db import airflow_conn_uri
from tests.conftest import create_database, drop_database
from tests.support.fake_telegram import FakeTelegram, check_html
from tests.support.standalone import AirflowApiError, StandaloneAirflow, sqlalchemy_url
from tests.support.warehouse import DAY, history, load_rows

pytestmark = pytest.mark.e2e

DAG = "ta_lab2_daily_refresh"
TOKEN = "987654:alert-quality-SECRET-token-xyz"
CHAT_ID = "4343"
DB_PASSWORD = f"wh-Pw-{uuid.uuid4().hex[:12]}"
N_DAYS = 60
HEALTHY, POISONED = 1, 825
RUN_TIMEOUT_S = 240


def _today() -> datetime:
    return datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def _rows(seed: int) -> list[dict[str, Any]]:
    return history(seed, N_DAYS, gap_prob=0.0, start=_today() - N_DAYS * DAY)


def _poisoned(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """15 negative closes (> max(10, 1% of 60)): bars.1d raises DataCorruptionError."""
    return [{**r, "close": -r["close"]} if k % 3 == 0 and k // 3 < 15 else r for k, r in enumerate(rows)]


def _with_password(url: str, role: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(url)
    info.update(user=role, password=DB_PASSWORD)
    return psycopg.conninfo.make_conninfo(**info)  # type: ignore[arg-type]


# -- fixtures: one Airflow for the module -------------------------------------------------------
@pytest.fixture(scope="module")
def warehouse(pg_server_url: str) -> Iterator[dict[str, str]]:
    """A warehouse owned by a role WITH a password (the DAG connects as that role) + metadata DB."""
    role = f"ta_lab2_alert_{uuid.uuid4().hex[:8]}"
    urls: dict[str, str] = {}
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{DB_PASSWORD}'")
    try:
        urls["metadata"] = create_database(pg_server_url, "ta_lab2_e2e_alrt_meta")
        admin = create_database(pg_server_url, "ta_lab2_e2e_alrt_wh")
        urls["admin"] = admin
        with psycopg.connect(pg_server_url, autocommit=True) as conn:
            name = psycopg.conninfo.conninfo_to_dict(admin)["dbname"]
            conn.execute(f'ALTER DATABASE "{name}" OWNER TO {role}')
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"ALTER SCHEMA public OWNER TO {role}")
        urls["warehouse"] = _with_password(admin, role)
        with db.connect(urls["warehouse"]) as conn:
            schema.apply_schema(conn)
        yield urls
    finally:
        for key in ("metadata", "admin"):
            if key in urls:
                drop_database(pg_server_url, urls[key])
        with psycopg.connect(pg_server_url, autocommit=True) as conn:
            conn.execute(f"DROP ROLE IF EXISTS {role}")


@pytest.fixture(scope="module")
def telegram() -> Iterator[FakeTelegram]:
    with FakeTelegram(0, token=TOKEN) as fake:  # any other token gets 401
        yield fake


@pytest.fixture(scope="module")
def airflow(warehouse: dict[str, str], telegram: FakeTelegram,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandaloneAirflow]:
    conn = {"conn_type": "telegram", "password": TOKEN, "host": CHAT_ID, "extra": {"base_url": telegram.base_url}}
    env = {
        "AIRFLOW_CONN_TA_LAB2_DB": airflow_conn_uri(warehouse["warehouse"]),
        "AIRFLOW_CONN_TELEGRAM_DEFAULT": json.dumps(conn),
        "TA_LAB2_ALERT_MIN_SEVERITY": "error",
        "TA_LAB2_DB_URL": "",
        "TELEGRAM_BOT_TOKEN": "",
        "TELEGRAM_CHAT_ID": "",
    }
    assert DB_PASSWORD in env["AIRFLOW_CONN_TA_LAB2_DB"]
    af = StandaloneAirflow(tmp_path_factory.mktemp("airflow_home"), env=env, parallelism=4,
                           metadata_db_url=sqlalchemy_url(warehouse["metadata"]))
    try:
        af.start()
        af.wait_dag()
        af.create_pool("ta_lab2_db", 4, "caps concurrent warehouse connections")
        af.unpause()
        yield af
    finally:
        af.stop()


# -- helpers ---------------------------------------------------------------------------------------
def _wait_for(cond: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := cond():
            return value
        time.sleep(0.5)
    raise AssertionError(f"not after {timeout:.0f}s: {what}")


def _logged(af: StandaloneAirflow, text: str) -> bool:
    """``text`` is in a log under $AIRFLOW_HOME/logs (tasks, DAG processor, triggerer)."""
    return any(text in p.read_text(errors="replace") for p in (af.home / "logs").rglob("*.log"))


def _absent(af: StandaloneAirflow, path: str) -> bool:
    try:
        af.get(path)
    except AirflowApiError as exc:
        return exc.status == 404
    return False


def _texts(tg: FakeTelegram, since: int = 0) -> list[str]:
    return [m.text for m in tg.messages[since:]]


def _explain(af: StandaloneAirflow, run_id: str, tg: FakeTelegram) -> str:
    return "messages:\n" + "\n---\n".join(_texts(tg)) + "\n" + af.diagnostics(run_id)


def _trigger(af: StandaloneAirflow, conf: dict[str, Any], logical_date: datetime | None = None) -> str:
    """A run WITH a logical date, like a scheduled one, so it carries the 4 h deadline."""
    return str(af.trigger(conf, logical_date or datetime.now(UTC).replace(microsecond=0))["dag_run_id"])


# -- the scenarios ---------------------------------------------------------------------------------
def test_poisoned_run_sends_one_digest_and_its_resume_one_resolved(
        airflow: StandaloneAirflow, warehouse: dict[str, str], telegram: FakeTelegram) -> None:
    af, wh = airflow, warehouse["warehouse"]
    clean = {HEALTHY: _rows(3), POISONED: _rows(7)}
    load_rows(wh, HEALTHY, clean[HEALTHY])
    load_rows(wh, POISONED, _poisoned(clean[POISONED]))
    start = len(telegram.messages)
    run_id = _trigger(af, {"ids": [HEALTHY, POISONED]})

    assert af.wait_run(run_id, RUN_TIMEOUT_S) == "failed", _explain(af, run_id, telegram)
    # the DAG-run failure callback ran in the DAG processor, and chose silence
    _wait_for(lambda: _logged(af, f"no Telegram alert for the failure of run {run_id}: this run already alerted"),
              90, "the DAG failure callback's decision in the DAG processor log")
    assert _logged(af, "no Telegram alert for asset.bars.1d: a task of the mapped asset group")
    [digest] = _texts(telegram, start)
    assert check_html(digest) is None
    bad = af.xcom(run_id, "prepare").index([POISONED])
    grid = f"{af.base_url}/dags/{DAG}/runs/{quote(run_id, safe='')}"
    for part in ("<b>[CRITICAL] Refresh run CRITICAL problems</b>", f"run: {run_id}", "assets: 1 ok, 1 failed",
                 f"asset {POISONED} bars.1d: DataCorruptionError", "(not retried: data error)",
                 f"clear: asset.bars.1d map index {bad} (asset {POISONED})",
                 "clear with Downstream on and Only failed off", f"grid: {grid}"):
        assert part in digest, (part, digest)
    assert "try:" not in digest and "state ?" not in digest
    page = httpx.get(grid, timeout=30)  # the link answers on the API server's real (non-default) port
    assert page.status_code == 200 and "<html" in page.text.lower(), page.status_code
    assert af.port != 8080

    # resume: fix the source, clear 825's failed instance with downstream
    load_rows(wh, POISONED, clean[POISONED])
    af.clear(run_id, [("asset.bars.1d", bad)], only_failed=False, include_downstream=True)
    assert af.wait_run(run_id, RUN_TIMEOUT_S) == "success", _explain(af, run_id, telegram)
    [_, resolved] = _wait_for(lambda: len(_texts(telegram, start)) >= 2 and _texts(telegram, start), 90,
                              "the Resolved message")
    assert resolved.splitlines()[:3] == [f"<b>[INFO] Resolved: {DAG}</b>", f"run: {run_id}",
                                         "finished successfully after it was cleared"], resolved
    assert f"grid: {grid}" in resolved
    _wait_for(lambda: _absent(af, f"/api/v2/variables/{marker_key(DAG, run_id)}"), 30,
              "the run's marker Variable deleted after the Resolved message (a second success says nothing)")
    assert len(telegram.messages) == start + 2


def test_prepare_failing_sends_one_message(airflow: StandaloneAirflow, telegram: FakeTelegram) -> None:
    af = airflow
    start = len(telegram.messages)
    run_id = _trigger(af, {"ids": [999_999]})  # unknown id: prepare refuses the request

    assert af.wait_run(run_id, RUN_TIMEOUT_S) == "failed", _explain(af, run_id, telegram)
    _wait_for(lambda: _logged(af, f"no Telegram alert for the failure of run {run_id}: this run already alerted"),
              90, "the DAG failure callback's decision in the DAG processor log")
    [message] = _texts(telegram, start)
    assert message.startswith(f"<b>[ERROR] Task failed: {DAG}.prepare</b>"), message
    assert "999999" in message and "not retried: data error" in message and "try:" not in message
    assert f"log: {af.base_url}/dags/{DAG}/runs/{quote(run_id, safe='')}/tasks/prepare" in message
    tis = {t["task_id"]: t["state"] for t in af.task_instances(run_id)}
    assert tis["summary"] == "failed"  # failed on purpose, silently: prepare's message is the one


def test_run_missing_its_deadline_sends_one_message(airflow: StandaloneAirflow, telegram: FakeTelegram) -> None:
    af = airflow
    start = len(telegram.messages)
    af.patch(f"/api/v2/dags/{DAG}", {"is_paused": True}, update_mask="is_paused")
    try:  # paused, the run stays queued: it cannot finish before logical date + 4 h, 5 s from now
        logical = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=4) + timedelta(seconds=5)
        run_id = _trigger(af, {"ids": [HEALTHY], "targets": ["bars"], "builders": ["1d"], "validate": False},
                          logical)
        [late] = _wait_for(lambda: _texts(telegram, start), 120, "the Run late message from the triggerer")
        assert af.dag_run(run_id)["state"] in ("queued", "running")
    finally:
        af.unpause()
    assert late.startswith(f"<b>[ERROR] Run late: {DAG}</b>"), late
    for part in (f"run: {run_id}", "not finished 4 h after its logical date", "state when the deadline passed: queued",
                 f"grid: {af.base_url}/dags/{DAG}/runs/{quote(run_id, safe='')}"):
        assert part in late, (part, late)
    assert af.wait_run(run_id, RUN_TIMEOUT_S) == "success", _explain(af, run_id, telegram)
    time.sleep(5)  # the success callback (DAG processor) has nothing to resolve
    assert len(telegram.messages) == start + 1, _texts(telegram, start)


def test_no_token_or_password_in_any_log_message_xcom_or_variable(
        airflow: StandaloneAirflow, warehouse: dict[str, str], telegram: FakeTelegram) -> None:
    secrets = {"bot token": TOKEN, "token secret": TOKEN.split(":", 1)[1], "db password": DB_PASSWORD}
    assert len(telegram.messages) >= 4  # the scenarios above ran and alerted
    places: dict[str, str] = {f"message {m.message_id}": m.text for m in telegram.messages}
    logs = sorted((airflow.home / "logs").rglob("*.log"))
    assert any("task_id=" in str(p) for p in logs) and any("dag_processor" in str(p) for p in logs)
    places |= {str(p.relative_to(airflow.home)): p.read_text(errors="replace") for p in logs}
    places["standalone output"] = airflow.log_path.read_text(errors="replace")
    with psycopg.connect(warehouse["metadata"].replace("postgresql+psycopg2", "postgresql")) as conn:
        for table, column in (("xcom", "value"), ("rendered_task_instance_fields", "rendered_fields"),
                              ("variable", "val")):
            rows = conn.execute(f"SELECT {column}::text FROM {table}").fetchall()
            places[table] = "\n".join(str(r[0]) for r in rows)
    assert places["xcom"], "no XCom rows: the check would be vacuous"
    leaks = [(where, what) for where, text in places.items() for what, secret in secrets.items() if secret in text]
    assert not leaks, leaks
