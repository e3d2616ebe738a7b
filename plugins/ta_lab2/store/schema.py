"""Apply the idempotent DDL: numbered files, per-family templates, the unified EMA view."""

from __future__ import annotations

import logging

import psycopg
from psycopg import sql

from ta_lab2.registry import EMA_VARIANTS, SNAPSHOT_FAMILIES
from ta_lab2.store import sqlfiles

log = logging.getLogger(__name__)

SCHEMA_LOCK_KEY = 7_201_001  # session-independent advisory lock id for schema apply
# every table a daily run rewrites row by row (one row per asset or series)
STATE_TABLES = ("cmc_price_bars_1d_state", "cmc_ema_refresh_state", *(f.state_table for f in SNAPSHOT_FAMILIES),
                *(v.state_table for v in EMA_VARIANTS))


def _template(name: str, **idents: str) -> sql.Composed:
    text = sqlfiles.load(f"ddl/{name}")
    return sql.SQL(text).format(**{k: sql.Identifier(v) for k, v in idents.items()})  # type: ignore[arg-type]


def unified_view() -> sql.Composed:
    """``cmc_ema_multi_tf_u``: a view (never a copy) over every EMA table of the registry."""
    cols = sql.SQL("id, tf, ts, period, tf_days, roll, ema, ema_bar, ingested_at")
    parts = [
        sql.SQL("SELECT {cols}, {src} AS alignment_source FROM {table}").format(
            cols=cols, src=sql.Literal(v.alignment_source), table=sql.Identifier(v.table)
        )
        for v in EMA_VARIANTS
    ]
    return sql.SQL("CREATE OR REPLACE VIEW cmc_ema_multi_tf_u AS\n") + sql.SQL("\nUNION ALL\n").join(parts)


def statements() -> list[sql.Composable]:
    stmts: list[sql.Composable] = [sql.SQL(p.read_text()) for p in sqlfiles.ddl_files()]  # type: ignore[arg-type]
    for fam in SNAPSHOT_FAMILIES:
        stmts.append(
            _template(
                "004_bars_snapshot.template",
                table=fam.table,
                state=fam.state_table,
                ts_index=f"{fam.table}_ts_idx",
            )
        )
    for var in EMA_VARIANTS:
        stmts.append(_template("006_ema_table.template", table=var.table, state=var.state_table))
    for state in STATE_TABLES:
        stmts.append(_template("017_state_fillfactor.template", state=state))
    stmts.append(unified_view())
    return stmts


def seed_assets(cur: psycopg.Cursor) -> None:
    """The built-in registry of well-known CoinMarketCap ids (``ta_lab2.assets.SEED``)."""
    from ta_lab2.assets import SEED

    cur.executemany(sqlfiles.load("queries/assets_seed"),
                    [{"id": i, "symbol": s, "name": n, "slug": g} for i, s, n, g in SEED])


def apply_schema(conn: psycopg.Connection) -> None:
    """Apply all DDL in one transaction under an advisory lock (safe to run concurrently)."""
    with conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
        for stmt in statements():
            cur.execute(stmt)  # type: ignore[call-overload]  # str or composed SQL
        seed_assets(cur)
    conn.commit()
    # DEBUG, not INFO: every CLI command applies the idempotent DDL first, and an INFO line on
    # stderr would precede (and break) the one-line error of a refused request.
    log.debug("schema applied (%d statements)", len(statements()))
