"""A real local Airflow 3: ``airflow standalone`` (api-server, scheduler, dag-processor,
triggerer; LocalExecutor; Postgres metadata) with this repo's ``dags/`` and ``plugins/``, driven
through the REST API. Used by ``make airflow`` / ``make airflow-stop`` (``python -m
ta_lab2.local_airflow start|stop|status``), the e2e tests and ``make bench``.

Everything is private to one instance: its ``AIRFLOW_HOME``, its Postgres metadata database
(the caller creates it; ``make airflow`` uses a database ``ta_lab2_airflow`` on the warehouse's
server, see :func:`up`), its API port and its two log-server ports. The processes run in a
session of their own; :meth:`StandaloneAirflow.stop` kills that session (scheduler, executor
workers, task supervisors and tasks) and every process left with this ``AIRFLOW_HOME``, and is
idempotent, so ``with StandaloneAirflow(...) as af:`` leaves nothing behind even when a test
fails. ``start(detach=True)`` leaves the instance running after this process exits and records
it in ``$AIRFLOW_HOME/local_airflow.json``; :meth:`StandaloneAirflow.attach` finds it again.

Example::

    af = StandaloneAirflow(home, metadata_db_url=sqlalchemy_url(meta_url),
                           env={"AIRFLOW_CONN_TA_LAB2_DB": db.airflow_conn_uri(warehouse_url)})
    with af:
        af.wait_dag()                      # the DAG processor has parsed the DAG
        af.unpause()
        run = af.trigger({"ids": [1, 52]})
        state = af.wait_run(run["dag_run_id"], timeout=600)
        tis = af.task_instances(run["dag_run_id"])

On a failure, :meth:`StandaloneAirflow.diagnostics` returns the tail of the standalone output
and of the task logs of the failed task instances.

Facts this relies on (Airflow 3.3.2, see docs/operations/DAILY_REFRESH.md §13): moving the API
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

PROJECT_ROOT = Path(__file__).resolve().parents[2]  # plugins/ta_lab2/local_airflow.py -> repo
STATE_FILE = "local_airflow.json"  # in AIRFLOW_HOME: pid, port, URL of a detached instance
DEFAULT_USER = "admin"
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
        self._login: tuple[str, str] | None = None
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

    def start(self, timeout: float = 240.0, *, detach: bool = False) -> StandaloneAirflow:
        """Start ``airflow standalone`` and wait until the API answers, the scheduler, DAG
        processor and triggerer report healthy and the execution API is built
        (:meth:`warm_up`). On a timeout, stops everything and raises.
        ``detach``: keep running after this process exits (recorded in ``STATE_FILE``)."""
        if self.proc is not None or self._sid is not None:
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
        if not detach:
            atexit.register(self.stop)  # a safety net when a caller forgets stop()
        try:
            self.wait_healthy(timeout)
            self.warm_up(max(timeout, 600.0))  # no first task may meet a blocked execution API
        except BaseException:
            self.stop()
            raise
        if detach:
            state = {"pid": self._sid, "port": self.port, "base_url": self.base_url, "dag_id": self.dag_id,
                     "metadata_db_url": self.metadata_db_url, "started_at": time.time()}
            (self.home / STATE_FILE).write_text(json.dumps(state, indent=1))
        return self

    @classmethod
    def attach(cls, home: Path | str, *, username: str | None = None,
               password: str | None = None) -> StandaloneAirflow | None:
        """The detached instance recorded under ``home`` when its processes are still alive,
        else None (a stale record is removed). ``username``/``password`` log in instead of the
        generated admin password."""
        home = Path(home).resolve()
        try:
            state = json.loads((home / STATE_FILE).read_text())
        except (OSError, ValueError):
            return None
        if not _is_standalone(int(state["pid"])):
            (home / STATE_FILE).unlink(missing_ok=True)
            return None
        af = cls(home, metadata_db_url=str(state["metadata_db_url"]), port=int(state["port"]),
                 dag_id=str(state.get("dag_id") or DEFAULT_DAG_ID))
        af._sid = int(state["pid"])
        af._login = (username, password) if username and password else None
        return af

    def credentials(self) -> tuple[str, str]:
        """(user, password) to log in to the UI and ``POST /auth/token``."""
        if self._login:
            return self._login
        passwords = json.loads((self.home / PASSWORD_FILE).read_text())
        return DEFAULT_USER, str(passwords[DEFAULT_USER])

    def running(self) -> bool:
        return self._sid is not None and (_is_standalone(self._sid) or bool(home_pids(self.home)))

    def stop(self, grace: float = 10.0) -> None:
        """Terminate every process of the session and every process left with this
        ``AIRFLOW_HOME`` (SIGTERM, then SIGKILL after ``grace`` seconds). Works for an attached
        instance too. Idempotent; never raises."""
        sid = self._sid
        if sid is None:
            return
        try:
            os.killpg(sid, signal.SIGTERM)  # standalone and its four components
        except (ProcessLookupError, PermissionError):
            pass
        for pid in self._pids():  # task supervisors/tasks live in process groups of their own
            _kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and ((self.proc is not None and self.proc.poll() is None)
                                               or self._pids()):
            time.sleep(0.2)
        for _ in range(3):  # whatever is left (a component that spawned while we waited, too)
            pids = self._pids()
            if not pids:
                break
            for pid in pids:
                _kill(pid, signal.SIGKILL)
            time.sleep(0.3)
        if self.proc is not None:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self.proc = None
        self._sid = None
        atexit.unregister(self.stop)
        (self.home / STATE_FILE).unlink(missing_ok=True)
        self._token = None
        self._client.close()
        self._client = httpx.Client(base_url=self.base_url, timeout=30.0)

    def _pids(self) -> list[int]:
        return sorted(set(_session_pids(self._sid)) | set(home_pids(self.home)))

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

    def warm_up(self, timeout: float = 600.0) -> float:
        """Build the execution API before the first task needs it; return the seconds it took.
        Its versioned routes are generated on its first request (Cadwyn), seconds of CPU inside
        the api-server's event loop, which answers nothing else meanwhile: on a loaded machine a
        task supervisor's first call then times out and its task is killed (and retried)."""
        t0 = time.monotonic()
        deadline = t0 + timeout
        while True:
            self._check_alive()
            try:
                resp = self._client.get("/execution/health", timeout=max(1.0, deadline - time.monotonic()))
                if resp.status_code < 500:
                    return time.monotonic() - t0
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"execution API not answering after {timeout:.0f}s\n{self.output_tail()}")
            time.sleep(1.0)

    # -- HTTP -----------------------------------------------------------------------------------
    @property
    def token(self) -> str:
        """A JWT for the admin user (``POST /auth/token`` with the generated password)."""
        if self._token is None:
            user, password = self.credentials()
            resp = self._client.post("/auth/token", json={"username": user, "password": password})
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
        ``TimeoutError`` (with :meth:`diagnostics`) when it is still going after ``timeout``.
        A poll the API answers too slowly (its one worker also serves every task's execution
        API calls: seconds to a minute on a loaded machine) is polled again, not an error."""
        deadline = time.monotonic() + timeout
        state = "?"
        while time.monotonic() < deadline:
            try:
                state = str(self.dag_run(run_id, dag_id=dag_id)["state"])
            except httpx.TimeoutException:
                continue
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
        if self.proc is None and self._sid is not None and not _is_standalone(self._sid):
            raise RuntimeError(f"airflow standalone (pid {self._sid}) is gone\n{self.output_tail()}")

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


def home_pids(home: Path | str) -> list[int]:
    """Live processes whose environment has ``AIRFLOW_HOME=<home>`` (ours: we started them),
    excluding this process. Catches a component that left the session."""
    needle = f"AIRFLOW_HOME={Path(home).resolve()}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0") and not _zombie(int(entry.name)):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def _zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rfind(")") + 2:].split()[0] in ("Z", "X")


def _is_standalone(pid: int) -> bool:
    """``pid`` is alive and is an ``airflow standalone`` (not a recycled pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return not _zombie(pid) and b"standalone" in cmdline and b"airflow" in cmdline


# -- make airflow / make airflow-stop ----------------------------------------------------------
ENV_METADATA_DB = "TA_LAB2_AIRFLOW_DB"  # name of the metadata database (default ta_lab2_airflow)
ENV_PORT = "TA_LAB2_AIRFLOW_PORT"  # API/UI port (default 8080 when free, else a free one; 0 = any free)
DEFAULT_PORT = 8080
FORWARDED_ENV_PREFIXES = ("AIRFLOW_CONN_", "AIRFLOW_VAR_")  # connections/variables the caller defines


def local_home() -> Path:
    """``.local/airflow`` (or ``$TA_LAB2_LOCAL_DIR/airflow``)."""
    from ta_lab2.store import db

    return db.local_dir() / "airflow"


def metadata_url(warehouse_url: str, name: str | None = None) -> str:
    """A metadata database next to the warehouse: same server, database ``name`` (env
    ``TA_LAB2_AIRFLOW_DB``, default ``ta_lab2_airflow``), created when missing. libpq URL."""
    name = name or os.environ.get(ENV_METADATA_DB) or "ta_lab2_airflow"
    with psycopg.connect(warehouse_url, autocommit=True, connect_timeout=10) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
    info = psycopg.conninfo.conninfo_to_dict(warehouse_url)
    info["dbname"] = name
    return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in info.items() if v is not None})


