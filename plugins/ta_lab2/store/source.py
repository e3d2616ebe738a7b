"""Source-side writes: upsert parsed CoinMarketCap rows, assets and unparsable lines."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from ta_lab2.loader import SOURCE_COLUMNS, ParsedFile
from ta_lab2.store import io, sqlfiles


@dataclass(frozen=True)
class LoadCounts:
    inserted: int
    updated: int
    unchanged: int
    rejected: int


def upsert_parsed(conn: psycopg.Connection, parsed: ParsedFile) -> LoadCounts:
    """Upsert one parsed file in the caller's transaction. Idempotent: a second load of the
    same file inserts and updates nothing (``load_ts`` moves only when values change)."""
    io.lock_in_order(conn, [("source", asset, False) for asset in parsed.symbols])
    io.stage_like(conn, "_stage_source", "cmc_price_histories7")
    io.copy_rows(conn, "_stage_source", SOURCE_COLUMNS, parsed.rows)
    flags = [r[0] for r in conn.execute(sqlfiles.load("queries/source_upsert")).fetchall()]
    for asset, (symbol, name) in parsed.symbols.items():
        conn.execute(sqlfiles.load("queries/assets_upsert"), {"id": asset, "symbol": symbol, "name": name})
    for p in parsed.problems:
        conn.execute(sqlfiles.load("queries/load_rejects_upsert"), p.__dict__)
    inserted = sum(flags)
    updated = len(flags) - inserted
    return LoadCounts(inserted, updated, len(parsed.rows) - len(flags), len(parsed.problems))
