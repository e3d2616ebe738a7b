"""``make bench``: one daily DAG run under LocalExecutor, timed from trigger to success.

For ONE scale (the one with the most assets by default; env ``TA_LAB2_BENCH_DAG``), after the
CLI measurements and in the same throwaway database, one more synthetic day is loaded and the
real DAG refreshes it: ``airflow standalone`` (:class:`ta_lab2.local_airflow.StandaloneAirflow`,
LocalExecutor, Postgres metadata in a throwaway database of its own, no pool) with its
connection ``ta_lab2_db`` pointed at the bench database, the DAG triggered for all assets with
``batch_size`` auto and a logical date at 06:00 UTC after the new day (its as-of).

Airflow's start (``db migrate``, the four components, the first DAG parse, unpause, the
execution API's lazy build: :meth:`StandaloneAirflow.warm_up`) is timed apart and is NOT in the
trigger-to-success figure. Whatever fails (start, run, timeout) is
recorded in the result (``error``, ``diagnostics``) and rendered; it never raises.

Figures (:func:`figures`, pure):

* ``wall_s``: trigger to success, the run's ``end_date - queued_at`` (server clock; the POST
  sets ``queued_at``); ``client_wall_s`` is the same seen by the bench (1 s polls).
* ``engine_s``: the refresh engine's own seconds, the sum of ``refresh_run_assets.duration_s``
  of the run (bars and EMAs; ingest, prepare, validation and summary are not engine).
* ``slots``: effective parallelism, ``min([core] parallelism, the DAG's max_active_tasks)``.
* ``airflow_share = 1 - engine_s / (wall_s x slots)``: the part of the task-slot time the run
  held that did not go to the engine (scheduling gaps, task process start-up, DAG parse and
  imports per task, idle slots, validation and bookkeeping).
* ``task_share = 1 - engine_s / ti_s`` (``ti_s``: sum of the task-instance durations): the
  part of the time spent inside task processes that did not go to the engine.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

ENV_DAG = "TA_LAB2_BENCH_DAG"  # "largest" (default), "off", or an asset count: the scale that gets the DAG run
ENV_PARALLELISM = "TA_LAB2_BENCH_DAG_PARALLELISM"  # [core] parallelism (default 4: AUTO_SLOTS, a 2-core worker)
ENV_TIMEOUT = "TA_LAB2_BENCH_DAG_TIMEOUT"  # seconds the bench waits for the run (default 3600)
DEFAULT_PARALLELISM = 4
DEFAULT_TIMEOUT_S = 3600.0
TARGET_DAG_S = 300.0  # issue 10: daily DAG run, 1,000 assets, LocalExecutor: <= 5 min trigger to success
RUN_ID = "bench_dag_run"
DIAGNOSTICS_CHARS = 6000


def dag_scale(scales: Sequence[tuple[int, int]], setting: str | None) -> tuple[int, int] | None:
    """The (assets, days) scale that gets the DAG run: ``None``/``""``/``"largest"`` the one with
    the most assets (the last of equals), ``"off"`` none, a number the scale with that many
    assets (none when no scale has it)."""
    value = (setting or "largest").strip().lower()
    if value in ("off", "none", "0", "no", "false") or not scales:
        return None
    if value == "largest":
        return max(reversed(scales), key=lambda s: s[0])
    if not value.isdigit():
        raise ValueError(f"{ENV_DAG}={setting!r}: expected largest, off or an asset count")
    return next((s for s in scales if s[0] == int(value)), None)


def _ts(value: Any) -> datetime | None:
    if not value:
        return None
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _seconds(start: Any, end: Any) -> float | None:
    a, b = _ts(start), _ts(end)
    return (b - a).total_seconds() if a and b else None


def figures(run: dict[str, Any], tis: Sequence[dict[str, Any]], audit_rows: Sequence[dict[str, Any]], *,
            parallelism: int, max_active_tasks: int | None, client_wall_s: float | None = None) -> dict[str, Any]:
    """The DAG run's numbers from the run document, its task instances (REST API) and the
    run's ``refresh_run_assets`` rows (see the module doc for the definitions)."""
    wall = _seconds(run.get("queued_at"), run.get("end_date"))
    if wall is None:
        wall = client_wall_s
    slots = min(parallelism, max_active_tasks) if max_active_tasks else parallelism
    ti_s = sum(float(t.get("duration") or 0.0) for t in tis)
    engine_s = sum(float(r.get("duration_s") or 0.0) for r in audit_rows if r.get("component") != "freshness")
    per_task: dict[str, dict[str, Any]] = defaultdict(lambda: {"instances": 0, "seconds": 0.0, "max_s": 0.0,
                                                                "wait_s": 0.0, "waits": 0, "states": {}})
    for t in tis:
        row = per_task[str(t["task_id"])]
        d = float(t.get("duration") or 0.0)
        row["instances"] += 1
        row["seconds"] += d
        row["max_s"] = max(row["max_s"], d)
        state = str(t.get("state"))
        row["states"][state] = row["states"].get(state, 0) + 1
        wait = _seconds(t.get("queued_when"), t.get("start_date"))
        if wait is not None:
            row["wait_s"] += wait
            row["waits"] += 1
    states = dict(Counter(str(t.get("state")) for t in tis))
    per_component: dict[str, dict[str, float]] = defaultdict(lambda: {"seconds": 0.0, "rows": 0})
    for r in audit_rows:
        per_component[str(r["component"])]["seconds"] += float(r.get("duration_s") or 0.0)
        per_component[str(r["component"])]["rows"] += int(r.get("rows_written") or 0)
    starts = [s for s in (_ts(t.get("start_date")) for t in tis) if s]
    first_task_s = _seconds(run.get("queued_at"), min(starts)) if starts else None
    return {
        "state": run.get("state"),
        "data_interval_end": run.get("data_interval_end"),
        "wall_s": wall,
        "client_wall_s": client_wall_s,
        "first_task_s": first_task_s,
        "task_instances": len(tis),
        "ti_states": states,
        "retried": sum(1 for t in tis if int(t.get("try_number") or 1) > 1),
        "mapped_instances": len({t["map_index"] for t in tis if int(t.get("map_index", -1)) >= 0}),
        "ti_s": ti_s,
        "engine_s": engine_s,
        "slots": slots,
        "airflow_share": airflow_share(engine_s, wall, slots),
        "task_share": (1.0 - engine_s / ti_s) if ti_s else None,
        "rows": sum(int(r.get("rows_written") or 0) for r in audit_rows),
        "failed": sorted({f"{r['asset_id']} {r['component']}: {r.get('error')}" for r in audit_rows
                          if r.get("status") == "failed"})[:5],
        "per_task": {k: dict(v) for k, v in sorted(per_task.items())},
        "per_component": {k: dict(v) for k, v in sorted(per_component.items())},
    }


