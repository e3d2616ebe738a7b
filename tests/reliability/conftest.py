"""A small synthetic warehouse for the fault tests: three assets, files loaded through the
CLI, refreshed through the CLI with a reduced (but every-family) series selection so that one
refresh takes a few seconds and a test can afford to kill, fault and rerun it many times."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.conftest import create_database, drop_database
from tests.support.faults import EXPORT_HEAD, run_cli, snapshot
from tests.support.warehouse import history

ASSETS = (9101, 9102, 9103)
DAYS = 150
START = datetime(2024, 1, 1, tzinfo=UTC)
FINAL_AS_OF = (START + timedelta(days=DAYS + 1)).date().isoformat()
MID_AS_OF = (START + timedelta(days=DAYS - 40)).date().isoformat()
TFS = ["1D", "7D", "30D", "1W_CAL_ISO", "1W_CAL_US", "1M_CAL", "1W_CAL_ANCHOR_US", "1W_CAL_ANCHOR_ISO", "1M_CAL_ANCHOR"]
PERIODS = [6, 10]
SERIES = ["--tfs", ",".join(TFS), "--periods", ",".join(map(str, PERIODS))]


def refresh_argv(ids: tuple[int, ...] = ASSETS, as_of: str = FINAL_AS_OF, *extra: str) -> list[str]:
    return ["refresh", "--all", "--ids", ",".join(map(str, ids)), "--as-of", as_of, *SERIES, *extra]


def dag_conf(ids: tuple[int, ...] = ASSETS, **params: Any) -> dict[str, Any]:
    """The DAG run conf of :func:`refresh_argv` (same assets and series; bars and EMAs)."""
    return {"ids": list(ids), "tfs": TFS, "periods": PERIODS, **params}


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def write_files(folder: Path, revise: float = 1.0) -> dict[int, Path]:
    """One export file per asset (named ``SYN<id>``); ``revise`` scales every 10th close."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for a in ASSETS:
        lines = [EXPORT_HEAD]
        for k, r in enumerate(history(a, DAYS, gap_prob=0.05, start=START)):
            close = r["close"] * (revise if k % 10 == 0 else 1.0)
            hi, lo = max(r["high"], close), min(r["low"], close)
            lines.append(";".join([_iso(r["timeopen"]), _iso(r["timeclose"]), _iso(r["timehigh"]),
                                   _iso(r["timelow"]), f"SYN{a}", *(repr(float(x)) for x in (r["open"], hi, lo, close,
                                   r["volume"], r["marketcap"])), _iso(r["timestamp"])]))
        path = folder / f"asset_{a}.csv"
        path.write_text("\n".join(lines) + "\n")
        out[a] = path
    return out


def load_files(url: str, files: dict[int, Path]) -> None:
    done = run_cli(url, "load", *map(str, files.values()))
    assert done.returncode == 0, done.stderr


@dataclass
class CleanBuild:
    files: dict[int, Path]
    tables: dict[str, list[tuple[Any, ...]]]  # after one clean refresh at FINAL_AS_OF
    seconds: float  # wall time of that CLI refresh


def _clean(server: str, files: dict[int, Path]) -> CleanBuild:
    import time

    url = create_database(server, "ta_lab2_clean")
    try:
        load_files(url, files)
        t0 = time.perf_counter()
        done = run_cli(url, *refresh_argv())
        seconds = time.perf_counter() - t0
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return CleanBuild(files, snapshot(url), seconds)
    finally:
        drop_database(server, url)


@pytest.fixture(scope="session")
def clean_build(pg_server_url: str, tmp_path_factory: pytest.TempPathFactory) -> CleanBuild:
    """The v1 files, loaded and refreshed once from nothing: the reference every faulted run
    must end equal to."""
    return _clean(pg_server_url, write_files(tmp_path_factory.mktemp("reliability_v1")))


@pytest.fixture(scope="session")
def revised_build(pg_server_url: str, tmp_path_factory: pytest.TempPathFactory) -> CleanBuild:
    """The same with every 10th close revised by +3 % (a load racing a refresh)."""
    return _clean(pg_server_url, write_files(tmp_path_factory.mktemp("reliability_v2"), revise=1.03))


@pytest.fixture
def loaded_db(pg_server_url: str, clean_build: CleanBuild) -> Iterator[str]:
    """A new database with the v1 files loaded (schema through the CLI), nothing refreshed."""
    url = create_database(pg_server_url, "ta_lab2_fault")
    try:
        load_files(url, clean_build.files)
        yield url
    finally:
        drop_database(pg_server_url, url)


def state_invariants(url: str) -> list[str]:
    """State never points past the data it describes: every snapshot state's last bar is the
    newest row of its (id, tf); the 1d watermark covers the 1d rows; no EMA state without rows."""
    bad = []
    with psycopg.connect(url) as conn:
        from ta_lab2.registry import EMA_VARIANTS, SNAPSHOT_FAMILIES

        for fam in SNAPSHOT_FAMILIES:
            rows = conn.execute(
                f"SELECT s.id, s.tf, s.last_time_close, max(t.time_close) FROM {fam.state_table} s "
                f"LEFT JOIN {fam.table} t ON t.id = s.id AND t.tf = s.tf GROUP BY 1, 2, 3 "
                "HAVING s.last_time_close IS DISTINCT FROM max(t.time_close)").fetchall()
            bad += [f"{fam.state_table}: {r}" for r in rows]
        rows = conn.execute('SELECT s.id, s.last_src_ts, max(b."timestamp") FROM cmc_price_bars_1d_state s '
                            'LEFT JOIN cmc_price_bars_1d b ON b.id = s.id GROUP BY 1, 2 '
                            'HAVING max(b."timestamp") > s.last_src_ts').fetchall()
        bad += [f"cmc_price_bars_1d_state: {r}" for r in rows]
        for v in EMA_VARIANTS:
            rows = conn.execute(
                f"SELECT s.id, s.tf, s.period, s.last_ts, max(t.ts) FROM {v.state_table} s "
                f"LEFT JOIN {v.table} t ON t.id = s.id AND t.tf = s.tf AND t.period = s.period "
                "GROUP BY 1, 2, 3, 4 HAVING max(t.ts) IS NULL OR s.last_ts > max(t.ts)").fetchall()
            bad += [f"{v.state_table}: {r}" for r in rows]
    return bad
