"""Bench helpers (moved from the old ``ta_lab2/bench.py``): throwaway databases, machine
facts, synthetic files split by day, raw-COPY baselines. Not imported by the library."""

from __future__ import annotations

import logging
import os
import platform
import time
import uuid
from collections.abc import Generator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from ta_lab2.loader import ParsedFile, parse_text
from ta_lab2.store import db, io
from ta_lab2.synth import SYNTH_ID_BASE, synth_asset

log = logging.getLogger(__name__)

SEED = 7
START = date(2020, 1, 1)
RUN_HOUR = 6  # the DAG's cron: 06:00 UTC, the day after the newest candle
LOCAL_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
SCRATCH = "bench_scratch"
COPY_BLOCK = 1 << 20


@dataclass
class CopyCost:
    """Raw COPY of some rows into a plain table (``plain_s``) and one with the same indexes."""

    rows: int = 0
    plain_s: float = 0.0
    indexed_s: float = 0.0

    def add(self, other: CopyCost) -> None:
        self.rows += other.rows
        self.plain_s += other.plain_s
        self.indexed_s += other.indexed_s


# -- database lifecycle --------------------------------------------------------------------------
def with_dbname(url: str, dbname: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(url)
    info["dbname"] = dbname
    return psycopg.conninfo.make_conninfo(**info)  # type: ignore[arg-type]


def server_url() -> str:
    """Maintenance URL of the server to create the throwaway databases on."""
    env = os.environ.get(db.ENV_URL)
    if env:
        return with_dbname(env, "postgres")
    try:
        with psycopg.connect(LOCAL_SERVER, connect_timeout=3):
            return LOCAL_SERVER
    except psycopg.OperationalError:
        return db.embedded_url("postgres")


@contextmanager
def throwaway_db(server: str, prefix: str) -> Generator[str, None, None]:
    """A new empty database on ``server``; dropped (WITH FORCE) when the block exits."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    log.info("created database %s", name)
    try:
        yield with_dbname(server, name)
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        log.info("dropped database %s", name)


def settle(url: str) -> float | None:
    """``CHECKPOINT`` before a timed step (not timed itself): the step then starts with no
    earlier step's dirty pages still being written behind it (the COPY floor writes ~25 M rows
    right before the one-day refresh; a real daily run follows yesterday's, long checkpointed).
    The step still pays every full-page image of the pages it touches first. Seconds taken, or
    None where the role may not checkpoint (the step then runs unsettled)."""
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            t0 = time.perf_counter()
            conn.execute("CHECKPOINT")
            return time.perf_counter() - t0
    except psycopg.errors.InsufficientPrivilege as exc:
        log.warning("bench: no CHECKPOINT before the timed step (%s)", str(exc).splitlines()[0])
        return None


def machine_facts(url: str) -> dict[str, str]:
    with db.connect(url) as conn:
        version = conn.execute("SHOW server_version").fetchone()
        settings: dict[str, str] = dict(conn.execute(
            "SELECT name, setting || coalesce(unit, '') FROM pg_settings "
            "WHERE name IN ('shared_buffers', 'synchronous_commit', 'wal_level', 'fsync')").fetchall())
    facts = {
        "date (UTC)": f"{datetime.now(UTC):%Y-%m-%d %H:%M}",
        "cores": str(os.cpu_count()),
        "load average at start (1/5/15 min)": " / ".join(f"{x:.2f}" for x in os.getloadavg()),
        "Python": platform.python_version(),
        "platform": platform.platform(),
        "Postgres": f"{version[0] if version else '?'} ({db.redact(url).rsplit('/', 1)[0]})",
        "Postgres settings": ", ".join(f"{k}={v}" for k, v in sorted(settings.items())),
    }
    try:
        from importlib.metadata import version as pkg_version

        facts["Airflow"] = pkg_version("apache-airflow")
    except Exception:  # not installed: the Airflow part is skipped anyway
        facts["Airflow"] = "not installed"
    return facts


# -- synthetic data ------------------------------------------------------------------------------
def day_start(index: int) -> datetime:
    return datetime(START.year, START.month, START.day, tzinfo=UTC) + timedelta(days=index)


def run_as_of(days_visible: int) -> datetime:
    """06:00 UTC the day after day ``days_visible - 1``: a scheduled run's cutoff."""
    return day_start(days_visible) + timedelta(hours=RUN_HOUR)


def synth_files(assets: int, days: int) -> tuple[list[ParsedFile], float]:
    """Parsed synthetic files (``days`` days per asset) and the parse time (s)."""
    texts = [("\n".join(synth_asset(SYNTH_ID_BASE + k + 1, days, SEED, START)) + "\n",
              f"synth_{SYNTH_ID_BASE + k + 1}.csv") for k in range(assets)]
    t0 = time.perf_counter()
    parsed = [parse_text(text, name) for text, name in texts]
    return parsed, time.perf_counter() - t0


def split_days(parsed: Sequence[ParsedFile], cutoffs: Sequence[datetime]) -> list[list[ParsedFile]]:
    """Split every file by source ``timestamp``: slice k holds rows before ``cutoffs[k]`` (and
    at or after the previous cutoff); one more slice holds the rest."""
    slices: list[list[ParsedFile]] = [[] for _ in range(len(cutoffs) + 1)]
    for pf in parsed:
        parts = [ParsedFile(pf.source_file, pf.layout, symbols=dict(pf.symbols)) for _ in slices]
        for row in pf.rows:
            ts = row[6]
            k = next((i for i, c in enumerate(cutoffs) if ts < c), len(cutoffs))  # type: ignore[operator]
            parts[k].rows.append(row)
        for k, part in enumerate(parts):
            slices[k].append(part)
    return slices


# -- raw COPY baselines --------------------------------------------------------------------------
def _create_scratch(conn: psycopg.Connection, like: str, indexes: bool) -> None:
    """A plain (logged) table with ``like``'s columns, NOT NULLs and defaults; with its primary
    key and indexes too when ``indexes``. Committed, so the timed COPY starts from nothing."""
    extra = sql.SQL(" INCLUDING INDEXES") if indexes else sql.SQL("")
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(SCRATCH)))
    conn.execute(sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS{})").format(
        sql.Identifier(SCRATCH), sql.Identifier(like), extra))
    conn.commit()


