"""``make bench``: the set-based refresh engine against the physical floor, in ONE run.

For each scale (default ``100x1095,1000x400``; env ``TA_LAB2_BENCH_SCALES``), in a fresh
subprocess (so its peak RSS is its own) and a throwaway database:

1. synthetic history loaded (all days but the last two);
   before each timed refresh below, a ``CHECKPOINT`` (not timed, :func:`common.settle`);
2. **full build** through the CLI's refresh step (``cli_refresh.run_components``: its auto
   batches, ``refresh.runner.cli_batches``, the freshness gate, audit rows included), wall and
   CPU seconds, rows written per component, series (state rows) and rows per series;
3. the **raw COPY floor**: every output and state table dumped and copied back into a scratch
   twin with the same primary key and indexes (timed), the ratio full build / floor;
4. **one new day** loaded and refreshed the same way (wall, CPU, rows);
5. a second new day refreshed under ``cProfile``: where the time goes (top functions);
6. peak RSS of the process (``ru_maxrss``);
7. for one scale (the most assets; env ``TA_LAB2_BENCH_DAG``), a third new day refreshed by the
   daily DAG under a real LocalExecutor Airflow (:mod:`ta_lab2.bench.dagrun`): trigger to
   success, task instances, the engine's seconds and the Airflow share.

Then, once, the fixed cost every Airflow task process pays before it works (fresh
interpreters: DAG-file parse with ``airflow.sdk`` preloaded, the task body's lazy imports).
The report (docs/BENCHMARKS.md) is generated from the JSON the scales return.
"""

from __future__ import annotations

import cProfile
import io as textio
import json
import logging
import os
import pstats
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from ta_lab2.bench.common import (
    copy_cost_of_table,
    day_start,
    machine_facts,
    run_as_of,
    server_url,
    settle,
    split_days,
    synth_files,
    throwaway_db,
)

log = logging.getLogger(__name__)
DEFAULT_SCALES = "100x1095,1000x400"
ENV_SCALES = "TA_LAB2_BENCH_SCALES"
TARGET_DAY_S_PER_1000 = 20.0
TARGET_FULL_RATIO = 2.0
ROOT = Path(__file__).resolve().parents[3]


def parse_scales(text: str) -> list[tuple[int, int]]:
    out = []
    for part in text.split(","):
        a, _, d = part.strip().partition("x")
        if not a.isdigit() or not d.isdigit() or int(a) < 1 or int(d) < 30:
            raise ValueError(f"bad scale {part!r}: ASSETSxDAYS with DAYS >= 30, e.g. 100x1095")
        out.append((int(a), int(d)))
    return out


def _load(url: str, files: list[Any]) -> float:
    from ta_lab2.store import db
    from ta_lab2.store.source import upsert_parsed

    t0 = time.perf_counter()
    for pf in files:
        if pf.rows:
            with db.transaction(url) as conn:
                upsert_parsed(conn, pf)
    return time.perf_counter() - t0


def _refresh(url: str, ids: list[int], as_of: Any, run_id: str) -> dict[str, Any]:
    """The CLI's refresh step (``cli_refresh.run_components``, what ``python -m ta_lab2 refresh
    --all`` runs between prepare and validation): its auto batches (sized by work), each through
    every component on one connection, the freshness gate before the EMAs, audit rows."""
    from ta_lab2 import params as run_params
    from ta_lab2.cli_refresh import run_components
    from ta_lab2.refresh.context import RunOptions
    from ta_lab2.refresh.runner import cli_batches, plan_components

    comps = plan_components(["bars", "emas"])
    opts = RunOptions(as_of=as_of, run_id=run_id)
    params = {**run_params.defaults(), "validate": False, "alert_on_error": False}
    batches = cli_batches(url, ids, opts, comps)
    t0, c0 = time.perf_counter(), time.process_time()
    results = run_components(url, ids, comps, opts, params, lambda _res: None)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    per: dict[str, dict[str, float]] = defaultdict(lambda: {"seconds": 0.0, "rows": 0})
    for r in results:
        if r.component not in comps:  # the freshness gate's verdicts
            continue
        per[r.component]["seconds"] += r.duration_s
        per[r.component]["rows"] += r.rows_written
    failed = [f"{r.asset_id} {r.component}: {r.error}" for r in results if r.status == "failed"]
    return {"wall_s": wall, "cpu_s": cpu, "rows": sum(r.rows_written for r in results), "batches": len(batches),
            "components": dict(per), "failed": failed[:5], "n_failed": len(failed)}


