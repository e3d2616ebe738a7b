"""The Warehouse page's verdict per asset (pure): status, staleness, sort order.

Status of an asset, worst first (the page's default order):

* ``failed``  a component of its last run failed or never ran (``not_run``);
* ``stale``   its 1d source watermark (``last_src_ts``) is older than the staleness threshold
  of its last run (the DAG param, else 48 h) at ``now``, or it has no 1d bars at all;
* ``skipped`` a component of its last run was skipped (the freshness gate);
* ``no run``  no run has touched it yet;
* ``ok``      everything else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from ta_lab2.registry import BAR_FAMILY_NAMES, EMA_FAMILY_NAMES

FALLBACK_STALENESS_HOURS = 48.0  # the DAG's staleness_hours default, for assets no run has touched
COMPONENTS: tuple[str, ...] = (*(f"bars.{b}" for b in BAR_FAMILY_NAMES), "freshness",
                               *(f"emas.{e}" for e in EMA_FAMILY_NAMES))
RANK = {"failed": 0, "stale": 1, "skipped": 2, "no run": 3, "ok": 4}


@dataclass(frozen=True)
class AssetStatus:
    id: int
    symbol: str
    name: str
    status: str
    last_day: date | None
    age_hours: float | None
    threshold_hours: float
    gaps: int
    rejects_1d: int
    rejects_ema: int
    run_id: str | None
    components: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def rejects(self) -> int:
        return self.rejects_1d + self.rejects_ema

    @property
    def stale(self) -> bool:
        return self.age_hours is None or self.age_hours > self.threshold_hours


def asset_status(row: dict[str, Any], now: datetime) -> AssetStatus:
    """One ``warehouse_overview`` row -> its verdict at ``now``."""
    threshold = float(row.get("staleness_hours") or FALLBACK_STALENESS_HOURS)
    src = row.get("last_src_ts")
    age = None if src is None else (now - src).total_seconds() / 3600.0
    comps = {str(k): str(v) for k, v in (row.get("components") or {}).items()}
    if set(comps.values()) & {"failed", "not_run"}:
        status = "failed"
    elif age is None or age > threshold:
        status = "stale"
    elif "skipped" in comps.values():
        status = "skipped"
    elif not comps:
        status = "no run"
    else:
        status = "ok"
    return AssetStatus(int(row["id"]), str(row["symbol"]), str(row.get("name") or ""), status, row.get("last_day"),
                       age, threshold, int(row.get("gaps") or 0), int(row.get("rejects_1d") or 0),
                       int(row.get("rejects_ema") or 0), row.get("run_id"), comps,
                       {str(k): str(v) for k, v in (row.get("errors") or {}).items()})


SORT_KEYS = {
    "attention": lambda a: (RANK[a.status], -(a.age_hours if a.age_hours is not None else float("inf")), a.id),
    "id": lambda a: a.id,
    "symbol": lambda a: (a.symbol, a.id),
    "status": lambda a: (RANK[a.status], a.id),
    "last_day": lambda a: (a.last_day or date.min, a.id),
    "age": lambda a: (a.age_hours if a.age_hours is not None else float("inf"), a.id),
    "rejects": lambda a: (a.rejects, a.id),
    "gaps": lambda a: (a.gaps, a.id),
}


def sort_statuses(items: Sequence[AssetStatus], key: str = "attention", desc: bool = False) -> list[AssetStatus]:
    """Sorted by one of :data:`SORT_KEYS` (an unknown key is refused)."""
    if key not in SORT_KEYS:
        raise ValueError(f"sort: {key!r} is not one of {', '.join(SORT_KEYS)}")
    return sorted(items, key=SORT_KEYS[key], reverse=desc)
