"""Run docker-compose.yaml's Airflow services WITHOUT Docker: each service's command as a local
process with its own ``AIRFLOW_HOME`` and only the environment the compose file gives it.

No Docker engine runs on the build machines, so this is how ``tests/e2e/test_compose_celery.py``
proves the compose file: a secret missing from it, a wrong command, a wrong URL or a wrong
mount fails the run exactly as it would in containers. What the harness does, and nothing more
(docs/operations/DEPLOYMENT.md, "How the compose file is tested without Docker"):

* **Interpolation** as ``docker compose`` does it from ``.env``: ``${VAR}``, ``${VAR:-default}``,
  ``${VAR-default}``, ``${VAR:?error}``, ``${VAR?error}``, ``$$`` -> ``$``. A required variable
  missing from the .env raises :class:`ComposeError` (compose refuses to start the same way).
* **Image**: the official image's entrypoint runs ``airflow <command>`` (a leading ``airflow``
  is dropped, ``bash``/``python`` run as is); an ``entrypoint:`` runs as written. The image's
  own environment is ``PATH`` (this venv's ``bin`` first), ``HOME``, ``LANG`` and
  ``AIRFLOW_HOME`` -- nothing else from the test process leaks in.
* **Host names**: ``postgres``, ``redis`` and ``airflow-apiserver`` in URLs of the environment
  (``@postgres:5432``, ``//airflow-apiserver:8080``) become ``127.0.0.1:<local port>``: the
  local Postgres, a private ``redis-server`` and the API server's free port.
* **Network namespaces**: every container has its own ports; here each process gets its own
  free ports for the listeners Airflow opens (``[api] port`` for the API server, the worker and
  triggerer log servers, the scheduler health check), and ``localhost:<container port>`` in a
  healthcheck is rewritten to the process's port.
* **Volumes**: ``/opt/airflow`` (the image's ``AIRFLOW_HOME``) is the process's home; each
  mount ``src:/opt/airflow/x`` is a symlink ``$AIRFLOW_HOME/x -> src`` (``./dags`` etc. are
  the repository's folders, a named volume is a directory shared by every service that mounts
  it), and ``/opt/airflow/...`` in environment values points into the home.
* **depends_on**: services start in dependency order; ``service_completed_successfully`` waits
  for exit status 0, ``service_healthy`` runs the service's own healthcheck command until it
  passes. Every long-running service's healthcheck must pass before :meth:`start` returns.

The REST client is :class:`tests.support.standalone.StandaloneAirflow`'s (trigger, wait_run,
clear, ...); the admin logs in with the password the compose file takes from ``.env``.
"""

from __future__ import annotations

import atexit
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.support.standalone import (
    PROJECT_ROOT,
    AirflowApiError,
    StandaloneAirflow,
    _kill,
    _session_pids,
    free_port,
)

CONTAINER_HOME = "/opt/airflow"
# service -> the port it listens on inside its container
SERVICE_PORTS = {"postgres": 5432, "redis": 6379, "airflow-apiserver": 8080}
# listeners an Airflow process may open, as [section] option and their container defaults
LISTENERS = {
    8080: "AIRFLOW__API__PORT",
    8793: "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT",
    8794: "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT",
    8974: "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT",
}
_VAR = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
                  r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)")


class ComposeError(RuntimeError):
    """The compose file cannot be run as written (what compose itself would refuse)."""