def _tables() -> tuple[list[str], list[str]]:
    from ta_lab2.registry import BAR_FAMILIES, EMA_VARIANTS

    data = [f.table for f in BAR_FAMILIES] + [v.table for v in EMA_VARIANTS]
    state = [f.table + "_state" for f in BAR_FAMILIES] + [v.state_table for v in EMA_VARIANTS]
    return data, state


def _count(url: str, table: str) -> int:
    from psycopg import sql

    from ta_lab2.store import db

    with db.connect(url) as conn:
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()
    return int(row[0]) if row else 0


def _profile_lines(prof: cProfile.Profile, n: int = 14) -> dict[str, list[str]]:
    out = {}
    for key in ("cumulative", "tottime"):
        buf = textio.StringIO()
        stats = pstats.Stats(prof, stream=buf).strip_dirs().sort_stats(key)
        stats.print_stats(n)
        lines = [ln for ln in buf.getvalue().splitlines() if ln.strip()]
        start = next((i for i, ln in enumerate(lines) if ln.lstrip().startswith("ncalls")), 0)
        out[key] = lines[start:start + n + 1]
    return out


def measure_scale(assets: int, days: int, *, dag: bool = False) -> dict[str, Any]:
    """One scale in this process (run it in a fresh subprocess: ``ru_maxrss`` is per process).
    ``dag``: afterwards, one more synthetic day refreshed by a LocalExecutor DAG run
    (:mod:`ta_lab2.bench.dagrun`) in the same database."""
    from ta_lab2.store import db, schema

    res: dict[str, Any] = {"assets": assets, "days": days}
    server = server_url()
    with throwaway_db(server, "ta_lab2_bench") as url, tempfile.TemporaryDirectory() as tmp:
        with db.connect(url) as conn:
            schema.apply_schema(conn)
        res["facts"] = machine_facts(url)
        parsed, res["parse_s"] = synth_files(assets, days + 1 if dag else days)
        hist, day1, day2, day3 = split_days(parsed, [day_start(days - 2), day_start(days - 1), day_start(days)])
        res["load_s"] = _load(url, hist)
        ids = sorted(a for pf in hist for a in pf.symbols)
        settled = res["checkpoint_s"] = {"full": settle(url)}
        res["full"] = _refresh(url, ids, run_as_of(days - 2), "bench_full")
        data, state = _tables()
        res["series"] = {t: _count(url, t) for t in state}
        res["table_rows"] = {t: _count(url, t) for t in data}
        floor = {}
        for t in data + state:
            c = copy_cost_of_table(url, t, Path(tmp))
            floor[t] = {"rows": c.rows, "plain_s": c.plain_s, "indexed_s": c.indexed_s}
        res["copy_floor"] = floor
        res["load_day_s"] = _load(url, day1)
        settled["day"] = settle(url)
        res["day"] = _refresh(url, ids, run_as_of(days - 1), "bench_day")
        _load(url, day2)
        settled["day_profiled"] = settle(url)
        prof = cProfile.Profile()
        prof.enable()
        res["day_profiled"] = _refresh(url, ids, run_as_of(days), "bench_day_profiled")
        prof.disable()
        res["profile"] = _profile_lines(prof)
        res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # the CLI's, not Airflow's
        if dag:
            from ta_lab2.bench.dagrun import measure_dag_run

            res["load_dag_day_s"] = _load(url, day3)
            res["dag"] = measure_dag_run(url, run_as_of(days + 1), server=server)
    return res


