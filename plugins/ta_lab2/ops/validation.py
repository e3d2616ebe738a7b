"""Validation checks (OPERATIONS.md §5): every check yields PASS / WARN / FAIL with numbers.

Per asset (:func:`validate_asset`), ``<fam>`` looping over ``SNAPSHOT_FAMILIES`` and ``<ema>``
over ``EMA_VARIANTS`` (its ``alignment_source``):

- ``bars_1d.one_row_per_day``: FAIL if a UTC day holds two 1d rows.
- ``bars_1d.gaps``: days missing between the first and last 1d day. Source gaps and days whose
  source rows were all rejected PASS (counted and listed); a day whose source row is not yet
  consumed (loaded after the last 1d run) WARN; a day the source has and the 1d table lacks FAIL.
- ``bars_1d.ohlc_consistency``, ``bars.<fam>.ohlc_consistency``: FAIL unless
  ``0 < low <= min(open, close) <= max(open, close) <= high`` (finite) and
  ``time_open <= time_low, time_high <= time_close``.
- ``bars_1d.count_missing_days``: FAIL unless it is the gap to the previous row (and
  ``is_missing_days`` agrees). ``bars_1d.bar_seq_dense``: FAIL unless bar_seq is 1..n.
- ``bars.<fam>.ohlcv_matches_1d``: FAIL unless each completed bar equals the aggregate of the 1d
  rows of its window (prices and time_open exact, count_days, volume within rtol 1e-9).
- ``bars.<fam>.missing_days_consistency``: FAIL unless ``is_missing_days <=> count_missing_days > 0``,
  ``count_days + count_missing_days = pos_in_bar`` (no partial start) and
  ``first_missing_day <= last_missing_day``.
- ``bars.<fam>.bar_seq_continuity``: FAIL on a bar_seq jump that no 1d gap swallowing the
  skipped bars explains.
- ``bars.<fam>.incomplete_bars``: WARN listing bars whose window passed without completing.
- ``emas.<ema>.values``: FAIL on a NaN / inf / negative ``ema`` or ``ema_bar``.
- ``emas.<ema>.row_counts``: FAIL unless the canonical (roll = false) rows of each (tf, period)
  equal the completed bars of the variant's bar family from the seed on (v2 included: its roll
  marks the multi_tf bar closes).
- ``emas.rejects``: FAIL if ``ema_rejects`` holds bound/nan/inf/negative rows for the asset
  (WARN for any other type).

Cross-asset (:func:`validate_global`, ``asset_id`` 0): ``global.duplicate_keys``.
``observed`` is the number of violations (``threshold`` the number allowed, 0). A check whose
statement errors is a FAIL of its own and the others still run (each runs in a savepoint).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from functools import partial
from typing import Any, Literal

import psycopg

from ta_lab2.ops.summary import table as text_table
from ta_lab2.registry import BAR_1D, EMA_VARIANTS, SNAPSHOT_FAMILIES, BarFamily, EmaVariant, bar_family
from ta_lab2.store import db
from ta_lab2.store import validation as store

log = logging.getLogger(__name__)

Severity = Literal["PASS", "WARN", "FAIL"]
SEVERITIES: tuple[Severity, ...] = ("PASS", "WARN", "FAIL")
VOLUME_RTOL = 1e-9  # snapshot volume vs the sum of its 1d volumes (summation order differs)
MAX_LISTED = 20  # days / bars listed in details
MAX_EXAMPLES = 10
# Expected primary keys (the DDL's); a table whose catalog PK differs is scanned for duplicates.
KEY_1D: tuple[str, ...] = ("id", "timestamp")
KEY_SNAPSHOT: tuple[str, ...] = ("id", "tf", "bar_seq", "timestamp")
KEY_EMA: tuple[str, ...] = ("id", "tf", "ts", "period")


@dataclass
class CheckResult:
    """One check's verdict for one asset (``asset_id`` 0 = cross-asset)."""

    asset_id: int
    check_name: str
    severity: Severity
    observed: float | None
    threshold: float | None
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_row(self) -> dict[str, Any]:
        return asdict(self)