# -- reading the compose file ---------------------------------------------------------------------
def read_dotenv(path: Path) -> dict[str, str]:
    """``KEY=value`` lines (comments and blanks skipped, no quoting rules beyond stripping)."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip().strip('"').strip("'")
    return values


def interpolate(text: str, env: Mapping[str, str], where: str = "") -> str:
    """Compose variable substitution of one string."""
    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group("name") or m.group("bare")
        op, arg = m.group("op"), m.group("arg") or ""
        value = env.get(name)
        unset_or_empty = value is None or (value == "" and op is not None and op.startswith(":"))
        if op in (":-", "-"):
            return arg if unset_or_empty else str(value)
        if op in (":?", "?"):
            if unset_or_empty:
                raise ComposeError(f"{where}: required variable {name} is missing a value: {arg}")
            return str(value)
        return value or ""
    return _VAR.sub(sub, text)


def _interpolate_tree(node: Any, env: Mapping[str, str], where: str) -> Any:
    if isinstance(node, str):
        return interpolate(node, env, where)
    if isinstance(node, list):
        return [_interpolate_tree(v, env, where) for v in node]
    if isinstance(node, dict):
        return {k: _interpolate_tree(v, env, f"{where}.{k}" if where else str(k)) for k, v in node.items()}
    return node


def load_compose(path: Path, dotenv: Mapping[str, str]) -> dict[str, Any]:
    """The compose file with anchors merged and variables substituted from ``dotenv``."""
    raw = yaml.safe_load(path.read_text())
    return dict(_interpolate_tree(raw, dotenv, path.name))


def environment_of(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def command_of(service: Mapping[str, Any]) -> list[str]:
    cmd = service.get("command") or []
    return shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]


def depends_on(service: Mapping[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {d: "service_started" for d in deps}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


_HOST = re.compile(r"(?<=[@/])(?P<host>" + "|".join(map(re.escape, SERVICE_PORTS)) + r")(?::(?P<port>\d+))?(?=[/?]|$)")


def map_hosts(value: str, local_ports: Mapping[str, int], where: str) -> str:
    """``@postgres:5432`` / ``//airflow-apiserver:8080`` -> ``127.0.0.1:<local port>``."""
    def sub(m: re.Match[str]) -> str:
        host, port = m.group("host"), m.group("port")
        if port is not None and int(port) != SERVICE_PORTS[host]:
            raise ComposeError(f"{where}: {host}:{port}, but {host} listens on {SERVICE_PORTS[host]}")
        return f"127.0.0.1:{local_ports[host]}"
    return _HOST.sub(sub, value)


