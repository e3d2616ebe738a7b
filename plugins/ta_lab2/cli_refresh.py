"""``python -m ta_lab2 refresh``: the DAG run, in one process.

The same steps as the DAG (``ta_lab2.orchestration``), on the same library code:

1. prepare: schema, the params checked against the warehouse, a ``refresh_runs`` row;
2. the assets in batches of ``batch_size`` (``auto``: sized by the days to compute and by their
   locks, ``refresh.runner.cli_batches``), each batch through the components in dependency
   order (all bar builders, then the EMA refreshers) on one connection with its reads shared,
   one transaction per (batch, component) through the set-based engine
   (``refresh.runner.run_batch``); a failed (asset, component) skips that asset's dependants
   (``skipped``, "upstream failed"), other assets carry on;
3. before a batch's first EMA refresher: the freshness gate (``ops/freshness.py``) per asset,
   unless ``skip_stale_check``: a stale asset's EMAs are ``skipped`` with the reason. The CLI
   does not wait: ``wait`` (bars behind the source) skips too, with that reason;
4. ``validate`` (default on): every check, per asset and cross-asset;
5. the summary of the DAG's ``summary`` task (``ops/summary.build_run_summary``), persisted
   to ``refresh_runs``; a Telegram alert when not clean and ``alert_on_error``.

``continue_on_error`` (default on): as above. Off: the run goes asset by asset and the first
failed (asset, component) stops it; everything not yet run is recorded ``not_run`` ("run stopped
after ...").
Exit code: 1 when any asset failed or was not run, or a validation check FAILed; else 0
(skipped-as-stale assets and WARNs are reported, exit 0). See docs/decisions.md.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from ta_lab2.ops.summary import first_failure
from ta_lab2.progress import ProgressReporter
from ta_lab2.refresh.context import ComponentResult, RunOptions
from ta_lab2.refresh.records import record_many
from ta_lab2.refresh.runner import Session, cli_batches, hold_back, run_batch
from ta_lab2.store import db

log = logging.getLogger("ta_lab2.cli")
CLI_DAG_ID = "ta_lab2_cli"  # refresh_runs.dag_id of CLI runs
RETRIES = 2  # transient errors, in process (1 s, 2 s)
OnResult = Callable[[ComponentResult], None]


def freshness_gate(url: str, asset_ids: Sequence[int], opts: RunOptions, params: dict[str, Any],
                   components: Sequence[str]) -> dict[int, str]:
    """``{asset id: skip message}`` for the assets whose EMAs the gate skips (recorded in the
    audit as the DAG's sensor records them: component ``freshness``)."""
    from ta_lab2.ops import freshness as fr

    if params["skip_stale_check"] or not any(c.startswith("emas.") for c in components) or not asset_ids:
        return {}
    _, skip = fr.judge_now(url, asset_ids, opts.as_of, float(params["staleness_hours"]), opts.run_id,
                           record=not opts.dry_run)
    for message in skip.values():
        log.warning("%s", message)
    return {} if opts.dry_run else skip  # a dry run plans everything (as the DAG's sensor does)


def run_components(url: str, asset_ids: Sequence[int], components: Sequence[str], opts: RunOptions,
                   params: dict[str, Any], on_result: OnResult) -> list[ComponentResult]:
    """Steps 2 and 3 of the module docstring; every result goes to ``on_result`` as it completes.
    A batch goes through every component on one connection (its reads shared), then the next;
    fail-fast (``continue_on_error`` false) runs asset by asset, component by component."""
    results: dict[tuple[int, str], ComponentResult] = {}
    stopped: str | None = None
    if not params["continue_on_error"]:  # fail fast means at the first failed asset: its batch-mates must not run after it
        batches = [[a] for a in asset_ids]
    elif params["batch_size"] == "auto":
        batches = cli_batches(url, asset_ids, opts, components)
    else:
        size = max(1, int(params["batch_size"]))
        batches = [list(asset_ids[i:i + size]) for i in range(0, len(asset_ids), size)]

    def emit(res: ComponentResult) -> None:
        results[(res.asset_id, res.component)] = res
        on_result(res)

    gates: dict[int, dict[int, str]] = {}  # batch number -> the freshness gate's skips

    def step(k: int, comp: str, session: Session | None) -> None:
        nonlocal stopped
        batch = batches[k]
        if comp.startswith("emas.") and k not in gates and stopped is None:
            # as in the DAG, the gate sees only assets whose bars.1d did not fail (1d not selected: all)
            gated = [a for a in batch if results.get((a, "bars.1d")) is None
                     or results[(a, "bars.1d")].status in ("ok", "dry_run")]
            gates[k] = freshness_gate(url, gated, opts, params, components)
        ready: list[int] = []
        if stopped is not None:
            held = [ComponentResult(a, comp, status="not_run", error=stopped) for a in batch]
        else:
            gate = gates.get(k, {}) if comp.startswith("emas.") else {}
            ready, held = hold_back(comp, batch, lambda a, u: results[(a, u)].status if (a, u) in results else None,
                                    gate.get)
        if held and not opts.dry_run:  # one audit transaction for the batch's held-back assets
            record_many(url, opts.run_id, held)
        for res in held:
            emit(res)
        # the batch is the unit of work: one transaction per component (redone asset by asset
        # under savepoints when it fails, so a bad asset fails alone)
        for res in run_batch(url, comp, ready, opts, retries=RETRIES, selected=components, session=session):
            emit(res)
            if res.status == "failed" and not params["continue_on_error"] and stopped is None:
                stopped = first_failure([res.to_dict()])

    if params["continue_on_error"]:  # each batch through every component on one connection
        for k in range(len(batches)):
            session = Session(url, batches[k])
            try:
                for comp in components:
                    step(k, comp, session)
            finally:
                session.close()
    else:  # fail fast, in the DAG's order: a component for every asset, then the next
        for comp in components:
            for k in range(len(batches)):
                step(k, comp, None)
    return list(results.values())


def run_refresh(url: str, asset_ids: list[int], components: list[str], opts: RunOptions, params: dict[str, Any],
                *, live: bool = False, on_console: Callable[[Any], None] | None = None) -> dict[str, Any]:
    """Run, validate and summarise; returns ``build_run_summary``'s dict (``text``, verdict)."""
    from ta_lab2.ops.summary import build_run_summary
    from ta_lab2.store import audit

    if not opts.dry_run:
        with db.transaction(url) as conn:
            audit.put_run(conn, {"run_id": opts.run_id, "dag_id": CLI_DAG_ID, "as_of": opts.as_of,
                                 "status": "running", "params": params})
    log.info("run %s as_of %s: %d assets x %d components (%s)%s", opts.run_id, opts.as_of.isoformat(),
             len(asset_ids), len(components), ", ".join(components), " (DRY RUN)" if opts.dry_run else "")
    with ProgressReporter(asset_ids, components, live=live) as progress:
        if on_console is not None and progress.console is not None:
            on_console(progress.console)
        results = run_components(url, asset_ids, components, opts, params, progress.on_result)
    if params["validate"] and not opts.dry_run and asset_ids:
        _validate(url, asset_ids, opts.run_id)
    run = build_run_summary(url, opts, components, asset_ids, dag_id=CLI_DAG_ID, params=params,
                            dry_run_results=[r.to_dict() for r in results] if opts.dry_run else ())
    if not run["clean"] and params["alert_on_error"] and not opts.dry_run:
        from ta_lab2.ops.alerts import send_alert, summary_message

        send_alert(*summary_message(run))
    return run


def _validate(url: str, asset_ids: list[int], run_id: str) -> None:
    from ta_lab2.ops.validation import run_validation

    log.info("validating %d assets ...", len(asset_ids))
    report = run_validation(url, asset_ids, run_id, include_global=True)
    log.debug("validation:\n%s", report.format())
    for r in report.results:
        if r.severity == "FAIL":
            log.error("validation FAIL: asset %s %s: %s", r.asset_id, r.check_name, r.message)
        elif r.severity == "WARN":
            log.info("validation WARN: asset %s %s: %s", r.asset_id, r.check_name, r.message)
    c = report.counts()
    log.info("validation: PASS %d, WARN %d, FAIL %d", c["PASS"], c["WARN"], c["FAIL"])
