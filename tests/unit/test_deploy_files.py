"""The files a deployer relies on have the properties docs/operations/DEPLOYMENT.md promises.

No Docker engine runs here: the behaviour of docker-compose.yaml is proven by the Celery e2e
(tests/e2e/test_compose_celery.py), which reads the file and runs its services as local
processes; these checks pin the properties that e2e cannot see (the worker file, the
Dockerfile, the strictness of the init) and that the e2e still reads the same file.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.compose_local import (
    ComposeAirflow,
    ComposeError,
    command_of,
    depends_on,
    environment_of,
    load_compose,
    map_hosts,
)

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "deploy"))
from make_env import REQUIRED, secrets_env  # noqa: E402

AIRFLOW_SERVICES = ("airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
                    "airflow-triggerer", "airflow-worker")
LONG_RUNNING = AIRFLOW_SERVICES[1:]


def _dotenv(**over: str) -> dict[str, str]:
    return {**secrets_env(), **over}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose(ROOT / "docker-compose.yaml", _dotenv())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return dict(compose["services"])


def test_compose_runs_airflow_with_celery_postgres_redis_and_mounts_the_package(services: dict[str, Any]) -> None:
    assert set(AIRFLOW_SERVICES) | {"postgres", "redis"} <= set(services)
    for name in AIRFLOW_SERVICES:
        env = environment_of(services[name])
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
        assert {"./dags:/opt/airflow/dags", "./plugins:/opt/airflow/plugins",
                "./include:/opt/airflow/include"} <= set(services[name]["volumes"])
        assert services[name]["build"] == "."


@pytest.mark.parametrize("var", REQUIRED)
def test_every_shared_secret_comes_from_dotenv_and_compose_refuses_without_it(var: str) -> None:
    """`${VAR:?...}`: compose (and the e2e harness, which interpolates the same way) refuses
    to start when .env does not set it; with it, every Airflow container gets the same value."""
    env = _dotenv()
    del env[var]
    with pytest.raises(ComposeError, match=var):
        load_compose(ROOT / "docker-compose.yaml", env)
    env = _dotenv()
    spec = load_compose(ROOT / "docker-compose.yaml", env)
    for name in AIRFLOW_SERVICES:
        blob = "\n".join(environment_of(spec["services"][name]).values())
        if var.startswith("AIRFLOW__"):
            assert environment_of(spec["services"][name])[var] == env[var], (name, var)
        elif var != "TA_LAB2_ADMIN_PASSWORD" or name == "airflow-init":
            assert env[var] in blob, (name, var)


def test_no_secret_or_password_is_written_in_the_compose_files() -> None:
    for path in ("docker-compose.yaml", "docker-compose.worker.yaml"):
        text = (ROOT / path).read_text()
        assert "airflow:airflow@" not in text and "POSTGRES_PASSWORD: airflow" not in text, path
        for var in REQUIRED:
            if var != "TA_LAB2_ADMIN_PASSWORD" or path == "docker-compose.yaml":  # a worker needs no UI login
                assert re.search(rf"\$\{{{var}:\?", text), (path, var)


def test_dotenv_example_and_make_env_cover_every_required_secret() -> None:
    example = (ROOT / ".env.example").read_text()
    for var in REQUIRED:
        assert re.search(rf"^{var}=change-me", example, re.M), var
    assert set(secrets_env()) == set(REQUIRED)
    assert all(re.fullmatch(r"[A-Za-z0-9_=\-]+", v) for v in secrets_env().values()), "URL-safe values"
    makefile = (ROOT / "Makefile").read_text()
    up = makefile[makefile.index("\nup:"):makefile.index("\ndown:")]
    assert "test -f .env" in up and "make_env.REQUIRED" in up and "change-me" in up
    assert up.rstrip().endswith("docker compose up -d --build")
    assert "deploy/make_env.py" in makefile[makefile.index("\nenv:"):makefile.index("\nup:")]


def test_no_pip_install_at_start_the_image_installs_the_runtime_lock(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        text = " ".join(command_of(svc)) + " " + str(svc.get("entrypoint", ""))
        assert "pip install" not in text, name
        assert not any("requirements" in str(v) for v in svc.get("volumes") or []), name
    docker = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM apache/airflow:3\.3\.2-python3\.11$", docker, re.M)
    assert re.search(r"^COPY requirements-runtime\.txt ", docker, re.M)
    assert re.search(r"^RUN pip install --no-cache-dir -r /requirements-runtime\.txt$", docker, re.M)
    instructions = "\n".join(ln for ln in docker.splitlines() if not ln.startswith("#"))
    assert "requirements.txt" not in instructions.replace("requirements-runtime.txt", "")
    runtime = {ln.split("==")[0].lower() for ln in (ROOT / "requirements-runtime.txt").read_text().splitlines()
               if "==" in ln}
    assert {"apache-airflow", "apache-airflow-providers-celery", "apache-airflow-providers-postgres"} <= runtime
    assert not {"pytest", "ruff", "mypy", "hypothesis", "pgserver", "playwright"} & runtime


def test_init_is_strict_creates_a_least_privilege_warehouse_role_and_never_resets_the_pool(
        services: dict[str, Any]) -> None:
    init = services["airflow-init"]
    assert init["entrypoint"] == "/bin/bash" and init["restart"] == "no"
    script = command_of(init)[-1]
    lines = [ln.strip() for ln in script.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    assert lines[0] == "set -euo pipefail"
    assert "-v ON_ERROR_STOP=1" in script
    assert "airflow db migrate" in script
    # the only tolerated failure is "pool missing", and then it is created
    assert re.search(r"if ! airflow pools get ta_lab2_db >/dev/null 2>&1; then\s+airflow pools set ta_lab2_db",
                     script)
    shell = re.sub(r"<<'SQL'\n.*?\nSQL\n", "\n", script, flags=re.S)  # the psql input is SQL, not shell
    assert "||" not in shell and not re.search(r";\s*$", shell, re.M), shell
    for clause in ("NOSUPERUSER", "NOCREATEDB", "NOCREATEROLE", "CREATE DATABASE %I OWNER %I",
                   'REVOKE ALL ON DATABASE :"meta_db" FROM PUBLIC'):
        assert clause in script, clause
    # tasks reach the warehouse as that role, never as the metadata superuser
    env = _dotenv(POSTGRES_USER="su", TA_LAB2_WAREHOUSE_USER="wh_role", TA_LAB2_WAREHOUSE_DB="wh_db")
    spec = load_compose(ROOT / "docker-compose.yaml", env)
    for name in AIRFLOW_SERVICES:
        conn = environment_of(spec["services"][name])["AIRFLOW_CONN_TA_LAB2_DB"]
        assert conn == f"postgresql://wh_role:{env['TA_LAB2_WAREHOUSE_PASSWORD']}@postgres:5432/wh_db", conn
        assert env["POSTGRES_PASSWORD"] not in conn


def test_healthchecks_everywhere_and_readiness_ordering(services: dict[str, Any]) -> None:
    for name in ("postgres", "redis", *LONG_RUNNING):
        assert services[name]["healthcheck"]["test"], name
    for name in LONG_RUNNING:
        deps = depends_on(services[name])
        assert deps["postgres"] == deps["redis"] == "service_healthy", name
        assert deps["airflow-init"] == "service_completed_successfully", name
        assert services[name]["restart"] == "always", name
    for name in ("airflow-scheduler", "airflow-worker", "airflow-triggerer"):
        assert depends_on(services[name])["airflow-apiserver"] == "service_healthy", name
    assert depends_on(services["airflow-init"]) == {"postgres": "service_healthy"}
    assert environment_of(services["airflow-scheduler"])["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"] == "true"


def test_admin_password_comes_from_dotenv_into_a_file_on_a_volume(services: dict[str, Any]) -> None:
    env = environment_of(services["airflow-apiserver"])
    path = env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]
    assert path.startswith("/opt/airflow/config/")
    assert "airflow-config:/opt/airflow/config" in services["airflow-apiserver"]["volumes"]
    assert "airflow-config:/opt/airflow/config" in services["airflow-init"]["volumes"]
    assert "TA_LAB2_ADMIN_PASSWORD" in command_of(services["airflow-init"])[-1]


def test_main_machine_publishes_what_a_second_machine_needs(services: dict[str, Any]) -> None:
    published = {name: [str(p).split(":")[-1] for p in services[name].get("ports", [])]
                 for name in ("postgres", "redis", "airflow-apiserver")}
    assert published == {"postgres": ["5432"], "redis": ["6379"], "airflow-apiserver": ["8080"]}
    assert services["redis"]["command"][:2] == ["redis-server", "--requirepass"]  # published: not open


def test_worker_file_has_the_main_environment_with_reachable_urls_and_the_same_secrets() -> None:
    env = _dotenv(TA_LAB2_MAIN_HOST="10.1.2.3", TA_LAB2_WORKER_HOST="10.1.2.4")
    main = environment_of(load_compose(ROOT / "docker-compose.yaml", env)["services"]["airflow-worker"])
    worker_spec = load_compose(ROOT / "docker-compose.worker.yaml", env)["services"]["airflow-worker"]
    worker = environment_of(worker_spec)
    at_main = {k: map_hosts(v, {"postgres": 5432, "redis": 6379, "airflow-apiserver": 8080}, k)
               .replace("127.0.0.1", "10.1.2.3") for k, v in main.items()}
    assert worker == at_main
    assert command_of(worker_spec) == ["celery", "worker"]
    assert worker_spec["hostname"] == "10.1.2.4" and worker_spec["ports"] == ["8793:8793"]
    assert set(worker_spec["volumes"]) >= {"./dags:/opt/airflow/dags", "./plugins:/opt/airflow/plugins",
                                           "./include:/opt/airflow/include"}
    del env["TA_LAB2_MAIN_HOST"]
    with pytest.raises(ComposeError, match="TA_LAB2_MAIN_HOST"):
        load_compose(ROOT / "docker-compose.worker.yaml", env)


def test_celery_e2e_runs_this_compose_file_and_every_airflow_service(services: dict[str, Any]) -> None:
    """The e2e starts exactly the compose file's Airflow services, with their own commands."""
    e2e = (ROOT / "tests" / "e2e" / "test_compose_celery.py").read_text()
    assert 'PROJECT_ROOT / "docker-compose.yaml"' in e2e and '"airflow-worker": 2' in e2e
    harness = (ROOT / "tests" / "support" / "compose_local.py").read_text()
    assert 'compose_file: Path = PROJECT_ROOT / "docker-compose.yaml"' in harness
    assert {n: command_of(services[n]) for n in LONG_RUNNING} == {
        "airflow-apiserver": ["api-server"], "airflow-scheduler": ["scheduler"],
        "airflow-dag-processor": ["dag-processor"], "airflow-triggerer": ["triggerer"],
        "airflow-worker": ["celery", "worker"]}


