"""``make bench``: the refresh engine against the physical floor (``engine``), the report
(``report``) and their helpers (``common``). Outside the refresh hot path: nothing in the
library imports this package."""

from __future__ import annotations

from pathlib import Path


def run_bench(*, assets: int, days: int, airflow: bool, out: Path) -> int:
    """See :func:`ta_lab2.bench.engine.run_bench` (imported on call: ``python -m
    ta_lab2.bench.engine`` must not find the module already imported by its package)."""
    from ta_lab2.bench.engine import run_bench as run

    return run(assets=assets, days=days, airflow=airflow, out=out)
