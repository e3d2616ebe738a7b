"""ta_lab2_daily_refresh: CoinMarketCap candles -> six bar families -> four EMA families.

This file only wires; every task body is in ``ta_lab2.orchestration`` (the same library the
CLI calls). Nothing here touches the database or the network at import.

Shape (see docs/ARCHITECTURE.md for why)::

    prepare                                  schema, params check, ids -> batches
    asset  (ONE task group mapped over the batches; instance i depends only on instance i)
      bars.1d -> bars.multi_tf, bars.cal_iso, bars.cal_us, bars.cal_anchor_iso, bars.cal_anchor_us
      freshness                              sensor (reschedule, timeout, soft_fail) after bars.1d
      emas.multi_tf, emas.cal, emas.cal_anchor, emas.v2   each after freshness + its bar family
      validate                               per-asset checks (all_done)
    validate_global                          cross-asset checks (all_done)
    summary                                  table + refresh_runs audit + Telegram (all_done)

The sub-groups and their edges come from the family registry; adding a family to
``ta_lab2.registry`` adds its task here.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Param, TaskGroup, get_current_context, task, task_group

from ta_lab2 import orchestration
from ta_lab2.ops.alerts import on_dag_failure, on_task_failure
from ta_lab2.registry import BAR_FAMILY_NAMES, EMA_BAR_DEPENDENCIES, EMA_FAMILY_NAMES

DAG_ID = "ta_lab2_daily_refresh"
POOL = "ta_lab2_db"  # caps concurrent warehouse connections (size: docs/operations/DAILY_REFRESH.md)
SENSOR_POKE_S = 120
SENSOR_TIMEOUT_S = 2 * 3600

_IDS = r"^\s*(all|\d+(\s*,\s*\d+)*)\s*$"
PARAMS = {
    "targets": Param(["bars", "emas"], type="array", minItems=1, uniqueItems=True,
                     items={"type": "string", "enum": ["bars", "emas"]},
                     description="bars, emas or both (an empty list is refused)"),
    "ids": Param("all", oneOf=[{"type": "string", "pattern": _IDS},
                               {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 1}}],
                 description='"all" (active dim_assets rows), "1,52" or a list of asset ids'),
    "builders": Param(list(BAR_FAMILY_NAMES), type="array", uniqueItems=True,
                      items={"type": "string", "enum": list(BAR_FAMILY_NAMES)},
                      description="bar builders to run (1d always runs first when selected)"),
    "refreshers": Param(list(EMA_FAMILY_NAMES), type="array", uniqueItems=True,
                        items={"type": "string", "enum": list(EMA_FAMILY_NAMES)},
                        description="EMA refreshers to run"),
    "tfs": Param([], type="array", uniqueItems=True, items={"type": "string", "pattern": "^[0-9A-Z_]+$"},
                 description="restrict timeframes, e.g. 1D, 7D, 1M_CAL (empty = all canonical)"),
    "periods": Param([], type="array", uniqueItems=True, items={"type": "integer", "minimum": 1},
                     description="restrict EMA periods, e.g. 10, 20, 50 (empty = the default periods)"),
    "tf_period_combos": Param([], type="array", uniqueItems=True,
                              items={"type": "string", "pattern": "^[0-9A-Z_]+:[1-9][0-9]*$"},
                              description='explicit pairs such as "7D:10"; when given, win over tfs x periods'),
    "full_rebuild": Param(False, type="boolean", description="ignore watermarks: delete and rebuild"),
    "dry_run": Param(False, type="boolean", description="plan only: log what would change, write nothing"),
    "skip_stale_check": Param(False, type="boolean", description="bypass the freshness gate"),
    "staleness_hours": Param(48, type="number", exclusiveMinimum=0, description="freshness threshold"),
    "validate": Param(True, type="boolean", description="run the validation checks"),
    "alert_on_error": Param(True, type="boolean", description="send Telegram alerts"),
    "batch_size": Param("auto", oneOf=[{"type": "string", "enum": ["auto"]},
                                       {"type": "integer", "minimum": 1, "maximum": 10_000}],
                        description='assets per mapped task instance: "auto" (about 16 instances, at most 250 '
                                    'assets each) or an integer'),
}

DEFAULT_ARGS: dict[str, Any] = {
    "owner": "ta_lab2",
    "retries": 2,  # only TransientWarehouseError gets here: data errors raise AirflowFailException
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
    "on_failure_callback": on_task_failure,
}


def _context() -> dict[str, Any]:
    return dict(get_current_context())


def component_task(component: str) -> Any:
    """The task of one bar builder or EMA refresher (task id = the family name). Everything
    after bars.1d runs ``all_done`` and picks the assets whose upstream steps recorded ``ok``
    (orchestration.runnable): one failed asset never stops its batch-mates."""
    rule = "all_success" if component == "bars.1d" else "all_done"

    @task(task_id=component.split(".", 1)[1], pool=POOL, trigger_rule=rule,
          doc_md=f"Refresh `{component}` for this batch.")
    def run(batch: list[int]) -> dict[str, Any]:
        return orchestration.run_component(component, batch, _context())

    return run


@task.sensor(task_id="freshness", mode="reschedule", poke_interval=SENSOR_POKE_S, timeout=SENSOR_TIMEOUT_S,
             soft_fail=True, pool=POOL, trigger_rule="all_done")
def freshness(batch: list[int]) -> Any:
    """OPERATIONS.md §3: fresh ids go on to the EMAs; a stale batch is skipped, not failed."""
    return orchestration.freshness(batch, _context())


@task(task_id="validate", trigger_rule="all_done", pool=POOL)
def validate_asset(batch: list[int]) -> dict[str, Any]:
    return orchestration.validate_assets(batch, _context())


@task_group(group_id="asset")
def asset(batch: list[int]) -> None:
    """Everything for one batch of assets (one asset with the default batch_size 1)."""
    with TaskGroup("bars") as bars_group:
        bars = {name: component_task(f"bars.{name}")(batch) for name in BAR_FAMILY_NAMES}
    for name in BAR_FAMILY_NAMES[1:]:
        bars["1d"] >> bars[name]
    fresh = freshness(batch)
    bars["1d"] >> fresh
    with TaskGroup("emas") as emas_group:
        emas = {name: component_task(f"emas.{name}")(batch) for name in EMA_FAMILY_NAMES}
    fresh >> emas_group  # the EMAs read the gate's verdicts from the audit rows
    for name, deps in EMA_BAR_DEPENDENCIES.items():
        for dep in deps:
            bars[dep] >> emas[name]
    [bars_group, emas_group] >> validate_asset(batch)


@task(pool=POOL)
def prepare() -> list[list[int]]:
    """Apply the schema, check the params against the warehouse, resolve ids into batches."""
    return orchestration.prepare(_context())


@task(trigger_rule="all_done", pool=POOL)
def validate_global() -> dict[str, Any]:
    return orchestration.validate_global(_context())


@task(trigger_rule="all_done")
def summary() -> dict[str, Any]:
    return orchestration.summary(_context())


with DAG(
    dag_id=DAG_ID,
    description="CMC candles -> price bars -> EMAs, incremental, per-asset isolated",
    schedule="0 6 * * *",
    start_date=datetime(2010, 1, 1, tzinfo=UTC),  # before any CMC history: backfills of old dates work
    catchup=False,
    max_active_runs=1,
    params=PARAMS,
    default_args=DEFAULT_ARGS,
    on_failure_callback=on_dag_failure,
    tags=["ta_lab2", "market-data"],
    doc_md=__doc__,
) as dag:
    per_asset = asset.expand(batch=prepare())
    per_asset >> validate_global() >> summary()