# -- one local "container" ------------------------------------------------------------------------
@dataclass
class LocalService:
    name: str  # "airflow-worker-2" for the second replica of "airflow-worker"
    service: str  # the compose service
    argv: list[str]
    env: dict[str, str]
    home: Path
    ports: dict[int, int] = field(default_factory=dict)  # container port -> local port
    healthcheck: list[str] | None = None
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.home / "service.log"

    def start(self) -> None:
        out = self.log_path.open("ab")
        try:
            self.proc = subprocess.Popen(self.argv, cwd=self.home, env=self.env, stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            out.close()

    def healthy(self) -> bool:
        """Run the service's own healthcheck command once (True when it exits 0)."""
        if self.healthcheck is None:
            return True
        kind, *rest = self.healthcheck
        if kind == "NONE":
            return True
        argv = ["/bin/sh", "-c", rest[0]] if kind == "CMD-SHELL" else list(rest)
        for cport, lport in self.ports.items():
            argv = [a.replace(f"localhost:{cport}", f"127.0.0.1:{lport}") for a in argv]
        env = dict(self.env)
        # the container's host name is the name the process registers under
        env["HOSTNAME"] = socket.gethostname() if "celery" in " ".join(argv) else _airflow_hostname()
        try:
            done = subprocess.run(argv, cwd=self.home, env=env, capture_output=True, timeout=60, check=False)
        except subprocess.TimeoutExpired:
            return False
        return done.returncode == 0

    def output_tail(self, max_chars: int = 4000) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            text = "(no output)"
        return f"---- {self.name} (tail) ----\n{text[-max_chars:]}"

    def stop(self, grace: float = 10.0) -> None:
        if self.proc is None:
            return
        sid = self.proc.pid
        if self.proc.poll() is None:
            try:
                os.killpg(sid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for pid in _session_pids(sid):
            _kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and (self.proc.poll() is None or _session_pids(sid)):
            time.sleep(0.2)
        for _ in range(3):
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


def _airflow_hostname() -> str:
    from airflow.utils.net import getfqdn

    return str(getfqdn())


# -- the stack --------------------------------------------------------------------------------------
class ComposeAirflow(StandaloneAirflow):
    """docker-compose.yaml's Airflow services as local processes (see the module doc).

    :param root: a scratch directory (homes, named volumes, logs).
    :param dotenv: the .env values (``docker compose`` reads the same file).
    :param postgres_port: the local Postgres server that plays ``postgres`` (TCP on 127.0.0.1;
        the caller creates ``POSTGRES_DB`` as the postgres image would).
    :param redis_port: the local ``redis-server`` that plays ``redis``.
    :param scale: replicas per service, e.g. ``{"airflow-worker": 2}``.
    :param overrides: extra environment per local service name, for negative checks only.
    """

    def __init__(self, root: Path, dotenv: Mapping[str, str], *, postgres_port: int, redis_port: int,
                 compose_file: Path = PROJECT_ROOT / "docker-compose.yaml",
                 scale: Mapping[str, int] | None = None,
                 overrides: Mapping[str, Mapping[str, str]] | None = None) -> None:
        self.root = Path(root).resolve()
        self.dotenv = dict(dotenv)
        self.spec = load_compose(compose_file, self.dotenv)
        self.compose_file = compose_file
        api_port = free_port()
        self.local_ports = {"postgres": postgres_port, "redis": redis_port, "airflow-apiserver": api_port}
        self.scale = dict(scale or {})
        self.overrides = {k: dict(v) for k, v in (overrides or {}).items()}
        self.services: dict[str, LocalService] = {}
        api_home = self.root / "homes" / "airflow-apiserver"
        super().__init__(api_home, metadata_db_url="(from docker-compose.yaml)", port=api_port)
        self.admin_user = self.dotenv.get("TA_LAB2_ADMIN_USER", "admin")
        self.admin_password = self.dotenv["TA_LAB2_ADMIN_PASSWORD"]

    # -- building the local services -------------------------------------------------------------
    def airflow_services(self) -> list[str]:
        """The compose services that run the Airflow image (everything but postgres and redis)."""
        return [n for n in self.spec["services"] if n not in ("postgres", "redis")]

    def local_service(self, service: str, replica: int = 1) -> LocalService:
        spec = self.spec["services"][service]
        name = service if self.scale.get(service, 1) == 1 else f"{service}-{replica}"
        home = self.root / "homes" / name
        home.mkdir(parents=True, exist_ok=True)
        where = f"{self.compose_file.name}: services.{service}"
        for volume in spec.get("volumes") or []:
            src, dst = str(volume).split(":")[:2]
            if not (dst == CONTAINER_HOME or dst.startswith(CONTAINER_HOME + "/")):
                raise ComposeError(f"{where}.volumes: {volume}: mount outside {CONTAINER_HOME} (the image's home)")
            source = (PROJECT_ROOT / src).resolve() if src.startswith((".", "/")) else self.root / "volumes" / src
            if src.startswith((".", "/")) and not source.exists():
                raise ComposeError(f"{where}.volumes: {volume}: {source} does not exist")
            source.mkdir(parents=True, exist_ok=True)
            link = home / dst[len(CONTAINER_HOME) + 1:]
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.is_symlink():
                link.symlink_to(source, target_is_directory=True)
        ports = {cport: (self.port if cport == 8080 and service == "airflow-apiserver" else free_port())
                 for cport in LISTENERS}
        env = {
            "PATH": str(Path(sys.executable).parent) + os.pathsep + "/usr/local/bin:/usr/bin:/bin",
            "HOME": str(home),
            "LANG": "C.UTF-8",
            "AIRFLOW_HOME": str(home),
        }
        for key, value in environment_of(spec).items():
            value = map_hosts(value, self.local_ports, f"{where}.environment.{key}")
            value = re.sub(rf"(?<![\w/]){re.escape(CONTAINER_HOME)}(?=/|$)", str(home), value)
            env[key] = value
        env.update({LISTENERS[c]: str(p) for c, p in ports.items()})  # this "container's" own ports
        env.update(self.overrides.get(name, {}))
        argv = command_of(spec)
        if spec.get("entrypoint"):
            entry = spec["entrypoint"]
            argv = (shlex.split(entry) if isinstance(entry, str) else list(entry)) + argv
        else:  # the official image's entrypoint: `airflow <command>` unless bash/python
            if argv and argv[0] == "airflow":
                argv = argv[1:]
            if not argv or argv[0] not in ("bash", "python"):
                argv = ["airflow", *argv]
        if argv[0] in ("airflow", "python"):
            argv[0] = str(Path(sys.executable).parent / argv[0]) if argv[0] == "airflow" else sys.executable
        hc = spec.get("healthcheck", {}).get("test")
        healthcheck = [hc] if isinstance(hc, str) else hc
        return LocalService(name, service, argv, env, home, ports, healthcheck)

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self, timeout: float = 420.0) -> ComposeAirflow:  # type: ignore[override]
        """Start every Airflow service in depends_on order; return when all are healthy."""
        atexit.register(self.stop)
        try:
            self._start(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = self.airflow_services()
        done: set[str] = {"postgres", "redis"}  # provided by the caller, healthy
        healthy: set[str] = {"postgres", "redis"}
        started: dict[str, list[LocalService]] = {}
        while pending or any(s not in healthy for s in started):
            if time.monotonic() > deadline:
                raise TimeoutError(f"compose services not up after {timeout:.0f}s: pending {pending}, "
                                   f"unhealthy {[s for s in started if s not in healthy]}\n{self.output_tail()}")
            for service in list(pending):
                conds = depends_on(self.spec["services"][service])
                ready = all((name in done if cond == "service_completed_successfully"
                             else name in healthy if cond == "service_healthy" else name in started or name in done)
                            for name, cond in conds.items())
                if ready:
                    pending.remove(service)
                    replicas = [self.local_service(service, i + 1) for i in range(self.scale.get(service, 1))]
                    for local in replicas:
                        local.start()
                        self.services[local.name] = local
                    started[service] = replicas
            probes: dict[str, list[LocalService]] = {}
            for service, replicas in started.items():
                if service in healthy:
                    continue
                one_shot = self.spec["services"][service].get("restart") == "no"
                if one_shot:
                    codes = [r.proc.poll() for r in replicas if r.proc is not None]
                    if all(c is not None for c in codes):
                        if any(c != 0 for c in codes):
                            raise ComposeError(f"{service} exited with {codes}\n"
                                               + "\n".join(r.output_tail() for r in replicas))
                        done.add(service)
                        healthy.add(service)
                    continue
                for r in replicas:
                    if r.proc is not None and r.proc.poll() is not None:
                        raise ComposeError(f"{r.name} exited with {r.proc.returncode}\n{r.output_tail()}")
                probes[service] = replicas
            if probes:  # the healthcheck commands run side by side, as compose runs them
                with ThreadPoolExecutor(max_workers=8) as pool:
                    ok = dict(zip(probes, pool.map(lambda rs: all(r.healthy() for r in rs), probes.values()), strict=True))
                healthy.update(service for service, passed in ok.items() if passed)
            time.sleep(1.0)

    def stop(self, grace: float = 10.0) -> None:
        """Stop every service (side by side, like ``docker compose down``). Idempotent."""
        services = list(self.services.values())
        if services:
            with ThreadPoolExecutor(max_workers=len(services)) as pool:
                list(pool.map(lambda local: local.stop(grace), services))
        atexit.unregister(self.stop)
        self._token = None

    def _check_alive(self) -> None:
        for local in self.services.values():
            if local.proc is not None and local.proc.poll() is not None and \
                    self.spec["services"][local.service].get("restart") != "no":
                raise RuntimeError(f"{local.name} died (exit {local.proc.returncode})\n{local.output_tail()}")

    def output_tail(self, max_chars: int = 3000) -> str:
        return "\n".join(s.output_tail(max_chars) for s in self.services.values()) or "(no services started)"

    @property
    def token(self) -> str:
        """A JWT for the admin from .env (the password file airflow-init wrote from it)."""
        if self._token is None:
            resp = self._client.post("/auth/token", json={"username": self.admin_user, "password": self.admin_password})
            if resp.status_code not in (200, 201):
                raise AirflowApiError("POST", "/auth/token", resp.status_code, resp.text)
            self._token = str(resp.json()["access_token"])
        return self._token


def start_redis(command: Sequence[str], port: int, log: Path) -> subprocess.Popen[bytes]:
    """The compose ``redis`` service's command as a private local server on ``port`` (no
    persistence); waits until it answers PING."""
    argv = [*command, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--daemonize", "no"]
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc
        except OSError:
            if proc.poll() is not None:
                raise ComposeError(f"redis-server exited with {proc.returncode}: {log.read_text()[-2000:]}") from None
            time.sleep(0.2)
    proc.kill()
    raise TimeoutError(f"redis-server not listening on {port}")
