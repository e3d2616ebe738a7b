"""ta_lab2_ema_consumer (example, paused at creation): what a signal/backtest job downstream
of the warehouse looks like.

Scheduled on the EMA tables' Airflow Assets (any of them): the daily refresh's ``publish``
task emits one event per table whose family succeeded, all at once, so this DAG runs once
per refresh. It reads ``triggering_asset_events`` and logs, per table, the as-of day, the
assets that are fresh in it (``assets_ok``) and those to leave alone (``assets_failed``,
``assets_skipped``). Copy it, unpause it, replace the log line with your job.
See docs/operations/CONSUMERS.md.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from airflow.sdk import DAG, AssetAny, get_current_context, task

from ta_lab2.airflow_assets import EMA_ASSETS

log = logging.getLogger(__name__)


@task
def consume() -> dict[str, Any]:
    """Log what a consumer would read: one line per triggering event."""
    events = get_current_context()["triggering_asset_events"]
    seen: dict[str, Any] = {}
    for asset, asset_events in events.items():
        for ev in asset_events:
            extra = dict(ev.extra or {})
            log.info("would consume %s as of %s (run %s): %d rows written, assets ok %s, failed %s, skipped %s",
                     extra.get("table") or asset, extra.get("as_of_day"), extra.get("run_id"),
                     int(extra.get("rows_written") or 0), extra.get("assets_ok"), extra.get("assets_failed"),
                     extra.get("assets_skipped"))
            seen[str(extra.get("table") or asset)] = {k: extra.get(k) for k in ("as_of_day", "run_id", "assets_ok")}
    return seen


with DAG(
    dag_id="ta_lab2_ema_consumer",
    description="Example consumer of the warehouse's EMA assets (logs what it would read)",
    schedule=AssetAny(*EMA_ASSETS),
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    is_paused_upon_creation=True,
    tags=["ta_lab2", "example", "consumer"],
    doc_md=__doc__,
):
    consume()
