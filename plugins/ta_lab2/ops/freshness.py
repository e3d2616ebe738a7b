"""The per-asset freshness gate (OPERATIONS.md §3), as a pure decision plus its read.

Fresh when BOTH hold: (1) caught up: ``cmc_price_bars_1d_state.last_src_ts`` equals the
source's max ``"timestamp"`` visible at the cutoff; (2) recent: ``cutoff - last_src_ts`` is
at most ``staleness_hours``. Decisions:

* ``fresh``   -> EMAs run;
* ``wait``    -> not caught up yet (bars behind the source): the sensor pokes again later
  (reschedule mode, no worker slot held) until its timeout, then soft-fails (= skip);
* ``stale``   -> no state (``no_state``) or older than the threshold: waiting cannot help
  within this run (the bars are already built up to the source), so the EMAs are skipped at
  once with the reason, e.g. ``Skipping ID 825 EMAs (bars stale: last_src_ts=…, 61.2h)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg.rows import dict_row

from ta_lab2.store import sqlfiles


@dataclass(frozen=True)
class Freshness:
    asset_id: int
    decision: str  # fresh | wait | stale
    reason: str
    age_hours: float | None = None

    @property
    def skip_message(self) -> str:
        return f"Skipping ID {self.asset_id} EMAs ({self.reason})"


def decide(asset_id: int, last_src_ts: datetime | None, src_max_ts: datetime | None, has_state: bool,
           cutoff: datetime, staleness_hours: float) -> Freshness:
    if not has_state or last_src_ts is None:
        return Freshness(asset_id, "stale", "bars stale: no_state")
    age = (cutoff - last_src_ts).total_seconds() / 3600.0
    if src_max_ts is not None and last_src_ts < src_max_ts:
        return Freshness(asset_id, "wait", f"bars behind source: last_src_ts={last_src_ts.isoformat()}, "
                                           f"source max={src_max_ts.isoformat()}", age)
    if age > staleness_hours:
        return Freshness(asset_id, "stale", f"bars stale: last_src_ts={last_src_ts.isoformat()}, {age:.1f}h", age)
    return Freshness(asset_id, "fresh", f"fresh: last_src_ts={last_src_ts.isoformat()}, {age:.1f}h", age)


def check_many(conn: psycopg.Connection, asset_ids: Sequence[int], cutoff: datetime,
               staleness_hours: float) -> list[Freshness]:
    """:func:`decide` for every asset (in the order given) from one read."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(sqlfiles.load("queries/freshness_inputs"),
                           {"ids": [int(a) for a in asset_ids], "cutoff": cutoff}).fetchall()
    by_id = {r["id"]: r for r in rows}
    return [decide(int(a), by_id[int(a)]["last_src_ts"], by_id[int(a)]["src_max_ts"], by_id[int(a)]["has_state"],
                   cutoff, staleness_hours) for a in asset_ids]


def judge_now(url: str, asset_ids: Sequence[int], cutoff: datetime, staleness_hours: float, run_id: str, *,
              record: bool = True) -> tuple[list[int], dict[int, str]]:
    """The gate without waiting: (fresh ids, ``{id: skip message}`` for the others; a ``wait``
    is a skip too, as a timed-out sensor). ``record``: each verdict goes to the run's audit rows
    (component ``freshness``), as the DAG's sensor records its own. Used by the CLI (which never
    waits) and by a DAG EMA task judging an asset its gate task could not judge."""
    from ta_lab2.refresh.context import ComponentResult
    from ta_lab2.refresh.records import record_many
    from ta_lab2.store import db

    with db.connect(url) as conn:
        decisions = check_many(conn, asset_ids, cutoff, staleness_hours)
    fresh: list[int] = []
    skip: dict[int, str] = {}
    for d in decisions:
        if d.decision == "fresh":
            fresh.append(d.asset_id)
        else:
            skip[d.asset_id] = d.skip_message
    if record:  # one audit transaction for the verdicts of all the assets
        record_many(url, run_id, [ComponentResult(d.asset_id, "freshness", status="ok" if d.decision == "fresh"
                                                  else "skipped", error=skip.get(d.asset_id),
                                                  details={"reason": d.reason}) for d in decisions])
    return fresh, skip
