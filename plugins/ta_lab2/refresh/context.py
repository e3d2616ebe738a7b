"""Run options shared by every refresh step, and the small result each step returns."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the store imports pandas; this module stays light (the DAG file imports it)
    import psycopg

    from ta_lab2.store.batch import BatchReads, BatchWrites

LOOKBACK_1D = timedelta(days=3)


class DataCorruptionError(RuntimeError):
    """Too many rejected/repaired 1d rows in one run: nothing downstream may build on it."""


@dataclass(frozen=True)
class RunOptions:
    """What one run asks for. ``as_of`` is the exclusive source cutoff: only source rows
    with ``"timestamp" < as_of`` are visible (an Airflow run passes its data-interval end)."""

    as_of: datetime = field(default_factory=lambda: datetime.now(UTC))
    full_rebuild: bool = False
    dry_run: bool = False
    tfs: tuple[str, ...] = ()
    periods: tuple[int, ...] = ()
    tf_period_combos: tuple[tuple[str, int], ...] = ()
    run_id: str = "cli"
    corruption_min_rows: int = 10
    corruption_pct: float = 1.0

    def __post_init__(self) -> None:
        if self.as_of.tzinfo is None:
            raise ValueError("as_of must be timezone-aware (UTC)")


@dataclass
class ComponentResult:
    """What a step reports (goes to XCom, the audit table and the summary: small, JSON-able)."""

    asset_id: int
    component: str
    status: str = "ok"  # ok | failed | skipped | dry_run
    rows_written: int = 0
    repairs: int = 0
    rejects: int = 0
    gaps: int = 0
    duration_s: float = 0.0
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict (``details`` copied one level deep: ``dataclasses.asdict``'s deep
        copy of every nested value cost 0.26 s per 3,000 results of a daily run)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["details"] = {k: dict(v) if isinstance(v, dict) else list(v) if isinstance(v, list) else v
                          for k, v in self.details.items()}
        return out


class Timer:
    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.elapsed = time.perf_counter() - self.start


@dataclass
class Batch:
    """One batch's connection, cached reads and pending set-based writes (store/batch.py)."""

    conn: psycopg.Connection
    reads: BatchReads
    writes: BatchWrites

    @classmethod
    def open(cls, conn: psycopg.Connection, asset_ids: list[int]) -> Batch:
        from ta_lab2.store.batch import BatchReads, BatchWrites

        return cls(conn, BatchReads(conn, asset_ids), BatchWrites())