def airflow_share(engine_s: float, wall_s: float | None, slots: int) -> float | None:
    """``1 - engine_s / (wall_s x slots)``: the part of the slot time the run held that did not
    go to the refresh engine (None without a wall time)."""
    if not wall_s or slots < 1:
        return None
    return 1.0 - engine_s / (wall_s * slots)


def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    try:
        return float(raw) if raw else default
    except ValueError:
        log.warning("%s=%r ignored: using %g", name, raw, default)
        return default


def measure_dag_run(url: str, as_of: datetime, *, server: str) -> dict[str, Any]:
    """Start Airflow on the bench database ``url``, trigger the daily DAG (all assets, batch_size
    auto, logical date ``as_of``), wait for it, collect the figures, stop Airflow. Never raises:
    a failure is ``{"error": ..., "diagnostics": ...}`` next to whatever was measured."""
    from ta_lab2.bench.common import throwaway_db

    parallelism = int(_env_number(ENV_PARALLELISM, DEFAULT_PARALLELISM))
    timeout = _env_number(ENV_TIMEOUT, DEFAULT_TIMEOUT_S)
    out: dict[str, Any] = {"as_of": as_of.isoformat(), "parallelism": parallelism, "timeout_s": timeout,
                           "conf": {"ids": "all", "batch_size": "auto"}}
    home = Path(tempfile.mkdtemp(prefix="ta_lab2_bench_airflow_"))
    try:
        with throwaway_db(server, "ta_lab2_bench_meta") as meta:
            _run(url, meta, home, as_of, parallelism, timeout, out)
    except Exception as exc:  # the Airflow part must never cost the bench its other numbers
        out.setdefault("error", f"{_line(exc)} (while: {out.get('step', '?')})")
        out.setdefault("diagnostics", str(exc)[-DIAGNOSTICS_CHARS:])
    if out.get("error"):
        out["kept_home"] = str(home)  # AIRFLOW_HOME with standalone.log and the task logs, for a post-mortem
    else:
        shutil.rmtree(home, ignore_errors=True)
    return out


