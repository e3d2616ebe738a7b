"""Check a run request against the warehouse (ids, timeframes, periods): the part of
parameter validation a JSON schema cannot express. Shared by the CLI and DAG ``prepare``."""

from __future__ import annotations

from collections.abc import Sequence

import psycopg

from ta_lab2.store import audit, frames


class RequestError(ValueError):
    """A request naming things the warehouse does not have."""


def resolve_ids(conn: psycopg.Connection, ids: Sequence[int] | None) -> list[int]:
    """``None`` -> every active asset; else the ids, all of which must exist."""
    found = audit.resolve_ids(conn, list(ids) if ids is not None else None)
    if ids is not None:
        unknown = sorted(set(ids) - set(found))
        if unknown:
            raise RequestError(f"unknown asset ids {unknown} (not in dim_assets; load them first)")
        return sorted(set(ids))
    if not found:
        raise RequestError("no active assets with data in dim_assets: load data first (python -m ta_lab2 load ... or ingest)")
    return found


def check_series(conn: psycopg.Connection, tfs: Sequence[str], periods: Sequence[int],
                 combos: Sequence[tuple[str, int]]) -> None:
    known_tfs = {t.tf for t in frames.timeframes(conn)}
    all_periods, _ = frames.periods(conn)
    bad_tfs = sorted({t for t in [*tfs, *(c[0] for c in combos)] if t not in known_tfs})
    if bad_tfs:
        raise RequestError(f"unknown timeframes {bad_tfs} (not in dim_timeframe; known: {sorted(known_tfs)})")
    bad_p = sorted({p for p in [*periods, *(c[1] for c in combos)] if p not in all_periods})
    if bad_p:
        raise RequestError(f"unknown periods {bad_p} (not in dim_period; available: {all_periods})")