Check = tuple[str, Callable[[], CheckResult]]  # (check_name, thunk computing it)


@dataclass
class ValidationReport:
    results: list[CheckResult] = field(default_factory=list)

    @property
    def worst(self) -> Severity:
        return max((r.severity for r in self.results), key=SEVERITIES.index, default="PASS")

    def counts(self) -> dict[str, int]:
        return {s: sum(1 for r in self.results if r.severity == s) for s in SEVERITIES}

    def format(self) -> str:
        """A readable table (asset, check, severity, observed, message) and a totals line."""
        rows = [
            [str(r.asset_id), r.check_name, r.severity, _num(r.observed), r.message] for r in self.results
        ]
        c = self.counts()
        foot = f"{len(self.results)} checks: PASS {c['PASS']}, WARN {c['WARN']}, FAIL {c['FAIL']}; worst {self.worst}"
        return text_table(["asset", "check", "severity", "observed", "message"], rows) + "\n" + foot


def _num(v: float | None) -> str:
    if v is None:
        return ""
    return str(int(v)) if float(v).is_integer() else f"{v:.6g}"


def _iso(v: Any) -> Any:
    return v.isoformat() if isinstance(v, date | datetime) else v


def _verdict(
    asset_id: int, name: str, n_bad: int, message: str, details: dict[str, Any], bad: Severity = "FAIL"
) -> CheckResult:
    return CheckResult(asset_id, name, bad if n_bad else "PASS", float(n_bad), 0.0, message, details)


def _per_tf(
    asset_id: int,
    name: str,
    rows: Sequence[dict[str, Any]],
    what: str,
    bad: Severity = "FAIL",
    limit: int = MAX_EXAMPLES,
    **extra: Any,
) -> CheckResult:
    """Fold per-tf rows (tf, n_checked, n_bad, examples) into one result naming the bad tfs."""
    by_tf = {r["tf"]: int(r["n_bad"]) for r in rows if r["n_bad"]}
    checked = sum(int(r["n_checked"]) for r in rows)
    n_bad = sum(by_tf.values())
    where = " (" + ", ".join(f"{tf}: {n}" for tf, n in by_tf.items()) + ")" if by_tf else ""
    examples = [e for r in rows for e in r["examples"] or []][:limit]
    details = {"checked": checked, "bad_by_tf": by_tf, "examples": examples, **extra}
    return _verdict(asset_id, name, n_bad, f"{n_bad} of {checked} {what}{where}", details, bad)


# -- 1d bars -------------------------------------------------------------------------------
def _daily_one_row_per_day(conn: psycopg.Connection, a: int) -> CheckResult:
    rows = store.daily_duplicate_days(conn, a)
    listed = [
        {"day": _iso(r["day"]), "timestamps": [_iso(t) for t in r["timestamps"]]} for r in rows[:MAX_LISTED]
    ]
    return _verdict(
        a,
        "bars_1d.one_row_per_day",
        len(rows),
        f"{len(rows)} UTC days with more than one 1d row",
        {"days": listed},
    )


def _daily_gaps(conn: psycopg.Connection, a: int) -> CheckResult:
    rows = store.daily_gaps(conn, a)
    kinds = ("source_gap", "rejected", "pending", "unexplained")
    days = {k: [_iso(r["day"]) for r in rows if r["kind"] == k] for k in kinds}
    n = {k: len(v) for k, v in days.items()}
    details: dict[str, Any] = {"missing_days": len(rows), **{f"{k}s": n[k] for k in kinds}}
    details |= {f"{k}_days": v[:MAX_LISTED] for k, v in days.items() if v}
    msg = (
        f"{len(rows)} missing days: {n['source_gap']} source gaps, {n['rejected']} rejected, "
        f"{n['pending']} not yet consumed, {n['unexplained']} missing although the source has them"
    )
    if n["unexplained"]:
        msg += " (first " + ", ".join(days["unexplained"][:5]) + ")"
    sev: Severity = "FAIL" if n["unexplained"] else "WARN" if n["pending"] else "PASS"
    return CheckResult(a, "bars_1d.gaps", sev, float(n["unexplained"]), 0.0, msg, details)


