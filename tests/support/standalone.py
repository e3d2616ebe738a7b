"""A real ``airflow standalone`` (api-server, scheduler, dag-processor, triggerer) for tests
and benchmarks, driven only through the REST API.

Everything is private to one instance: its ``AIRFLOW_HOME``, its Postgres metadata database
(the caller creates and drops it, e.g. with ``tests.conftest.create_database``), its API port
and its two log-server ports. The processes run in their own session; :meth:`stop` kills the
whole session (scheduler, executor workers, task supervisors and tasks, which Airflow moves to
process groups of their own) and is idempotent, so ``with StandaloneAirflow(...) as af:``
leaves nothing behind even when the test fails.

Example::

    from tests.conftest import create_database, drop_database
    from tests.support.standalone import StandaloneAirflow, sqlalchemy_url

    meta = create_database(server_url, "ta_lab2_airflow_meta")
    env = {"AIRFLOW_CONN_TA_LAB2_DB": airflow_conn_uri(warehouse_url)}
    try:
        with StandaloneAirflow(tmp_path / "airflow", metadata_db_url=sqlalchemy_url(meta), env=env) as af:
            af.wait_dag()                      # the DAG processor has parsed the DAG
            af.create_pool("ta_lab2_db", 4)
            af.unpause()
            run = af.trigger({"ids": [1, 52]})
            state = af.wait_run(run["dag_run_id"], timeout=600)
            tis = af.task_instances(run["dag_run_id"])
    finally:
        drop_database(server_url, meta)

On a failure, :meth:`diagnostics` returns the tail of the standalone output and of the task
logs of the failed task instances (print it in the assertion message).

Facts this relies on (Airflow 3.3.2, see ``/work/shared/AIRFLOW_NOTES.md``): moving the API
off 8080 needs ``AIRFLOW__CORE__EXECUTION_API_SERVER_URL``; the simple auth manager writes the
admin password to ``$AIRFLOW_HOME/simple_auth_manager_passwords.json.generated``; new DAGs
start paused. ``AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE`` is off by default here so that
unpausing a DAG with ``catchup=False`` does not immediately start a scheduled run for the
latest cron tick (manual runs and backfills are unaffected); pass ``use_job_schedule=True``
to get the production behaviour.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx
import psycopg

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DAG_ID = "ta_lab2_daily_refresh"
FINISHED_RUN_STATES = frozenset({"success", "failed"})
FINISHED_TI_STATES = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})
PASSWORD_FILE = "simple_auth_manager_passwords.json.generated"


class AirflowApiError(RuntimeError):
    """A REST call answered with an error status (the message carries the response body)."""

    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        super().__init__(f"{method} {path} -> HTTP {status}: {body[:2000]}")
        self.status = status
        self.body = body


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1 (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def sqlalchemy_url(libpq_url: str) -> str:
    """``postgresql://...`` (libpq URL or conninfo) -> ``postgresql+psycopg2://...`` for
    ``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN`` (a socket directory as host works too)."""
    info = psycopg.conninfo.conninfo_to_dict(libpq_url)
    auth = quote(str(info.get("user", "postgres")), safe="")
    if info.get("password"):
        auth += ":" + quote(str(info["password"]), safe="")
    host, port, dbname = str(info.get("host", "127.0.0.1")), info.get("port"), quote(str(info.get("dbname", "postgres")))
    if host.startswith("/"):  # unix socket directory (e.g. the embedded pgserver)
        query = f"host={quote(host, safe='/')}" + (f"&port={port}" if port else "")
        return f"postgresql+psycopg2://{auth}@/{dbname}?{query}"
    return f"postgresql+psycopg2://{auth}@{host}{f':{port}' if port else ''}/{dbname}"


def iso(value: datetime | str | None) -> str | None:
    """A datetime as the ISO-8601 string the API expects (aware datetimes only)."""
    if value is None or isinstance(value, str):
        return value
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: pass an aware (UTC) datetime")
    return value.isoformat()


class StandaloneAirflow:
    """One ``airflow standalone`` with a private home, metadata DB and ports.

    :param home: ``AIRFLOW_HOME`` (created; logs under ``home/logs``, output in
        ``home/standalone.log``).
    :param metadata_db_url: SQLAlchemy URL of an existing, empty Postgres database for the
        metadata (see :func:`sqlalchemy_url`). Caller owns its lifetime.
    :param port: API port (default: a free one).
    :param env: extra environment for every component (connections ``AIRFLOW_CONN_*``,
        ``TA_LAB2_*`` settings, ``AIRFLOW__...`` overrides; these win over the defaults). The
        caller's own ``AIRFLOW*`` variables are NOT inherited (a test session's Airflow config
        must not leak in); everything else is.
    :param dag_id: the DAG the convenience methods act on (each also takes ``dag_id=``).
    :param dags_folder / plugins_folder: default to this project's ``dags/`` and ``plugins/``.
    :param parallelism: ``[core] parallelism`` (LocalExecutor worker processes).
    :param refresh_interval: ``[dag_processor] refresh_interval`` in seconds (how soon a new
        DAG file is seen).
    :param min_file_process_interval: ``[dag_processor] min_file_process_interval``: how often a
        known DAG file is re-parsed. Parsing this DAG costs seconds of CPU, so tests (which never
        edit the DAG while Airflow runs) keep it long.
    :param use_job_schedule: let the scheduler create cron runs (off by default, see module doc).
    """

    def __init__(
        self,
        home: Path | str,
        *,
        metadata_db_url: str,
        port: int | None = None,
        env: Mapping[str, str] | None = None,
        dag_id: str = DEFAULT_DAG_ID,
        dags_folder: Path | str = PROJECT_ROOT / "dags",
        plugins_folder: Path | str = PROJECT_ROOT / "plugins",
        parallelism: int = 4,
        refresh_interval: int = 5,
        min_file_process_interval: int = 600,
        use_job_schedule: bool = False,
    ) -> None:
        self.home = Path(home).resolve()
        self.metadata_db_url = metadata_db_url
        self.port = port or free_port()
        self.dag_id = dag_id
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.home / "standalone.log"
        self.extra_env = dict(env or {})
        self.dags_folder = Path(dags_folder).resolve()
        self.plugins_folder = Path(plugins_folder).resolve()
        self.parallelism = parallelism
        self.refresh_interval = refresh_interval
        self.min_file_process_interval = min_file_process_interval
        self.use_job_schedule = use_job_schedule
        self.proc: subprocess.Popen[bytes] | None = None
        self._sid: int | None = None
        self._token: str | None = None
        self._client = httpx.Client(base_url=self.base_url, timeout=30.0)

    # -- lifecycle ----------------------------------------------------------------------------
    def environment(self) -> dict[str, str]:
        """The full environment the components run with."""
        venv_bin = str(Path(sys.executable).parent)
        pythonpath = [str(self.plugins_folder), str(PROJECT_ROOT)]
        if os.environ.get("PYTHONPATH"):
            pythonpath.append(os.environ["PYTHONPATH"])
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        env.update({
            "PATH": venv_bin + os.pathsep + os.environ.get("PATH", ""),  # standalone spawns `airflow ...`
            "PYTHONPATH": os.pathsep.join(pythonpath),
            "PYTHONUNBUFFERED": "1",
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": str(self.parallelism),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(self.plugins_folder),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://localhost:{self.port}/execution/",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.metadata_db_url,
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__BASE_URL": self.base_url,
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": str(self.refresh_interval),
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": str(self.min_file_process_interval),
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": str(self.use_job_schedule),
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        })
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 240.0) -> StandaloneAirflow:
        """Start ``airflow standalone`` and wait until the API answers and the scheduler,
        DAG processor and triggerer report healthy. On a timeout, stops everything and raises."""
        if self.proc is not None:
            return self
        self.home.mkdir(parents=True, exist_ok=True)
        out = self.log_path.open("ab")
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "airflow", "standalone"], cwd=self.home, env=self.environment(),
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        finally:
            out.close()
        self._sid = self.proc.pid  # start_new_session: the session id is the leader's pid
        atexit.register(self.stop)  # a safety net when a caller forgets stop()
        try:
            self.wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, grace: float = 10.0) -> None:
        """Terminate every process of the session (SIGTERM, then SIGKILL after ``grace``
        seconds). Idempotent; never raises."""
        if self.proc is None:
            return
        sid = self._sid
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)  # standalone and its four components
        except ProcessLookupError:
            pass
        for pid in _session_pids(sid):  # task supervisors/tasks live in process groups of their own
            _kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and (self.proc.poll() is None or _session_pids(sid)):
            time.sleep(0.2)
        for _ in range(3):  # whatever is left (a component that spawned while we waited, too)
            pids = _session_pids(sid)
            if not pids:
                break
            for pid in pids:
                _kill(pid, signal.SIGKILL)
            time.sleep(0.3)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self.proc = None
        atexit.unregister(self.stop)
        self._token = None
        self._client.close()
        self._client = httpx.Client(base_url=self.base_url, timeout=30.0)

    def __enter__(self) -> StandaloneAirflow:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def wait_healthy(self, timeout: float = 240.0) -> dict[str, Any]:
        """Poll ``GET /api/v2/monitor/health`` until metadatabase, scheduler, DAG processor and
        triggerer are all healthy; return the health document."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"airflow standalone exited with {self.proc.returncode}\n{self.output_tail()}")
            try:
                resp = self._client.get("/api/v2/monitor/health", timeout=5.0)
                last = resp.json() if resp.status_code == 200 else resp.text
                if resp.status_code == 200 and all(
                    (last.get(part) or {}).get("status") == "healthy"
                    for part in ("metadatabase", "scheduler", "dag_processor", "triggerer")
                ):
                    return dict(last)
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(1.0)
        raise TimeoutError(f"airflow standalone not healthy after {timeout:.0f}s (last health: {last})\n"
                           f"{self.output_tail()}")

    # -- HTTP -----------------------------------------------------------------------------------
    @property
    def token(self) -> str:
        """A JWT for the admin user (``POST /auth/token`` with the generated password)."""
        if self._token is None:
            passwords = json.loads((self.home / PASSWORD_FILE).read_text())
            resp = self._client.post("/auth/token", json={"username": "admin", "password": passwords["admin"]})
            if resp.status_code not in (200, 201):
                raise AirflowApiError("POST", "/auth/token", resp.status_code, resp.text)
            self._token = str(resp.json()["access_token"])
        return self._token

    def request(self, method: str, path: str, *, ok: Iterable[int] = (200, 201, 204), **kwargs: Any) -> Any:
        """One authenticated call; the decoded JSON (None when empty). Raises
        :class:`AirflowApiError` for statuses not in ``ok``. A 401 renews the token once."""
        extra_headers = dict(kwargs.pop("headers", None) or {})
        for attempt in range(2):
            headers = {"Authorization": f"Bearer {self.token}", **extra_headers}
            resp = self._client.request(method, path, headers=headers, **kwargs)
            if resp.status_code == 401 and attempt == 0:
                self._token = None
                continue
            break
        if resp.status_code not in set(ok):
            raise AirflowApiError(method, path, resp.status_code, resp.text)
        return resp.json() if resp.content else None

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, body: Any, **kwargs: Any) -> Any:
        return self.request("POST", path, json=body, **kwargs)

    def patch(self, path: str, body: Any, **params: Any) -> Any:
        return self.request("PATCH", path, json=body, params=params or None)

    def _dag(self, dag_id: str | None) -> str:
        return f"/api/v2/dags/{dag_id or self.dag_id}"

    # -- DAGs, pools ----------------------------------------------------------------------------
    def wait_dag(self, timeout: float = 120.0, *, dag_id: str | None = None) -> dict[str, Any]:
        """Wait until the DAG processor has parsed the DAG (it is known to the API)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return dict(self.get(self._dag(dag_id)))
            except AirflowApiError as exc:
                if exc.status != 404 or time.monotonic() > deadline:
                    errors = self.get("/api/v2/importErrors")
                    raise TimeoutError(f"DAG {dag_id or self.dag_id} not loaded after {timeout:.0f}s; "
                                       f"import errors: {errors}\n{self.output_tail()}") from exc
            time.sleep(1.0)

    def unpause(self, *, dag_id: str | None = None) -> dict[str, Any]:
        return dict(self.patch(self._dag(dag_id), {"is_paused": False}, update_mask="is_paused"))

    def create_pool(self, name: str, slots: int, description: str = "") -> dict[str, Any]:
        """``POST /api/v2/pools`` (or ``PATCH`` its slots when it exists)."""
        try:
            return dict(self.post("/api/v2/pools", {"name": name, "slots": slots, "description": description,
                                                    "include_deferred": False}))
        except AirflowApiError as exc:
            if exc.status != 409:
                raise
            return dict(self.patch(f"/api/v2/pools/{name}", {"slots": slots}, update_mask="slots"))

    # -- runs -----------------------------------------------------------------------------------
    def trigger(self, conf: Mapping[str, Any] | None = None, logical_date: datetime | str | None = None, *,
                run_id: str | None = None, dag_id: str | None = None) -> dict[str, Any]:
        """``POST .../dagRuns``; returns the run (``run["dag_run_id"]``). ``logical_date=None`` is a
        manual run without logical date (the DAG then uses ``run_after`` as its as-of)."""
        body: dict[str, Any] = {"logical_date": iso(logical_date), "conf": dict(conf or {})}
        if run_id:
            body["dag_run_id"] = run_id
        return dict(self.post(f"{self._dag(dag_id)}/dagRuns", body))

    def dag_run(self, run_id: str, *, dag_id: str | None = None) -> dict[str, Any]:
        return dict(self.get(f"{self._dag(dag_id)}/dagRuns/{run_id}"))

    def dag_runs(self, *, dag_id: str | None = None, **filters: Any) -> list[dict[str, Any]]:
        """All runs (paginated), e.g. ``dag_runs(run_type="backfill")``, oldest logical date first."""
        return self._paged(f"{self._dag(dag_id)}/dagRuns", "dag_runs", order_by="logical_date", **filters)

    def wait_run(self, run_id: str, timeout: float = 600.0, poll: float = 2.0, *,
                 dag_id: str | None = None) -> str:
        """Poll the run until it is ``success`` or ``failed``; return that state. Raises
        ``TimeoutError`` (with :meth:`diagnostics`) when it is still going after ``timeout``."""
        deadline = time.monotonic() + timeout
        state = "?"
        while time.monotonic() < deadline:
            state = str(self.dag_run(run_id, dag_id=dag_id)["state"])
            if state in FINISHED_RUN_STATES:
                return state
            self._check_alive()
            time.sleep(poll)
        raise TimeoutError(f"run {run_id} still {state} after {timeout:.0f}s\n"
                           f"{self.diagnostics(run_id, dag_id=dag_id)}")

    def task_instances(self, run_id: str, *, dag_id: str | None = None) -> list[dict[str, Any]]:
        """Every task instance of the run (all pages), mapped instances included."""
        return self._paged(f"{self._dag(dag_id)}/dagRuns/{run_id}/taskInstances", "task_instances",
                           order_by="id")

    def clear(self, run_id: str, task_ids: Sequence[str | tuple[str, int]], *, only_failed: bool = False,
              include_downstream: bool = True, include_upstream: bool = False, dry_run: bool = False,
              dag_id: str | None = None) -> list[dict[str, Any]]:
        """``POST .../clearTaskInstances`` for one run: ``task_ids`` are task ids (all map indexes)
        or ``(task_id, map_index)`` pairs (just that instance). Inside a mapped task group,
        ``include_downstream`` follows the same map index only, plus the unmapped tasks after
        the group. Returns the task instances cleared (or that would be, with ``dry_run``)."""
        body = {"dag_run_id": run_id, "task_ids": [list(t) if isinstance(t, tuple) else t for t in task_ids],
                "only_failed": only_failed, "include_downstream": include_downstream,
                "include_upstream": include_upstream, "dry_run": dry_run, "reset_dag_runs": True}
        return list(self.post(f"{self._dag(dag_id)}/clearTaskInstances", body)["task_instances"])

    def create_backfill(self, from_date: datetime | str, to_date: datetime | str,
                        conf: Mapping[str, Any] | None = None, *, max_active_runs: int = 1,
                        reprocess_behavior: str = "none", dag_id: str | None = None) -> dict[str, Any]:
        """``POST /api/v2/backfills``: one run per schedule tick in [from_date, to_date]. Returns the
        backfill (``["id"]``); its runs are ``dag_runs(run_type="backfill")``."""
        body = {"dag_id": dag_id or self.dag_id, "from_date": iso(from_date), "to_date": iso(to_date),
                "dag_run_conf": dict(conf or {}), "max_active_runs": max_active_runs,
                "reprocess_behavior": reprocess_behavior, "run_backwards": False}
        return dict(self.post("/api/v2/backfills", body))

    def backfill(self, backfill_id: int) -> dict[str, Any]:
        return dict(self.get(f"/api/v2/backfills/{backfill_id}"))

    def backfill_runs(self, backfill_id: int) -> list[dict[str, Any]]:
        """The backfill runs inside the backfill's date range, oldest logical date first."""
        bf = self.backfill(backfill_id)
        return self.dag_runs(dag_id=bf["dag_id"], run_type="backfill", logical_date_gte=bf["from_date"],
                             logical_date_lte=bf["to_date"])

    def wait_backfill(self, backfill_id: int, expected_runs: int, timeout: float = 600.0,
                      poll: float = 3.0) -> list[dict[str, Any]]:
        """Wait until the backfill has ``expected_runs`` runs, all finished (or it completed with
        fewer); return its runs, oldest logical date first. Raises ``TimeoutError`` with
        :meth:`diagnostics` of its runs."""
        deadline = time.monotonic() + timeout
        runs: list[dict[str, Any]] = []
        dag_id = None
        while time.monotonic() < deadline:
            bf = self.backfill(backfill_id)
            dag_id = bf["dag_id"]
            runs = self.backfill_runs(backfill_id)
            done = [r for r in runs if r["state"] in FINISHED_RUN_STATES]
            if len(done) == len(runs) and (len(runs) >= expected_runs or bf.get("completed_at")):
                return runs
            self._check_alive()
            time.sleep(poll)
        states = {r["dag_run_id"]: r["state"] for r in runs}
        raise TimeoutError(f"backfill {backfill_id} not finished after {timeout:.0f}s: {states}\n"
                           + "\n".join(self.diagnostics(r["dag_run_id"], dag_id=dag_id) for r in runs))

    def xcom(self, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1, *,
             dag_id: str | None = None) -> Any:
        """The deserialized value of one XCom."""
        doc = self.get(f"{self._dag(dag_id)}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}",
                       map_index=map_index, deserialize="true")
        return doc["value"]

    def _paged(self, path: str, key: str, page: int = 100, **params: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        while True:
            doc = self.get(path, limit=page, offset=len(items), **params)
            batch = list(doc[key])
            items += batch
            if not batch or len(items) >= int(doc.get("total_entries") or 0):
                return items

    # -- diagnostics ----------------------------------------------------------------------------
    def _check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"airflow standalone died (exit {self.proc.returncode})\n{self.output_tail()}")

    def output_tail(self, max_chars: int = 6000) -> str:
        """The end of the standalone output (all four components)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no standalone output)"
        return "---- airflow standalone output (tail) ----\n" + text[-max_chars:]

    def task_log_files(self, run_id: str | None = None, *, dag_id: str | None = None) -> list[Path]:
        """Task log files under ``$AIRFLOW_HOME/logs`` (of one run when given), sorted."""
        root = self.home / "logs" / f"dag_id={dag_id or self.dag_id}"
        pattern = f"run_id={run_id}/**/*.log" if run_id else "**/*.log"
        return sorted(root.glob(pattern))

    def diagnostics(self, run_id: str | None = None, *, max_chars_per_log: int = 4000,
                    dag_id: str | None = None) -> str:
        """Task states of the run, the tail of each failed (or unfinished) task instance's log,
        and the tail of the standalone output. Never raises."""
        parts: list[str] = []
        try:
            if run_id:
                tis = self.task_instances(run_id, dag_id=dag_id)
                parts.append(f"---- task instances of {run_id} ----")
                parts += [f"{t['task_id']}[{t['map_index']}] {t['state']} try={t['try_number']}" for t in tis]
                bad = [t for t in tis if t["state"] not in ("success", "skipped", "upstream_failed")]
                for t in bad:
                    mi = t["map_index"]
                    task_dir = self.home / "logs" / f"dag_id={dag_id or self.dag_id}" / f"run_id={run_id}" / \
                        f"task_id={t['task_id']}"
                    logs = sorted((task_dir / f"map_index={mi}" if mi >= 0 else task_dir).glob("attempt=*.log"))
                    for path in logs:
                        parts.append(f"---- {path.relative_to(self.home)} (tail) ----")
                        parts.append(read_task_log(path)[-max_chars_per_log:])
        except Exception as exc:  # diagnostics must never hide the original failure
            parts.append(f"(task instances unavailable: {type(exc).__name__}: {exc})")
        parts.append(self.output_tail())
        return "\n".join(parts)


def read_task_log(path: Path) -> str:
    """A task log file (JSON lines) as readable text: ``time level logger: event`` and, for
    errors, the exception type and message of each ``error_detail`` entry."""
    out = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            out.append(line)
            continue
        if not isinstance(rec, dict):
            out.append(line)
            continue
        out.append(f"{str(rec.get('timestamp', ''))[11:23]} {rec.get('level', '')} "
                   f"{rec.get('logger', '')}: {rec.get('event', '')}")
        for err in rec.get("error_detail") or []:
            if isinstance(err, dict):
                where = (err.get("frames") or [{}])[-1]
                out.append(f"    {err.get('exc_type')}: {err.get('exc_value')} "
                           f"(at {where.get('filename')}:{where.get('lineno')})")
    return "\n".join(out)


def _session_pids(sid: int | None) -> list[int]:
    """Live processes of session ``sid`` (Linux /proc), excluding this process."""
    if sid is None:
        return []
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()  # after "pid (comm) ": state ppid pgrp session ...
        if len(fields) > 3 and int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(entry.name))
    return pids


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
