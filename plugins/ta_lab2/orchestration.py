"""Airflow task bodies for ``dags/ta_lab2_daily_refresh.py`` (the DAG file only wires).

Each function takes the task context, calls the same library code as the CLI, records the
audit row per (asset, component) and returns a small JSON-able dict (never a DataFrame).
Airflow imports happen inside functions so the DAG file parses fast.

Error policy (OPERATIONS.md §4): a transient warehouse error raises
:class:`TransientWarehouseError` (Airflow retries it with exponential backoff; after the last
retry the failure alert is ``critical``: the warehouse is unreachable); a data error raises
``AirflowFailException`` (no retry: rerunning cannot fix bad data); too many corrupt 1d
rows is a data error with a ``critical`` alert.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from ta_lab2 import labels
from ta_lab2.refresh.context import RunOptions
from ta_lab2.store import db

# ta_lab2.refresh.runner (pandas, numpy) is imported inside the task bodies: the DAG file
# imports this module, and parsing must stay well under a second.

log = logging.getLogger(__name__)
Context = Mapping[str, Any]


class TransientWarehouseError(RuntimeError):
    """Retryable: connection refused/reset, too many connections, serialization failure."""

    alert_severity = "critical"  # only alerted when the last retry failed too


ENV_RETRY_DELAY = "TA_LAB2_RETRY_DELAY_S"
DEFAULT_RETRY_DELAY_S = 30.0


def retry_delay() -> timedelta:
    """Base delay of the DAG's task retries (doubled per retry): 30 s, or env
    ``TA_LAB2_RETRY_DELAY_S`` seconds where the DAG file is parsed (tests use 1 s)."""
    value = os.environ.get(ENV_RETRY_DELAY, "").strip()
    return timedelta(seconds=float(value) if value else DEFAULT_RETRY_DELAY_S)


def as_of(context: Context) -> datetime:
    """The run's source cutoff: the data-interval end (scheduled and backfill runs), else the
    run's ``run_after`` (manual runs with no logical date)."""
    end = context.get("data_interval_end")
    if end is None:
        dag_run = context["dag_run"]
        end = getattr(dag_run, "logical_date", None) or dag_run.run_after
    return datetime.fromtimestamp(end.timestamp(), tz=UTC)


def classified(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Apply the error policy to a task body: Airflow's own exceptions (skip, fail,
    reschedule) and ours pass through; a transient warehouse error becomes
    :class:`TransientWarehouseError` (retried with backoff); anything else is a data or code
    error and becomes ``AirflowFailException`` (retrying cannot fix it)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except TransientWarehouseError:
            raise
        except Exception as exc:
            if type(exc).__module__.startswith("airflow"):
                raise
            if db.is_transient(exc):
                raise TransientWarehouseError(f"{fn.__name__}: {type(exc).__name__}: {exc}") from exc
            raise _fail(f"{fn.__name__}: {type(exc).__name__}: {exc}") from exc

    return wrapper


def _fail(message: str, severity: str = "error", *, in_digest: bool = False) -> Exception:
    """A data error (never retried). ``in_digest``: the run's summary digest reports it, so its
    task sends no alert of its own (``ta_lab2.ops.notifier`` policy)."""
    from airflow.sdk.exceptions import AirflowFailException

    exc = AirflowFailException(message)
    exc.alert_severity = severity  # type: ignore[attr-defined]
    exc.alert_in_digest = in_digest  # type: ignore[attr-defined]
    return exc


def run_options(context: Context) -> tuple[list[str], RunOptions]:
    from ta_lab2.refresh.runner import plan_components

    p = context["params"]
    try:
        components = plan_components(p["targets"], p["builders"] or None, p["refreshers"] or None)
        combos = tuple((c.split(":")[0], int(c.split(":")[1])) for c in p["tf_period_combos"])
        opts = RunOptions(as_of=as_of(context), full_rebuild=bool(p["full_rebuild"]), dry_run=bool(p["dry_run"]),
                          tfs=tuple(p["tfs"]), periods=tuple(int(x) for x in p["periods"]), tf_period_combos=combos,
                          run_id=str(context["run_id"]))
    except (ValueError, KeyError, IndexError) as exc:
        raise _fail(f"bad params: {exc}") from None
    return components, opts