def _daily_ohlc(conn: psycopg.Connection, a: int) -> CheckResult:
    return _per_tf(
        a,
        "bars_1d.ohlc_consistency",
        store.ohlc_consistency(conn, BAR_1D.table, a),
        "1d rows break OHLC/time order",
    )


def _daily_missing_days(conn: psycopg.Connection, a: int) -> CheckResult:
    r = store.daily_missing_days(conn, a)
    return _verdict(
        a,
        "bars_1d.count_missing_days",
        int(r["n_bad"]),
        f"{r['n_bad']} of {r['n_checked']} 1d rows whose count_missing_days/is_missing_days "
        "disagree with the gap to the previous row",
        {"examples": r["examples"] or []},
    )


def _daily_bar_seq(conn: psycopg.Connection, a: int) -> CheckResult:
    r = store.daily_bar_seq(conn, a)
    return _verdict(
        a,
        "bars_1d.bar_seq_dense",
        int(r["n_bad"]),
        f"{r['n_bad']} of {r['n_checked']} 1d rows whose bar_seq is not their rank 1..n",
        {"examples": r["examples"] or []},
    )


def _daily_checks(conn: psycopg.Connection, a: int) -> list[Check]:
    fns = {
        "one_row_per_day": _daily_one_row_per_day,
        "gaps": _daily_gaps,
        "ohlc_consistency": _daily_ohlc,
        "count_missing_days": _daily_missing_days,
        "bar_seq_dense": _daily_bar_seq,
    }
    return [(f"bars_1d.{k}", partial(f, conn, a)) for k, f in fns.items()]


# -- snapshot bars -------------------------------------------------------------------------
def _snapshot_checks(conn: psycopg.Connection, a: int, fam: BarFamily) -> list[Check]:
    p, t = f"bars.{fam.name}.", fam.table

    def ohlcv() -> CheckResult:
        return _per_tf(
            a,
            p + "ohlcv_matches_1d",
            store.snapshot_ohlcv(conn, t, a, VOLUME_RTOL),
            "completed bars differ from their 1d rows",
            volume_rtol=VOLUME_RTOL,
        )

    def missing() -> CheckResult:
        rows = store.snapshot_missing_days(conn, t, a)
        kinds = {k: sum(int(r[f"n_{k}"]) for r in rows) for k in ("flag", "days_sum", "range")}
        return _per_tf(
            a,
            p + "missing_days_consistency",
            rows,
            "rows with inconsistent missing-day columns",
            by_kind=kinds,
        )

    def ohlc() -> CheckResult:
        return _per_tf(
            a, p + "ohlc_consistency", store.ohlc_consistency(conn, t, a), "rows break OHLC/time order"
        )

    def bar_seq() -> CheckResult:
        rows = [{**r, "n_checked": r["n_bars"]} for r in store.snapshot_bar_seq(conn, t, a)]
        explained = [e for r in rows for e in r["explained"] or []][:MAX_EXAMPLES]
        return _per_tf(
            a,
            p + "bar_seq_continuity",
            rows,
            "bars follow a bar_seq jump no 1d gap explains",
            jumps=sum(int(r["n_jumps"]) for r in rows),
            explained_jumps=explained,
        )

    def incomplete() -> CheckResult:
        return _per_tf(
            a,
            p + "incomplete_bars",
            store.snapshot_incomplete(conn, t, a),
            "bars never completed (scheduled last day missing) though a later bar exists",
            bad="WARN",
            limit=MAX_LISTED,
        )

    fns = {
        "ohlcv_matches_1d": ohlcv,
        "missing_days_consistency": missing,
        "ohlc_consistency": ohlc,
        "bar_seq_continuity": bar_seq,
        "incomplete_bars": incomplete,
    }
    return [(p + k, f) for k, f in fns.items()]


