"""Secrets stay secret in a full ``dag.test()`` run: the warehouse connection needs a password
(a private cluster with scram-sha-256 on TCP) and alerts go to a fake Telegram with a bot
token. One asset is poisoned so that tasks fail, exceptions are raised and alerts are sent.
Then the password and the token are searched for in: everything the run printed (task logs
under ``dag.test()`` go to the process's output), every file under AIRFLOW_HOME (logs, and the
metadata database: XComs, rendered templates, dag-run conf, task-instance rows), every text
of every warehouse table (summaries, error texts, audit details) and every alert text."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from ta_lab2.store import db, schema
from tests.support.fake_telegram import FakeTelegram
from tests.support.private_pg import PrivatePostgres
from tests.support.warehouse import history, load_rows

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
START = datetime(2025, 1, 1, tzinfo=UTC)
DAYS = 60
CLEAN, POISONED = 301, 302
PASSWORD = "pw-" + secrets.token_hex(12)
TOKEN = "8123456:" + secrets.token_hex(16)


@pytest.fixture
def secured_warehouse() -> Iterator[str]:
    pg = PrivatePostgres(max_connections=40, host_auth="scram-sha-256")
    pg.start()
    try:
        with psycopg.connect(pg.admin_url(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE ROLE ta_lab2_app LOGIN PASSWORD {}").format(sql.Literal(PASSWORD)))
            conn.execute("CREATE DATABASE ta_lab2_secret OWNER ta_lab2_app")
        url = f"postgresql://ta_lab2_app:{PASSWORD}@127.0.0.1:{pg.port}/ta_lab2_secret"
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(url.replace(PASSWORD, "wrong")).close()  # the password is really required
        with db.connect(url) as conn:
            schema.apply_schema(conn)
        load_rows(url, CLEAN, history(CLEAN, DAYS, gap_prob=0.0, start=START))
        rows = history(POISONED, DAYS, gap_prob=0.0, start=START)
        for r in rows[5:25]:
            r["close"] = -abs(r["close"])  # a critical data-corruption failure: task fails, alert sent
        load_rows(url, POISONED, rows)
        yield url
    finally:
        pg.destroy()


def _warehouse_texts(url: str) -> str:
    out = []
    with psycopg.connect(url) as conn:
        tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        for t in tables:
            out += [r[0] for r in conn.execute(sql.SQL("SELECT t::text FROM {} t").format(sql.Identifier(t)))]
    return "\n".join(out)


def _files_under(folder: Path) -> Iterator[tuple[Path, bytes]]:
    for p in folder.rglob("*"):
        if p.is_file():
            yield p, p.read_bytes()


def test_no_password_or_token_anywhere_after_a_failing_dag_run(
        secured_warehouse: str, airflow_home: Path, capfd: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with FakeTelegram(token=TOKEN) as tg:
        monkeypatch.setenv("AIRFLOW_CONN_TA_LAB2_DB", db.airflow_conn_uri(secured_warehouse))
        monkeypatch.setenv("AIRFLOW_CONN_TELEGRAM_DEFAULT", json.dumps(
            {"conn_type": "telegram", "password": TOKEN, "host": "-100123", "extra": {"base_url": tg.base_url}}))
        bag = DagBag(dag_folder=str(ROOT / "dags"))
        assert bag.import_errors == {}
        dag = bag.get_dag("ta_lab2_daily_refresh")
        dr = dag.test(logical_date=START + timedelta(days=DAYS, hours=6),
                      run_conf={"ids": [CLEAN, POISONED], "alert_on_error": True})
        sent = [m.text for m in tg.messages]
    printed = capfd.readouterr()
    assert str(dr.state) == "failed"  # the poisoned asset failed: exceptions and alerts happened
    assert sent and any("302" in t for t in sent), sent  # the token was used: alerts were delivered
    with create_session() as session:
        tis = session.query(TaskInstance).filter_by(dag_id=dag.dag_id, run_id=dr.run_id).all()
        xcoms = session.query(XComModel).filter_by(dag_id=dag.dag_id, run_id=dr.run_id).all()
        rendered = [repr(r.rendered_fields) for r in session.query(RenderedTaskInstanceFields).filter_by(
            dag_id=dag.dag_id, run_id=dr.run_id).all()]
        texts = {
            "printed (task logs, exceptions)": printed.out + printed.err,
            "xcom": "\n".join(repr(x.value) for x in xcoms),
            "task instances": "\n".join(repr({c.name: getattr(ti, c.name) for c in ti.__table__.columns})
                                        for ti in tis),
            "rendered templates": "\n".join(rendered),
            "warehouse tables (summaries, audit, errors)": _warehouse_texts(secured_warehouse),
            "telegram messages": "\n".join(sent),
        }
    assert xcoms and rendered and "failed" in texts["printed (task logs, exceptions)"]  # we did look at real output
    secret_parts = {PASSWORD, TOKEN, TOKEN.split(":", 1)[1]}
    for where, text in texts.items():
        for s in secret_parts:
            assert s not in text, f"secret found in {where}"
    for path, data in _files_under(airflow_home):  # logs, the metadata DB (rendered fields, conf, XCom)
        for s in secret_parts:
            assert s.encode() not in data, f"secret found in {path}"
