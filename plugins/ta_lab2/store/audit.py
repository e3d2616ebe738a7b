"""Audit writes: ``refresh_run_assets`` rows (one per run, asset, component)."""

from __future__ import annotations

import json
from typing import Any

import psycopg
from psycopg.rows import dict_row

from ta_lab2.store import sqlfiles


def _audit_row(run_id: str, result: dict[str, Any]) -> dict[str, Any]:
    row = {k: result.get(k) for k in ("asset_id", "component", "status", "duration_s", "error")}
    row.update({k: int(result.get(k) or 0) for k in ("rows_written", "repairs", "rejects", "gaps")})
    return {**row, "run_id": run_id, "details": json.dumps(result.get("details") or {}, default=str)}


def put_asset_result(conn: psycopg.Connection, run_id: str, result: dict[str, Any]) -> None:
    conn.execute(sqlfiles.load("queries/audit_asset_put"), _audit_row(run_id, result))


_STAGE_COLUMNS = ("run_id", "asset_id", "component", "status", "rows_written", "repairs", "rejects", "gaps",
                  "duration_s", "error_text", "details")


def put_asset_results(conn: psycopg.Connection, run_id: str, results: list[dict[str, Any]]) -> None:
    """A batch's audit rows: one COPY into a temp stage and one upsert statement (per-row
    upserts cost ~0.1 ms each; a daily run writes one per asset and component)."""
    if not results:
        return
    rows = [_audit_row(run_id, r) for r in results]
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS _stage_run_assets "
                 "(LIKE refresh_run_assets INCLUDING DEFAULTS) ON COMMIT DROP")
    conn.execute("TRUNCATE _stage_run_assets")
    names = dict(zip(_STAGE_COLUMNS, (*_STAGE_COLUMNS[:9], "error", "details"), strict=True))
    with conn.cursor() as cur, cur.copy(f"COPY _stage_run_assets ({', '.join(_STAGE_COLUMNS)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([row[names[c]] for c in _STAGE_COLUMNS])
    conn.execute(sqlfiles.load("queries/audit_asset_put_staged"))


def resolve_ids(conn: psycopg.Connection, ids: list[int] | None) -> list[int]:
    return [r[0] for r in conn.execute(sqlfiles.load("queries/assets_resolve"), {"ids": ids}).fetchall()]


def run_results(conn: psycopg.Connection, run_id: str) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(sqlfiles.load("queries/audit_run_assets"), {"run_id": run_id}).fetchall()


def validation_counts(conn: psycopg.Connection, run_id: str) -> dict[str, int]:
    rows = conn.execute(sqlfiles.load("queries/audit_validation_counts"), {"run_id": run_id}).fetchall()
    return {r[0]: int(r[1]) for r in rows}


def put_run(conn: psycopg.Connection, row: dict[str, Any]) -> None:
    cols = ("run_id", "dag_id", "as_of", "status", "finished_at", "assets_total", "assets_ok", "assets_failed",
            "assets_skipped", "bars_written", "emas_written", "gaps_flagged", "repairs", "rejects",
            "validation_fail", "validation_warn", "summary_text")
    params = {c: row.get(c) for c in cols}
    params["params"] = json.dumps(row.get("params") or {}, default=str)
    conn.execute(sqlfiles.load("queries/audit_run_put"), params)


def validation_failed_assets(conn: psycopg.Connection, run_id: str) -> list[int]:
    """Assets with a validation FAIL in the run (0 stands for a cross-asset check)."""
    rows = conn.execute(sqlfiles.load("queries/audit_validation_failed_assets"), {"run_id": run_id}).fetchall()
    return [int(r[0]) for r in rows]


def statuses(conn: psycopg.Connection, run_id: str, asset_ids: list[int],
             components: list[str]) -> dict[tuple[int, str], str]:
    """(asset, component) -> recorded status in one run, for the given assets and components."""
    rows = conn.execute("SELECT asset_id, component, status FROM refresh_run_assets WHERE run_id = %s "
                        "AND asset_id = ANY(%s) AND component = ANY(%s)", (run_id, asset_ids, components)).fetchall()
    return {(int(r[0]), str(r[1])): str(r[2]) for r in rows}
