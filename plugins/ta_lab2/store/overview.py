"""Read for the Warehouse page: one row per active asset (``queries/warehouse_overview``)."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from ta_lab2.registry import BAR_1D
from ta_lab2.store import sqlfiles


def overview_rows(conn: psycopg.Connection) -> list[dict[str, Any]]:
    query = sql.SQL(sqlfiles.load("queries/warehouse_overview")).format(  # type: ignore[arg-type]
        bars_1d=sql.Identifier(BAR_1D.table), state_1d=sql.Identifier(BAR_1D.state_table),
        rejects_1d=sql.Identifier(BAR_1D.table + "_rejects"))
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query).fetchall()
