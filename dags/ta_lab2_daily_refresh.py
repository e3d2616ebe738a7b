"""ta_lab2_daily_refresh: CoinMarketCap candles -> six bar families -> four EMA families.

This file only wires; every task body is in ``ta_lab2.orchestration`` (the same library the
CLI calls). Nothing here touches the database or the network at import.

Shape (see docs/ARCHITECTURE.md for why)::

    ingest                                   new inbox files + missing API days (ta_lab2.ingest)
    prepare                                  schema, params check, ids -> batches
    asset  (ONE task group mapped over the batches; instance i depends only on instance i)
      bars.1d -> bars.multi_tf, bars.cal_iso, bars.cal_us, bars.cal_anchor_iso, bars.cal_anchor_us
      freshness                              sensor (reschedule, timeout, soft_fail) after bars.1d
      emas.multi_tf, emas.cal, emas.cal_anchor, emas.v2   each after freshness + its bar family
      (everything after bars.1d is all_done and runs the assets whose upstream steps recorded ok
      in this run's audit rows, so one bad asset never stops its batch-mates; a task with an
      asset held back by a failed step fails after committing the others, so a clear resumes it)
      validate                               per-asset checks (none_failed)
    validate_global                          cross-asset checks (none_failed)
    summary                                  table + refresh_runs audit + Telegram (all_done,
                                             after EVERY task of the group: resumes stay ordered)
    publish                                  beside summary, same upstreams: one Airflow Asset
                                             event per refreshed table (all_done)

Resume: any clear works (run or task level, with or without "only failed"): after a failure the
validation tasks are ``upstream_failed`` (so "only failed" clears them too), and ``summary``
waits for every mapped instance. No pool is needed: ``max_active_tasks`` caps the warehouse
connections. Each mapped instance is labelled with its batch's assets (``map_index_template``).

The sub-groups and their edges come from the family registry; adding a family to
``ta_lab2.registry`` adds its task here.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import DAG, TaskGroup, get_current_context, task, task_group

from ta_lab2 import labels, orchestration
from ta_lab2.airflow_assets import PUBLISH_ALIAS
from ta_lab2.ops.notifier import TelegramNotifier, deadline_alert
from ta_lab2.params import airflow_params
from ta_lab2.registry import BAR_FAMILY_NAMES, EMA_BAR_DEPENDENCIES, EMA_FAMILY_NAMES

DAG_ID = "ta_lab2_daily_refresh"
MAX_ACTIVE_TASKS = 8  # caps concurrent warehouse connections, no pool needed (docs/operations/DAILY_REFRESH.md §5)
SENSOR_POKE_S = 120
SENSOR_TIMEOUT_S = 2 * 3600

PARAMS = airflow_params()  # defined once in ta_lab2.params (the CLI builds its flags from the same list)

DEFAULT_ARGS: dict[str, Any] = {
    "owner": "ta_lab2",
    "retries": 2,  # only TransientWarehouseError gets here: data errors raise AirflowFailException
    "retry_delay": orchestration.retry_delay(),  # 30 s; env TA_LAB2_RETRY_DELAY_S (tests: 1 s)
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
    "on_failure_callback": TelegramNotifier("task_failure"),  # sends only what the digest cannot report
}


def _context() -> dict[str, Any]:
    return dict(get_current_context())


def component_task(component: str) -> Any:
    """The task of one bar builder or EMA refresher (task id = the family name). Everything
    after bars.1d runs ``all_done`` and picks the assets whose upstream steps recorded ``ok``
    (orchestration.runnable): one failed asset never stops its batch-mates, and the task still
    fails for it (after the others committed) so that any clear of the run resumes it."""
    rule = "all_success" if component == "bars.1d" else "all_done"

    @task(task_id=component.split(".", 1)[1], trigger_rule=rule, doc_md=f"Refresh `{component}` for this batch.")
    def run(batch: list[int]) -> dict[str, Any]:
        return orchestration.run_component(component, batch, _context())

    return run


@task.sensor(task_id="freshness", mode="reschedule", poke_interval=SENSOR_POKE_S, timeout=SENSOR_TIMEOUT_S,
             soft_fail=True, trigger_rule="all_done")
def freshness(batch: list[int]) -> Any:
    """OPERATIONS.md §3: fresh ids go on to the EMAs; a stale batch is skipped, not failed."""
    return orchestration.freshness(batch, _context())


@task(task_id="validate", trigger_rule="none_failed")
def validate_asset(batch: list[int]) -> dict[str, Any]:
    return orchestration.validate_assets(batch, _context())


@task_group(group_id="asset", default_args={"map_index_template": labels.MAP_INDEX_TEMPLATE})
def asset(batch: list[int]) -> None:
    """Everything for one batch of assets (batch_size "auto": about 16 batches, one asset each for small universes)."""
    with TaskGroup("bars") as bars_group:
        bars = {name: component_task(f"bars.{name}")(batch=batch) for name in BAR_FAMILY_NAMES}
    for name in BAR_FAMILY_NAMES[1:]:
        bars["1d"] >> bars[name]
    fresh = freshness(batch=batch)
    bars["1d"] >> fresh
    with TaskGroup("emas") as emas_group:
        emas = {name: component_task(f"emas.{name}")(batch=batch) for name in EMA_FAMILY_NAMES}
    fresh >> emas_group  # the EMAs read the gate's verdicts from the audit rows
    for name, deps in EMA_BAR_DEPENDENCIES.items():
        for dep in deps:
            bars[dep] >> emas[name]
    [bars_group, emas_group] >> validate_asset(batch=batch)


@task
def ingest() -> dict[str, Any]:
    """Load new files from TA_LAB2_INBOX and the API's missing days (connection cmc_api)."""
    return orchestration.ingest(_context())