def parse_ids_param(value: Any) -> list[int] | None:
    """``"all"`` -> None; ``"1, 52"`` or ``[1, 52]`` -> [1, 52] (the JSON schema checked the form)."""
    if isinstance(value, str):
        if value.strip().lower() == "all":
            return None
        value = [v for v in value.split(",") if v.strip()]
    try:
        ids = [int(v) for v in value]
    except (TypeError, ValueError):
        raise _fail(f"bad params: ids must be \"all\" or a list of positive integers, got {value!r}") from None
    if not ids or min(ids) < 1:
        raise _fail(f"bad params: ids must be \"all\" or a list of positive integers, got {value!r}")
    return ids


def publish_symbols(batch: list[int], url: str) -> None:
    """Put the batch's symbols into the running task's context, where the mapped instance's
    label (``labels.MAP_INDEX_TEMPLATE``, rendered again after the task body, also when it
    fails) reads them. Never raises: a label is not worth a failed task."""
    try:
        from airflow.sdk import get_current_context

        context = get_current_context()
    except Exception:
        return  # not inside a running Airflow task (library tests)
    try:
        from ta_lab2.store import assets

        with db.connect(url) as conn:
            context[labels.SYMBOLS_KEY] = assets.symbols(conn, batch)  # type: ignore[literal-required]
    except Exception as exc:
        log.warning("no symbols for the label of batch %s: %s: %s", batch, type(exc).__name__, exc)


AUTO_SLOTS = 4  # task slots assumed busy at once (a 2-core worker's parallelism; the DAG caps at 8)
AUTO_INSTANCES_PER_SLOT = 4  # mapped instances per slot: stragglers even out, scheduling stays small
AUTO_MAX_BATCH = 250  # assets per instance at most: a failed instance's redo and its memory stay bounded


