"""Source-side writes: upsert parsed CoinMarketCap rows, assets and unparsable lines."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

import psycopg

from ta_lab2.assets import AssetRef, Registry
from ta_lab2.loader import SOURCE_COLUMNS, ParsedFile
from ta_lab2.store import io, sqlfiles


@dataclass(frozen=True)
class LoadCounts:
    inserted: int
    updated: int
    unchanged: int
    rejected: int


def upsert_chunks(conn: psycopg.Connection, chunks: Iterable[ParsedFile]) -> LoadCounts:
    """Upsert one file, given as the loader's chunks, in the caller's transaction: every chunk
    is COPYed into one staging table, then a single upsert. Idempotent: a second load of the
    same file inserts and updates nothing (``load_ts`` moves only when values change)."""
    io.stage_like(conn, "_stage_source", "cmc_price_histories7")
    symbols: dict[int, tuple[str, str]] = {}
    staged = rejected = 0
    for chunk in chunks:
        for asset in chunk.symbols.keys() - symbols.keys():
            io.advisory_xact_lock(conn, "source", asset)
        symbols.update(chunk.symbols)
        staged += io.copy_rows(conn, "_stage_source", SOURCE_COLUMNS, chunk.rows)
        if chunk.problems:
            with conn.cursor() as cur:
                cur.executemany(sqlfiles.load("queries/load_rejects_upsert"), [asdict(p) for p in chunk.problems])
            rejected += len(chunk.problems)
    flags = [r[0] for r in conn.execute(sqlfiles.load("queries/source_upsert")).fetchall()] if staged else []
    for asset, (symbol, name) in symbols.items():
        conn.execute(sqlfiles.load("queries/assets_upsert"), {"id": asset, "symbol": symbol, "name": name})
    inserted = sum(flags)
    return LoadCounts(inserted, len(flags) - inserted, staged - len(flags), rejected)


def upsert_parsed(conn: psycopg.Connection, parsed: ParsedFile) -> LoadCounts:
    """Upsert one parsed file in the caller's transaction (see :func:`upsert_chunks`)."""
    return upsert_chunks(conn, [parsed])


def registry(conn: psycopg.Connection) -> Registry:
    """``dim_assets`` as a :class:`Registry` (file-to-asset resolution)."""
    rows = conn.execute(sqlfiles.load("queries/assets_registry")).fetchall()
    return Registry(AssetRef(r[0], r[1], r[2], r[3]) for r in rows)


def list_assets(conn: psycopg.Connection) -> list[tuple[object, ...]]:
    """(id, symbol, name, slug, is_active, first_seen, last_seen) of every registry row."""
    return conn.execute(sqlfiles.load("queries/assets_registry")).fetchall()


def import_assets(conn: psycopg.Connection, assets: Iterable[tuple[AssetRef, bool]]) -> tuple[int, int]:
    """Register assets from a map (caller's transaction; one batched statement, so a full
    CoinMarketCap map of ~10,000 coins is quick); returns (inserted, updated)."""
    existing = {int(str(r[0])) for r in list_assets(conn)}
    refs = list(assets)
    params = [{"id": ref.id, "symbol": ref.symbol, "name": ref.name, "slug": ref.slug, "is_active": active}
              for ref, active in refs]
    with conn.cursor() as cur:
        cur.executemany(sqlfiles.load("queries/assets_import"), params)
    ids = {ref.id for ref, _ in refs}
    return len(ids - existing), len(ids & existing)