def _port() -> int:
    wanted = int(os.environ.get(ENV_PORT) or DEFAULT_PORT)
    if wanted == 0:
        return free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", wanted))
        except OSError:
            return free_port()
    return wanted


def up(*, parallelism: int = 4, reparse_interval: int = 30, timeout: float = 300.0) -> tuple[StandaloneAirflow, bool]:
    """Start the local Airflow in the background (or find the running one): warehouse and
    connection ``ta_lab2_db`` from ``TA_LAB2_DB_URL`` (else the embedded Postgres), metadata in a
    database of its own on the same server, DAG parsed and unpaused (scheduled runs off: runs are
    triggered). Returns (instance, started_now)."""
    from ta_lab2.store import db

    home = local_home()
    running = StandaloneAirflow.attach(home)
    if running is not None:
        running.wait_healthy(timeout)
        return running, False
    warehouse = db.resolve_url()
    env = {"AIRFLOW_CONN_TA_LAB2_DB": db.airflow_conn_uri(warehouse)}
    env.update({k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV_PREFIXES)})
    af = StandaloneAirflow(home, metadata_db_url=sqlalchemy_url(metadata_url(warehouse)), port=_port(), env=env,
                           parallelism=parallelism, refresh_interval=5, min_file_process_interval=reparse_interval)
    af.start(timeout, detach=True)
    try:
        af.wait_dag(timeout)
        af.unpause()
    except BaseException:
        af.stop()
        raise
    return af, True