def batch_size_for(param: int | str, n_assets: int) -> int:
    """``batch_size`` param -> assets per mapped instance. An integer wins; ``"auto"`` spreads
    the universe over about AUTO_SLOTS x AUTO_INSTANCES_PER_SLOT instances (16: every slot gets
    work four times, so one slow batch does not hold the run), never more than AUTO_MAX_BATCH
    assets each: 10 assets -> 1 each, 1,000 -> 63, 10,000 -> 250 (40 instances)."""
    if isinstance(param, str):
        if param.strip().lower() != "auto":
            raise _fail(f'bad params: batch_size must be "auto" or a positive integer, got {param!r}')
        target = AUTO_SLOTS * AUTO_INSTANCES_PER_SLOT
        return max(1, min(AUTO_MAX_BATCH, -(-n_assets // target)))
    if int(param) < 1:
        raise _fail(f"bad params: batch_size must be a positive integer, got {param!r}")
    return int(param)


def batches_of(ids: list[int], size: int) -> list[list[int]]:
    return [ids[i:i + size] for i in range(0, len(ids), max(1, size))]


@classified
def ingest(context: Context) -> dict[str, Any]:
    """Bring new candles in before ``prepare`` (inbox files, then the CoinMarketCap API), so a
    coin dropped today is refreshed in the same run. Applies the schema itself."""
    from ta_lab2.ingest import ApiAuthError, run_ingest
    from ta_lab2.ingest.cmc_api import api_config

    p = context["params"]
    try:
        result = run_ingest(db.resolve_url(airflow=True), as_of=as_of(context), ids=parse_ids_param(p["ids"]),
                            dry_run=bool(p["dry_run"]), api=api_config(airflow=True))
    except ApiAuthError as exc:
        raise _fail(f"ingest: {exc}") from None
    return result.to_dict()


@classified
def prepare(context: Context) -> list[list[int]]:
    """Apply the schema, check params against the warehouse, resolve ids into batches."""
    from ta_lab2.refresh.plan import RequestError, check_series, resolve_ids
    from ta_lab2.store import audit, schema

    components, opts = run_options(context)
    p = context["params"]
    url = db.resolve_url(airflow=True)
    with db.connect(url) as conn:
        if not opts.dry_run:
            schema.apply_schema(conn)
        try:
            ids = resolve_ids(conn, parse_ids_param(p["ids"]))
            check_series(conn, opts.tfs, opts.periods, opts.tf_period_combos)
        except RequestError as exc:
            raise _fail(f"prepare: {exc}") from None
        if not opts.dry_run:
            audit.put_run(conn, {"run_id": opts.run_id, "dag_id": context["dag"].dag_id, "as_of": opts.as_of,
                                 "status": "running", "params": dict(p)})
            conn.commit()
    batches = batches_of(ids, batch_size_for(p["batch_size"], len(ids)))
    log.info("run %s as_of %s: %d assets in %d batches; components %s%s", opts.run_id, opts.as_of.isoformat(),
             len(ids), len(batches), components, " (DRY RUN)" if opts.dry_run else "")
    return batches


def runnable(url: str, component: str, batch: list[int], components: list[str], opts: RunOptions,
             gate_hours: float | None) -> tuple[list[int], dict[int, str], list[int]]:
    """(assets of ``batch`` this task may run, why the others may not, those of them held back
    by a FAILED upstream step).

    Inside the mapped group every task after ``bars.1d`` runs ``all_done`` (so a failed asset
    never stops its batch-mates); this is the per-asset trigger rule in its place: an asset
    runs when each selected upstream component recorded ``ok`` for it in this run's audit rows
    and, for an EMA with the gate on (``gate_hours`` = staleness_hours), its freshness verdict is
    ``ok``. An asset the gate task could not judge (its bars had failed then, and a resume
    cleared only the failed tasks) is judged here, the same way, and its verdict recorded. A
    stale asset is held back but is not a failure. A dry run records nothing and replays its
    upstream steps itself: every asset runs.
    """
    from ta_lab2.store import audit

    if component == "freshness":
        needed = [c for c in ("bars.1d",) if c in components]
    else:
        from ta_lab2.refresh.runner import upstream_of

        needed = [u for u in upstream_of(component) if u in components]
    gated = gate_hours is not None and component.startswith("emas.")
    if opts.dry_run or not (needed or gated):
        return list(batch), {}, []
    with db.connect(url) as conn:
        status = audit.statuses(conn, opts.run_id, batch, [*needed, "freshness"])
    ok, blocked, failed_up = [], {}, []
    # the gate itself only drops assets whose 1d step recorded a failure (it judges the bars'
    # watermark anyway; a missing row is e.g. bars built outside this run)
    strict = component != "freshness"
    unjudged = []
    for a in batch:
        bad = [f"{u} {status.get((a, u), 'not run')}" for u in needed
               if status.get((a, u)) != "ok" and (strict or (a, u) in status)]
        if bad:
            blocked[a] = "upstream: " + ", ".join(bad)
            failed_up.append(a)
        elif gated and (a, "freshness") not in status:
            unjudged.append(a)
        elif gated and status[(a, "freshness")] != "ok":
            blocked[a] = f"freshness {status[(a, 'freshness')]}"
        else:
            ok.append(a)
    if unjudged:
        from ta_lab2.ops.freshness import judge_now

        assert gate_hours is not None
        log.info("%s: judging the freshness of %s (the gate task could not: their bars had failed)",
                 component, unjudged)
        fresh, stale = judge_now(url, unjudged, opts.as_of, gate_hours, opts.run_id)
        ok = sorted({*ok, *fresh}, key=batch.index)
        blocked.update(stale)
    return ok, blocked, failed_up


@classified
def run_component(component: str, batch: list[int], context: Context) -> dict[str, Any]:
    """Run one component for the assets of one batch (one transaction, redone asset by asset
    when it fails); the healthy assets commit, then the task fails if any asset failed (so
    clearing this task instance resumes exactly the failed work)."""
    from airflow.sdk.exceptions import AirflowSkipException

    from ta_lab2.refresh.runner import run_batch, tune_gc

    tune_gc()  # the task process's job is this batch
    components, opts = run_options(context)
    url = db.resolve_url(airflow=True)
    publish_symbols(batch, url)
    if component not in components:
        return {"component": component, "status": "not_selected"}
    if not context["params"].get("continue_on_error", True) and not opts.dry_run:
        _stop_if_failed(url, component, batch, opts)
    p = context["params"]
    gate = None if p["skip_stale_check"] else float(p["staleness_hours"])
    ready, blocked, upstream_failed = runnable(url, component, batch, components, opts, gate)
    for a, why in blocked.items():
        log.info("asset %s %s: not run (%s)", a, component, why)
    if not ready and not upstream_failed:
        raise AirflowSkipException(f"{component}: no asset of batch {batch} is ready ({blocked})")

    def progress(res: Any) -> None:
        log.info("asset %s %s: %s, %d rows in %.2fs (%s)", res.asset_id, component, res.status, res.rows_written,
                 res.duration_s, res.details.get("mode") or res.details.get("modes"))
        if opts.dry_run:
            log.info("asset %s %s DRY RUN plan: %s", res.asset_id, component, res.details)

    results = run_batch(url, component, ready, opts, selected=components, on_result=progress)
    failed = [r for r in results if r.status == "failed"]
    if failed:
        message = "; ".join(f"asset {r.asset_id} {component}: {r.error}" for r in failed)
        if all(r.details.get("transient") for r in failed):
            raise TransientWarehouseError(message)
        corrupt = any(r.details.get("corruption") for r in failed)
        raise _fail(message, "critical" if corrupt else "error")
    if upstream_failed:  # the others are done and committed; failed, so any clear of the run resumes it
        raise _fail(f"{component}: not run for asset(s) {upstream_failed} ("
                    + "; ".join(f"{a}: {blocked[a]}" for a in upstream_failed) + ")", in_digest=True)
    return {"component": component, "assets": ready, "not_run": sorted(blocked),
            "status": "dry_run" if opts.dry_run else "ok",
            "rows_written": sum(r.rows_written for r in results),
            "results": [{**r.to_dict(), "details": {}} for r in results] if opts.dry_run else []}


def _stop_if_failed(url: str, component: str, batch: list[int], opts: RunOptions) -> None:
    """``continue_on_error=false``: once any (asset, component) of this run has failed, tasks
    that start later record ``not_run`` and skip (tasks already running finish)."""
    from airflow.sdk.exceptions import AirflowSkipException

    from ta_lab2.ops.summary import first_failure
    from ta_lab2.refresh.context import ComponentResult
    from ta_lab2.refresh.runner import record_result
    from ta_lab2.store import audit

    with db.connect(url) as conn:
        why = first_failure(audit.run_results(conn, opts.run_id))
    if why is None:
        return
    for asset in batch:
        record_result(url, opts.run_id, ComponentResult(asset, component, status="not_run", error=why))
    raise AirflowSkipException(why)


@classified
def freshness(batch: list[int], context: Context) -> Any:
    """Sensor body: PokeReturnValue(done, fresh ids); skip when no asset of the batch is fresh."""
    from airflow.sdk import PokeReturnValue
    from airflow.sdk.exceptions import AirflowSkipException

    from ta_lab2.ops import freshness as fr
    from ta_lab2.refresh.context import ComponentResult
    from ta_lab2.refresh.records import record_many

    components, opts = run_options(context)
    p = context["params"]
    url = db.resolve_url(airflow=True)
    publish_symbols(batch, url)
    if p["skip_stale_check"] or not any(c.startswith("emas.") for c in components):
        return PokeReturnValue(is_done=True, xcom_value=batch)
    batch, blocked, _ = runnable(url, "freshness", batch, components, opts, None)
    if not batch:  # every asset's bars.1d failed (this task runs all_done); the EMA tasks judge them later
        raise AirflowSkipException(f"freshness: no asset has its 1d bars ({blocked})")
    with db.connect(url) as conn:
        decisions = fr.check_many(conn, batch, opts.as_of, float(p["staleness_hours"]))
    for d in decisions:
        log.info("asset %s freshness: %s (%s)", d.asset_id, d.decision, d.reason)
    if opts.dry_run:
        return PokeReturnValue(is_done=True, xcom_value=batch)
    waiting = any(d.decision == "wait" for d in decisions)
    verdicts = []
    for d in decisions:  # the audit says why; a later poke overwrites (run, asset, "freshness")
        if d.decision == "fresh" and not waiting:
            res = ComponentResult(d.asset_id, "freshness", status="ok", details={"reason": d.reason})
        elif d.decision == "wait":  # stays the verdict if the sensor times out (soft_fail: skipped)
            res = ComponentResult(d.asset_id, "freshness", status="skipped",
                                  error=f"Skipping ID {d.asset_id} EMAs (timed out waiting: {d.reason})")
        elif d.decision == "stale":
            res = ComponentResult(d.asset_id, "freshness", status="skipped", error=d.skip_message)
        else:  # fresh, but a batch-mate holds the batch: skipped too if the wait times out
            res = ComponentResult(d.asset_id, "freshness", status="skipped",
                                  error=f"Skipping ID {d.asset_id} EMAs (timed out waiting for its batch: "
                                        f"{', '.join(str(x.asset_id) for x in decisions if x.decision == 'wait')})")
        verdicts.append(res)
    record_many(url, opts.run_id, verdicts)  # one audit transaction per poke
    if waiting:
        return PokeReturnValue(is_done=False)
    stale = [d for d in decisions if d.decision == "stale"]
    fresh = [d.asset_id for d in decisions if d.decision == "fresh"]
    if not fresh:
        raise AirflowSkipException("; ".join(d.skip_message for d in stale))
    return PokeReturnValue(is_done=True, xcom_value=fresh)


@classified
def validate_assets(batch: list[int], context: Context) -> dict[str, Any]:
    from ta_lab2.ops.validation import run_validation

    components, opts = run_options(context)
    url = db.resolve_url(airflow=True)
    publish_symbols(batch, url)
    if not context["params"]["validate"] or opts.dry_run:
        return {"status": "not_selected"}
    report = run_validation(url, batch, opts.run_id, include_global=False)
    log.info("validation of %s:\n%s", batch, report.format())
    if report.worst == "FAIL":
        fails = [f"asset {r.asset_id} {r.check_name}: {r.message}" for r in report.results if r.severity == "FAIL"]
        raise _fail("validation FAIL: " + "; ".join(fails[:10]))
    return {"status": "ok", "counts": report.counts()}


def prepared_ids(context: Context) -> list[int] | None:
    """The ids ``prepare`` resolved (None when prepare did not succeed)."""
    batches = context["ti"].xcom_pull(task_ids="prepare", default=None)
    return None if batches is None else [a for b in batches for a in b]


@classified
def validate_global(context: Context) -> dict[str, Any]:
    from ta_lab2.ops.validation import run_validation

    components, opts = run_options(context)
    ids = prepared_ids(context)
    if not context["params"]["validate"] or opts.dry_run or not ids:
        return {"status": "not_selected"}
    report = run_validation(db.resolve_url(airflow=True), ids, opts.run_id, include_global=True, per_asset=False)
    log.info("cross-asset validation:\n%s", report.format())
    if report.worst == "FAIL":
        raise _fail("cross-asset validation FAIL: " + "; ".join(
            r.message for r in report.results if r.severity == "FAIL"), in_digest=True)
    return {"status": "ok", "counts": report.counts()}


@classified
def summary(context: Context) -> dict[str, Any]:
    """Print and persist the run summary; alert when not clean; fail the run on failures."""
    from ta_lab2.ops.notifier import send_digest
    from ta_lab2.ops.summary import build_run_summary

    components, opts = run_options(context)
    ids = prepared_ids(context)
    if ids is None:  # prepare's own failure alert is the run's message
        raise _fail(f"run {opts.run_id}: prepare did not succeed, nothing ran (see the prepare task log)",
                    in_digest=True)
    planned: list[dict[str, Any]] = []
    if opts.dry_run:  # nothing was recorded: the plans are the tasks' return values
        pulled = context["ti"].xcom_pull(task_ids=[f"asset.{c}" for c in components], default=None) or []
        planned = [r for x in pulled if isinstance(x, dict) for r in x.get("results", [])]
    url = db.resolve_url(airflow=True)
    from ta_lab2.ingest import summary_lines

    ingested = summary_lines(context["ti"].xcom_pull(task_ids="ingest", default=None))
    run = build_run_summary(url, opts, components, ids, dag_id=context["dag"].dag_id,
                            params=dict(context["params"]), dry_run_results=planned, notes=ingested.lines,
                            ingest_clean=ingested.clean)
    print(run["text"])
    if not run["clean"] and context["params"]["alert_on_error"] and not opts.dry_run:
        send_digest(run, dag_id=context["dag"].dag_id, batches=context["ti"].xcom_pull(task_ids="prepare"))
    if run["assets_failed"] or run["validation_fail"] or ingested.failed:  # on purpose: the digest said it
        raise _fail(f"run {opts.run_id} not clean: {len(run['assets_failed'])} assets failed "
                    f"{run['assets_failed']}, validation FAIL {run['validation_fail']}"
                    + (", ingest failed" if ingested.failed else ""), in_digest=True)
    return {k: run[k] for k in ("status", "assets_ok", "assets_failed", "validation_fail", "validation_warn")}


@classified
def publish(context: Context) -> dict[str, Any]:
    """Emit one Asset event per table whose family succeeded (through the task's
    ``PUBLISH_ALIAS`` outlet), with the run's metadata; nothing for a dry run or when
    ``prepare`` did not succeed. Returns what was published."""
    from ta_lab2.airflow_assets import ASSETS, PUBLISH_ALIAS
    from ta_lab2.ops.publish import table_events
    from ta_lab2.ops.summary import expected_results
    from ta_lab2.store import audit

    components, opts = run_options(context)
    ids = prepared_ids(context)
    if ids is None or opts.dry_run:
        log.info("publish: nothing to announce (%s)", "dry run" if opts.dry_run else "prepare did not succeed")
        return {"published": []}
    with db.connect(db.resolve_url(airflow=True)) as conn:
        results = expected_results(audit.run_results(conn, opts.run_id), ids, components)
        bad = audit.validation_failed_assets(conn, opts.run_id)
        n_fail = audit.validation_counts(conn, opts.run_id).get("FAIL", 0)
    events = table_events(results, components, run_id=opts.run_id, dag_id=context["dag"].dag_id, as_of=opts.as_of,
                          validation_failed=bad, validation_fail=n_fail)
    for table, extra in events:
        context["outlet_events"][PUBLISH_ALIAS].add(ASSETS[table.table], extra=extra)
        log.info("publish %s: %d rows, assets ok %s, failed %s, skipped %s", ASSETS[table.table].uri,
                 extra["rows_written"], extra["assets_ok"], extra["assets_failed"], extra["assets_skipped"])
    return {"published": [t.table for t, _ in events]}
