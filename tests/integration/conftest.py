"""The real CoinMarketCap warehouse, built once per session through the CLI.

``real_wh`` loads the four shared files (BTC 1, ETH 1027, USDT 825, XRP 52) into a database of
its own and refreshes everything (``refresh --all``) in three as-of steps, recording the row
counts of every table and the audit rows of each step:

* ``A``: the full build, up to (excluding) each asset's last three days;
* ``B``: an incremental run adding two days per asset;
* ``C``: ``refresh --all --ids all --as-of 2021-07-07`` (after every asset's last day), adding
  each asset's last day;
* ``D``: the same command again (nothing new).

Three of the files end on 2021-02-27 and XRP on 2021-07-06, so steps A and B pass a per-group
as-of (``--ids``); step C is one run over all assets. The tables after C are the full build
plus two incremental runs; the acceptance tests recompute what they check independently.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from ta_lab2.registry import EMA_VARIANTS, SNAPSHOT_FAMILIES
from ta_lab2.store import db
from tests.conftest import create_database, drop_database

ASSETS = {1: "coin_Bitcoin.csv", 1027: "coin_Ethereum.csv", 825: "coin_Tether.csv", 52: "coin_XRP.csv"}
LAST_DAY = {1: date(2021, 2, 27), 1027: date(2021, 2, 27), 825: date(2021, 2, 27), 52: date(2021, 7, 6)}
FINAL_AS_OF = "2021-07-07"
BAR_TABLES = ["cmc_price_bars_1d", *(f.table for f in SNAPSHOT_FAMILIES)]
EMA_TABLES = [v.table for v in EMA_VARIANTS]


def midnight(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=UTC)


def query(url: str, stmt: str | sql.Composable, params: Any = None) -> list[tuple[Any, ...]]:
    with db.connect(url) as conn:
        cur = conn.execute(stmt, params)
        return cur.fetchall() if cur.description else []


def row_counts(url: str) -> dict[tuple[str, int], int]:
    """(table, asset id) -> rows, for every bar and EMA table."""
    out: dict[tuple[str, int], int] = {}
    for table in BAR_TABLES + EMA_TABLES:
        stmt = sql.SQL("SELECT id, count(*) FROM {} GROUP BY id").format(sql.Identifier(table))
        for asset, n in query(url, stmt):
            out[(table, asset)] = n
    return out


def ema_series(url: str) -> dict[tuple[str, int], int]:
    """(EMA table, asset id) -> number of (tf, period) series with rows."""
    out: dict[tuple[str, int], int] = {}
    for table in EMA_TABLES:
        stmt = sql.SQL("SELECT id, count(DISTINCT (tf, period)) FROM {} GROUP BY id").format(sql.Identifier(table))
        for asset, n in query(url, stmt):
            out[(table, asset)] = n
    return out


def audit_rows(url: str, run_id: str) -> dict[tuple[int, str], dict[str, Any]]:
    rows = query(url, "SELECT asset_id, component, status, rows_written, repairs, rejects, error_text "
                      "FROM refresh_run_assets WHERE run_id = %s", (run_id,))
    return {(r[0], r[1]): {"status": r[2], "rows_written": r[3], "repairs": r[4], "rejects": r[5],
                           "error": r[6]} for r in rows}


@dataclass
class RealWarehouse:
    url: str
    counts: dict[str, dict[tuple[str, int], int]] = field(default_factory=dict)  # step -> counts
    series: dict[str, dict[tuple[str, int], int]] = field(default_factory=dict)  # step -> EMA series
    audit: dict[str, dict[tuple[int, str], dict[str, Any]]] = field(default_factory=dict)  # step -> rows
    step_started: dict[str, datetime] = field(default_factory=dict)

    def delta(self, step: str, before: str, table: str, asset: int) -> int:
        return self.counts[step].get((table, asset), 0) - self.counts[before].get((table, asset), 0)


def _run(argv: list[str]) -> int:
    from ta_lab2.cli import main

    return main(argv)


@pytest.fixture(scope="session")
def real_wh(pg_server_url: str, shared_cmc_dir: Path) -> Iterator[RealWarehouse]:
    from ta_lab2.store import schema

    url = create_database(pg_server_url, "ta_lab2_real")
    with db.connect(url) as conn:
        schema.apply_schema(conn)
    wh = RealWarehouse(url)
    feb = [a for a, d in LAST_DAY.items() if d == date(2021, 2, 27)]
    groups = {",".join(map(str, feb)): date(2021, 2, 27), "52": LAST_DAY[52]}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TA_LAB2_DB_URL", url)
        assert _run(["load", *(str(shared_cmc_dir / f) for f in ASSETS.values())]) == 0
        for step, back in (("A", 2), ("B", 0)):
            wh.step_started[step] = query(url, "SELECT now()")[0][0]
            for ids, last in groups.items():
                as_of = (last - timedelta(days=back)).isoformat()  # excludes the last back + 1 days
                assert _run(["refresh", "--all", "--ids", ids, "--as-of", as_of, "--run-id", f"{step}-{ids}"]) == 0
            wh.counts[step] = row_counts(url)
            wh.series[step] = ema_series(url)
            wh.audit[step] = {k: v for ids in groups for k, v in audit_rows(url, f"{step}-{ids}").items()}
        wh.step_started["C"] = query(url, "SELECT now()")[0][0]
        # BTC, ETH and USDT end months before FINAL_AS_OF: the freshness gate would (rightly) skip
        # their EMAs; these steps build everything, as the demo does
        assert _run(["refresh", "--all", "--ids", "all", "--as-of", FINAL_AS_OF, "--run-id", "C",
                     "--skip-stale-check"]) == 0
        wh.counts["C"] = row_counts(url)
        wh.series["C"] = ema_series(url)
        wh.audit["C"] = audit_rows(url, "C")
        # D: the same run again, with nothing new in the source
        assert _run(["refresh", "--all", "--ids", "all", "--as-of", FINAL_AS_OF, "--run-id", "D",
                     "--skip-stale-check"]) == 0
        wh.counts["D"] = row_counts(url)
        wh.audit["D"] = audit_rows(url, "D")
    yield wh
    drop_database(pg_server_url, url)
