"""Source-side writes: upsert parsed CoinMarketCap rows, assets and unparsable lines.

A file loads in ONE transaction (the caller's): its chunks are staged, duplicates inside the
file are moved to the rejects, the staged rows are upserted, the rejects and the accounting
(``cmc_load_audit``) are written; a load that dies midway leaves nothing of the file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import psycopg

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
    refused: str | None = None


def _stage_chunk(conn: psycopg.Connection, chunk: ParsedFile) -> int:
    lines = chunk.lines if len(chunk.lines) == len(chunk.rows) else [(None, None)] * len(chunk.rows)
    rows = ((*row, *line) for row, line in zip(chunk.rows, lines, strict=True))
    n = io.copy_rows(conn, "_stage_source", STAGE_COLUMNS, rows)
    if chunk.problems:
        with conn.cursor() as cur:
            cur.executemany(sqlfiles.load("queries/load_rejects_upsert"), [p.__dict__ for p in chunk.problems])
    return n


def load_stream(conn: psycopg.Connection, source_file: str, chunks: Iterable[ParsedFile], *,
                load_id: str | None = None, clear_rejects: bool = False,
                on_problem: Callable[[LineProblem], None] | None = None) -> LoadCounts:
    """Load one file's chunks in the caller's transaction; ``load_id`` also writes the audit row.

    Locks: the ``("source", id)`` advisory locks are taken only once the whole file is staged,
    in ascending id order (so two loads never deadlock), and held to commit."""
    if clear_rejects:
        conn.execute(sqlfiles.load("queries/load_rejects_clear"), {"source_file": source_file})
    io.stage_like(conn, "_stage_source", "cmc_price_histories7")
    conn.execute(sqlfiles.load("queries/source_stage_extend"))
    staged = rejected = lines_read = 0
    refused = None
    symbols: dict[int, tuple[str, str]] = {}
    for chunk in chunks:
        staged += _stage_chunk(conn, chunk)
        rejected += len(chunk.problems)
        lines_read += chunk.lines_read or len(chunk.rows) + len(chunk.problems)
        refused = refused or chunk.refused
        for k, v in chunk.symbols.items():
            symbols.setdefault(k, v)
        for p in chunk.problems if on_problem else ():
            on_problem(p)  # type: ignore[misc]
    dups = conn.execute(sqlfiles.load("queries/source_duplicates_reject"), {"source_file": source_file}).fetchall()
    for line_no, reason, raw in dups if on_problem else ():
        on_problem(LineProblem(source_file, line_no, reason, raw))  # type: ignore[misc]
    for asset in sorted(symbols):
        io.advisory_xact_lock(conn, "source", asset)
    row = conn.execute(sqlfiles.load("queries/source_upsert")).fetchone()
    inserted, updated = (int(row[0]), int(row[1])) if row else (0, 0)
    for asset, (symbol, name) in sorted(symbols.items()):
        conn.execute(sqlfiles.load("queries/assets_upsert"), {"id": asset, "symbol": symbol, "name": name})
    counts = LoadCounts(inserted, updated, staged - len(dups) - inserted - updated, rejected + len(dups),
                        lines_read, refused)
    if load_id is not None:
        conn.execute(sqlfiles.load("queries/load_audit_put"),
                     {"load_id": load_id, "source_file": source_file, **counts.__dict__})
    return counts


def upsert_parsed(conn: psycopg.Connection, parsed: ParsedFile) -> LoadCounts:
    """Upsert one parsed file in the caller's transaction. Idempotent: a second load of the
    same file inserts and updates nothing (``load_ts`` moves only when values change)."""
    return load_stream(conn, parsed.source_file, [parsed])
