"""The run summary (OPERATIONS.md §6): one table per component plus totals, from results.

Input is a list of result dicts (``ComponentResult.to_dict()`` or rows of
``refresh_run_assets``), so the CLI and the DAG ``summary`` task print the same table.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any


def _key(r: dict[str, Any]) -> str:
    return str(r.get("component"))


def totals(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Run totals: bars/EMAs written, gaps, repairs, rejects, assets ok/failed/skipped."""
    per_asset: dict[int, set[str]] = defaultdict(set)
    for r in results:
        per_asset[int(r["asset_id"])].add(r["status"])
    return {
        "bars_written": sum(int(r.get("rows_written") or 0) for r in results if _key(r).startswith("bars.")),
        "emas_written": sum(int(r.get("rows_written") or 0) for r in results if _key(r).startswith("emas.")),
        "gaps_flagged": sum(int(r.get("gaps") or 0) for r in results if _key(r) == "bars.1d"),
        "repairs": sum(int(r.get("repairs") or 0) for r in results),
        "rejects": sum(int(r.get("rejects") or 0) for r in results),
        "assets_total": len(per_asset),
        "assets_failed": sum(1 for s in per_asset.values() if "failed" in s),
        "assets_skipped": sum(1 for s in per_asset.values() if "failed" not in s and "skipped" in s),
        "assets_ok": sum(1 for s in per_asset.values() if s <= {"ok", "dry_run"}),
    }


def _rows(results: Iterable[dict[str, Any]]) -> list[list[str]]:
    by_comp: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        by_comp[_key(r)].append(r)
    rows = []
    for comp in sorted(by_comp, key=lambda c: (not c.startswith("bars."), c != "bars.1d", c)):
        rs = by_comp[comp]
        n = {s: sum(1 for r in rs if r["status"] == s) for s in ("ok", "failed", "skipped", "dry_run")}
        rows.append(
            [
                comp,
                str(n["ok"] + n["dry_run"]),
                str(n["failed"]),
                str(n["skipped"]),
                str(sum(int(r.get("rows_written") or 0) for r in rs)),
                f"{sum(float(r.get('duration_s') or 0) for r in rs):.2f}",
            ]
        )
    return rows


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(
        [line.format(*header), line.format(*("-" * w for w in widths)), *(line.format(*r) for r in rows)]
    )


def format_summary(
    results: Sequence[dict[str, Any]],
    *,
    run_id: str,
    dry_run: bool = False,
    notes: Sequence[str] = (),
    validation: dict[str, int] | None = None,
) -> str:
    t = totals(results)
    head = f"run {run_id}" + ("  (DRY RUN: nothing written)" if dry_run else "")
    body = table(["component", "assets ok", "failed", "skipped", "rows written", "seconds"], _rows(results))
    v = validation or {}
    foot = (
        f"totals: assets {t['assets_total']} (ok {t['assets_ok']}, failed {t['assets_failed']}, "
        f"skipped {t['assets_skipped']}); bars written {t['bars_written']}; EMAs written "
        f"{t['emas_written']}; gaps flagged {t['gaps_flagged']}; repairs {t['repairs']}; "
        f"rejects {t['rejects']}; validation FAIL {v.get('FAIL', 0)} WARN {v.get('WARN', 0)}"
    )
    problems = [
        f"asset {r['asset_id']} {r['component']} {r['status']}: {r.get('error')}"
        for r in results
        if r["status"] in ("failed", "skipped") and r.get("error")
    ]
    return "\n".join([head, body, foot, *notes, *problems])