def task_overhead(repeats: int = 3) -> dict[str, float]:
    """Median seconds a fresh interpreter needs for: ``airflow.sdk`` (the task runner has it),
    then the DAG file (every task process parses it), then the task body's lazy imports."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "plugins"), str(ROOT), *sys.path])}
    probes = {
        "airflow.sdk import": "import time; t=time.perf_counter(); import airflow.sdk; print(time.perf_counter()-t)",
        "DAG file parse (airflow.sdk loaded)": (
            "import time, runpy, airflow.sdk; t=time.perf_counter(); "
            f"runpy.run_path({str(ROOT / 'dags' / 'ta_lab2_daily_refresh.py')!r}); print(time.perf_counter()-t)"),
        "task body imports (refresh engine, pandas, numpy)": (
            "import time, airflow.sdk, ta_lab2.orchestration; t=time.perf_counter(); "
            "import ta_lab2.refresh.runner, ta_lab2.refresh.emas; print(time.perf_counter()-t)"),
    }
    out = {}
    for name, code in probes.items():
        times = []
        for _ in range(repeats):
            p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
            if p.returncode == 0 and p.stdout.strip():
                times.append(float(p.stdout.strip().splitlines()[-1]))
        out[name] = statistics.median(times) if times else float("nan")
    return out


def _scale_subprocess(assets: int, days: int, dag: bool = False) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        path = Path(f.name)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "plugins"), str(ROOT), *sys.path])}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "ta_lab2.bench.engine", str(assets), str(days), str(path),
                           *(["--dag"] if dag else [])], env=env, check=False)
    if proc.returncode != 0:
        return {"assets": assets, "days": days, "error": f"exit {proc.returncode}"}
    out: dict[str, Any] = json.loads(path.read_text())
    path.unlink(missing_ok=True)
    out["bench_wall_s"] = time.perf_counter() - t0
    return out


def run_bench(*, assets: int, days: int, airflow: bool, out: Path) -> int:
    """Every scale, the task overhead, then the report. ``assets``/``days`` other than the CLI
    defaults (100, 1095) replace the scale list by that one scale. ``airflow``: the scale chosen
    by ``TA_LAB2_BENCH_DAG`` (default: the most assets) also gets the LocalExecutor DAG run.
    Exit 1 when a refresh or the DAG run failed (the report is written anyway)."""
    from ta_lab2.bench.dagrun import ENV_DAG, dag_scale
    from ta_lab2.bench.report import render

    try:
        scales = parse_scales(os.environ.get(ENV_SCALES, DEFAULT_SCALES)) if (assets, days) == (100, 1095) \
            else parse_scales(f"{assets}x{days}")
        with_dag = dag_scale(scales, os.environ.get(ENV_DAG)) if airflow else None
    except ValueError as exc:
        log.error("bench: %s", exc)
        return 2
    if airflow and with_dag is None:
        log.warning("bench: no scale gets the LocalExecutor DAG run (%s=%s)", ENV_DAG, os.environ.get(ENV_DAG))
    t0 = time.perf_counter()
    results = []
    for a, d in scales:
        dag = (a, d) == with_dag
        log.info("bench: %d assets x %d days%s", a, d, " + a LocalExecutor DAG run" if dag else "")
        results.append(_scale_subprocess(a, d, dag))
        if dag and "dag" not in results[-1]:
            results[-1]["dag"] = {"error": f"the scale's process failed before the DAG run ({results[-1].get('error')})"}
        with_dag = None if dag else with_dag  # once, even when two scales are equal
        out.write_text(render(results, {}, time.perf_counter() - t0, complete=False))
    overhead = task_overhead()
    out.write_text(render(results, overhead, time.perf_counter() - t0, complete=True))
    log.info("wrote %s", out)
    bad = [r for r in results if r.get("error") or r.get("full", {}).get("n_failed") or r.get("day", {}).get("n_failed")
           or r.get("dag", {}).get("error")]
    for r in bad:
        if r.get("dag", {}).get("error"):
            log.error("bench: DAG run at %d assets: %s", r["assets"], r["dag"]["error"])
    return 1 if bad else 0


def main(argv: list[str]) -> int:
    from ta_lab2.refresh.runner import tune_gc

    logging.basicConfig(level=logging.WARNING)
    tune_gc()  # as the CLI's refresh command does
    assets, days, path = int(argv[0]), int(argv[1]), Path(argv[2])
    path.write_text(json.dumps(measure_scale(assets, days, dag="--dag" in argv[3:]), default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
