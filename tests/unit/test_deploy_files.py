"""The files a deployer relies on are well-formed (no Docker engine runs here, so the compose
file is validated structurally; `make up` runs it where Docker is available)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_compose_runs_airflow_with_celery_postgres_redis_and_mounts_the_package() -> None:
    spec = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
    services = spec["services"]
    assert {"postgres", "redis", "airflow-init", "airflow-apiserver", "airflow-scheduler",
            "airflow-dag-processor", "airflow-worker"} <= set(services)
    for name in ("airflow-apiserver", "airflow-scheduler", "airflow-worker"):
        env = services[name]["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert env["AIRFLOW_CONN_TA_LAB2_DB"].startswith("postgresql://")
        assert {"./dags:/opt/airflow/dags", "./plugins:/opt/airflow/plugins"} <= set(services[name]["volumes"])
    assert "pools set ta_lab2_db" in services["airflow-init"]["command"][-1]


def test_requirements_is_an_exact_lock_with_the_design_card_packages() -> None:
    lines = [ln for ln in (ROOT / "requirements.txt").read_text().splitlines() if ln and not ln.startswith("#")]
    assert all(re.fullmatch(r"[A-Za-z0-9_.\-\[\],]+==[^\s=]+", ln) for ln in lines), "every line pins =="
    pinned = {ln.split("==")[0].lower().replace("_", "-"): ln.split("==")[1] for ln in lines}
    assert pinned["apache-airflow"].startswith("3.3.")
    for pkg in ("apache-airflow-providers-postgres", "apache-airflow-providers-telegram", "pandas", "numpy",
                "pytest", "hypothesis", "psycopg", "pgserver"):
        assert pkg in pinned, pkg


def test_ci_runs_exactly_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make test" in ci.splitlines()[-1]
    assert "make test" in readme
