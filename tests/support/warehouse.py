"""Helpers for integration/property tests against a real Postgres warehouse.

The incremental == full property is checked with TWIN assets: the same source history is
loaded under two ids; one is refreshed in consecutive as-of slices, the other once at the
end; every table's rows for the two ids must then be equal column for column (bookkeeping
columns that record *when* or *how often* something ran are excluded, see IGNORED).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from psycopg import sql

from ta_lab2.loader import ParsedFile
from ta_lab2.refresh.context import RunOptions
from ta_lab2.refresh.runner import run_asset
from ta_lab2.registry import EMA_VARIANTS, SNAPSHOT_FAMILIES
from ta_lab2.store import db
from ta_lab2.store.source import upsert_parsed

# Columns that say when/how a run happened (not what the data is).
IGNORED = {"ingested_at", "updated_at", "last_run_ts", "last_upserted", "last_repaired_timehigh",
           "last_repaired_timelow", "last_rejected", "last_filled_times", "last_load_ts", "rev", "src_rev",
           "rejected_at", "created_at", "load_ts"}
_ids = itertools.count(10_000)
DAY = timedelta(days=1)
MS = timedelta(milliseconds=1)


def new_asset_ids(n: int = 2) -> list[int]:
    return [next(_ids) for _ in range(n)]


def history(seed: int, n_days: int, gap_prob: float = 0.08, start: datetime = datetime(2024, 1, 1, tzinfo=UTC),
            bad_time_prob: float = 0.03, bad_price_prob: float = 0.0) -> list[dict[str, Any]]:
    """A random daily history (dicts of source columns) with gaps and a few broken times."""
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.03, n_days)))
    rows = []
    for i in range(n_days):
        if i > 0 and rng.random() < gap_prob:
            continue
        t0 = start + i * DAY
        o = close[i - 1] if i else close[0] * 0.99
        c = close[i]
        hi, lo = max(o, c) * (1 + rng.random() * 0.02), min(o, c) * (1 - rng.random() * 0.02)
        th = t0 + timedelta(hours=int(rng.integers(0, 24)))
        if rng.random() < bad_time_prob:
            th = t0 - 3 * DAY
        if rng.random() < bad_price_prob:
            c = -c
        rows.append({"timeopen": t0, "timeclose": t0 + DAY - MS, "timehigh": th,
                     "timelow": t0 + timedelta(hours=int(rng.integers(0, 24))), "timestamp": t0 + DAY - MS,
                     "open": o, "high": hi, "low": lo, "close": c, "volume": float(rng.integers(1, 10**6)),
                     "marketcap": c * 1e6})
    return rows


def load_rows(url: str, asset_id: int, rows: Sequence[dict[str, Any]], source_file: str = "test") -> None:
    parsed = ParsedFile(source_file, "export")
    for r in rows:
        parsed.rows.append((asset_id, f"A{asset_id}", r["timeopen"], r["timeclose"], r["timehigh"], r["timelow"],
                            r["timestamp"], r["open"], r["high"], r["low"], r["close"], r["volume"],
                            r["marketcap"], None, source_file))
    parsed.symbols[asset_id] = (f"A{asset_id}", f"A{asset_id}")
    with db.transaction(url) as conn:
        upsert_parsed(conn, parsed)


def refresh(url: str, asset_id: int, components: Sequence[str], as_of: datetime, **opts: Any) -> list[Any]:
    results = run_asset(url, asset_id, components, RunOptions(as_of=as_of, **opts), record=False)
    failed = [r for r in results if r.status == "failed"]
    assert not failed, failed
    return results


def table_rows(url: str, table: str, asset_id: int) -> pd.DataFrame:
    """All rows of ``table`` for one asset, without ``id`` and IGNORED columns, sorted."""
    with db.connect(url) as conn:
        cur = conn.execute(sql.SQL("SELECT * FROM {} WHERE id = %s").format(sql.Identifier(table)), (asset_id,))
        cols = [d.name for d in cur.description or []]
        df = pd.DataFrame(cur.fetchall(), columns=cols)
    keep = [c for c in cols if c not in IGNORED and c != "id"]
    for c in keep:  # jsonb values come back as dicts: compare their canonical JSON text
        if df[c].map(lambda v: isinstance(v, dict | list)).any():
            df[c] = df[c].map(lambda v: json.dumps(_strip(v), sort_keys=True))
    return df[keep].sort_values(keep[: min(4, len(keep))], ignore_index=True)


def _strip(v: Any) -> Any:
    """A raw-row jsonb without the keys that legitimately differ between twins."""
    return {k: x for k, x in v.items() if k not in ("id", "name") and k not in IGNORED} if isinstance(v, dict) else v


def all_tables(families: str = "all") -> list[str]:
    tables = ["cmc_price_bars_1d", "cmc_price_bars_1d_state", "cmc_price_bars_1d_rejects"]
    if families in ("all", "bars", "emas"):
        tables += [t for f in SNAPSHOT_FAMILIES for t in (f.table, f.state_table)]
    if families in ("all", "emas"):
        tables += [t for v in EMA_VARIANTS for t in (v.table, v.state_table)]
        tables += ["ema_rejects", "cmc_ema_refresh_state"]  # the EMA watermarks (last 1d ts consumed)
    return tables


def _must_have_rows(table: str) -> bool:
    """Tables every build of >= 15 days writes: a comparison of two empty tables proves nothing."""
    return table in ("cmc_price_bars_1d", "cmc_price_bars_1d_state", "cmc_ema_refresh_state")


def assert_twins_equal(url: str, a: int, b: int, tables: Sequence[str], *, empty: bool = False) -> dict[str, int]:
    """Every table's rows for ``a`` equal those for ``b``; returns the row counts. Guards
    against empty-vs-empty: the 1d tables (and the EMA watermarks) must have rows, the snapshot
    and the EMA tables must have rows in total (a ``tfs`` selection may leave one family empty).
    ``empty``: the twins are an asset that must have nothing (a poisoned one): no guard."""
    counts: dict[str, int] = {}
    for table in tables:
        left, right = table_rows(url, table, a), table_rows(url, table, b)
        pd.testing.assert_frame_equal(left, right, check_exact=True, obj=table)
        counts[table] = len(left)
        assert empty or len(left) > 0 or not _must_have_rows(table), f"{table}: no rows for either twin"
    for kind, values in (("snapshot", {f.table for f in SNAPSHOT_FAMILIES}), ("EMA", {v.table for v in EMA_VARIANTS})):
        chosen = [t for t in tables if t in values]
        assert empty or not chosen or sum(counts[t] for t in chosen) > 0, f"no {kind} rows for either twin"
    return counts
