"""End to end on a REAL ``airflow standalone`` (one instance for this module): what users see
after a refresh.

The scheduler runs as in production (``use_job_schedule``: asset-triggered runs need it), so
unpausing the daily DAG starts its scheduled run for the latest 06:00 UTC tick (catchup off);
that run, over every active asset: 1 and 52 (clean) and 825 (poisoned: its ``bars.1d`` fails),
is the refresh this module looks at. The example consumer DAG is unpaused first.

1. Assets: ``GET /api/v2/assets/events`` lists exactly one event per published table, from the
   ``publish`` task, with the run's metadata (as_of, as_of_day, rows written, assets ok
   [1, 52] / failed [825] / skipped, run id); the run itself still ends ``failed``.
2. The consumer ``ta_lab2_ema_consumer`` is triggered exactly once by those events, succeeds,
   and saw every EMA table's event.
3. The Warehouse page (plugin) answers 401 without a token; with one it lists every active
   asset, 825 first (failed), and its rows match the warehouse (last 1d day, gaps, rejects,
   computed here independently); the chart page draws candles and both EMA lines.
4. A screenshot of the page inside the Airflow UI (headless Debian Chromium), checked to be a
   real PNG. ``TA_LAB2_UPDATE_DOCS_IMG=1`` also copies it to docs/img/warehouse_page.png.

About 2-3 minutes on 2 cores (40 s of it starting Airflow).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest

from ta_lab2.airflow_assets import ASSETS, EMA_ASSETS, PUBLISHED_TABLES
from ta_lab2.ops.publish import as_of_day
from ta_lab2.store import db, schema
from ta_lab2.store.db import airflow_conn_uri
from tests.conftest import create_database, drop_database
from tests.support.standalone import StandaloneAirflow, sqlalchemy_url
from tests.support.warehouse import DAY, history, load_rows

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CONSUMER = "ta_lab2_ema_consumer"
CLEAN, POISONED = (1, 52), 825
N_DAYS = 90
PAGE = "/ta_lab2/warehouse/"


def _today() -> datetime:
    return datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


@pytest.fixture(scope="module")
def databases(pg_server_url: str) -> Iterator[dict[str, str]]:
    urls: dict[str, str] = {}
    try:
        for name in ("warehouse", "metadata"):
            urls[name] = create_database(pg_server_url, f"ta_lab2_vis_{name[:4]}")
        with db.connect(urls["warehouse"]) as conn:
            schema.apply_schema(conn)
        start = _today() - N_DAYS * DAY
        for seed, asset in enumerate((*CLEAN, POISONED), start=21):
            rows = history(seed, N_DAYS, gap_prob=0.05, start=start)
            rows[-8:] = history(seed, N_DAYS, gap_prob=0.0, start=start)[-8:]  # fresh: no gap at the end
            if asset == POISONED:  # ~22 bad closes > max(10, 1 %): bars.1d fails (corruption)
                rows = [{**r, "close": -r["close"]} if k % 4 == 0 else r for k, r in enumerate(rows)]
            if asset == CLEAN[1]:  # one bad close: a 1d reject (and a gap), below the corruption threshold
                rows[30] = {**rows[30], "close": -rows[30]["close"]}
            load_rows(urls["warehouse"], asset, rows)
        yield urls
    finally:
        for url in urls.values():
            drop_database(pg_server_url, url)


@pytest.fixture(scope="module")
def airflow(databases: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandaloneAirflow]:
    env = {"AIRFLOW_CONN_TA_LAB2_DB": airflow_conn_uri(databases["warehouse"]), "TA_LAB2_DB_URL": "",
           "TELEGRAM_BOT_TOKEN": "", "TELEGRAM_CHAT_ID": "", "MPLCONFIGDIR": str(tmp_path_factory.mktemp("mpl"))}
    af = StandaloneAirflow(tmp_path_factory.mktemp("airflow_home"), metadata_db_url=sqlalchemy_url(databases["metadata"]),
                           env=env, parallelism=4, use_job_schedule=True)
    try:
        af.start()
        af.wait_dag()
        af.wait_dag(dag_id=CONSUMER)
        af.create_pool("ta_lab2_db", 4, "caps concurrent warehouse connections")
        af.unpause(dag_id=CONSUMER)
        yield af
    except BaseException:
        print(af.output_tail())
        raise
    finally:
        af.stop()


@pytest.fixture(scope="module")
def refresh_run(airflow: StandaloneAirflow) -> dict[str, Any]:
    """The scheduled run that unpausing the daily DAG starts (ids "all": 1, 52, 825)."""
    airflow.unpause()
    deadline = time.monotonic() + 120
    while not (runs := airflow.dag_runs()) and time.monotonic() < deadline:
        time.sleep(2)
    assert runs and runs[0]["run_type"] == "scheduled", runs
    run = runs[0]
    state = airflow.wait_run(run["dag_run_id"], 420)
    # no second scheduled run (one would follow if the next 06:00 tick passed meanwhile)
    airflow.patch(f"/api/v2/dags/{airflow.dag_id}", {"is_paused": True}, update_mask="is_paused")
    if state != "failed":
        print(airflow.diagnostics(run["dag_run_id"]))
    assert state == "failed"  # 825 failed: summary fails the run, publish still announces the rest
    return airflow.dag_run(run["dag_run_id"])


def test_one_asset_event_per_published_table_with_the_run_metadata(airflow: StandaloneAirflow,
                                                                   refresh_run: dict[str, Any]) -> None:
    run_id = refresh_run["dag_run_id"]
    doc = airflow.get("/api/v2/assets/events", source_run_id=run_id, limit=100)
    events = {e["uri"]: e for e in doc["asset_events"]}
    assert doc["total_entries"] == len(events) == len(PUBLISHED_TABLES)
    assert set(events) == {a.uri for a in ASSETS.values()}
    as_of = datetime.fromisoformat((refresh_run.get("logical_date") or refresh_run["run_after"]).replace("Z", "+00:00"))
    for t in PUBLISHED_TABLES:
        e = events[ASSETS[t.table].uri]
        assert (e["source_dag_id"], e["source_task_id"], e["source_map_index"]) == \
            ("ta_lab2_daily_refresh", "publish", -1)
        x = e["extra"]
        assert (x["run_id"], x["table"], x["component"]) == (run_id, t.table, t.component)
        assert (x["assets_ok"], x["assets_failed"], x["assets_skipped"]) == (list(CLEAN), [POISONED], [])
        assert datetime.fromisoformat(x["as_of"]) == as_of and x["as_of_day"] == as_of_day(as_of).isoformat()
        assert isinstance(x["rows_written"], int)
    assert events[ASSETS["cmc_ema_multi_tf"].uri]["extra"]["rows_written"] > 0


def test_the_consumer_dag_runs_once_on_the_ema_events(airflow: StandaloneAirflow, refresh_run: dict[str, Any]) -> None:
    deadline = time.monotonic() + 120
    runs: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        runs = airflow.dag_runs(dag_id=CONSUMER)
        if runs and all(r["state"] in ("success", "failed") for r in runs):
            break
        time.sleep(2)
    assert [(r["run_type"], r["state"]) for r in runs] == [("asset_triggered", "success")], runs
    assert len(airflow.dag_runs()) == 1  # one refresh, one consumer run
    consumer_run = runs[0]["dag_run_id"]
    upstream = airflow.get(f"/api/v2/dags/{CONSUMER}/dagRuns/{consumer_run}/upstreamAssetEvents")["asset_events"]
    assert sorted(e["uri"] for e in upstream) == sorted(a.uri for a in EMA_ASSETS)
    assert {e["source_run_id"] for e in upstream} == {refresh_run["dag_run_id"]}
    seen = airflow.xcom(consumer_run, "consume", dag_id=CONSUMER)
    assert set(seen) == {a.uri.rsplit("/", 1)[1] for a in EMA_ASSETS}
    assert all(v["assets_ok"] == list(CLEAN) for v in seen.values())


class _Rows(HTMLParser):
    """The ``<tr data-asset-id=...>`` rows of the Warehouse page, in page order."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "tr" and "data-asset-id" in a:
            self.rows.append(a)


