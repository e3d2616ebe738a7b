"""The Warehouse page's verdicts (pure): status per asset, staleness, sort order, HTML rows."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser

import pytest

from ta_lab2.ops.overview import COMPONENTS, asset_status, sort_statuses
from ta_lab2.ui.pages import overview_html

NOW = datetime(2025, 4, 2, 12, tzinfo=UTC)


def _row(asset: int, age_h: float | None, comps: dict[str, str] | None = None, threshold: float | None = None,
         **kw: object) -> dict:
    src = None if age_h is None else NOW - timedelta(hours=age_h)
    return {"id": asset, "symbol": f"S{asset}", "name": f"asset {asset}", "last_src_ts": src,
            "last_day": None if src is None else src.date(), "gaps": 0, "rejects_1d": 0, "rejects_ema": 0,
            "run_id": "r" if comps else None, "components": comps, "errors": None, "staleness_hours": threshold, **kw}


OK = dict.fromkeys(COMPONENTS, "ok")


@pytest.mark.parametrize(("row", "status"), [
    (_row(1, 10, OK), "ok"),
    (_row(1, 10, {**OK, "emas.cal": "failed"}), "failed"),
    (_row(1, 10, {**OK, "emas.v2": "not_run"}), "failed"),
    (_row(1, 100, {**OK, "bars.1d": "failed"}), "failed"),  # failed wins over stale
    (_row(1, 49, OK), "stale"),  # the default threshold: 48 h
    (_row(1, 49, OK, threshold=72.0), "ok"),  # the threshold its last run used
    (_row(1, None, None), "stale"),  # no bars at all
    (_row(1, 10, {**OK, "freshness": "skipped"}), "skipped"),
    (_row(1, 10, None), "no run"),
])
def test_status(row: dict, status: str) -> None:
    assert asset_status(row, NOW).status == status


def test_default_order_is_failed_then_stale_oldest_first_then_the_rest() -> None:
    rows = [_row(1, 10, OK), _row(2, 60, OK), _row(3, 10, {**OK, "bars.1d": "failed"}), _row(4, 500, OK),
            _row(5, 10, None), _row(6, 10, {**OK, "emas.cal": "skipped"})]
    items = [asset_status(r, NOW) for r in rows]
    assert [a.id for a in sort_statuses(items)] == [3, 4, 2, 6, 5, 1]
    assert [a.id for a in sort_statuses(items, "age", desc=True)] == [4, 2, 6, 5, 3, 1]
    with pytest.raises(ValueError, match="sort: 'colour' is not one of attention, id"):
        sort_statuses(items, "colour")


def test_html_rows_carry_the_values_in_page_order() -> None:
    rows = [_row(7, 10, OK, gaps=3, rejects_1d=2, rejects_ema=1), _row(8, 10, {**OK, "emas.v2": "failed"},
                                                                     errors={"emas.v2": "boom <b>"})]
    html = overview_html(sort_statuses([asset_status(r, NOW) for r in rows]), sort="attention", desc=False, now=NOW)

    class P(HTMLParser):
        rows: list[dict] = []

        def handle_starttag(self, tag: str, attrs: list) -> None:
            if tag == "tr" and dict(attrs).get("data-asset-id"):
                self.rows.append(dict(attrs))

    p = P()
    p.feed(html)
    assert [(r["data-asset-id"], r["data-status"]) for r in p.rows] == [("8", "failed"), ("7", "ok")]
    assert (p.rows[1]["data-gaps"], p.rows[1]["data-rejects"], p.rows[1]["data-last-day"]) == \
        ("3", "3", str(date(2025, 4, 2)))
    assert "boom &lt;b&gt;" in html and "boom <b>" not in html  # errors are escaped
