"""Chart files: read through ``store.charts``, draw with ``ta_lab2.charts``, write a PNG.

The CLI ``chart`` command and ``make demo`` call these; the UI page draws the same figure as
inline SVG (``ta_lab2.ui``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from ta_lab2.charts import DEFAULT_BARS, DEFAULT_PERIODS, chart_figure, save_png
from ta_lab2.store import db

log = logging.getLogger(__name__)


def write_chart(url: str, asset_id: int, family: str, tf: str, periods: Sequence[int], out: Path,
                n_bars: int = DEFAULT_BARS) -> Path:
    """One chart file; raises ``ChartError`` (one line: what is wrong) for a bad request."""
    from ta_lab2.store.charts import load_chart

    with db.connect(url) as conn:
        data = load_chart(conn, asset_id, family, tf, tuple(periods), n_bars)
    for note in data.notes:
        log.warning("chart: %s", note)
    return save_png(chart_figure(data), out)


def write_asset_charts(url: str, out_dir: Path, family: str = "multi_tf", tf: str = "7D",
                       periods: Sequence[int] = DEFAULT_PERIODS) -> list[Path]:
    """One chart per active asset that has bars at ``family``/``tf`` (``make demo``)."""
    from ta_lab2.charts import ChartError
    from ta_lab2.store import audit

    with db.connect(url) as conn:
        ids = audit.resolve_ids(conn, None)
    paths = []
    for asset_id in ids:
        try:
            paths.append(write_chart(url, asset_id, family, tf, periods, out_dir / f"asset_{asset_id}_{family}_{tf}.png"))
        except ChartError as exc:
            log.warning("no chart for asset %s: %s", asset_id, exc)
    return paths
