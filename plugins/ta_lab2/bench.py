"""``make bench`` / ``python -m ta_lab2 bench``: refresh speed against the raw cost of the same
work, measured in the same run, written to ``docs/BENCHMARKS.md``.

Everything happens in a throwaway database (``ta_lab2_bench_<random>``) created on the server
``TA_LAB2_DB_URL`` points to, else the local ``127.0.0.1:5432`` Postgres, else the embedded
one; it is dropped at the end (also on failure). Four measurements:

1. **load**: N synthetic assets x D days (:mod:`ta_lab2.synth`) parsed and upserted into
   ``cmc_price_histories7`` the way ``ta_lab2 load`` does (one transaction per file), against a
   single raw ``COPY`` of the same parsed rows into a plain table of the same columns;
2. **full build**, per component (``bars.1d``, the five snapshot families, the four EMA
   refreshers): wall time, rows written, rows/s, and the ratio to a raw ``COPY`` of the rows
   the component produced (dumped to a file, then copied back into a plain scratch table of
   the same columns: once without indexes, once with the same indexes);
3. **daily incremental**: one new day loaded for every asset, then every component again:
   time and rows written, the number of series (state rows) and the ratio to the full build;
4. with ``airflow=True``: a real ``airflow standalone`` (LocalExecutor, Postgres metadata DB,
   via ``ta_lab2.local_airflow.StandaloneAirflow``) runs the DAG once per batch size on a
   further new day; the per-task-instance overhead is derived from the run wall time, the
   CLI time of the same work, and the task-instance counts.

Ratios (component time / COPY time) are measured in the same process minutes apart, so they
stay comparable when the machine is loaded; absolute seconds do not. The whole report,
method section included, is generated (:func:`render`); progress goes to ``logging``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Generator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from ta_lab2.loader import SOURCE_COLUMNS, ParsedFile, parse_text
from ta_lab2.refresh.context import ComponentResult, RunOptions
from ta_lab2.refresh.runner import plan_components, run_step
from ta_lab2.registry import BAR_FAMILY_NAMES, EMA_FAMILY_NAMES, bar_family, ema_family
from ta_lab2.store import db, io, schema
from ta_lab2.synth import SYNTH_ID_BASE, synth_asset

log = logging.getLogger(__name__)

SEED = 7
START = date(2020, 1, 1)
RUN_HOUR = 6  # the DAG's cron: 06:00 UTC, the day after the newest candle
LOCAL_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
SCRATCH = "bench_scratch"
COPY_BLOCK = 1 << 20
ENV_BATCH_SIZES = "TA_LAB2_BENCH_BATCH_SIZES"  # e.g. "10" to skip the slow batch_size 1 run
DEFAULT_BATCH_SIZES = (10, 1)  # the larger batch first: its figures survive an interrupted batch_size 1 run
RUN_TIMEOUT_S = 4 * 3600
POLL_S = 5.0  # run-state polling; each call costs the API server CPU the run also needs
PROGRESS_EVERY_S = 60.0
AIRFLOW_PARALLELISM = 4  # LocalExecutor worker slots (2 per core on the 2-core target)
POOL_SLOTS = 4  # ta_lab2_db pool: at most one warehouse connection per running task instance
MAX_MAP_LENGTH_DEFAULT = 1024  # [core] max_map_length (airflow/config_templates/config.yml)
UNIVERSE = 1000  # the universe the batch_size recommendation is for
MAP_HEADROOM = 2  # recommended batch counts stay <= max_map_length / MAP_HEADROOM (room to grow)
OVERHEAD_SHARE_MAX = 0.5  # ... and scheduling overhead <= this share of the run wall time
BATCH_CANDIDATES = (1, 2, 5, 10, 20, 25, 50, 100)
# Task instances per mapped batch (the DAG's ``asset`` group: 6 bars + freshness + 4 EMAs +
# validate) and outside the group (ingest, prepare, validate_global, summary).
TIS_PER_BATCH = len(BAR_FAMILY_NAMES) + 1 + len(EMA_FAMILY_NAMES) + 1
TIS_FIXED = 4
# The DAG file does not change during the bench: keep the DAG processor from re-listing and
# re-parsing it every few seconds (its CPU is taken from the run being measured).
AIRFLOW_ENV = {"AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "3600"}
DAG_REFRESH_INTERVAL_S = 120
QUIET_LOGGERS = ("ta_lab2.refresh", "ta_lab2.ops", "ta_lab2.store", "ta_lab2.emas", "ta_lab2.bars", "pgserver",
                 "httpx")


# -- results -------------------------------------------------------------------------------------
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


@dataclass
class StepTiming:
    """One component over all assets: time, rows written, series (state rows), COPY baseline."""

    name: str
    seconds: float = 0.0
    rows: int = 0
    failed: int = 0
    series: int = 0
    copy: CopyCost = field(default_factory=CopyCost)

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


@dataclass
class LoadTiming:
    """Upsert of parsed source rows (``ta_lab2 load``) and the raw COPY of the same rows."""

    rows: int
    parse_s: float
    upsert_s: float
    copy: CopyCost


@dataclass
class AirflowRun:
    """One DAG run: wall times, task-instance counts and where their time went."""

    batch_size: int
    run_id: str
    state: str
    wall_s: float
    api_wall_s: float
    task_instances: int
    ti_states: dict[str, int]
    ti_duration_sum_s: float
    audit_work_s: float
    rows_written: int
    mean_queue_wait_s: float = 0.0
    mean_ti_duration_s: float = 0.0
    mean_dag_parse_s: float = 0.0  # "Worker startup parse complete" dag_file_parse_ms, per task log
    load_avg: tuple[float, float] = (0.0, 0.0)  # 1-minute load average at trigger and at the end
    failed_tis: list[str] = field(default_factory=list)


@dataclass
class BenchResult:
    assets: int
    days: int
    facts: dict[str, str]
    load: LoadTiming | None = None
    full: list[StepTiming] = field(default_factory=list)
    daily_load: LoadTiming | None = None
    incr: list[StepTiming] = field(default_factory=list)
    validation_s: float = 0.0
    airflow_runs: list[AirflowRun] = field(default_factory=list)
    airflow_note: str = ""
    airflow_setup_s: float = 0.0
    task_import_s: float = 0.0
    total_s: float = 0.0
    complete: bool = False
    batch_sizes: tuple[int, ...] = ()  # of the requested Airflow runs (empty: no --airflow)


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


# -- measured work -------------------------------------------------------------------------------
def load_files(url: str, files: Sequence[ParsedFile], parse_s: float) -> LoadTiming:
    """Upsert each file in its own transaction (as ``ta_lab2 load``); then the raw COPY."""
    from ta_lab2.store.source import upsert_parsed

    t0 = time.perf_counter()
    for pf in files:
        if pf.rows:
            with db.transaction(url) as conn:
                upsert_parsed(conn, pf)
    upsert_s = time.perf_counter() - t0
    rows = [r for pf in files for r in pf.rows]
    copy = copy_cost_of_rows(url, rows, "cmc_price_histories7", SOURCE_COLUMNS)
    log.info("load: %d rows upserted in %.2fs (raw COPY %.2fs)", len(rows), upsert_s, copy.plain_s)
    return LoadTiming(len(rows), parse_s, upsert_s, copy)


def component_tables(component: str) -> list[str]:
    """The data tables a component writes (state/audit bookkeeping excluded)."""
    kind, name = component.split(".", 1)
    if kind == "bars":
        return [bar_family(name).table]
    return [v.table for v in ema_family(name).variants]


def component_state_tables(component: str) -> list[str]:
    """One row per series (1d: per asset; snapshots: per (id, tf); EMAs: per (id, tf, period))."""
    kind, name = component.split(".", 1)
    if kind == "bars":
        return [bar_family(name).state_table]
    return [v.state_table for v in ema_family(name).variants]


def count_rows(url: str, tables: Sequence[str]) -> int:
    with db.connect(url) as conn:
        total = 0
        for t in tables:
            row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t))).fetchone()
            total += int(row[0]) if row else 0
    return total


def run_component(url: str, component: str, ids: Sequence[int], opts: RunOptions) -> StepTiming:
    """``component`` for every asset through the CLI/DAG code path (``run_step``), timed."""
    timing = StepTiming(component)
    t0 = time.perf_counter()
    for asset in ids:
        res: ComponentResult = run_step(url, component, asset, opts)
        timing.rows += res.rows_written
        timing.failed += res.status == "failed"
        if res.status == "failed":
            log.warning("asset %s %s failed: %s", asset, component, res.error)
    timing.seconds = time.perf_counter() - t0
    timing.series = count_rows(url, component_state_tables(component))
    log.info("%s: %d assets, %d rows in %.2fs (%.0f rows/s)", component, len(ids), timing.rows, timing.seconds,
             timing.rows_per_s)
    return timing


def full_build(url: str, ids: Sequence[int], as_of: datetime, workdir: Path) -> list[StepTiming]:
    """Every component from empty tables, each followed by its raw-COPY baseline."""
    opts = RunOptions(as_of=as_of, run_id=f"bench_full_{uuid.uuid4().hex[:6]}")
    out = []
    for comp in plan_components(["bars", "emas"]):
        timing = run_component(url, comp, ids, opts)
        for table in component_tables(comp):
            timing.copy.add(copy_cost_of_table(url, table, workdir))
        log.info("%s: raw COPY of the same %d rows %.2fs (with indexes %.2fs): ratio %.1f", comp, timing.copy.rows,
                 timing.copy.plain_s, timing.copy.indexed_s, ratio(timing.seconds, timing.copy.plain_s))
        out.append(timing)
    return out


def incremental(url: str, ids: Sequence[int], as_of: datetime) -> list[StepTiming]:
    opts = RunOptions(as_of=as_of, run_id=f"bench_incr_{uuid.uuid4().hex[:6]}")
    return [run_component(url, comp, ids, opts) for comp in plan_components(["bars", "emas"])]


def validation_time(url: str, ids: Sequence[int]) -> float:
    """What the DAG's validate tasks do for one day: per asset, then the cross-asset checks."""
    from ta_lab2.ops.validation import run_validation

    run_id = f"bench_validate_{uuid.uuid4().hex[:6]}"
    t0 = time.perf_counter()
    for asset in ids:
        run_validation(url, [asset], run_id, include_global=False)
    run_validation(url, list(ids), run_id, include_global=True, per_asset=False)
    return time.perf_counter() - t0


