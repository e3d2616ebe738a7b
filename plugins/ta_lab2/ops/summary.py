"""The run summary (OPERATIONS.md §6): one table per component plus totals, from results.

Input is a list of result dicts (``ComponentResult.to_dict()`` or rows of
``refresh_run_assets``), so the CLI and the DAG ``summary`` task print the same table.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
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
        "assets_failed": sum(1 for s in per_asset.values() if s & {"failed", "not_run"}),
        "assets_skipped": sum(1 for s in per_asset.values() if not s & {"failed", "not_run"} and "skipped" in s),
        "assets_ok": sum(1 for s in per_asset.values() if s <= {"ok", "dry_run"}),
    }


def _rows(results: Iterable[dict[str, Any]]) -> list[list[str]]:
    by_comp: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        by_comp[_key(r)].append(r)
    rows = []
    for comp in sorted(by_comp, key=lambda c: (not c.startswith("bars."), c != "bars.1d", c)):
        rs = by_comp[comp]
        n = {s: sum(1 for r in rs if r["status"] == s) for s in ("ok", "failed", "skipped", "dry_run", "not_run")}
        rows.append(
            [
                comp,
                str(n["ok"] + n["dry_run"]),
                str(n["failed"]),
                str(n["skipped"]),
                str(n["not_run"]),
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
    body = table(["component", "assets ok", "failed", "skipped", "not run", "rows written", "seconds"], _rows(results))
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
        if r["status"] in ("failed", "skipped", "not_run") and r.get("error")
    ]
    return "\n".join([head, body, foot, *notes, *problems])


def first_failure(results: Sequence[dict[str, Any]]) -> str | None:
    """``continue_on_error=false``: why the rest of the run is not run (None: nothing failed)."""
    failed = [r for r in results if r["status"] == "failed"]
    if not failed:
        return None
    return (f"run stopped after asset {failed[0]['asset_id']} {failed[0]['component']} failed "
            f"(continue_on_error=false)")


def expected_results(recorded: Sequence[dict[str, Any]], ids: Sequence[int],
                     components: Sequence[str]) -> list[dict[str, Any]]:
    """Every (asset, component) the run asked for: recorded results first; a missing one is
    ``skipped`` when the asset's freshness gate skipped it (the reason is kept), else
    ``not_run`` (its task never started: an upstream task of that asset failed, or the run
    was stopped). Tasks that end ``upstream_failed`` fire no callback, so this is where such
    assets become visible."""
    by_key = {(int(r["asset_id"]), str(r["component"])): dict(r) for r in recorded}
    out = [r for r in by_key.values() if r["component"] in components or r["component"] == "freshness"]
    for a in ids:
        gate = by_key.get((a, "freshness"))
        for comp in components:
            if (a, comp) in by_key:
                continue
            if gate is not None and gate["status"] == "skipped" and comp.startswith("emas."):
                out.append({"asset_id": a, "component": comp, "status": "skipped", "error": gate.get("error")})
            else:
                failed_up = sorted(c for (x, c), r in by_key.items() if x == a and r["status"] == "failed")
                why = f"upstream failed: {', '.join(failed_up)}" if failed_up else "task did not run"
                out.append({"asset_id": a, "component": comp, "status": "not_run", "error": why})
    return sorted(out, key=lambda r: (int(r["asset_id"]), str(r["component"])))


def run_verdict(results: Sequence[dict[str, Any]], validation: dict[str, int]) -> dict[str, Any]:
    """Per-asset outcome lists and the alert inputs (``ops.alerts.summary_message`` keys)."""
    status: dict[int, set[str]] = defaultdict(set)
    for r in results:
        status[int(r["asset_id"])].add(str(r["status"]))
    failed = sorted(a for a, s in status.items() if s & {"failed", "not_run"})
    skipped_reasons = sorted({str(r.get("error")) for r in results
                              if r["component"] == "freshness" and r["status"] == "skipped"})
    critical = [f"asset {r['asset_id']} {r['component']}: {r.get('error')}" for r in results
                if r["status"] == "failed" and ((r.get("details") or {}).get("corruption")
                                                 or (r.get("details") or {}).get("transient"))]
    failures = [{"asset_id": r["asset_id"], "component": r["component"], "error": r.get("error"),
                 "transient": bool((r.get("details") or {}).get("transient")),
                 "corruption": bool((r.get("details") or {}).get("corruption"))}
                for r in results if r["status"] == "failed"]
    return {
        "failures": failures,  # what the digest says failed and why (not_run ones follow from them)
        "assets_ok": sorted(a for a, s in status.items() if s <= {"ok", "dry_run"}),
        "assets_failed": failed,
        "assets_skipped": skipped_reasons,
        "validation_fail": int(validation.get("FAIL", 0)),
        "validation_warn": int(validation.get("WARN", 0)),
        "critical": critical,
    }


def build_run_summary(url: str, opts: Any, components: Sequence[str], ids: Sequence[int], *, dag_id: str,
                      params: dict[str, Any], dry_run_results: Sequence[dict[str, Any]] = (),
                      notes: Sequence[str] = (), ingest_clean: bool = True) -> dict[str, Any]:
    """The run's summary from the audit tables (or, for a dry run, from the tasks' returned
    plans), persisted to ``refresh_runs`` unless dry run. Returns the ``summary_message``
    inputs plus ``text``, ``clean``, ``status`` and the totals. ``notes`` carry the ingest
    step's lines; ``ingest_clean=False`` (a refused file, an API error) makes a clean run a
    warning."""
    from ta_lab2.store import audit, db

    if opts.dry_run:
        recorded, validation = list(dry_run_results), {}
    else:
        with db.connect(url) as conn:
            recorded, validation = audit.run_results(conn, opts.run_id), audit.validation_counts(conn, opts.run_id)
    results = expected_results(recorded, ids, components)
    verdict = run_verdict(results, validation)
    clean = not (verdict["assets_failed"] or verdict["assets_skipped"] or verdict["validation_fail"]
                 or verdict["validation_warn"] or verdict["critical"]) and ingest_clean
    status = "success" if clean else ("failed" if verdict["assets_failed"] or verdict["validation_fail"]
                                      else "warning")
    progress = f"assets done {len(verdict['assets_ok'])}/{len(ids)}"
    text = format_summary([r for r in results if r["component"] != "freshness"] or results,
                          run_id=opts.run_id, dry_run=opts.dry_run, validation=validation,
                          notes=[progress, *notes, *(f"Skipping EMAs: {s}" for s in verdict["assets_skipped"])])
    t = totals([r for r in results if r["component"] != "freshness"])
    summary = {"run_id": opts.run_id, "text": text, "clean": clean, "status": "dry_run" if opts.dry_run else status,
               "rejects": t["rejects"], "repairs": t["repairs"], **verdict, "totals": t}
    if not opts.dry_run:
        with db.transaction(url) as conn:
            for r in results:
                if r["status"] == "not_run" or (r["status"] == "skipped" and r["component"] != "freshness"):
                    audit.put_asset_result(conn, opts.run_id, {**r, "details": r.get("details") or {}})
            audit.put_run(conn, {"run_id": opts.run_id, "dag_id": dag_id, "as_of": opts.as_of, "params": params,
                                 "status": status, "finished_at": datetime.now(UTC), **t,
                                 "assets_total": len(ids), "assets_ok": len(verdict["assets_ok"]),
                                 "assets_failed": len(verdict["assets_failed"]),
                                 "assets_skipped": t["assets_skipped"],
                                 "validation_fail": verdict["validation_fail"],
                                 "validation_warn": verdict["validation_warn"], "summary_text": text})
    return summary