@task(trigger_rule="all_done")  # a failed ingest still refreshes what is loaded
def prepare() -> list[list[int]]:
    """Apply the schema, check the params against the warehouse, resolve ids into batches."""
    return orchestration.prepare(_context())


@task(trigger_rule="none_failed")
def validate_global() -> dict[str, Any]:
    return orchestration.validate_global(_context())


@task(trigger_rule="all_done")
def summary() -> dict[str, Any]:
    return orchestration.summary(_context())


@task(trigger_rule="all_done", outlets=[PUBLISH_ALIAS])
def publish() -> dict[str, Any]:
    """Asset events for the tables whose family succeeded (docs/operations/CONSUMERS.md)."""
    return orchestration.publish(_context())


with DAG(
    dag_id=DAG_ID,
    description="CMC candles -> price bars -> EMAs, incremental, per-asset isolated",
    schedule="0 6 * * *",
    start_date=datetime(2010, 1, 1, tzinfo=UTC),  # before any CMC history: backfills of old dates work
    catchup=False,
    max_active_runs=1,
    max_active_tasks=MAX_ACTIVE_TASKS,
    user_defined_macros=labels.MACROS,
    params=PARAMS,
    default_args=DEFAULT_ARGS,
    on_failure_callback=TelegramNotifier("dag_failure"),
    on_success_callback=TelegramNotifier("dag_success"),  # "Resolved" after a failed run was resumed
    deadline=deadline_alert(),  # late alert: TA_LAB2_DEADLINE_HOURS (default 4) after the logical date
    tags=["ta_lab2", "market-data"],
    doc_md=__doc__,
) as dag:
    batches = prepare()
    ingest() >> batches
    per_asset = asset.expand(batch=batches)
    report, published = summary(), publish()
    per_asset >> validate_global() >> [report, published]
    # resume ordering: summary and publish wait for every task of every mapped instance, whatever
    # was cleared. publish is a sibling of summary, not its child: a DAG run's state comes from its
    # leaves, so summary must stay a leaf to fail the run.
    for group_task in dag.task_group_dict["asset"].iter_tasks():
        group_task >> [report, published]