def ratio(a: float, b: float) -> float:
    return a / b if b else math.nan


# -- Airflow -------------------------------------------------------------------------------------
def _parse_ts(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def _audit_work(url: str, run_id: str) -> tuple[float, int]:
    with db.connect(url) as conn:
        row = conn.execute("SELECT coalesce(sum(duration_s), 0), coalesce(sum(rows_written), 0) "
                           "FROM refresh_run_assets WHERE run_id = %s", (run_id,)).fetchone()
    return (float(row[0]), int(row[1])) if row else (0.0, 0)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _queue_waits(tis: Sequence[dict[str, Any]]) -> list[float]:
    """Seconds from queued to started, per task instance that has both."""
    waits = []
    for t in tis:
        queued, started = _parse_ts(t.get("queued_when")), _parse_ts(t.get("start_date"))
        if queued and started:
            waits.append((started - queued).total_seconds())
    return waits


def _dag_parse_seconds(af: Any, run_id: str) -> list[float]:
    """The DAG-file parse time every task process reports in its log (Airflow 3.3 task runner)."""
    out = []
    for path in af.task_log_files(run_id):
        for line in path.read_text(errors="replace").splitlines():
            if "dag_file_parse_ms" in line:
                try:
                    out.append(float(json.loads(line)["dag_file_parse_ms"]) / 1000)
                except (ValueError, KeyError, TypeError):
                    pass
                break
    return out


def airflow_batch_sizes() -> tuple[int, ...]:
    """Batch sizes of the Airflow runs: ``$TA_LAB2_BENCH_BATCH_SIZES`` (comma-separated) or 10, 1."""
    text = os.environ.get(ENV_BATCH_SIZES, "")
    sizes = tuple(int(t) for t in text.split(",") if t.strip())
    if any(b <= 0 for b in sizes):
        raise ValueError(f"{ENV_BATCH_SIZES}={text!r}: batch sizes must be positive")
    return sizes or DEFAULT_BATCH_SIZES


FINISHED_TI = ["success", "failed", "skipped", "upstream_failed", "removed"]


def _finished_tis(af: Any, run_id: str) -> int:
    doc = af.get(f"/api/v2/dags/{af.dag_id}/dagRuns/{run_id}/taskInstances", limit=1, state=FINISHED_TI)
    return int(doc.get("total_entries") or 0)


def wait_for_run(af: Any, run_id: str, batch_size: int) -> str:
    """Poll the run every ``POLL_S`` until it finishes; log progress every minute."""
    t0 = last = time.monotonic()
    while time.monotonic() - t0 < RUN_TIMEOUT_S:
        state = str(af.dag_run(run_id)["state"])
        if state in ("success", "failed"):
            return state
        if af.proc is None or af.proc.poll() is not None:
            raise RuntimeError(f"airflow standalone exited during run {run_id}\n{af.output_tail()}")
        if time.monotonic() - last >= PROGRESS_EVERY_S:
            last = time.monotonic()
            log.info("airflow batch_size=%d: %s, %d task instances finished after %.0fs (load %.1f)", batch_size,
                     state, _finished_tis(af, run_id), last - t0, os.getloadavg()[0])
        time.sleep(POLL_S)
    raise TimeoutError(f"run {run_id} not finished after {RUN_TIMEOUT_S}s")


def airflow_run(af: Any, url: str, batch_size: int, logical: datetime) -> AirflowRun:
    """Trigger one run (all assets, default params but ``batch_size``) at ``logical``; wait."""
    run_id = f"bench_b{batch_size}_{uuid.uuid4().hex[:6]}"
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    af.trigger({"batch_size": batch_size}, logical_date=logical, run_id=run_id)
    state = wait_for_run(af, run_id, batch_size)
    wall = time.perf_counter() - t0
    run = af.dag_run(run_id)
    start, end = _parse_ts(run.get("start_date")), _parse_ts(run.get("end_date"))
    tis = af.task_instances(run_id)
    states: dict[str, int] = {}
    for ti in tis:
        states[str(ti["state"])] = states.get(str(ti["state"]), 0) + 1
    work, rows = _audit_work(url, run_id)
    failed = [f"{t['task_id']}[{t['map_index']}]" for t in tis if t["state"] not in ("success", "skipped")]
    durations = [float(t.get("duration") or 0) for t in tis]
    result = AirflowRun(
        batch_size=batch_size, run_id=run_id, state=state, wall_s=wall,
        api_wall_s=(end - start).total_seconds() if start and end else wall, task_instances=len(tis),
        ti_states=states, ti_duration_sum_s=sum(durations), audit_work_s=work, rows_written=rows,
        mean_queue_wait_s=_mean(_queue_waits(tis)), mean_ti_duration_s=_mean(durations),
        mean_dag_parse_s=_mean(_dag_parse_seconds(af, run_id)), load_avg=(load0, os.getloadavg()[0]),
        failed_tis=failed)
    log.info("airflow batch_size=%d: %s in %.1fs, %d task instances %s", batch_size, state, wall, len(tis), states)
    if failed:
        log.warning("airflow batch_size=%d: task instances not successful: %s\n%s", batch_size, failed[:20],
                    af.diagnostics(run_id)[-6000:])
    return result


def airflow_bench(server: str, url: str, runs: Sequence[tuple[int, list[ParsedFile], datetime]],
                  result: BenchResult, checkpoint: Callable[[], None]) -> None:
    """Start ``airflow standalone`` and time one DAG run per (batch size, new day, logical date);
    ``checkpoint`` (re)writes the report after each run."""
    from ta_lab2.local_airflow import StandaloneAirflow, sqlalchemy_url

    home = Path(tempfile.mkdtemp(prefix="ta_lab2_bench_airflow_"))
    env = {"AIRFLOW_CONN_TA_LAB2_DB": db.airflow_conn_uri(url), **AIRFLOW_ENV}
    keep_home = False
    try:
        with throwaway_db(server, "ta_lab2_bench_airflow_meta") as meta:
            t0 = time.perf_counter()
            af = StandaloneAirflow(home / "airflow", metadata_db_url=sqlalchemy_url(meta), env=env,
                                   parallelism=AIRFLOW_PARALLELISM, refresh_interval=DAG_REFRESH_INTERVAL_S)
            with af:
                af.wait_dag(timeout=300)
                af.unpause()
                result.airflow_setup_s = time.perf_counter() - t0
                result.task_import_s = task_import_seconds()
                log.info("airflow standalone ready in %.1fs (%s)", result.airflow_setup_s, home)
                for batch_size, files, logical in runs:
                    load_files(url, files, 0.0)
                    run = airflow_run(af, url, batch_size, logical)
                    result.airflow_runs.append(run)
                    keep_home |= bool(run.failed_tis)
                    checkpoint()
    except Exception as exc:  # report what did not work in the document instead of losing the rest
        keep_home = True
        result.airflow_note = f"failed: {type(exc).__name__}: {str(exc)[:500]}"
        log.exception("airflow part failed (home kept at %s)", home)
    finally:
        if keep_home:
            log.warning("airflow home kept for inspection: %s", home)
        else:
            shutil.rmtree(home, ignore_errors=True)


LAZY_IMPORTS = "ta_lab2.refresh.runner, ta_lab2.refresh.emas, ta_lab2.ops.validation, ta_lab2.ops.freshness"


def task_import_seconds(repeats: int = 3) -> float:
    """Median time a fresh interpreter needs for the modules a task imports lazily when it runs
    (pandas, numpy, the refresh code): every task process pays it again."""
    code = f"import time; t = time.perf_counter(); import {LAZY_IMPORTS}; print(time.perf_counter() - t)"
    times = []
    for _ in range(repeats):
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
        if proc.returncode == 0 and proc.stdout.strip():
            times.append(float(proc.stdout.strip().splitlines()[-1]))
    return statistics.median(times) if times else math.nan


# -- batch size --------------------------------------------------------------------------------------
def tis_per_run(assets: int, batch_size: int) -> tuple[int, int]:
    """(mapped instances = batches, task instances per DAG run)."""
    batches = math.ceil(assets / batch_size)
    return batches, batches * TIS_PER_BATCH + TIS_FIXED


def overhead_per_ti(result: BenchResult) -> float | None:
    """Marginal wall-clock cost of one task instance: the two runs did the same work (one new
    day for every asset) with different task-instance counts."""
    runs = sorted((r for r in result.airflow_runs if r.state == "success"), key=lambda r: r.task_instances)
    if len(runs) < 2 or runs[0].task_instances == runs[-1].task_instances:
        return None
    few, many = runs[0], runs[-1]
    return (many.wall_s - few.wall_s) / (many.task_instances - few.task_instances)


def cli_day_work(result: BenchResult) -> float:
    """CLI seconds for one scheduled day's work (incremental + validation), all assets."""
    return sum(t.seconds for t in result.incr) + result.validation_s


def recommend_batch_size(result: BenchResult) -> tuple[int, str]:
    """Smallest candidate whose batch count leaves ``MAP_HEADROOM`` x room under max_map_length
    for the 1,000-asset universe and whose projected scheduling overhead is at most
    ``OVERHEAD_SHARE_MAX`` of the run wall time (when the overhead was measured)."""
    o = overhead_per_ti(result)
    work_per_asset = cli_day_work(result) / result.assets if result.assets else 0.0
    for b in BATCH_CANDIDATES:
        batches, tis = tis_per_run(UNIVERSE, b)
        if batches > MAX_MAP_LENGTH_DEFAULT / MAP_HEADROOM:
            continue
        if o is None:
            return b, "max_map_length headroom only (per-TI overhead not measured in this run)"
        overhead = tis * o
        if overhead <= OVERHEAD_SHARE_MAX * (overhead + UNIVERSE * work_per_asset):
            return b, (f"{batches} batches <= {MAX_MAP_LENGTH_DEFAULT}/{MAP_HEADROOM}, projected overhead "
                       f"{overhead:.0f}s <= {OVERHEAD_SHARE_MAX:.0%} of the run")
    return BATCH_CANDIDATES[-1], "largest candidate"


# -- report --------------------------------------------------------------------------------------
def _f(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{x:,.{digits}f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if i else "---" for i in range(len(header))) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out


def render_load(result: BenchResult) -> list[str]:
    lines = ["## 1. Load: synthetic source rows vs raw COPY", ""]
    rows = []
    for label, lt in (("history", result.load), ("one new day", result.daily_load)):
        if lt is None:
            continue
        rows.append([label, f"{lt.rows:,}", _f(lt.parse_s), _f(lt.upsert_s), f"{lt.rows / lt.upsert_s:,.0f}"
                     if lt.upsert_s else "n/a", _f(lt.copy.plain_s), _f(lt.copy.indexed_s),
                     _f(ratio(lt.upsert_s, lt.copy.plain_s), 1), _f(ratio(lt.upsert_s, lt.copy.indexed_s), 1)])
    lines += _table(["load", "rows", "parse s", "upsert s", "rows/s", "raw COPY s", "COPY+indexes s",
                     "ratio vs COPY", "ratio vs COPY+indexes"], rows)
    lines += ["", "The upsert is `store.source.upsert_parsed` (stage COPY, `INSERT ... ON CONFLICT` that only "
              "touches changed rows, asset rows), one transaction per file as `ta_lab2 load`; parsing is the "
              "pure `loader.parse_text` and not part of the ratio. The raw COPY sends the same parsed tuples "
              "in one COPY and one commit.", ""]
    return lines


def render_full(result: BenchResult) -> list[str]:
    lines = ["## 2. Full build per component vs raw COPY of its output", ""]
    rows = []
    for t in result.full:
        rows.append([f"`{t.name}`", f"{t.rows:,}", f"{t.series:,}", _f(t.seconds), f"{t.rows_per_s:,.0f}",
                     _f(t.copy.plain_s), _f(t.copy.indexed_s), _f(ratio(t.seconds, t.copy.plain_s), 1),
                     _f(ratio(t.seconds, t.copy.indexed_s), 1)])
    tot = StepTiming("total", sum(t.seconds for t in result.full), sum(t.rows for t in result.full))
    for t in result.full:
        tot.copy.add(t.copy)
    rows.append(["**total**", f"**{tot.rows:,}**", "", f"**{_f(tot.seconds)}**", f"{tot.rows_per_s:,.0f}",
                 _f(tot.copy.plain_s), _f(tot.copy.indexed_s), f"**{_f(ratio(tot.seconds, tot.copy.plain_s), 1)}**",
                 f"**{_f(ratio(tot.seconds, tot.copy.indexed_s), 1)}**"])
    lines += _table(["component", "rows written", "series", "seconds", "rows/s", "raw COPY s",
                     "COPY+indexes s", "ratio vs COPY", "ratio vs COPY+indexes"], rows)
    failed = sum(t.failed for t in result.full)
    lines += ["", f"{result.assets} assets, sequential, one process, through `refresh.runner.run_step` (one "
              "transaction per asset and component, audit row included). *series* = rows of the component's "
              "state table(s): one per asset (1d), per (asset, tf) (snapshots), per (asset, tf, period) (EMAs)."
              + (f" **{failed} (asset, component) steps failed.**" if failed else " No step failed."), ""]
    return lines


def render_incremental(result: BenchResult) -> list[str]:
    lines = ["## 3. Daily incremental run (one new day for every asset)", ""]
    full = {t.name: t for t in result.full}
    rows = []
    for t in result.incr:
        f = full.get(t.name)
        per_series = ratio(t.rows, t.series)
        rows.append([f"`{t.name}`", f"{t.rows:,}", f"{t.series:,}", _f(per_series, 2), _f(t.seconds),
                     _f(ratio(t.seconds, f.seconds) * 100 if f else math.nan, 1),
                     _f(ratio(t.rows, f.rows) * 100 if f else math.nan, 2)])
    incr_s = sum(t.seconds for t in result.incr)
    full_s = sum(t.seconds for t in result.full)
    incr_rows, full_rows = sum(t.rows for t in result.incr), sum(t.rows for t in result.full)
    rows.append(["**total**", f"**{incr_rows:,}**", "", "", f"**{_f(incr_s)}**",
                 f"**{_f(ratio(incr_s, full_s) * 100, 1)}**", f"**{_f(ratio(incr_rows, full_rows) * 100, 2)}**"])
    lines += _table(["component", "rows written", "series", "rows per series", "seconds", "% of full time",
                     "% of full rows"], rows)
    spreads = [ratio(t.rows, t.series) for t in result.incr if t.series]
    spread = f"{min(spreads):.2f} to {max(spreads):.2f}" if spreads else "n/a"
    lines += ["", f"Rows written per series: {spread} for one new day (each snapshot series gets the new day's "
              f"snapshot row, each EMA series its new value; a series that only now reaches its period may write "
              f"its first values): the incremental run touches O(new days x series) rows, not the "
              f"{result.days}-day history ({_f(ratio(incr_rows, full_rows) * 100, 2)} % of the full build's rows). "
              f"Its time is dominated by "
              f"per-(asset, component) fixed costs (reading state, the window, one transaction), which is why "
              f"its share of the full-build time is larger than its share of rows. The DAG's validation of "
              f"the same day (per asset + cross-asset) took {_f(result.validation_s)} s through "
              f"`ops.validation.run_validation`.", ""]
    return lines


def render_airflow(result: BenchResult) -> list[str]:
    lines = ["## 4. Airflow: one scheduled-style DAG run, LocalExecutor", ""]
    if not result.airflow_runs:
        lines += [f"Not measured in this run ({result.airflow_note or 'run without --airflow'}).", ""]
        return lines
    work = cli_day_work(result)
    runs = []
    for r in result.airflow_runs:
        runs.append([r.batch_size, r.state, r.task_instances, _f(r.wall_s, 1), _f(r.api_wall_s, 1),
                     f"{r.rows_written:,}", _f(r.wall_s / r.task_instances, 2),
                     _f((r.wall_s - work) / r.task_instances, 2), f"{r.load_avg[0]:.1f} -> {r.load_avg[1]:.1f}",
                     ", ".join(f"{k} {v}" for k, v in sorted(r.ti_states.items()))])
    lines += _table(["batch_size", "state", "task instances", "wall s (trigger->done)", "wall s (run start->end)",
                     "rows written", "wall s / TI", "overhead s/TI (wall - CLI work)", "load avg (1 min)",
                     "TI states"], runs)
    lines += ["", "Where a task instance's time goes (averages over the run):", ""]
    parts = []
    for r in result.airflow_runs:
        parts.append([r.batch_size, _f(r.mean_queue_wait_s, 2), _f(r.mean_ti_duration_s, 2),
                      _f(r.mean_dag_parse_s, 2), _f(r.audit_work_s / r.task_instances, 2),
                      _f((r.ti_duration_sum_s - r.audit_work_s) / r.task_instances, 2), _f(r.ti_duration_sum_s, 0),
                      _f(r.audit_work_s, 0), _f(ratio(r.ti_duration_sum_s, r.api_wall_s), 2)])
    lines += _table(["batch_size", "queued -> started s", "TI duration s", "DAG parse in TI s", "refresh work in TI s",
                     "in-process overhead s", "sum of TI durations s", "sum of refresh work s",
                     f"busy slots (of {min(AIRFLOW_PARALLELISM, POOL_SLOTS)})"], parts)
    o = overhead_per_ti(result)
    lines += ["", f"Setup: `airflow standalone` (api-server, scheduler, dag-processor, triggerer) with "
              f"`LocalExecutor`, `parallelism={AIRFLOW_PARALLELISM}` (so at most {AIRFLOW_PARALLELISM} warehouse "
              f"connections from tasks; the DAG needs no pool), "
              f"a Postgres metadata database, own `AIRFLOW_HOME` and port, started and driven through the REST "
              f"API by `ta_lab2.local_airflow.StandaloneAirflow`; ready in {_f(result.airflow_setup_s, 0)} s. "
              f"Each run is triggered with a logical date of 06:00 UTC the day after a newly loaded candle "
              f"(what the 06:00 cron run sees: as-of = data-interval end), all active assets and default params "
              f"except `batch_size` (freshness gate and validation included).",
              "",
              f"- CLI time of the same work (section 3: incremental refresh + validation of one day, all "
              f"assets, sequential, one process): **{_f(work, 1)} s**.",
              f"- Runs in this order: batch_size {', '.join(str(r.batch_size) for r in result.airflow_runs)} "
              "(each on its own new day, same Airflow instance).",
              "- *overhead s/TI (wall - CLI work)* = (run wall time - CLI time of the same work) / task instances.",
              "- *busy slots* = sum of TI durations / run wall time: how many of the pool's slots were in use on "
              "average. Below the slot count, the scheduler (not the tasks) set the pace: with many task "
              "instances in one run, each scheduling loop evaluates all of them, and freed slots wait for the "
              "next loop.",
              "- *DAG parse in TI* = `dag_file_parse_ms` that each task process logs (\"Worker startup parse "
              "complete\"): every task instance parses the DAG file again.",
              "- *refresh work in TI* = `refresh_run_assets.duration_s` (the `run_step` time the CLI also pays); "
              "*in-process overhead* = TI duration minus that: task process start, DAG parse, the lazy imports "
              f"every task process pays again (pandas, numpy, the refresh modules: {_f(result.task_import_s, 2)} s "
              "in a fresh interpreter on this machine, measured during the run), connection set-up, API calls "
              "and XCom, plus the freshness and validation work, which is not in the audit table.",
              ]
    if o is not None:
        ok = sorted((r for r in result.airflow_runs if r.state == "success"), key=lambda r: r.task_instances)
        few, many = ok[0], ok[-1]
        lines.append(f"- **Marginal overhead per task instance: {_f(o, 2)} s** = (wall(batch_size "
                     f"{many.batch_size}) - wall(batch_size {few.batch_size})) / ({many.task_instances} - "
                     f"{few.task_instances} task instances); both runs did the same work (one new day for "
                     f"{result.assets} assets), so the difference is scheduling and task-start cost. It is a "
                     f"wall-clock cost on {os.cpu_count()} cores shared by the scheduler, the API server, Postgres, "
                     f"{min(AIRFLOW_PARALLELISM, POOL_SLOTS)} concurrent tasks and whatever else runs on the "
                     f"machine (see the load averages).")
    if result.airflow_note:
        lines.append(f"- Note: {result.airflow_note}")
    lines.append("")
    return lines


def render_batch_size(result: BenchResult) -> list[str]:
    o = overhead_per_ti(result)
    work_per_asset = cli_day_work(result) / result.assets if result.assets else 0.0
    best, why = recommend_batch_size(result)
    lines = [f"## 5. batch_size for a {UNIVERSE:,}-asset universe", "",
             "Airflow refuses to map over an XCom longer than `[core] max_map_length`, **default 1024** "
             "(`airflow/config_templates/config.yml`, option `max_map_length`: \"The maximum list/dict length an "
             "XCom can push to trigger task mapping ... the task pushing the XCom will be failed\"; enforced in "
             "`airflow/api_fastapi/execution_api/routes/xcoms.py`: `conf.getint(\"core\", \"max_map_length\", "
             "fallback=1024)`, HTTP 400 `unmappable_return_value_length`). Here the mapped value is `prepare`'s "
             "list of batches, so the limit is on the number of **batches**, ceil(assets / batch_size), not on "
             f"task instances. Each batch is {TIS_PER_BATCH} task instances (6 bar builders, freshness, "
             f"4 EMA refreshers, validate) and every run has {TIS_FIXED} more (ingest, prepare, validate_global, summary).",
             ""]
    rows = []
    for b in BATCH_CANDIDATES:
        batches, tis = tis_per_run(UNIVERSE, b)
        est = f"{tis * o / 60:,.1f}" if o is not None else "n/a"
        total = f"{(tis * o + UNIVERSE * work_per_asset) / 60:,.1f}" if o is not None else "n/a"
        ok = "yes" if batches <= MAX_MAP_LENGTH_DEFAULT else "**no**"
        rows.append([f"**{b}**" if b == best else b, f"{batches:,}", ok, f"{tis:,}", est, total])
    lines += _table(["batch_size", "mapped instances (batches)", f"<= {MAX_MAP_LENGTH_DEFAULT}?",
                     "task instances per run", "scheduling overhead min", "projected run min"], rows)
    lines += ["", f"Projection: task instances x the marginal overhead measured above "
              f"({_f(o, 3) if o is not None else 'n/a'} s/TI on this machine) + {UNIVERSE:,} x the CLI "
              f"work per asset and day ({_f(work_per_asset, 3)} s, section 3, sequential: an upper bound "
              f"since tasks run {AIRFLOW_PARALLELISM} at a time).", "",
              f"batch_size 1 is *technically* allowed for {UNIVERSE:,} assets ({UNIVERSE:,} <= "
              f"{MAX_MAP_LENGTH_DEFAULT}) but leaves room for only {MAX_MAP_LENGTH_DEFAULT - UNIVERSE} more "
              f"assets and costs {tis_per_run(UNIVERSE, 1)[1]:,} task instances per run.",
              "",
              f"**Recommendation: `batch_size` = {best}** for {UNIVERSE:,} assets "
              f"({tis_per_run(UNIVERSE, best)[0]} mapped instances, {tis_per_run(UNIVERSE, best)[1]:,} task "
              f"instances per run; rule: {why}). The price of a larger batch is coarser isolation: one failing "
              f"asset fails its batch's task instance and skips the EMAs of the other assets in that batch "
              f"(they are retried together when the instance is cleared).", ""]
    return lines


METHOD = """## Method

- **Where**: a throwaway database `ta_lab2_bench_<random>` on the server `TA_LAB2_DB_URL` points to
  (else the local `127.0.0.1:5432`, else the embedded `pgserver`), created with the schema and
  dropped at the end. The Airflow metadata database is a second throwaway database on the same
  server.
- **Data**: `ta_lab2.synth` (seed 7): geometric random walks with fat tails, ~0.5 % missing days
  and ~0.2 % candles with `timeHigh` outside their day (repaired by the 1d builder), in the
  CoinMarketCap export layout, parsed by the real loader. The history is `--days` days from
  2020-01-01; up to three more days are held back and loaded one at a time for the incremental
  and the Airflow runs.
- **Code path**: the same functions the CLI and every DAG task call (`refresh.runner.run_step`,
  one transaction per asset and component, audit row included), sequential in one process,
  component by component over all assets so each component is timed on its own. Per-asset
  INFO log lines are muted during the measurement.
- **Raw baseline, same run**: after each component, its output tables are dumped with
  `COPY TO` (not timed) and the same rows are copied back with `COPY FROM` + commit into a
  scratch table of the same columns, once without indexes ("raw COPY": the floor for writing
  those rows) and once with the table's primary key and indexes ("COPY+indexes"). The ratio is
  component seconds / COPY seconds. Because both sides are measured minutes apart in the same
  process against the same server, the ratios are robust to machine load (the machine was
  shared with other work when this was generated); absolute seconds are not.
- **Incremental**: one new candle per asset is upserted, then every component runs again with
  the cutoff moved one day. *rows per series* near 1 shows the run touches O(new days x
  series) rows, not the history.
- **Airflow** (`--airflow`): see section 4. One `airflow standalone` runs the DAG once per batch
  size (default 10, then 1; `TA_LAB2_BENCH_BATCH_SIZES=10` skips the slow batch_size 1 run), each
  on one more new day. The per-task-instance overhead is measured two ways that do not depend on
  each other: the marginal cost from two runs of the same work with different task-instance
  counts, and (run wall - CLI time of the same work) / task instances.
- The report is rewritten after the CLI sections and after each Airflow run (marked *partial*
  until the end), so an interrupted bench still leaves its figures.
- Speed is never asserted in a unit test; this document is the record. Regenerate with
  `make bench` (full size, with Airflow) or, for a quick check,
  `python -m ta_lab2 bench --assets 5 --days 200 --out /tmp/bench.md`.
"""


def command_line(result: BenchResult) -> str:
    env = f"{ENV_BATCH_SIZES}={','.join(map(str, result.batch_sizes))} " \
        if result.batch_sizes and tuple(result.batch_sizes) != DEFAULT_BATCH_SIZES else ""
    flag = " --airflow" if result.batch_sizes else ""
    return f"{env}python -m ta_lab2 bench --assets {result.assets} --days {result.days}{flag}"


def render(result: BenchResult) -> str:
    o = overhead_per_ti(result)
    full_s = sum(t.seconds for t in result.full)
    copy_s = sum(t.copy.plain_s for t in result.full)
    best, _ = recommend_batch_size(result)
    head = [
        "# Benchmarks",
        "",
        f"Generated by `{command_line(result)}` (`make bench`), source `plugins/ta_lab2/bench.py`. "
        + (f"Total bench runtime: {_f(result.total_s / 60, 1)} min." if result.complete else
           f"**Partial report**, written {_f(result.total_s / 60, 1)} min into a bench that was still running."),
        "",
        "## Headline",
        "",
        f"- Full build, {result.assets} assets x {result.days} days, all {len(result.full)} components: "
        f"**{_f(full_s, 1)} s**, **{_f(ratio(full_s, copy_s), 1)}x** a raw COPY of the same output rows "
        f"({sum(t.rows for t in result.full):,} rows).",
        f"- Daily incremental (one new day, all assets): **{_f(sum(t.seconds for t in result.incr), 1)} s**, "
        f"{sum(t.rows for t in result.incr):,} rows "
        f"({_f(ratio(sum(t.seconds for t in result.incr), full_s) * 100, 1)} % of the full-build time).",
    ]
    for r in result.airflow_runs:
        head.append(f"- Airflow LocalExecutor, {result.assets} assets, batch_size {r.batch_size}: run "
                    f"**{r.state}** in **{_f(r.wall_s, 0)} s** ({r.task_instances} task instances).")
    if o is not None:
        head.append(f"- Per-task-instance overhead: **{_f(o, 2)} s** (marginal, wall clock, "
                    f"{os.cpu_count()} cores).")
    head.append(f"- Recommended `batch_size` for {UNIVERSE:,} assets: **{best}** "
                f"({tis_per_run(UNIVERSE, best)[0]} mapped instances, {tis_per_run(UNIVERSE, best)[1]:,} task "
                f"instances per run; `max_map_length` default {MAX_MAP_LENGTH_DEFAULT}).")
    head += ["", "## Machine", ""]
    head += [f"- {k}: {v}" for k, v in result.facts.items()]
    head += ["- Other jobs may share the machine (the load averages above say how busy it was): the ratios "
             "against COPY are measured in the same run and stay comparable; absolute seconds, and the "
             "Airflow overhead most of all, grow with the load.", ""]
    body = (render_load(result) + render_full(result) + render_incremental(result) + render_airflow(result)
            + render_batch_size(result))
    return "\n".join(head + body) + "\n" + METHOD


# -- entry point ---------------------------------------------------------------------------------
def _quiet() -> dict[str, int]:
    levels = {}
    for name in QUIET_LOGGERS:
        lg = logging.getLogger(name)
        levels[name] = lg.level
        lg.setLevel(logging.WARNING)
    return levels


def measure(server: str, result: BenchResult, batch_sizes: Sequence[int], checkpoint: Callable[[], None]) -> None:
    """Sections 1-4 in one throwaway warehouse database (section 4 only with ``batch_sizes``)."""
    extra = 1 + len(batch_sizes)
    with throwaway_db(server, "ta_lab2_bench") as url, tempfile.TemporaryDirectory(prefix="ta_lab2_bench_") as tmp:
        with db.connect(url) as conn:
            schema.apply_schema(conn)
        result.facts = machine_facts(url)
        log.info("synthesizing %d assets x %d days (+%d held back)", result.assets, result.days, extra)
        parsed, parse_s = synth_files(result.assets, result.days + extra)
        slices = split_days(parsed, [day_start(result.days + k) for k in range(extra)])
        result.load = load_files(url, slices[0], parse_s)
        ids = sorted(a for pf in slices[0] for a in pf.symbols)
        result.full = full_build(url, ids, run_as_of(result.days), Path(tmp))
        result.daily_load = load_files(url, slices[1], 0.0)
        result.incr = incremental(url, ids, run_as_of(result.days + 1))
        result.validation_s = validation_time(url, ids)
        log.info("validation of one day: %.2fs", result.validation_s)
        checkpoint()
        if batch_sizes:
            runs = [(b, slices[2 + k], run_as_of(result.days + 2 + k)) for k, b in enumerate(batch_sizes)]
            airflow_bench(server, url, runs, result, checkpoint)


def write_report(result: BenchResult, out: Path, t0: float) -> None:
    result.total_s = time.perf_counter() - t0
    result.facts["load average at end (1/5/15 min)"] = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(result))
    log.info("wrote %s (%s, %.1f min so far)", out, "complete" if result.complete else "partial",
             result.total_s / 60)


def run_bench(*, assets: int, days: int, airflow: bool, out: Path) -> int:
    """Run the benchmark and write the report to ``out`` (also after each stage, marked partial);
    0 when every step succeeded, 1 when a step or an Airflow run failed, 2 for bad arguments."""
    try:
        batch_sizes = airflow_batch_sizes() if airflow else ()
    except ValueError as exc:
        log.error("bench: %s", exc)
        return 2
    if assets <= 0 or days < 30:
        log.error("bench: --assets must be positive and --days at least 30")
        return 2
    levels = _quiet()
    t0 = time.perf_counter()
    result = BenchResult(assets, days, {}, batch_sizes=batch_sizes)
    try:
        measure(server_url(), result, batch_sizes, lambda: write_report(result, out, t0))
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
    result.complete = True
    write_report(result, out, t0)
    failed = sum(t.failed for t in result.full + result.incr)
    bad_airflow = airflow and (len(result.airflow_runs) < len(batch_sizes)
                               or any(r.state != "success" for r in result.airflow_runs))
    if failed or bad_airflow:
        log.error("bench finished with problems: %d failed steps, airflow: %s", failed,
                  result.airflow_note or [r.state for r in result.airflow_runs])
        return 1
    return 0
