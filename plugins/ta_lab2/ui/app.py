"""The Warehouse page as a FastAPI app, behind Airflow's authentication.

Mounted by ``plugins/ta_lab2_warehouse_plugin.py`` under ``/ta_lab2/warehouse``:

* ``GET /``: every active asset with its status, last 1d day, age against the staleness
  threshold, last run's status per component, rejects and gaps; ``?sort=<key>&desc=1``
  (keys: ``ta_lab2.ops.overview.SORT_KEYS``; default ``attention``: failed, then stale);
* ``GET /chart/{id}?family=multi_tf&tf=7D&periods=10,50&bars=120``: the chart of
  ``ta_lab2.charts`` (the CLI's), inline SVG.

Every route depends on ``requires_authenticated()``: a request needs the UI's session cookie
or an ``Authorization: Bearer`` JWT (``POST /auth/token``), like ``/api/v2``. Handlers are
plain functions (FastAPI runs them in its thread pool: psycopg and matplotlib block). The
warehouse is the ``ta_lab2_db`` connection (``store.db.resolve_url(airflow=True)``).
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import HTMLResponse

from ta_lab2.charts import DEFAULT_BARS, ChartError
from ta_lab2.store import db

URL_PREFIX = "/ta_lab2/warehouse"
DEFAULT_TF = "7D"


def create_app() -> FastAPI:
    from airflow.api_fastapi.core_api.security import requires_authenticated

    app = FastAPI(title="ta_lab2 warehouse", dependencies=[Depends(requires_authenticated())],
                  docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/", response_class=HTMLResponse)
    def overview(sort: str = "attention", desc: bool = False) -> str:
        from ta_lab2.ops.overview import SORT_KEYS, asset_status, sort_statuses
        from ta_lab2.store.overview import overview_rows
        from ta_lab2.ui.pages import overview_html

        if sort not in SORT_KEYS:
            raise HTTPException(400, f"sort: {sort!r} is not one of {', '.join(SORT_KEYS)}")
        now = datetime.now(UTC)
        with db.connect(db.resolve_url(airflow=True)) as conn:
            rows = overview_rows(conn)
        return overview_html(sort_statuses([asset_status(r, now) for r in rows], sort, desc),
                             sort=sort, desc=desc, now=now)

    @app.get("/chart/{asset_id}", response_class=HTMLResponse)
    def chart(asset_id: int, family: str = "multi_tf", tf: str | None = None, periods: str = "10,50",
              bars: int = DEFAULT_BARS) -> HTMLResponse:
        return HTMLResponse(*_chart_page(asset_id, family, tf, periods, bars))

    return app


def _chart_page(asset_id: int, family: str, tf: str | None, periods: str, bars: int) -> tuple[str, int]:
    """(html, status): 200 with the chart; 400/404 with the form and a one-line message."""
    from ta_lab2.charts import chart_figure, to_svg
    from ta_lab2.cli import UsageError, parse_periods
    from ta_lab2.registry import BAR_FAMILY_NAMES
    from ta_lab2.store.charts import asset_symbol, load_chart, timeframes
    from ta_lab2.ui.pages import chart_html

    with db.connect(db.resolve_url(airflow=True)) as conn:
        symbol = asset_symbol(conn, asset_id)
        if symbol is None:
            return chart_html(asset_id, "?", family, tf or "", periods, bars, [], None,
                              f"asset {asset_id} is not in dim_assets"), 404
        if family not in BAR_FAMILY_NAMES:
            return chart_html(asset_id, symbol, family, tf or "", periods, bars, [], None,
                              f"family {family!r} is not one of {', '.join(BAR_FAMILY_NAMES)}"), 400
        tfs = timeframes(conn, asset_id, family)
        note = None
        if tf not in tfs:
            chosen = DEFAULT_TF if DEFAULT_TF in tfs else (tfs[0] if tfs else "")
            note = f"no {family} bars at {tf}: showing {chosen}" if tf else None
            tf = chosen
        try:
            wanted = parse_periods(periods)
            data = load_chart(conn, asset_id, family, tf, wanted or (10, 50), bars)
        except (ChartError, UsageError) as exc:
            return chart_html(asset_id, symbol, family, tf, periods, bars, tfs, None, str(exc)), 400
    svg = to_svg(chart_figure(data))
    notes = "; ".join(([note] if note else []) + data.notes) or None
    return chart_html(asset_id, symbol, family, tf, periods, bars, tfs, svg, notes), 200
