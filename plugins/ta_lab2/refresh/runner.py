"""Run refresh steps: the one code path behind the CLI and every DAG task.

A *component* is ``bars.<builder>`` or ``emas.<refresher>``. ``run_step`` runs one
component for one asset in ONE transaction, turns any error
into a failed :class:`ComponentResult` with the error text, records the audit row, and
retries transient database errors with exponential backoff when asked to.

``dry_run``: the step and, before it, its upstream components run for real inside one
transaction that is always rolled back. The plan a dry run logs is therefore exact (an EMA
plan sees the bars the same run would have built) and nothing persists, state included.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial

import psycopg

from ta_lab2.refresh.bars_1d import refresh_1d
from ta_lab2.refresh.bars_snapshot import refresh_snapshot
from ta_lab2.refresh.context import ComponentResult, DataCorruptionError, RunOptions
from ta_lab2.registry import (
    BAR_FAMILIES,
    BAR_FAMILY_NAMES,
    EMA_BAR_DEPENDENCIES,
    EMA_FAMILIES,
    EMA_FAMILY_NAMES,
)
from ta_lab2.store import audit, db

log = logging.getLogger(__name__)
Step = Callable[[psycopg.Connection, int, RunOptions], ComponentResult]


def _steps() -> dict[str, Step]:
    steps: dict[str, Step] = {"bars.1d": refresh_1d}
    for fam in BAR_FAMILIES[1:]:
        steps[f"bars.{fam.name}"] = partial(refresh_snapshot, family=fam)  # type: ignore[call-arg]
    from ta_lab2.refresh.emas import refresh_emas  # EMA step (imports the EMA kernel lazily)

    for efam in EMA_FAMILIES:
        steps[f"emas.{efam.name}"] = partial(refresh_emas, family=efam)  # type: ignore[call-arg]
    return steps


def upstream_of(component: str) -> tuple[str, ...]:
    """Components that must succeed first for the same asset."""
    kind, name = component.split(".", 1)
    if kind == "bars":
        return () if name == "1d" else ("bars.1d",)
    return ("bars.1d", *(f"bars.{b}" for b in EMA_BAR_DEPENDENCIES[name] if b != "1d"))


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


def run_step(url: str, component: str, asset_id: int, opts: RunOptions, *, retries: int = 0,
             backoff_s: float = 1.0, record: bool = True,
             selected: Sequence[str] | None = None) -> ComponentResult:
    """``selected``: the run's components (a dry run replays only the selected upstream steps,
    as the real run would; None = all upstream steps)."""
    step = _steps()[component]
    for attempt in range(retries + 1):
        start = time.perf_counter()
        try:
            with db.connect(url) as conn:
                if opts.dry_run:
                    result = _dry_run(conn, component, asset_id, opts, selected)
                else:
                    result = step(conn, asset_id, opts)
                    conn.commit()
            break
        except Exception as exc:  # reported, recorded and re-raised by the caller's policy
            transient = db.is_transient(exc)
            result = ComponentResult(asset_id, component, status="failed", error=f"{type(exc).__name__}: {exc}",
                                     details={"transient": transient, "attempts": attempt + 1,
                                              "corruption": isinstance(exc, DataCorruptionError)})
            if not transient or attempt == retries:
                log.error("asset %s %s failed: %s", asset_id, component, result.error)
                break
            delay = backoff_s * 2**attempt
            log.warning("asset %s %s: transient error, retry %d in %.1fs: %s", asset_id, component,
                        attempt + 1, delay, exc)
            time.sleep(delay)
    result.duration_s = round(time.perf_counter() - start, 4)
    if record and not opts.dry_run:
        record_result(url, opts.run_id, result)
    return result


def _dry_run(conn: psycopg.Connection, component: str, asset_id: int, opts: RunOptions,
             selected: Sequence[str] | None) -> ComponentResult:
    wet = replace(opts, dry_run=False)
    try:
        for up in upstream_of(component):
            if selected is not None and up not in selected:
                continue
            _steps()[up](conn, asset_id, wet)
        result = _steps()[component](conn, asset_id, wet)
    finally:
        conn.rollback()
    result.status = "dry_run"
    result.details = {**result.details, "dry_run": "computed in a rolled-back transaction"}
    return result


def record_result(url: str, run_id: str, result: ComponentResult) -> None:
    """Audit row in its own transaction; an audit failure is logged, never raised."""
    try:
        with db.transaction(url) as conn:
            audit.put_asset_result(conn, run_id, result.to_dict())
    except Exception as exc:
        log.warning("asset %s %s: audit row not written: %s", result.asset_id, result.component, exc)


def run_asset(url: str, asset_id: int, components: Sequence[str], opts: RunOptions, *,
              retries: int = 0, record: bool = True) -> list[ComponentResult]:
    """Run the components for one asset in order; a failed component skips its dependants."""
    results: dict[str, ComponentResult] = {}
    for comp in components:
        blocked = [u for u in upstream_of(comp) if u in results and results[u].status == "failed"]
        if blocked:
            res = ComponentResult(asset_id, comp, status="skipped", error=f"upstream failed: {', '.join(blocked)}")
            if record and not opts.dry_run:
                record_result(url, opts.run_id, res)
        else:
            res = run_step(url, comp, asset_id, opts, retries=retries, record=record, selected=components)
        results[comp] = res
    return list(results.values())
