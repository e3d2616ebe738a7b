"""Asset definitions (one per registry table, provider URI form) and the pure publish rule."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, date, datetime

import pytest

from ta_lab2 import airflow_assets
from ta_lab2.airflow_assets import ASSETS, EMA_ASSETS, PUBLISHED_TABLES
from ta_lab2.ops.publish import as_of_day, table_events
from ta_lab2.registry import BAR_FAMILIES, EMA_VARIANTS

AS_OF = datetime(2025, 4, 2, 6, tzinfo=UTC)


def test_one_asset_per_registry_table_in_the_postgres_provider_form() -> None:
    tables = [f.table for f in BAR_FAMILIES] + [v.table for v in EMA_VARIANTS]
    assert [t.table for t in PUBLISHED_TABLES] == tables
    for table in tables:
        assert ASSETS[table].uri == f"postgres://ta-lab2-warehouse:5432/ta_lab2/public/{table}"
        assert ASSETS[table].name == f"ta_lab2.{table}"
    assert [a.uri.rsplit("/", 1)[1] for a in EMA_ASSETS] == [v.table for v in EMA_VARIANTS]


def test_the_authority_comes_from_the_env_and_a_bad_one_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(airflow_assets.AUTHORITY_ENV, "wh.example.org:6432/prod")
    assert airflow_assets.asset_uri("t") == "postgres://wh.example.org:6432/prod/public/t"
    monkeypatch.setenv(airflow_assets.AUTHORITY_ENV, "no-database")
    with pytest.raises(ValueError, match="TA_LAB2_ASSET_AUTHORITY='no-database': expected host:port/database"):
        airflow_assets.asset_uri("t")


def test_assets_module_imports_no_heavy_library() -> None:
    code = ("import sys; import ta_lab2.airflow_assets, ta_lab2.ops.publish; "
            "print(sorted(m for m in ('pandas', 'numpy', 'psycopg', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(("as_of", "day"), [
    (datetime(2025, 4, 2, 6, tzinfo=UTC), date(2025, 4, 1)),
    (datetime(2025, 4, 2, 0, tzinfo=UTC), date(2025, 4, 1)),
    (datetime(2025, 4, 1, 23, 59, 59, 999000, tzinfo=UTC), date(2025, 3, 31)),
    (datetime(2025, 4, 2, 0, 0, 0, 1000, tzinfo=UTC), date(2025, 4, 1)),
])
def test_as_of_day_is_the_last_candle_closed_before_the_cutoff(as_of: datetime, day: date) -> None:
    assert as_of_day(as_of) == day


def _r(asset: int, comp: str, status: str, rows: int = 0) -> dict:
    return {"asset_id": asset, "component": comp, "status": status, "rows_written": rows}


def test_a_table_is_announced_when_one_asset_refreshed_it_with_the_others_listed() -> None:
    results = [_r(1, "bars.1d", "ok", 10), _r(2, "bars.1d", "ok", 5), _r(3, "bars.1d", "failed"),
               _r(1, "emas.cal", "ok", 7), _r(2, "emas.cal", "skipped"), _r(3, "emas.cal", "not_run"),
               _r(1, "emas.v2", "failed"), _r(2, "emas.v2", "skipped"), _r(3, "emas.v2", "not_run")]
    events = table_events(results, ["bars.1d", "emas.cal", "emas.v2"], run_id="r1", dag_id="d", as_of=AS_OF,
                          validation_failed=[2], validation_fail=1)
    by_table = {t.table: e for t, e in events}
    # emas.v2: no ok asset -> no event; emas.cal writes two tables -> two events
    assert list(by_table) == ["cmc_price_bars_1d", "cmc_ema_multi_tf_cal_us", "cmc_ema_multi_tf_cal_iso"]
    bars = by_table["cmc_price_bars_1d"]
    assert (bars["assets_ok"], bars["assets_failed"], bars["assets_skipped"]) == ([1], [2, 3], [])  # 2 failed validation
    assert bars["rows_written"] == 10 and bars["validation_fail"] == 1
    assert bars["as_of"] == "2025-04-02T06:00:00+00:00" and bars["as_of_day"] == "2025-04-01"
    cal = by_table["cmc_ema_multi_tf_cal_iso"]
    assert (cal["assets_ok"], cal["assets_failed"], cal["assets_skipped"]) == ([1], [3], [2])
    assert (cal["component"], cal["run_id"], cal["dag_id"]) == ("emas.cal", "r1", "d")


def test_unselected_families_are_not_announced() -> None:
    results = [_r(1, "bars.1d", "ok", 1), _r(1, "bars.multi_tf", "ok", 1)]
    assert [t.table for t, _ in table_events(results, ["bars.1d"], run_id="r", dag_id="d", as_of=AS_OF)] \
        == ["cmc_price_bars_1d"]
