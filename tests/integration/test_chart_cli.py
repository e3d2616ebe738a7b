"""``python -m ta_lab2 chart``: a PNG of candles with two EMA lines from a real warehouse,
the figure checked against the tables, and one-line refusals (exit 2) for bad requests."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ta_lab2.store import db
from tests.conftest import warehouse_db
from tests.support.warehouse import history, load_rows, refresh

ROOT = Path(__file__).resolve().parents[2]
ASSET = 301
START = datetime(2024, 1, 1, tzinfo=UTC)
DAYS = 400
AS_OF = START + timedelta(days=DAYS, hours=6)


@pytest.fixture(scope="module")
def chart_db(pg_server_url: str) -> Iterator[str]:
    """One asset, 400 days with ~8 % gaps, its 1d and multi_tf bars and multi_tf EMAs refreshed."""
    with warehouse_db(pg_server_url, "ta_lab2_chart") as url:
        load_rows(url, ASSET, history(11, DAYS, start=START))
        refresh(url, ASSET, ["bars.1d", "bars.multi_tf", "emas.multi_tf"], AS_OF, periods=(10, 50))
        yield url


def run_cli(url: str, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TA_LAB2_DB_URL": url, "PYTHONPATH": f"{ROOT / 'plugins'}{os.pathsep}{ROOT}",
           "MPLCONFIGDIR": os.environ.get("MPLCONFIGDIR", "/tmp/ta_lab2_mpl")}
    return subprocess.run([sys.executable, "-m", "ta_lab2", *argv], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120, check=False)


def test_chart_writes_a_png_and_prints_its_path(chart_db: str, tmp_path: Path) -> None:
    out = tmp_path / "a301.png"
    done = run_cli(chart_db, "chart", "--id", str(ASSET), "--family", "multi_tf", "--tf", "7D",
                   "--periods", "10,50", "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == str(out)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000  # an 1100x550 chart, not an empty canvas


def test_the_figure_shows_the_tables_candles_two_emas_and_the_missing_days(chart_db: str) -> None:
    from ta_lab2.charts import chart_figure
    from ta_lab2.store.charts import load_chart

    with db.connect(chart_db) as conn:
        data = load_chart(conn, ASSET, "multi_tf", "7D", (10, 50), 40)
        n_bars, = conn.execute("SELECT count(DISTINCT bar_seq) FROM cmc_price_bars_multi_tf "
                               "WHERE id = %s AND tf = '7D'", (ASSET,)).fetchone()
        first = data.bars["time_open"].iloc[0].to_pydatetime()
        n_ema = dict(conn.execute("SELECT period, count(*) FROM cmc_ema_multi_tf WHERE id = %s AND tf = '7D' "
                                  "AND NOT roll AND ts >= %s GROUP BY period", (ASSET, first)).fetchall())
        missing, = conn.execute(
            "SELECT count(*) FROM generate_series(%s::date, %s::date, interval '1 day') g WHERE NOT EXISTS "
            "(SELECT 1 FROM cmc_price_bars_1d b WHERE b.id = %s AND (b.time_open AT TIME ZONE 'UTC')::date = g)",
            (first.date(), data.bars["timestamp"].iloc[-1].date(), ASSET)).fetchone()
    assert n_bars > 40 and len(data.bars) == 40
    ax = chart_figure(data).axes[0]
    assert sum(1 for p in ax.patches if p.get_gid() == "candles") == 40
    lines = {ln.get_gid(): len(ln.get_xdata()) for ln in ax.get_lines()}
    assert lines == {"ema-10": n_ema[10], "ema-50": n_ema[50]} and min(lines.values()) > 0
    assert missing > 0 and f"missing days ({missing})" in ax.get_legend_handles_labels()[1]


BAD = [
    (["chart", "--id", str(ASSET), "--family", "weekly"], "invalid choice: 'weekly'"),
    (["chart", "--id", str(ASSET), "--tf", "9D"], "has no multi_tf bars at '9D' (it has: "),
    (["chart", "--id", "999999"], "asset 999999 is not in dim_assets"),
    (["chart", "--id", str(ASSET), "--periods", "10,zero"], "--periods"),
    (["chart", "--id", str(ASSET), "--periods", ""], "give at least one period"),
    (["chart", "--id", str(ASSET), "--out", "x.jpg"], "must end in .png or .svg"),
    (["chart", "--id", "0"], "'0' is not a positive integer"),
]


def test_a_bad_chart_request_exits_2_with_one_line(chart_db: str) -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        done = list(pool.map(lambda argv: run_cli(chart_db, *argv), [b[0] for b in BAD]))
    for (argv, fragment), d in zip(BAD, done, strict=True):
        lines = d.stderr.strip().splitlines()
        assert d.returncode == 2 and len(lines) == 1, (argv, d.returncode, d.stderr[-2000:])
        assert lines[0].startswith("error: ") and fragment in lines[0], (argv, lines[0])
        assert d.stdout == "", d.stdout


def test_demo_charts_write_one_png_per_active_asset(chart_db: str, tmp_path: Path) -> None:
    from ta_lab2.ops.charting import write_asset_charts

    paths = write_asset_charts(chart_db, tmp_path)
    assert paths == [tmp_path / f"asset_{ASSET}_multi_tf_7D.png"]
    assert paths[0].read_bytes()[:4] == b"\x89PNG"