def test_requirements_is_an_exact_lock_with_the_design_card_packages() -> None:
    for path, must in (("requirements.txt", ("pytest", "hypothesis", "pgserver")),
                       ("requirements-runtime.txt", ("apache-airflow-providers-celery",))):
        lines = [ln for ln in (ROOT / path).read_text().splitlines() if ln and not ln.startswith("#")]
        assert all(re.fullmatch(r"[A-Za-z0-9_.\-\[\],]+==[^\s=]+", ln) for ln in lines), f"{path}: every line pins =="
        pinned = {ln.split("==")[0].lower().replace("_", "-"): ln.split("==")[1] for ln in lines}
        assert pinned["apache-airflow"].startswith("3.3.")
        for pkg in ("apache-airflow-providers-postgres", "apache-airflow-providers-telegram", "pandas", "numpy",
                    "psycopg", *must):
            assert pkg in pinned, (path, pkg)
    runtime = dict(ln.split("==") for ln in (ROOT / "requirements-runtime.txt").read_text().splitlines() if "==" in ln)
    full = dict(ln.split("==") for ln in (ROOT / "requirements.txt").read_text().splitlines() if "==" in ln)
    assert {k: full.get(k) for k in runtime} == runtime, "the dev lock keeps every runtime pin"


def test_ci_runs_exactly_the_readme_test_command_and_provides_redis() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make test" in ci.strip().splitlines()[-1]
    assert "make test" in readme
    assert "command -v redis-server" in ci and "apt-get install -y -qq" in ci and "postgresql-client" in ci
    yaml.safe_load((ROOT / "docker-compose.worker.yaml").read_text())  # well-formed