def _patient(call: Callable[[], Any], deadline: float, out: dict[str, Any],
             done: Callable[[Exception], bool] = lambda exc: False) -> Any:
    """``call()``, retried while the API answers too slowly (an api-server on a loaded 2-core
    machine can take longer than the client's 30 s); ``done(exc)``: an error that means the call
    had already worked (None is returned). Slow answers are counted in ``api_timeouts``."""
    import httpx

    while True:
        try:
            return call()
        except (httpx.TimeoutException, httpx.ConnectError) as exc:
            out["api_timeouts"] = out.get("api_timeouts", 0) + 1
            if time.monotonic() > deadline:
                raise
            log.info("bench DAG run: the API did not answer (%s); retrying", type(exc).__name__)
        except Exception as exc:
            if done(exc):
                return None
            raise


def _line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def _run(url: str, meta: str, home: Path, as_of: datetime, parallelism: int, timeout: float,
         out: dict[str, Any]) -> None:
    from ta_lab2.local_airflow import FINISHED_RUN_STATES, AirflowApiError, StandaloneAirflow, sqlalchemy_url
    from ta_lab2.store import audit, db

    env = {
        "AIRFLOW_CONN_TA_LAB2_DB": db.airflow_conn_uri(url),
        "TA_LAB2_DB_URL": "",
        "TA_LAB2_DEADLINE_HOURS": "off",  # the logical date is years ago: no late-run alert
        "TA_LAB2_INBOX": "",  # ingest finds nothing to load: the new day is already in the source table
        "CMC_API_KEY": "",
        "TELEGRAM_BOT_TOKEN": "",
        "TELEGRAM_CHAT_ID": "",
        "MPLCONFIGDIR": str(home / "mpl"),
    }
    af = StandaloneAirflow(home / "airflow", metadata_db_url=sqlalchemy_url(meta), env=env, parallelism=parallelism)
    try:
        t0 = time.perf_counter()
        out["step"] = "start airflow standalone"
        af.start(timeout=600)
        out["step"] = "wait for the DAG to be parsed"
        dag = af.wait_dag(timeout=600)
        out["step"] = "unpause"
        af.unpause()
        out["step"] = "warm up the execution API"
        out["warm_up_s"] = af.warm_up(timeout=600)
        out["startup_s"] = time.perf_counter() - t0
        out["max_active_tasks"] = dag.get("max_active_tasks")
        out["step"] = "trigger"
        t1 = time.perf_counter()
        deadline = time.monotonic() + timeout
        _patient(lambda: af.trigger(out["conf"], logical_date=as_of, run_id=RUN_ID), deadline, out,
                 done=lambda exc: isinstance(exc, AirflowApiError) and exc.status == 409)  # a retried POST
        out["step"] = "wait for the run"
        client_wall = None
        while True:
            run = _patient(lambda: af.dag_run(RUN_ID), deadline, out)
            if run["state"] in FINISHED_RUN_STATES:
                client_wall = time.perf_counter() - t1
                break
            if time.monotonic() > deadline:
                out["error"] = f"run still {run['state']} after {timeout:.0f} s ({ENV_TIMEOUT})"
                break
            if not af.running():
                raise RuntimeError("airflow standalone is gone")
            time.sleep(1.0)
        out["step"] = "collect the figures"
        late = time.monotonic() + 600
        run = _patient(lambda: af.dag_run(RUN_ID), late, out)
        tis = _patient(lambda: af.task_instances(RUN_ID), late, out)
        with db.connect(url) as conn:
            rows = audit.run_results(conn, RUN_ID)
        out.update(figures(run, tis, rows, parallelism=parallelism, max_active_tasks=out["max_active_tasks"],
                           client_wall_s=client_wall))
        if out["state"] != "success":
            out.setdefault("error", f"run ended {out['state']}")
            out["diagnostics"] = af.diagnostics(RUN_ID)[-DIAGNOSTICS_CHARS:]
        out.pop("step")
    except Exception as exc:
        out["error"] = f"{_line(exc)} (while: {out.get('step', '?')})"
        out["diagnostics"] = (traceback.format_exc(limit=4) + "\n" + af.output_tail())[-DIAGNOSTICS_CHARS:]
    finally:
        af.stop()