# -- EMAs ----------------------------------------------------------------------------------
def _ema_values(conn: psycopg.Connection, a: int, v: EmaVariant) -> CheckResult:
    r = store.ema_values(conn, v.table, a)
    return _verdict(
        a,
        f"emas.{v.alignment_source}.values",
        int(r["n_bad"]),
        f"{r['n_bad']} of {r['n_checked']} rows with a NaN, infinite or negative EMA",
        {"checked": int(r["n_checked"]), "examples": r["examples"] or []},
    )


def _ema_row_counts(conn: psycopg.Connection, a: int, v: EmaVariant) -> CheckResult:
    rows = store.ema_row_counts(conn, v.table, bar_family(v.bar_family).table, a)
    bad = [
        {
            "tf": r["tf"],
            "period": r["period"],
            "seed_ts": _iso(r["seed_ts"]),
            "canonical_rows": r["n_canonical"],
            "completed_bars": r["n_bars"],
        }
        for r in rows
        if r["n_canonical"] != r["n_bars"]
    ]
    head = ", ".join(
        f"{b['tf']}/{b['period']}: {b['canonical_rows']} vs {b['completed_bars']}" for b in bad[:5]
    )
    msg = f"{len(bad)} of {len(rows)} series whose canonical rows differ from completed bars since the seed"
    return _verdict(
        a,
        f"emas.{v.alignment_source}.row_counts",
        len(bad),
        msg + (f" ({head})" if bad else ""),
        {"series": len(rows), "mismatches": bad[:MAX_EXAMPLES]},
    )


def _ema_rejects(conn: psycopg.Connection, a: int) -> CheckResult:
    r = store.ema_rejects(conn, a)
    n_rows, n_bad = int(r["n_rows"]), int(r["n_bad"])
    by_type = r["by_type"] or {}
    sev: Severity = "FAIL" if n_bad else "WARN" if n_rows else "PASS"
    kinds = ", ".join(f"{k}: {n}" for k, n in sorted(by_type.items()))
    msg = f"{n_rows} ema_rejects rows, {n_bad} bound/nan/inf/negative" + (f" ({kinds})" if kinds else "")
    return CheckResult(
        a,
        "emas.rejects",
        sev,
        float(n_bad),
        0.0,
        msg,
        {"rows": n_rows, "by_type": by_type, "examples": r["examples"] or []},
    )


def _ema_checks(conn: psycopg.Connection, a: int) -> list[Check]:
    checks: list[Check] = []
    for v in EMA_VARIANTS:
        p = f"emas.{v.alignment_source}."
        checks.append((p + "values", partial(_ema_values, conn, a, v)))
        checks.append((p + "row_counts", partial(_ema_row_counts, conn, a, v)))
    checks.append(("emas.rejects", partial(_ema_rejects, conn, a)))
    return checks


# -- cross-asset ---------------------------------------------------------------------------
def _expected_keys() -> dict[str, tuple[str, ...]]:
    keys = {BAR_1D.table: KEY_1D} | {f.table: KEY_SNAPSHOT for f in SNAPSHOT_FAMILIES}
    return keys | {v.table: KEY_EMA for v in EMA_VARIANTS}