def describe(af: StandaloneAirflow, started: bool) -> str:
    user, password = af.credentials()
    rel = os.path.relpath(af.home) if af.home.is_relative_to(Path.cwd()) else str(af.home)
    return "\n".join([
        f"Airflow {'started' if started else 'already running'} (airflow standalone, LocalExecutor)",
        f"  URL:      {af.base_url}",
        f"  user:     {user}",
        f"  password: {password}",
        f"  home:     {rel}  (output: {rel}/standalone.log)",
        f"  DAG:      {af.dag_id} (unpaused; no scheduled runs: trigger it in the UI)",
        "Stop it with: make airflow-stop",
    ])


def down() -> str:
    """Stop the local Airflow; verify that no process with its home is left."""
    home = local_home()
    af = StandaloneAirflow.attach(home)
    if af is None:
        left = home_pids(home)
        if not left:
            return "Airflow is not running"
        af = StandaloneAirflow(home, metadata_db_url="", port=0)  # stray processes of ours: stop them too
        af._sid = left[0]
    af.stop()
    left = home_pids(home)
    if left:
        raise RuntimeError(f"processes still running with AIRFLOW_HOME={home}: {left}")
    return f"Airflow stopped (no process left under {home})"


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m ta_lab2.local_airflow",
                                     description="A local Airflow 3 for this repo (make airflow / airflow-stop).")
    parser.add_argument("command", choices=["start", "stop", "status"])
    parser.add_argument("--parallelism", type=int, default=4, help="LocalExecutor worker processes (default 4)")
    parser.add_argument("--reparse-interval", type=int, default=30,
                        help="seconds between re-parses of a known DAG file (default 30)")
    args = parser.parse_args(argv)
    try:
        if args.command == "start":
            af, started = up(parallelism=args.parallelism, reparse_interval=args.reparse_interval)
            print(describe(af, started), flush=True)
        elif args.command == "stop":
            print(down(), flush=True)
        else:
            found = StandaloneAirflow.attach(local_home())
            print(describe(found, False) if found else "Airflow is not running", flush=True)
            return 0 if found else 1
    except Exception as exc:
        print(f"error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
              f"(output: {local_home() / 'standalone.log'})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