def _timed_copy_in(url: str, like: str, columns: sql.Composable, path: Path, indexes: bool) -> float:
    """Create a scratch table shaped like ``like`` and time COPY FROM ``path`` + commit."""
    with db.connect(url) as conn:
        _create_scratch(conn, like, indexes)
        t0 = time.perf_counter()
        with conn.cursor() as cur, cur.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(
                sql.Identifier(SCRATCH), columns)) as copy, path.open("rb") as f:
            while block := f.read(COPY_BLOCK):
                copy.write(block)
        conn.commit()
        elapsed = time.perf_counter() - t0
        conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(SCRATCH)))
        conn.commit()
    return elapsed


def _table_columns(conn: psycopg.Connection, table: str) -> list[str]:
    rows = conn.execute("SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
                        "AND NOT attisdropped ORDER BY attnum", (table,)).fetchall()
    return [r[0] for r in rows]


def copy_cost_of_table(url: str, table: str, workdir: Path) -> CopyCost:
    """Dump ``table`` (COPY TO, not timed) and time COPY of the same rows back into a plain
    scratch table of the same columns, without and with the table's indexes."""
    path = workdir / f"{table}.copy"
    with db.connect(url) as conn:
        cols = sql.SQL(", ").join(map(sql.Identifier, _table_columns(conn, table)))
        n = 0
        with conn.cursor() as cur, cur.copy(sql.SQL("COPY {} ({}) TO STDOUT").format(
                sql.Identifier(table), cols)) as copy, path.open("wb") as f:
            for block in copy:
                f.write(block)
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()
        n = int(row[0]) if row else 0
    try:
        plain = _timed_copy_in(url, table, cols, path, indexes=False)
        indexed = _timed_copy_in(url, table, cols, path, indexes=True)
    finally:
        path.unlink(missing_ok=True)
    return CopyCost(n, plain, indexed)


def copy_cost_of_rows(url: str, rows: Sequence[Sequence[Any]], like: str, columns: Sequence[str]) -> CopyCost:
    """One raw COPY of already-parsed rows (the loader's tuples) into a scratch table."""
    cost = CopyCost(rows=len(rows))
    for indexes in (False, True):
        with db.connect(url) as conn:
            _create_scratch(conn, like, indexes)
            t0 = time.perf_counter()
            io.copy_rows(conn, SCRATCH, columns, rows)
            conn.commit()
            elapsed = time.perf_counter() - t0
            conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(SCRATCH)))
            conn.commit()
        if indexes:
            cost.indexed_s = elapsed
        else:
            cost.plain_s = elapsed
    return cost
