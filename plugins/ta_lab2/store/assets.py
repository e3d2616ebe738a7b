"""Reads of ``dim_assets`` for display (labels of mapped task instances)."""

from __future__ import annotations

from collections.abc import Sequence

import psycopg

from ta_lab2.store import sqlfiles


def symbols(conn: psycopg.Connection, ids: Sequence[int]) -> dict[int, str]:
    """``{id: symbol}`` of the given assets; unknown ids and NULL symbols are left out."""
    rows = conn.execute(sqlfiles.load("queries/assets_symbols"), {"ids": [int(i) for i in ids]}).fetchall()
    return {int(r[0]): str(r[1]) for r in rows}
