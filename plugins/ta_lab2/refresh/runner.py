"""Run refresh steps: the one code path behind the CLI and every DAG task.

A *component* is ``bars.<builder>`` or ``emas.<refresher>``. The unit of work is a BATCH:
:func:`run_batch` runs one component for a batch of assets on ONE connection in ONE
transaction: the advisory locks of every asset in the one global order
(:func:`ta_lab2.store.io.lock_in_order`), one read per kind for the whole batch
(:class:`ta_lab2.store.batch.BatchReads`), the pure compute per asset, and one set-based
flush (:class:`ta_lab2.store.batch.BatchWrites`: one COPY per table, set-based deletes, one
state upsert per state table), then one commit and one audit write for the batch.

Isolation: when the batch fails on a data error, it is rolled back and redone asset by asset
under savepoints in one transaction: the bad asset gets a failed :class:`ComponentResult`
with its error, the others commit. A transient database error (connection, deadlock,
serialization) retries the whole batch with exponential backoff when asked to.

:func:`run_components` (the CLI) runs a batch through all selected components on one
connection, an asset's failed component skipping that asset's dependants. ``run_step`` and
``run_asset`` are the batch-of-one wrappers. ``on_result`` is called once per asset result
after its batch committed (streaming progress).

``dry_run``: the component and, before it, its selected upstream components run for real in
one transaction that is always rolled back, so the plan is exact and nothing persists.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from typing import Any

import psycopg

from ta_lab2.refresh.bars_1d import refresh_1d_many
from ta_lab2.refresh.bars_snapshot import refresh_snapshots
from ta_lab2.refresh.context import Batch, ComponentResult, DataCorruptionError, RunOptions
from ta_lab2.refresh.records import Session, record_result, record_results
from ta_lab2.registry import (
    BAR_FAMILIES,
    BAR_FAMILY_NAMES,
    EMA_BAR_DEPENDENCIES,
    EMA_FAMILIES,
    EMA_FAMILY_NAMES,
)
from ta_lab2.store import bars1d, db, io
from ta_lab2.store.batch import BatchReads, BatchWrites

__all__ = ["Session", "record_result", "record_results", "run_batch", "run_components", "run_step", "run_asset",
           "plan_components", "upstream_of", "locks_for", "cli_batches", "pack_batches", "locks_per_asset", "tune_gc"]

log = logging.getLogger(__name__)
# The CLI's "auto" batches (cli_batches): consecutive assets while the days they (re)compute fit
# BATCH_WORK_DAYS (what a batch holds in memory follows those days: ~100 assets x 3 years of a full
# build peaked at ~0.9 GB, docs/BENCHMARKS.md) and their advisory locks fit BATCH_LOCKS (Postgres
# keeps them in one shared table of max_locks_per_transaction x max_connections entries, 6,400 by
# default: a batch takes at most 40 % of it, 2 locks per asset for a real run, up to 5 for a dry
# run's chain). A daily run of 1,000 assets is one batch; a first build 3 years deep, batches of
# ~100. decisions.md D-engine-8.
BATCH_WORK_DAYS = 110_000
BATCH_LOCKS = 2_500
GC_GEN0_THRESHOLD = 50_000  # tune_gc
Step = Callable[[Batch, int, RunOptions], ComponentResult]
BatchStep = Callable[[Batch, list[int], RunOptions], list[ComponentResult]]
OnResult = Callable[[ComponentResult], None]


def _per_asset(step: Step) -> BatchStep:
    """A step written per asset, run for each asset of the batch (its own seconds each)."""

    def run(batch: Batch, ids: list[int], opts: RunOptions) -> list[ComponentResult]:
        out = []
        for a in ids:
            t0 = time.perf_counter()
            res = step(batch, a, opts)
            res.duration_s = time.perf_counter() - t0
            out.append(res)
        return out

    return run


def _steps() -> dict[str, BatchStep]:
    steps: dict[str, BatchStep] = {"bars.1d": refresh_1d_many}
    for fam in BAR_FAMILIES[1:]:
        steps[f"bars.{fam.name}"] = partial(refresh_snapshots, family=fam)  # type: ignore[call-arg]
    from ta_lab2.refresh.emas import refresh_emas_batch  # EMA step (imports the EMA kernel lazily)

    for efam in EMA_FAMILIES:
        steps[f"emas.{efam.name}"] = partial(refresh_emas_batch, family=efam)  # type: ignore[call-arg]
    return steps


def upstream_of(component: str) -> tuple[str, ...]:
    """Components that must succeed first for the same asset."""
    kind, name = component.split(".", 1)
    if kind == "bars":
        return () if name == "1d" else ("bars.1d",)
    return ("bars.1d", *(f"bars.{b}" for b in EMA_BAR_DEPENDENCIES[name] if b != "1d"))


def hold_back(component: str, asset_ids: Sequence[int], status: Callable[[int, str], str | None],
              reason: Callable[[int], str | None] | None = None) -> tuple[list[int], list[ComponentResult]]:
    """(assets ready for ``component``, ``skipped`` results of the others): an asset is held back
    when one of its upstream components failed or was skipped (``status(asset, upstream)``), or
    when ``reason(asset)`` names why (the CLI's freshness gate)."""
    ready, held = [], []
    for a in asset_ids:
        blocked = [u for u in upstream_of(component) if status(a, u) in ("failed", "skipped")]
        why = f"upstream failed: {', '.join(blocked)}" if blocked else reason(a) if reason is not None else None
        if why is None:
            ready.append(a)
        else:
            held.append(ComponentResult(a, component, status="skipped", error=why))
    return ready, held


def locks_for(component: str) -> list[tuple[str, bool]]:
    """(lock namespace, shared) a component's transaction holds per asset: its own lock, and
    shared the lock of what it reads (the source for 1d, the 1d bars for everything else)."""
    return [("source", True), ("bars.1d", False)] if component == "bars.1d" else [("bars.1d", True), (component, False)]


def plan_components(targets: Sequence[str], builders: Sequence[str] | None = None,
                    refreshers: Sequence[str] | None = None) -> list[str]:
    """Selected components in dependency order (the order of the flags never matters)."""
    if not targets:
        raise ValueError("targets is empty: choose bars, emas or both")
    bad = [t for t in targets if t not in ("bars", "emas")]
    if bad:
        raise ValueError(f"unknown targets {bad}; choose from ['bars', 'emas']")
    for kind, chosen, known in (("builders", builders, BAR_FAMILY_NAMES), ("refreshers", refreshers, EMA_FAMILY_NAMES)):
        unknown = [c for c in chosen or () if c not in known]
        if unknown:
            raise ValueError(f"unknown {kind} {unknown}; known: {list(known)}")
    out = [f"bars.{b}" for b in BAR_FAMILY_NAMES if "bars" in targets and (not builders or b in builders)]
    out += [f"emas.{r}" for r in EMA_FAMILY_NAMES if "emas" in targets and (not refreshers or r in refreshers)]
    return out


def tune_gc() -> None:
    """For a process whose job is to refresh (the CLI, a DAG task, the bench): move what is alive
    now (modules, the registry) out of the cyclic collector's way (``gc.freeze``) and collect the
    youngest generation every 50,000 allocations instead of 700. Measured when a one-day run of
    1,000 assets still allocated ~100,000 short-lived state-row dicts (0.25 s of 4.6 in
    collections, decisions.md D-engine-11); the state reads are columns since D-engine-12, so the
    gain is smaller now. Process-wide, so only entry points call it; idempotent."""
    if gc.get_threshold()[0] < GC_GEN0_THRESHOLD:
        gc.freeze()
        gc.set_threshold(GC_GEN0_THRESHOLD, *gc.get_threshold()[1:])


def pack_batches(asset_ids: Sequence[int], work: dict[int, int], budget: int = BATCH_WORK_DAYS,
                 cap: int = BATCH_LOCKS // 2) -> list[list[int]]:
    """Consecutive assets (in the order given) while the sum of their ``work`` (days to
    (re)compute, at least 1 each) stays within ``budget`` and the batch within ``cap`` assets;
    an asset over the budget alone is a batch of one."""
    out: list[list[int]] = []
    cur: list[int] = []
    total = 0
    for a in asset_ids:
        w = max(1, int(work.get(int(a), 0)))
        if cur and (total + w > budget or len(cur) >= cap):
            out.append(cur)
            cur, total = [], 0
        cur.append(int(a))
        total += w
    if cur:
        out.append(cur)
    return out


def locks_per_asset(components: Sequence[str], opts: RunOptions) -> int:
    """The most advisory locks one asset takes in one transaction of these components (a dry
    run's transaction replays the selected upstream steps too)."""
    return max((len({ns for c in _chain(comp, opts, components) for ns, _ in locks_for(c)}) for comp in components),
               default=1)


def cli_batches(url: str, asset_ids: Sequence[int], opts: RunOptions, components: Sequence[str]) -> list[list[int]]:
    """The CLI's ``batch_size: auto``: batches sized by the work they hold (:func:`pack_batches`
    over ``queries/refresh_work``) and by their locks (``BATCH_LOCKS``), so a daily run pays the
    per-batch cost (locks, reads, staging, commit, audit) once per component instead of once
    per 100 assets, and a deep first build stays within the memory of ~100 assets x 3 years."""
    ids = list(dict.fromkeys(int(a) for a in asset_ids))
    if not ids:
        return []
    with db.connect(url) as conn:
        work = bars1d.refresh_work(conn, ids, opts.as_of, opts.full_rebuild)
    return pack_batches(ids, work, BATCH_WORK_DAYS, max(1, BATCH_LOCKS // locks_per_asset(components, opts)))


def run_batch(url: str, component: str, asset_ids: Sequence[int], opts: RunOptions, *,
              on_result: OnResult | None = None, retries: int = 0, backoff_s: float = 1.0, record: bool = True,
              selected: Sequence[str] | None = None, session: Session | None = None) -> list[ComponentResult]:
    """``component`` for every asset of the batch (one result per asset, in the given order).

    ``selected``: the run's components (a dry run replays only the selected upstream steps, as
    the real run would; None = all upstream steps). ``session``: reuse a connection and its
    cached reads across components (the CLI); by default the batch opens its own.
    """
    ids = list(dict.fromkeys(int(a) for a in asset_ids))
    if not ids:
        return []
    own = session is None
    sess = session or Session(url, ids)
    results: list[ComponentResult] = []
    try:
        for attempt in range(retries + 1):
            start = time.perf_counter()
            try:
                reads = None if opts.dry_run else sess.reads()
                results = _batch_on(sess.connection(), component, ids, opts, selected, reads)
                break
            except Exception as exc:  # only batch-wide errors get here (asset errors are isolated)
                sess.reset()
                transient = db.is_transient(exc)
                if not transient or attempt == retries:
                    results = [_failed(a, component, exc, attempt + 1, time.perf_counter() - start) for a in ids]
                    log.error("batch %s %s failed: %s", _label(ids), component, results[0].error)
                    break
                delay = backoff_s * 2**attempt
                log.warning("batch %s %s: transient error, retry %d in %.1fs: %s", _label(ids), component,
                            attempt + 1, delay, exc)
                time.sleep(delay)
        if record and not opts.dry_run:
            record_results(sess, opts.run_id, results)
    finally:
        if own:
            sess.close()
    for res in results:
        if on_result is not None:
            on_result(res)
    return results


def _label(ids: Sequence[int]) -> str:
    return str(ids[0]) if len(ids) == 1 else f"{ids[0]}..{ids[-1]} ({len(ids)} assets)"


def _failed(asset_id: int, component: str, exc: BaseException, attempts: int, seconds: float) -> ComponentResult:
    return ComponentResult(asset_id, component, status="failed", error=f"{type(exc).__name__}: {exc}",
                           duration_s=round(seconds, 4),
                           details={"transient": db.is_transient(exc), "attempts": attempts,
                                    "corruption": isinstance(exc, DataCorruptionError)})


def _chain(component: str, opts: RunOptions, selected: Sequence[str] | None) -> list[str]:
    """What one transaction computes: a dry run replays the selected upstream steps first."""
    if not opts.dry_run:
        return [component]
    return [u for u in upstream_of(component) if selected is None or u in selected] + [component]


def _batch_on(conn: psycopg.Connection, component: str, ids: list[int], opts: RunOptions,
              selected: Sequence[str] | None, reads: BatchReads | None) -> list[ComponentResult]:
    """One transaction for the whole batch; on a data error, redo it asset by asset."""
    chain = _chain(component, opts, selected)
    start = time.perf_counter()
    io.lock_in_order(conn, [(ns, a, shared) for c in chain for ns, shared in locks_for(c) for a in ids])
    try:
        results = _compute(Batch(conn, reads or BatchReads(conn, ids), BatchWrites()), chain, ids, opts)
        _end(conn, opts)
    except Exception as exc:
        conn.rollback()
        if reads is not None:
            reads.invalidate()
        if db.is_transient(exc) or conn.closed or not _is_data_error(exc):
            raise
        if len(ids) == 1:
            return [_failed(ids[0], component, exc, 1, time.perf_counter() - start)]
        log.warning("batch %s %s failed (%s: %s): redoing it asset by asset", _label(ids), component,
                    type(exc).__name__, exc)
        return _one_by_one(conn, component, chain, ids, opts)
    _share_overhead(results, time.perf_counter() - start)
    return results


def _is_data_error(exc: BaseException) -> bool:
    """Anything but a broken connection: the asset's data or code, isolated to the asset."""
    return not (isinstance(exc, psycopg.OperationalError) and getattr(exc, "sqlstate", None) is None)


def _end(conn: psycopg.Connection, opts: RunOptions) -> None:
    if opts.dry_run:
        conn.rollback()
    else:
        conn.commit()


def _one_by_one(conn: psycopg.Connection, component: str, chain: list[str], ids: list[int],
                opts: RunOptions) -> list[ComponentResult]:
    """Each asset under its own savepoint in one transaction: a failure rolls back only it."""
    io.lock_in_order(conn, [(ns, a, shared) for c in chain for ns, shared in locks_for(c) for a in ids])
    results = []
    for a in ids:
        start = time.perf_counter()
        try:
            with conn.transaction(force_rollback=opts.dry_run):  # a savepoint
                res = _compute(Batch.open(conn, [a]), chain, [a], opts)[0]
        except Exception as exc:
            if db.is_transient(exc) or conn.closed or not _is_data_error(exc):
                raise
            res = _failed(a, component, exc, 1, time.perf_counter() - start)
            log.error("asset %s %s failed: %s", a, component, res.error)
        results.append(res)
    _end(conn, opts)
    return results


def _compute(batch: Batch, chain: list[str], ids: list[int], opts: RunOptions) -> list[ComponentResult]:
    """Every component of ``chain`` for every asset, each flushed set-based before the next
    (a dry run's replayed upstream writes are then visible to the planned step)."""
    steps = _steps()
    wet = replace(opts, dry_run=False)
    results: list[ComponentResult] = []
    for comp in chain:
        results = steps[comp](batch, ids, wet)
        batch.writes.flush(batch.conn)
        if comp == "bars.1d":
            batch.reads.invalidate()
        else:
            batch.reads.forget_states()
    if opts.dry_run:
        for res in results:
            res.status = "dry_run"
            res.details = {**res.details, "dry_run": "computed in a rolled-back transaction"}
    return results


def _share_overhead(results: list[ComponentResult], total_s: float) -> None:
    """Per-asset seconds: its own compute plus an equal share of the batch's common work
    (locks, reads, flush, commit), so the seconds of a batch add up to its wall time."""
    own = sum(r.duration_s for r in results)
    share = max(0.0, total_s - own) / len(results)
    for r in results:
        r.duration_s = round(r.duration_s + share, 4)


def run_step(url: str, component: str, asset_id: int, opts: RunOptions, *, retries: int = 0,
             backoff_s: float = 1.0, record: bool = True,
             selected: Sequence[str] | None = None) -> ComponentResult:
    """One component for one asset (a batch of one)."""
    return run_batch(url, component, [asset_id], opts, retries=retries, backoff_s=backoff_s, record=record,
                     selected=selected)[0]


def run_components(url: str, asset_ids: Sequence[int], components: Sequence[str], opts: RunOptions, *,
                   retries: int = 0, record: bool = True, on_result: OnResult | None = None,
                   backoff_s: float = 1.0) -> list[ComponentResult]:
    """One batch of assets through the components in order, on one connection; an asset whose
    component failed has its dependants skipped (recorded ``skipped``, ``upstream failed``)."""
    ids = list(dict.fromkeys(int(a) for a in asset_ids))
    status: dict[tuple[int, str], str] = {}
    out: list[ComponentResult] = []
    sess = Session(url, ids)
    try:
        for comp in components:
            ready, skipped = hold_back(comp, ids, lambda a, u: status.get((a, u)))
            if skipped and record and not opts.dry_run:
                record_results(sess, opts.run_id, skipped)
            results = run_batch(url, comp, ready, opts, retries=retries, backoff_s=backoff_s, record=record,
                                selected=components, session=sess)
            for res in skipped:
                if on_result is not None:
                    on_result(res)
            for res in results + skipped:
                status[(res.asset_id, comp)] = res.status
            out += results + skipped
            if on_result is not None:
                for res in results:
                    on_result(res)
    finally:
        sess.close()
    order = {(a, c): i for i, (a, c) in enumerate((a, c) for a in ids for c in components)}
    return sorted(out, key=lambda r: order[(r.asset_id, r.component)])


def run_asset(url: str, asset_id: int, components: Sequence[str], opts: RunOptions, *,
              retries: int = 0, record: bool = True) -> list[ComponentResult]:
    """Run the components for one asset in order; a failed component skips its dependants."""
    return run_components(url, [asset_id], components, opts, retries=retries, record=record)


def batch_results_summary(results: Sequence[ComponentResult]) -> dict[str, Any]:
    """Small totals of a batch (for logs and XCom)."""
    return {"assets": len(results), "rows_written": sum(r.rows_written for r in results),
            "failed": [r.asset_id for r in results if r.status == "failed"]}