def _stack_with(tmp_path: Path, edit: Any) -> ComposeAirflow:
    """The e2e harness on a copy of docker-compose.yaml changed by ``edit(raw_yaml_text)``."""
    path = tmp_path / "docker-compose.yaml"  # bind mounts (./dags, ...) resolve against the repository
    path.write_text(edit((ROOT / "docker-compose.yaml").read_text()))
    return ComposeAirflow(tmp_path / "stack", _dotenv(), postgres_port=5432, redis_port=6379, compose_file=path)


@pytest.mark.parametrize(("edit", "error"), [
    (lambda t: t.replace("- ./dags:/opt/airflow/dags", "- ./dag:/opt/airflow/dags"), "does not exist"),
    (lambda t: t.replace("- ./include:/opt/airflow/include", "- ./include:/include"), "outside /opt/airflow"),
    (lambda t: t.replace("http://airflow-apiserver:8080/execution/", "http://airflow-apiserver:8793/execution/"),
     "airflow-apiserver listens on 8080"),
])
def test_the_e2e_harness_refuses_a_wrong_mount_or_url(tmp_path: Path, edit: Any, error: str) -> None:
    """What the Celery e2e turns into a failure before any process starts (a wrong command or a
    missing variable fails it when the process exits or a task fails)."""
    af = _stack_with(tmp_path, edit)
    with pytest.raises(ComposeError, match=error):
        af.local_service("airflow-worker")


def test_the_e2e_harness_gives_a_service_only_its_compose_environment(tmp_path: Path) -> None:
    af = _stack_with(tmp_path, lambda t: t)
    worker = af.local_service("airflow-worker")
    compose_env = environment_of(af.spec["services"]["airflow-worker"])
    image_env = {"PATH", "HOME", "LANG", "AIRFLOW_HOME"}
    own_ports = {"AIRFLOW__API__PORT", "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT",
                 "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT", "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT"}
    assert set(worker.env) == set(compose_env) | image_env | own_ports
    assert worker.env["AIRFLOW__API_AUTH__JWT_SECRET"] == af.dotenv["AIRFLOW__API_AUTH__JWT_SECRET"]
    assert worker.env["AIRFLOW__CELERY__BROKER_URL"].endswith("@127.0.0.1:6379/0")
    assert worker.argv[1:] == ["celery", "worker"] and (worker.home / "dags").resolve() == ROOT / "dags"
