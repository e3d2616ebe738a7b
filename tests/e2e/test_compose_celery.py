"""docker-compose.yaml, run as written, without Docker: the Celery e2e.

``tests.support.compose_local.ComposeAirflow`` reads docker-compose.yaml and starts every
Airflow service's command (airflow-init, api-server, scheduler, dag-processor, triggerer, and
the Celery worker scaled to two) as its own local process with its own ``AIRFLOW_HOME`` and ONLY
the environment the compose file gives it, interpolated from a .env of fresh secrets
(``deploy/make_env.py``, as ``make env`` writes it). ``postgres`` is the local server (the test
creates ``POSTGRES_DB`` as the postgres image would; airflow-init creates the warehouse role and
database itself), ``redis`` is a private ``redis-server`` run with the compose service's own
command. Services start in depends_on order and each one's healthcheck command must pass.

1. airflow-init made a least-privilege warehouse role: not a superuser, owner of the warehouse
   database, unable to connect to Airflow's metadata database; the admin logs in with the
   password from .env.
2. Unpausing the DAG lets the scheduler create the daily (cron) run; it runs on the two Celery
   workers (their logs show the workloads) and succeeds, with the tasks connected as the
   warehouse role.
3. A manual run with a poisoned asset (825, negative closes: ``bars.1d`` raises) fails only that
   asset; after fixing the source, clearing its failed instance with downstream resumes the run
   to success with 825's EMA rows present.
4. Per-container secrets are detected: a task token signed with the JWT secret a container
   would generate for itself (the compose environment without ``AIRFLOW__API_AUTH__JWT_SECRET``)
   is refused by the running API server (403), the token the compose environment signs is not.

A secret, variable, command or mount missing from or wrong in docker-compose.yaml fails one of
these steps. Measured: 4 min 11 s on 2 cores at load 15-19 (68 s of it starting the services).
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from ta_lab2.store import db, schema
from tests.support.compose_local import ComposeAirflow, command_of, load_compose, start_redis
from tests.support.standalone import PROJECT_ROOT, free_port
from tests.support.warehouse import DAY, history, load_rows

pytestmark = pytest.mark.e2e

sys.path.insert(0, str(PROJECT_ROOT / "deploy"))
from make_env import secrets_env  # noqa: E402

CLEAN = {1: 3, 52: 6}  # asset -> seed (no gaps in the last 8 days: the freshness gate passes)
POISONED, POISON_SEED = 825, 7
RUN_TIMEOUT_S = 300
T0 = time.monotonic()


def _step(msg: str) -> None:
    print(f"[compose-celery +{time.monotonic() - T0:6.1f}s] {msg}", flush=True)


def _rows(seed: int) -> list[dict[str, Any]]:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return history(seed, 120, gap_prob=0.0, start=today - 120 * DAY)


def _poisoned(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**r, "close": -r["close"]} if k % 5 == 0 and k // 5 < 15 else r for k, r in enumerate(rows)]


def _conninfo(server_url: str, **over: Any) -> str:
    info = psycopg.conninfo.conninfo_to_dict(server_url)
    info.update(over)
    return psycopg.conninfo.make_conninfo(**info)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def stack(pg_server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeAirflow]:
    info = psycopg.conninfo.conninfo_to_dict(pg_server_url)
    host, port = str(info.get("host", "")), int(info.get("port") or 5432)
    if host not in ("127.0.0.1", "localhost"):
        pytest.fail(f"the compose e2e maps the `postgres` service to a TCP server on 127.0.0.1; got {pg_server_url!r}")
    root = tmp_path_factory.mktemp("compose")
    sfx = uuid.uuid4().hex[:8]
    dotenv = {**secrets_env(),
              "POSTGRES_USER": str(info.get("user", "postgres")),  # the local superuser plays the image's
              "POSTGRES_DB": f"ta_lab2_ce2e_meta_{sfx}",
              "TA_LAB2_WAREHOUSE_USER": f"ta_lab2_ce2e_{sfx}",
              "TA_LAB2_WAREHOUSE_DB": f"ta_lab2_ce2e_wh_{sfx}",
              "TA_LAB2_API_WORKERS": "1"}
    (root / ".env").write_text("".join(f"{k}={v}\n" for k, v in dotenv.items()))
    spec = load_compose(PROJECT_ROOT / "docker-compose.yaml", dotenv)
    with psycopg.connect(pg_server_url, autocommit=True) as conn:  # what the postgres image does
        conn.execute(f'CREATE DATABASE "{dotenv["POSTGRES_DB"]}"')
    redis_port = free_port()
    redis = start_redis(command_of(spec["services"]["redis"]), redis_port, root / "redis.log")
    af = ComposeAirflow(root, dotenv, postgres_port=port, redis_port=redis_port, scale={"airflow-worker": 2})
    af.warehouse_url = _conninfo(pg_server_url, user=dotenv["TA_LAB2_WAREHOUSE_USER"],  # type: ignore[attr-defined]
                                 password=dotenv["TA_LAB2_WAREHOUSE_PASSWORD"], dbname=dotenv["TA_LAB2_WAREHOUSE_DB"])
    try:
        _step(f"starting the compose services as local processes under {root}")
        af.start()
        _step("all services healthy: " + ", ".join(af.services))
        yield af
    finally:
        af.stop()
        redis.kill()
        redis.wait(10)
        with psycopg.connect(pg_server_url, autocommit=True) as conn:
            for name in (dotenv["TA_LAB2_WAREHOUSE_DB"], dotenv["POSTGRES_DB"]):
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'DROP ROLE IF EXISTS "{dotenv["TA_LAB2_WAREHOUSE_USER"]}"')


def test_compose_stack_runs_the_daily_dag_on_two_celery_workers_and_resumes_a_poisoned_asset(
        stack: ComposeAirflow, pg_server_url: str) -> None:
    af = stack
    wh: str = af.warehouse_url  # type: ignore[attr-defined]
    role, meta_db = af.dotenv["TA_LAB2_WAREHOUSE_USER"], af.dotenv["POSTGRES_DB"]

    # 1. the init's least-privilege role
    with psycopg.connect(pg_server_url) as conn:
        row = conn.execute("SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = %s",
                           (role,)).fetchone()
        owner = conn.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s",
                             (af.dotenv["TA_LAB2_WAREHOUSE_DB"],)).fetchone()
    assert row == (False, False, False), row
    assert owner == (role,), owner
    with pytest.raises(psycopg.OperationalError, match="permission denied"):
        psycopg.connect(_conninfo(wh, dbname=meta_db)).close()
    assert af.get("/api/v2/version")["version"].startswith("3.3.")  # admin login with the .env password

    # 2. the daily run, created by the scheduler on unpause, on the Celery workers
    with db.connect(wh) as conn:  # as the warehouse role, like the tasks
        schema.apply_schema(conn)
    for asset, seed in CLEAN.items():
        load_rows(wh, asset, _rows(seed))
    af.wait_dag(timeout=180)
    af.unpause()
    _step("DAG unpaused")
    deadline = time.monotonic() + 120
    while not (runs := af.dag_runs(run_type="scheduled")):
        assert time.monotonic() < deadline, f"no scheduled run after unpausing\n{af.output_tail()}"
        time.sleep(2)
    daily = runs[0]["dag_run_id"]
    state = af.wait_run(daily, RUN_TIMEOUT_S)
    assert state == "success", af.diagnostics(daily)
    _step(f"daily run {daily} success")
    tis = af.task_instances(daily)
    ran = [t for t in tis if t["state"] == "success"]
    assert any(t["task_id"].startswith("asset.emas.") for t in ran)
    per_worker = {name: s.log_path.read_text(errors="replace").count("Executing workload in Celery")
                  for name, s in af.services.items() if name.startswith("airflow-worker")}
    _step(f"workloads per Celery worker: {per_worker}")
    assert sum(per_worker.values()) >= len(ran), (per_worker, len(ran))
    with psycopg.connect(wh) as conn:
        owners = {r[0] for r in conn.execute(
            "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'").fetchall()}
        n_ema = conn.execute("SELECT count(*) FROM cmc_ema_multi_tf WHERE id = ANY(%s)", (list(CLEAN),)).fetchone()
    assert owners == {role}, owners
    assert n_ema and n_ema[0] > 0

    # 3. poisoned asset: fails alone; fixed and cleared with downstream, the run succeeds
    clean_825 = _rows(POISON_SEED)
    load_rows(wh, POISONED, _poisoned(clean_825))
    ids = sorted([*CLEAN, POISONED])
    run_id = af.trigger({"ids": ids})["dag_run_id"]
    assert af.wait_run(run_id, RUN_TIMEOUT_S) == "failed", af.diagnostics(run_id)
    bad = af.xcom(run_id, "prepare").index([POISONED])
    states = {(t["task_id"], t["map_index"]): t["state"] for t in af.task_instances(run_id)}
    assert states[("asset.bars.1d", bad)] == "failed", af.diagnostics(run_id)
    others = {k: s for k, s in states.items() if k[0].startswith("asset.") and k[1] != bad}
    assert others and all(s == "success" for s in others.values()), others
    _step(f"poisoned run {run_id} failed only for asset {POISONED}")
    load_rows(wh, POISONED, clean_825)
    af.clear(run_id, [("asset.bars.1d", bad)], only_failed=False, include_downstream=True)
    assert af.wait_run(run_id, RUN_TIMEOUT_S) == "success", af.diagnostics(run_id)
    with psycopg.connect(wh) as conn:
        n = conn.execute("SELECT count(*) FROM cmc_ema_multi_tf WHERE id = %s", (POISONED,)).fetchone()
    assert n and n[0] > 0
    _step("resumed run success")

    # 4. a container with its own JWT secret is refused; the shared one is accepted
    ti_id = next(t["id"] for t in af.task_instances(run_id) if t["task_id"] == "prepare")
    scheduler_env = af.services["airflow-scheduler"].env
    own_secret = {k: v for k, v in scheduler_env.items() if k != "AIRFLOW__API_AUTH__JWT_SECRET"}
    url = f"{af.base_url}/execution/task-instances/{ti_id}/previous-successful-dagrun"
    shared = httpx.get(url, headers={"Authorization": f"Bearer {_sign(scheduler_env, ti_id, af.root)}"})
    foreign = httpx.get(url, headers={"Authorization": f"Bearer {_sign(own_secret, ti_id, af.root)}"})
    assert shared.status_code == 200, shared.text
    assert (foreign.status_code, foreign.json()) == (403, {"detail": "Invalid auth token"}), foreign.text
    assert "Signature verification failed" in af.services["airflow-apiserver"].log_path.read_text(errors="replace")
    _step(f"task token with the shared secret -> {shared.status_code}; with a per-container secret -> 403")


_SIGN = ("import sys\nfrom airflow.executors.base_executor import BaseExecutor\n"
         "print('TOKEN=' + BaseExecutor().jwt_generator.generate({'sub': sys.argv[1]}))\n")


def _sign(env: dict[str, str], ti_id: str, root: Path) -> str:
    """A task token signed as the scheduler's executor signs it, in a fresh container home."""
    home = root / "homes" / f"signer-{uuid.uuid4().hex[:6]}"
    home.mkdir(parents=True)
    done = subprocess.run([sys.executable, "-c", _SIGN, ti_id], env={**env, "AIRFLOW_HOME": str(home)},
                          capture_output=True, text=True, timeout=120, check=False)
    tokens = [ln[6:] for ln in done.stdout.splitlines() if ln.startswith("TOKEN=")]
    assert done.returncode == 0 and tokens, done.stdout[-2000:] + done.stderr[-2000:]
    return tokens[-1]
