"""Shared fixtures: a throwaway database per test session on a real Postgres server.

Server resolution for tests (tests/support/dbserver.py): env ``TA_LAB2_TEST_SERVER_URL``
(a URL to the server's maintenance database), else the local server on 127.0.0.1:5432 when
something listens there, else the embedded ``pgserver`` one; printed once in the report
header. A chosen server that refuses the login is an error, never a silent switch. Each
session creates ``ta_lab2_test_<random>`` and drops it at the end; nothing touches
``TA_LAB2_DB_URL``'s database.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from tests.support.dbserver import ServerChoice, TestServerError, choose_server

ROOT = Path(__file__).resolve().parents[1]
SHARED_CMC = ROOT / "include" / "data" / "cmc"  # the repo's own copy (include/data/cmc/README.md)

# Airflow reads its configuration at first import: give this pytest process its own throwaway
# home (SQLite metadata, migrated by the ``airflow_home`` fixture when a test needs it), so
# parallel sessions never share state and nothing touches ~/airflow.
_AIRFLOW_HOME = tempfile.mkdtemp(prefix="ta_lab2_airflow_")
for _key, _value in {
    "AIRFLOW_HOME": _AIRFLOW_HOME,
    "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
    "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_AIRFLOW_HOME}/airflow.db",
}.items():
    os.environ[_key] = _value
# CLI refresh logs (.logs/refresh-YYYY-MM-DD.log by default) go to a throwaway folder, not the repo
os.environ.setdefault("TA_LAB2_LOG_DIR", tempfile.mkdtemp(prefix="ta_lab2_logs_"))


def _embedded() -> str:
    from ta_lab2.store.db import embedded_url

    return embedded_url("postgres")


@functools.cache
def _server_choice() -> ServerChoice | TestServerError:
    try:
        return choose_server(os.environ, _embedded)
    except TestServerError as exc:
        return exc


def _server_url() -> str:
    choice = _server_choice()
    if isinstance(choice, TestServerError):
        pytest.fail(str(choice), pytrace=False)
    return choice.url


def pytest_report_header(config: pytest.Config) -> str:
    choice = _server_choice()
    return f"ERROR: {choice}" if isinstance(choice, TestServerError) else choice.describe()


def _with_db(url: str, dbname: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(url)
    info["dbname"] = dbname
    return psycopg.conninfo.make_conninfo(**info)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def pg_server_url() -> str:
    return _server_url()


def create_database(server_url: str, prefix: str = "ta_lab2_test") -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return _with_db(server_url, name)


def drop_database(server_url: str, db_url: str) -> None:
    name = psycopg.conninfo.conninfo_to_dict(db_url)["dbname"]
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def warehouse_db(server_url: str, prefix: str = "ta_lab2_test") -> Generator[str]:
    """A new database with the schema applied; dropped when the block exits."""
    from ta_lab2.store import db, schema

    url = create_database(server_url, prefix)
    try:
        with db.connect(url) as conn:
            schema.apply_schema(conn)
        yield url
    finally:
        drop_database(server_url, url)


@pytest.fixture(scope="session")
def session_db_url(pg_server_url: str) -> Iterator[str]:
    """A fresh warehouse shared by the session."""
    with warehouse_db(pg_server_url) as url:
        yield url


@pytest.fixture
def fresh_db_url(pg_server_url: str) -> Iterator[str]:
    """A fresh warehouse for one test (isolation from others)."""
    with warehouse_db(pg_server_url) as url:
        yield url


@pytest.fixture(scope="session")
def shared_cmc_dir() -> Path:
    if not SHARED_CMC.is_dir():
        pytest.fail(f"CMC data not found at {SHARED_CMC}; it is part of the repository (git checkout include/data)")
    return SHARED_CMC


@pytest.fixture(scope="session")
def airflow_home() -> Iterator[Path]:
    """This session's Airflow home with a migrated SQLite metadata DB (for ``dag.test()``)."""
    airflow = str(Path(sys.executable).with_name("airflow"))
    done = subprocess.run([airflow, "db", "migrate"], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    yield Path(_AIRFLOW_HOME)
    shutil.rmtree(_AIRFLOW_HOME, ignore_errors=True)
