"""Bring new candles in: the inbox of dropped files, then the CoinMarketCap API.

``run_ingest`` is what the DAG's first task (``ingest``) and ``python -m ta_lab2 ingest``
call. Both sources land through the loader's one load path
(:func:`ta_lab2.store.source.upsert_chunks`) with the same line-level rejects, duplicate
handling, one transaction per file and ``cmc_load_audit`` accounting as ``load``. With
neither source configured it is a logged no-op. See docs/operations/DAILY_REFRESH.md "Ingest".
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from ta_lab2.ingest.cmc_api import ApiAuthError, ApiConfig
from ta_lab2.ingest.inbox import inbox_location

log = logging.getLogger(__name__)

__all__ = ["ApiAuthError", "ApiConfig", "IngestResult", "IngestSummary", "run_ingest", "summary_lines"]


@dataclass
class IngestResult:
    files_loaded: list[str] = field(default_factory=list)
    files_changed: list[str] = field(default_factory=list)  # loaded again with a new content
    files_unchanged: int = 0  # identical content already loaded (re-dropped or renamed)
    files_refused: list[str] = field(default_factory=list)  # "file: reason" (retried next run)
    files_deferred: list[str] = field(default_factory=list)  # asset not in --ids / params ids
    api_assets: int = 0
    days_fetched: int = 0
    inserted: int = 0
    updated: int = 0
    rejected: int = 0
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # API failures that survived the retries
    dry_run: bool = False
    load_id: str | None = None  # cmc_load_audit.load_id of this run's files and API answers

    def add_counts(self, counts: Any) -> None:
        self.inserted += counts.inserted
        self.updated += counts.updated
        self.rejected += counts.rejected

    def lines(self) -> list[str]:
        """The ingest part of the run summary."""
        head = (f"ingest{' (DRY RUN)' if self.dry_run else ''}: files loaded {len(self.files_loaded)} "
                f"(changed {len(self.files_changed)}, unchanged {self.files_unchanged}, refused "
                f"{len(self.files_refused)}); API days fetched {self.days_fetched} for {self.api_assets} assets; "
                f"rows inserted {self.inserted}, updated {self.updated}, rejected {self.rejected}")
        return [head, *(f"ingest: changed file reloaded: {f}" for f in self.files_changed),
                *(f"ingest: refused {f}" for f in self.files_refused),
                *(f"ingest: left for a run with its asset in ids: {f}" for f in self.files_deferred), *(f"ingest: {n}" for n in self.notes),
                *(f"ingest: {e}" for e in self.errors)]

    @property
    def clean(self) -> bool:
        """False when a file was refused or an API request failed (the run is then a warning)."""
        return not (self.files_refused or self.errors)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class IngestSummary:
    lines: list[str]
    clean: bool
    failed: bool


def summary_lines(result: dict[str, Any] | None) -> IngestSummary:
    """The run summary's ingest lines from the ``ingest`` task's return value (None: the task
    failed or did not run)."""
    if result is None:
        return IngestSummary(["ingest: FAILED or did not run (see the ingest task log); the refresh used "
                              "the data already loaded"], clean=False, failed=True)
    res = IngestResult(**result)
    return IngestSummary(res.lines(), clean=res.clean, failed=False)


def run_ingest(url: str, *, as_of: datetime, ids: list[int] | None = None, dry_run: bool = False,
               inbox: str | None = None, api: ApiConfig | None = None) -> IngestResult:
    """Load new inbox files, then fetch the API's missing days (each when configured)."""
    from ta_lab2.ingest import cmc_api
    from ta_lab2.ingest import inbox as inbox_mod
    from ta_lab2.store import db, schema
    from ta_lab2.store.source import new_load_id

    result = IngestResult(dry_run=dry_run, load_id=None if dry_run else new_load_id("ingest"))
    location = inbox if inbox is not None else inbox_location()
    if not location and api is None:
        log.info("ingest: no inbox (TA_LAB2_INBOX) and no CoinMarketCap API (connection cmc_api / "
                 "CMC_API_KEY) configured: nothing to do")
        result.notes.append("nothing configured (no TA_LAB2_INBOX, no cmc_api / CMC_API_KEY)")
        return result
    if not dry_run:
        with db.connect(url) as conn:
            schema.apply_schema(conn)
    if location:
        inbox_mod.load_inbox(url, location, result, ids=ids, dry_run=dry_run)
    if api is not None:
        cmc_api.fetch_missing(url, api, result, as_of=as_of, ids=ids, dry_run=dry_run)
    for line in result.lines():
        log.info("%s", line)
    return result