def _expected(url: str) -> dict[int, dict[str, Any]]:
    """Per asset, computed here: last 1d day, missing days between first and last, rejects."""
    with db.connect(url) as conn:
        rows = conn.execute("""
            SELECT a.id, max(b.time_open AT TIME ZONE 'UTC')::date,
                   (SELECT count(*) FROM generate_series(min(b.time_open), max(b.time_open), interval '1 day') g
                     WHERE NOT EXISTS (SELECT 1 FROM cmc_price_bars_1d x WHERE x.id = a.id AND x.time_open = g)),
                   (SELECT count(*) FROM cmc_price_bars_1d_rejects r WHERE r.id = a.id)
                   + (SELECT count(*) FROM ema_rejects e WHERE e.id = a.id)
            FROM dim_assets a LEFT JOIN cmc_price_bars_1d b ON b.id = a.id
            WHERE a.is_active AND EXISTS (SELECT 1 FROM cmc_price_histories7 h WHERE h.id = a.id)
            GROUP BY a.id""").fetchall()
    return {r[0]: {"last_day": str(r[1] or ""), "gaps": int(r[2] or 0), "rejects": int(r[3])} for r in rows}


def test_the_warehouse_page_lists_every_asset_failed_first_and_matches_the_warehouse(
        airflow: StandaloneAirflow, refresh_run: dict[str, Any], databases: dict[str, str], tmp_path: Path) -> None:
    anonymous = httpx.get(airflow.base_url + PAGE, timeout=30)
    assert anonymous.status_code == 401, anonymous.text[:300]
    page = httpx.get(airflow.base_url + PAGE, headers={"Authorization": f"Bearer {airflow.token}"}, timeout=60)
    assert page.status_code == 200, page.text[:2000]
    parser = _Rows()
    parser.feed(page.text)
    rows = parser.rows
    want = _expected(databases["warehouse"])
    assert sorted(int(r["data-asset-id"]) for r in rows) == sorted(want) == sorted([*CLEAN, POISONED])
    assert (int(rows[0]["data-asset-id"]), rows[0]["data-status"]) == (POISONED, "failed")
    assert {int(r["data-asset-id"]): r["data-status"] for r in rows[1:]} == {a: "ok" for a in CLEAN}
    for r in rows:
        w = want[int(r["data-asset-id"])]
        assert (r["data-last-day"], int(r["data-gaps"]), int(r["data-rejects"])) == \
            (w["last_day"], w["gaps"], w["rejects"]), r
    assert want[CLEAN[1]]["rejects"] > 0 and want[CLEAN[1]]["gaps"] > 0  # not vacuous
    by_id = httpx.get(airflow.base_url + PAGE, params={"sort": "id"},
                      headers={"Authorization": f"Bearer {airflow.token}"}, timeout=60)
    parser = _Rows()
    parser.feed(by_id.text)
    assert [int(r["data-asset-id"]) for r in parser.rows] == sorted([*CLEAN, POISONED])

    chart = httpx.get(f"{airflow.base_url}{PAGE}chart/{CLEAN[0]}", params={"family": "1d", "tf": "1D"},
                      headers={"Authorization": f"Bearer {airflow.token}"}, timeout=60)
    assert chart.status_code == 200, chart.text[:2000]
    assert "<svg" in chart.text and 'id="ema-10"' in chart.text and 'id="ema-50"' in chart.text

    from ta_lab2.ui.capture import screenshot

    shot = screenshot(f"{airflow.base_url}/plugin/warehouse", tmp_path / "warehouse_page.png", token=airflow.token,
                      wait_for_text="ta_lab2 warehouse", frame_url_part="ta_lab2/warehouse", width=1440, height=560)
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 30_000, len(data)
    if os.environ.get("TA_LAB2_UPDATE_DOCS_IMG") == "1":
        shutil.copy(shot, ROOT / "docs" / "img" / "warehouse_page.png")
    print(json.dumps({"screenshot": str(shot), "bytes": len(data)}))
