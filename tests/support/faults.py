"""Fault-injection helpers for the reliability tests: the CLI as a real subprocess, table
snapshots to compare a faulted warehouse with a clean build, and backend killing.

Everything here is black-box: the CLI (``python -m ta_lab2``) and SQL, never loader or
engine internals.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from tests.support.warehouse import IGNORED, _strip, all_tables

ROOT = Path(__file__).resolve().parents[2]
EXPORT_HEAD = "timeOpen;timeClose;timeHigh;timeLow;name;open;high;low;close;volume;marketCap;timestamp"
PERCOIN_HEAD = "SNo,Name,Symbol,Date,High,Low,Open,Close,Volume,Marketcap"


def cli_env(url: str) -> dict[str, str]:
    return {**os.environ, "TA_LAB2_DB_URL": url, "PYTHONPATH": f"{ROOT / 'plugins'}{os.pathsep}{ROOT}"}


def cli_argv(*argv: str) -> list[str]:
    return [sys.executable, "-m", "ta_lab2", *argv]


def run_cli(url: str, *argv: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli_argv(*argv), cwd=ROOT, env=cli_env(url), capture_output=True, text=True,
                          timeout=timeout, check=False)


def start_cli(url: str, *argv: str) -> subprocess.Popen[str]:
    return subprocess.Popen(cli_argv(*argv), cwd=ROOT, env=cli_env(url), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def start_dag_test(url: str, logical_date: str, conf: dict[str, Any], output: Path,
                   dag_id: str = "ta_lab2_daily_refresh") -> subprocess.Popen[str]:
    """``airflow dags test`` (``dag.test()``: every task in one process) of the DAG against the
    warehouse ``url``, with this process's AIRFLOW_HOME (the ``airflow_home`` fixture migrates
    its metadata DB). Everything it prints, task logs included, goes to the file ``output``
    (a pipe nobody reads while the run goes on would fill up and stall it)."""
    from ta_lab2.store.db import airflow_conn_uri

    # dag.test() of a DAG with a DeadlineAlert crashes on Airflow 3.3.2 (see tests/dag/test_dag_run.py)
    env = {**cli_env(url), "AIRFLOW_CONN_TA_LAB2_DB": airflow_conn_uri(url), "TA_LAB2_DEADLINE_HOURS": "off"}
    argv = [sys.executable, "-m", "airflow", "dags", "test", dag_id, logical_date, "-c", json.dumps(conf)]
    with output.open("w") as out:
        return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)


def assert_no_traceback(*texts: str) -> None:
    for t in texts:
        assert "Traceback (most recent call last)" not in t, t[-3000:]


def snapshot(url: str, tables: list[str] | None = None) -> dict[str, list[tuple[Any, ...]]]:
    """Every bar/EMA/state/reject table's rows (bookkeeping columns excluded), sorted, plus the
    1d change feed's shape: what a clean build and a faulted-then-rerun build must share."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    with psycopg.connect(url) as conn:
        for table in tables or all_tables("all"):
            cur = conn.execute(sql.SQL("SELECT * FROM {} LIMIT 0").format(sql.Identifier(table)))
            cols = [d.name for d in cur.description or [] if d.name not in IGNORED]
            stmt = sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(map(sql.Identifier, cols)),
                                                       sql.Identifier(table))
            rows = [tuple(_strip(v) for v in r) for r in conn.execute(stmt).fetchall()]
            out[table] = sorted(rows, key=repr)
    return out


def diff_snapshots(a: dict[str, list[tuple[Any, ...]]], b: dict[str, list[tuple[Any, ...]]]) -> list[str]:
    """Tables whose rows differ (with the first differing row), [] when equal. NaN == NaN."""
    bad = []
    for table in sorted(set(a) | set(b)):
        ra, rb = a.get(table, []), b.get(table, [])
        if repr(ra) != repr(rb):  # repr: NaN equals NaN, floats compare bit-exactly via repr
            first = next(((x, y) for x, y in zip(ra, rb, strict=False) if repr(x) != repr(y)), None)
            bad.append(f"{table}: {len(ra)} vs {len(rb)} rows; first difference {first}")
    return bad


def terminate_backends(admin_url: str, dbname: str, app: str = "ta_lab2") -> int:
    """``pg_terminate_backend`` every ta_lab2 session on ``dbname``; returns how many."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        rows = conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                            "AND application_name = %s AND pid <> pg_backend_pid()", (dbname, app)).fetchall()
    return sum(1 for r in rows if r[0])