def _duplicate_keys(conn: psycopg.Connection, asset_ids: Sequence[int]) -> CheckResult:
    """The primary keys enforce uniqueness: a table whose catalog PK is the expected key reports
    0 without a scan; any other table (PK missing or different) is scanned for the assets."""
    expected = _expected_keys()
    per_table: dict[str, dict[str, Any]] = {}
    for row in store.primary_keys(conn, list(expected)):
        name, pk = row["table_name"], tuple(row["pk_columns"] or ())
        if not row["exists"]:
            per_table[name] = {"status": "missing table", "duplicates": None}
        elif pk == expected[name]:
            per_table[name] = {"status": "enforced by primary key", "duplicates": 0}
        else:
            n = store.duplicate_keys(conn, name, expected[name], asset_ids)
            per_table[name] = {
                "status": f"primary key {list(pk)} not {list(expected[name])}",
                "duplicates": n,
            }
    dups = sum(t["duplicates"] or 0 for t in per_table.values())
    unenforced = sorted(k for k, t in per_table.items() if not t["status"].startswith("enforced"))
    sev: Severity = "FAIL" if dups else "WARN" if unenforced else "PASS"
    msg = f"{dups} duplicate keys in {len(per_table)} bar/EMA tables"
    if unenforced:
        msg += "; not enforced by a primary key: " + ", ".join(unenforced)
    return CheckResult(0, "global.duplicate_keys", sev, float(dups), 0.0, msg, {"tables": per_table})


# -- running -------------------------------------------------------------------------------
def _run(conn: psycopg.Connection, asset_id: int, checks: Sequence[Check]) -> list[CheckResult]:
    """Run each check inside a savepoint: a check that errors becomes a FAIL, the rest still run."""
    out = []
    for name, fn in checks:
        start = time.perf_counter()
        try:
            with conn.transaction():
                out.append(fn())
        except psycopg.OperationalError:
            raise  # the connection is gone: nothing else can run
        except psycopg.DatabaseError as exc:
            out.append(
                CheckResult(
                    asset_id,
                    name,
                    "FAIL",
                    None,
                    None,
                    f"check could not run: {exc}".strip(),
                    {"error": type(exc).__name__},
                )
            )
        log.debug("asset %s %s: %.3fs", asset_id, name, time.perf_counter() - start)
    return out


def validate_asset(conn: psycopg.Connection, asset_id: int) -> list[CheckResult]:
    """Every per-asset check (1d, each snapshot family, each EMA table) for one asset."""
    start = time.perf_counter()
    checks = _daily_checks(conn, asset_id)
    for fam in SNAPSHOT_FAMILIES:
        checks += _snapshot_checks(conn, asset_id, fam)
    results = _run(conn, asset_id, checks + _ema_checks(conn, asset_id))
    worst = ValidationReport(results).worst
    log.info(
        "asset %s validation: %d checks, worst %s, %.2fs",
        asset_id,
        len(results),
        worst,
        time.perf_counter() - start,
    )
    return results


def validate_global(conn: psycopg.Connection, asset_ids: Sequence[int]) -> list[CheckResult]:
    """Cross-asset checks (``asset_id`` 0)."""
    return _run(conn, 0, [("global.duplicate_keys", partial(_duplicate_keys, conn, asset_ids))])


def run_validation(
    url: str,
    asset_ids: list[int],
    run_id: str,
    *,
    include_global: bool = True,
    persist: bool = True,
    per_asset: bool = True,
) -> ValidationReport:
    """All checks in ONE read-only repeatable-read transaction (one consistent snapshot), then
    the results upserted into ``validation_results`` in a separate transaction.

    ``per_asset=False`` runs only the cross-asset checks (the DAG's ``validate_global`` task);
    ``persist=False`` writes nothing."""
    report = ValidationReport()
    with db.connect(url) as conn:
        conn.read_only = True
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        with conn.transaction():
            store.utc_timestamps(conn)
            for asset_id in asset_ids if per_asset else []:
                report.results += validate_asset(conn, asset_id)
            if include_global:
                report.results += validate_global(conn, asset_ids)
    if persist:
        with db.transaction(url) as conn:
            store.put_results(conn, run_id, [r.to_row() for r in report.results])
    log.info("validation run %s: %s", run_id, report.counts())
    return report
