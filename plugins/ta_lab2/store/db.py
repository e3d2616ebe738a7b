"""Resolve and open the warehouse connection.

Resolution order (one place, documented in docs/operations/DAILY_REFRESH.md):

1. inside an Airflow task (``airflow=True``): the Airflow connection ``ta_lab2_db``, and only
   it (not defined: :class:`MissingConnectionError`, one line naming the fix);
2. outside Airflow: env ``TA_LAB2_DB_URL``;
3. an embedded Postgres from the ``pgserver`` wheel with its data under ``.local/pgdata``
   (started on demand, left running and reused by later commands).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Generator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import psycopg

log = logging.getLogger(__name__)

CONN_ID = "ta_lab2_db"
ENV_URL = "TA_LAB2_DB_URL"
ENV_LOCAL_DIR = "TA_LAB2_LOCAL_DIR"
PROJECT_ROOT = Path(__file__).resolve().parents[3]


def local_dir() -> Path:
    return Path(os.environ.get(ENV_LOCAL_DIR, PROJECT_ROOT / ".local"))


def embedded_url(dbname: str = "postgres") -> str:
    """Start (or reuse) the embedded Postgres under ``.local/pgdata`` and return its URL."""
    import pgserver  # heavy import, only when needed

    datadir = local_dir() / "pgdata"
    datadir.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(datadir, cleanup_mode=None)  # keep it running for reuse
    uri: str = server.get_uri(dbname)
    return uri


def airflow_connection_url(conn_id: str = CONN_ID) -> str:
    """libpq conninfo of an Airflow connection (task SDK lookup: secrets backends, env, metadata)."""
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id)
    parts = {"host": conn.host or "localhost", "port": conn.port, "user": conn.login, "password": conn.password,
             "dbname": conn.schema or "postgres"}
    return psycopg.conninfo.make_conninfo("", **{k: str(v) for k, v in parts.items() if v not in (None, "")})


def airflow_conn_uri(url: str) -> str:
    """An ``AIRFLOW_CONN_TA_LAB2_DB`` value for a libpq URL/conninfo (socket dirs work too)."""
    info = psycopg.conninfo.conninfo_to_dict(url)
    auth = quote(str(info.get("user", "postgres")), safe="")
    if info.get("password"):
        auth += ":" + quote(str(info["password"]), safe="")
    host = quote(str(info.get("host", "localhost")), safe="")
    port = f":{info['port']}" if info.get("port") else ""
    return f"postgresql://{auth}@{host}{port}/{quote(str(info.get('dbname', 'postgres')), safe='')}"


class MissingConnectionError(RuntimeError):
    """Inside Airflow, the warehouse connection ``ta_lab2_db`` is not defined (a setup error:
    not retried; the message names the fix)."""


MISSING_CONNECTION = (f"Airflow connection {CONN_ID!r} (the warehouse) is not defined: create it, e.g. "
                      f"`airflow connections add {CONN_ID} --conn-uri postgresql://USER:PASSWORD@HOST:5432/DBNAME` "
                      f"or env AIRFLOW_CONN_{CONN_ID.upper()}=postgresql://... (make airflow sets it)")


def resolve_url(*, airflow: bool = False) -> str:
    """Inside Airflow (``airflow=True``) only the connection ``ta_lab2_db`` counts: without it
    every worker would silently write to a warehouse of its own, so a missing connection raises
    :class:`MissingConnectionError`. Outside Airflow: ``TA_LAB2_DB_URL``, else the embedded Postgres."""
    if airflow:
        try:
            return airflow_connection_url()
        except Exception as exc:
            if type(exc).__name__ != "AirflowNotFoundException":
                raise
            raise MissingConnectionError(MISSING_CONNECTION) from None
    url = os.environ.get(ENV_URL)
    if url:
        return url
    log.info("no %s set: using the embedded Postgres under %s", ENV_URL, local_dir())
    return embedded_url()


def redact(url: str) -> str:
    """The URL without its password, for logs."""
    info = psycopg.conninfo.conninfo_to_dict(url)
    return f"{info.get('host', 'socket')}:{info.get('port', 5432)}/{info.get('dbname', '')}"


def connect(url: str) -> psycopg.Connection:
    """A warehouse session with JIT compilation off (unless the URL's ``options`` set ``jit``):
    this project's queries are index range scans and small aggregates whose cost estimates pass
    ``jit_above_cost`` on a large warehouse; compiling them took ~90 ms per query, 70 % of a
    per-asset validation and more than the query itself (docs/decisions.md D-engine-7)."""
    options = str(psycopg.conninfo.conninfo_to_dict(url).get("options") or "")
    if "jit" not in options:
        options = f"{options} -c jit=off".strip()
    return psycopg.connect(url, autocommit=False, connect_timeout=10, application_name="ta_lab2", options=options)


@contextmanager
def transaction(url: str) -> Generator[psycopg.Connection]:
    """One connection, one transaction: commit on success, roll back on any error."""
    with connect(url) as conn:
        try:
            yield conn
        except BaseException:
            conn.rollback()
            raise
        conn.commit()


TRANSIENT_SQLSTATES = {"40001", "40P01", "53300", "53400", "57P01", "57P02", "57P03"}


def is_transient(exc: BaseException) -> bool:
    """Connection refused/reset, too many connections, serialization failure, deadlock, admin
    shutdown: worth retrying with backoff. Data errors (bad input, constraint violations) are not."""
    if isinstance(exc, psycopg.OperationalError) and getattr(exc, "sqlstate", None) is None:
        return True  # connection-level failure: refused, reset, timeout
    state = getattr(exc, "sqlstate", None)
    return bool(state) and (state in TRANSIENT_SQLSTATES or str(state).startswith("08"))
