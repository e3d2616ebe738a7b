"""What the ``publish`` task announces: one Asset event per table whose family succeeded.

Pure: the run's per-(asset, component) results (``ops.summary.expected_results``) in, one
event payload per published table out. A table's family *succeeded* in a run when it was
selected and at least one asset refreshed it (status ``ok``) and passed validation; its event
then lists which assets are fresh in it (``assets_ok``) and which are not (``assets_failed``:
failed, never ran, or failed validation; ``assets_skipped``: the freshness gate skipped it).
A family with no ok asset gets no event (consumers are not woken for nothing); a dry run
publishes nothing. docs/operations/CONSUMERS.md documents the payload.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from ta_lab2.airflow_assets import PUBLISHED_TABLES, PublishedTable

FAILED_STATUSES = frozenset({"failed", "not_run"})


def as_of_day(as_of: datetime) -> date:
    """The last UTC day whose candle closed before the cutoff (a candle closes at
    23:59:59.999): a 06:00 cutoff on 2025-04-02 gives 2025-04-01, and so does midnight."""
    return (as_of.astimezone(UTC) + timedelta(microseconds=999)).date() - timedelta(days=1)


def table_events(results: Sequence[dict[str, Any]], components: Collection[str], *, run_id: str, dag_id: str,
                 as_of: datetime, validation_failed: Collection[int] = (), validation_fail: int = 0,
                 tables: Sequence[PublishedTable] = PUBLISHED_TABLES) -> list[tuple[PublishedTable, dict[str, Any]]]:
    """``(table, extra)`` for every table to announce, in registry order.

    >>> from datetime import datetime, UTC
    >>> r = [{"asset_id": 1, "component": "bars.1d", "status": "ok", "rows_written": 3},
    ...      {"asset_id": 2, "component": "bars.1d", "status": "failed", "rows_written": 0}]
    >>> [(t.table, e["assets_ok"], e["assets_failed"]) for t, e in table_events(
    ...     r, ["bars.1d"], run_id="r", dag_id="d", as_of=datetime(2025, 4, 2, 6, tzinfo=UTC))]
    [('cmc_price_bars_1d', [1], [2])]
    """
    bad_validation = {int(a) for a in validation_failed}
    by_comp: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        by_comp[str(r["component"])].append(r)
    out = []
    for t in tables:
        if t.component not in components:
            continue
        rs = by_comp.get(t.component, [])
        ok = sorted(int(r["asset_id"]) for r in rs if r["status"] == "ok" and int(r["asset_id"]) not in bad_validation)
        failed = sorted({int(r["asset_id"]) for r in rs if r["status"] in FAILED_STATUSES}
                        | ({int(r["asset_id"]) for r in rs if r["status"] == "ok"} & bad_validation))
        skipped = sorted(int(r["asset_id"]) for r in rs if r["status"] == "skipped")
        if not ok:
            continue
        out.append((t, {
            "run_id": run_id, "dag_id": dag_id,
            "as_of": as_of.astimezone(UTC).isoformat(), "as_of_day": as_of_day(as_of).isoformat(),
            "component": t.component, "table": t.table,
            "rows_written": sum(int(r.get("rows_written") or 0) for r in rs if int(r["asset_id"]) in ok),
            "assets_ok": ok, "assets_failed": failed, "assets_skipped": skipped,
            "validation_fail": int(validation_fail),
        }))
    return out
