"""Source-side writes: upsert parsed CoinMarketCap rows, assets and unparsable lines.

A file loads in ONE transaction (the caller's): its chunks are staged (rows with their line
number and raw text), the file's previous rejects are forgotten and its new ones written,
duplicates inside the file are moved from the stage to the rejects, the staged rows are
upserted and the accounting (``cmc_load_audit``) is written; a load that dies midway leaves
nothing of the file. ``load``, the ingest inbox and the CoinMarketCap API all land here.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import psycopg

from ta_lab2.assets import AssetRef, Registry
from ta_lab2.loader import SOURCE_COLUMNS, LineProblem, ParsedFile
from ta_lab2.store import io, sqlfiles

STAGE_COLUMNS = (*SOURCE_COLUMNS, "line_no", "raw_line")


@dataclass(frozen=True)
class LoadCounts:
    inserted: int
    updated: int
    unchanged: int
    rejected: int
    lines_read: int = 0
    refused: str | None = None  # why the whole file was not loaded

    def line(self, name: str) -> str:
        """The accounting line of one file (``load`` prints it; ingest logs it)."""
        return (f"{name}: inserted {self.inserted}, updated {self.updated}, unchanged {self.unchanged}, "
                f"rejected {self.rejected} (of {self.lines_read} lines read)")


def new_load_id(kind: str) -> str:
    """The ``cmc_load_audit.load_id`` of one command or ingest run (``load__20260101T060000_1a2b3c``)."""
    return f"{kind}__{datetime.now(UTC):%Y%m%dT%H%M%S}_{uuid.uuid4().hex[:6]}"


def _stage_chunk(conn: psycopg.Connection, chunk: ParsedFile, offset: int) -> int:
    """COPY a chunk's rows (and their line numbers: positions when the chunk has none) into the
    stage and its problems into the rejects; returns the rows staged."""
    if len(chunk.lines) == len(chunk.rows):
        rows = ((*row, *line) for row, line in zip(chunk.rows, chunk.lines, strict=True))
    else:  # rows built by hand (tests, API callers without line numbers): their position
        rows = ((*row, offset + k, "") for k, row in enumerate(chunk.rows, start=1))
    n = io.copy_rows(conn, "_stage_source", STAGE_COLUMNS, rows)
    if chunk.problems:
        with conn.cursor() as cur:
            cur.executemany(sqlfiles.load("queries/load_rejects_upsert"), [asdict(p) for p in chunk.problems])
    return n


def upsert_chunks(conn: psycopg.Connection, chunks: Iterable[ParsedFile], *, load_id: str | None = None,
                  on_problem: Callable[[LineProblem], None] | None = None) -> LoadCounts:
    """Load one file, given as the loader's chunks, in the caller's transaction (see the module
    docstring). Idempotent: a second load of the same file inserts and updates nothing
    (``load_ts`` moves only when values change). ``load_id`` also writes the audit row;
    ``on_problem`` sees every rejected line except those of a refused file (the refusal is
    the one message). A refused file (``chunk.refusal``, read with ``strict=False``) loads
    nothing: its staged rows become rejects too.

    Locks: the ``("source", id)`` advisory locks are taken only once the whole file is staged,
    in ascending id order (so two loads never deadlock), and held to commit."""
    io.stage_like(conn, "_stage_source", "cmc_price_histories7")
    conn.execute(sqlfiles.load("queries/source_stage_extend"))
    source_file: str | None = None
    staged = rejected = lines_read = 0
    refused: str | None = None
    symbols: dict[int, tuple[str, str]] = {}
    for chunk in chunks:
        if source_file is None:
            source_file = chunk.source_file
            conn.execute(sqlfiles.load("queries/load_rejects_clear"), {"source_file": source_file})
        staged += _stage_chunk(conn, chunk, staged)
        rejected += len(chunk.problems)
        lines_read += chunk.lines_read or len(chunk.rows) + len(chunk.problems)
        refused = refused or chunk.refused
        symbols.update(chunk.symbols)
        if on_problem is not None and not refused:
            for p in chunk.problems:
                on_problem(p)
    if source_file is None:
        raise ValueError("upsert_chunks: no chunks (the loader yields at least one per file)")
    if refused:
        with conn.cursor() as cur:
            cur.execute(sqlfiles.load("queries/source_stage_refuse"),
                        {"source_file": source_file, "reason": f"file not loaded: {refused}"})
            moved = cur.rowcount
        counts = LoadCounts(0, 0, 0, rejected + moved, lines_read, refused)
    else:
        dups = conn.execute(sqlfiles.load("queries/source_duplicates_reject"),
                            {"source_file": source_file}).fetchall()
        if on_problem is not None:
            for line_no, reason, raw in dups:
                on_problem(LineProblem(source_file, line_no, reason, raw))
        io.lock_in_order(conn, [("source", asset, False) for asset in symbols])  # the one global order
        row = conn.execute(sqlfiles.load("queries/source_upsert")).fetchone() if staged > len(dups) else None
        inserted, updated = (int(row[0]), int(row[1])) if row else (0, 0)
        for asset, (symbol, name) in sorted(symbols.items()):
            conn.execute(sqlfiles.load("queries/assets_upsert"), {"id": asset, "symbol": symbol, "name": name})
        counts = LoadCounts(inserted, updated, staged - len(dups) - inserted - updated, rejected + len(dups),
                            lines_read)
    if load_id is not None:
        conn.execute(sqlfiles.load("queries/load_audit_put"),
                     {"load_id": load_id, "source_file": source_file, **asdict(counts)})
    return counts


def upsert_parsed(conn: psycopg.Connection, parsed: ParsedFile, *, load_id: str | None = None,
                  on_problem: Callable[[LineProblem], None] | None = None) -> LoadCounts:
    """Load one parsed file in the caller's transaction (see :func:`upsert_chunks`)."""
    return upsert_chunks(conn, [parsed], load_id=load_id, on_problem=on_problem)


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
