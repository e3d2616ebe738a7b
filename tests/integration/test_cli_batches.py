"""The CLI's ``batch_size: auto`` batches by work (``queries/refresh_work``): a first build
counts every visible day, a daily run only the new days, a revision loaded late the whole
history again; one new day for many assets is one batch."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from ta_lab2.refresh.context import RunOptions
from ta_lab2.refresh.runner import cli_batches, plan_components
from ta_lab2.store import bars1d, db
from tests.support.warehouse import history, load_rows, new_asset_ids, refresh

BARS = plan_components(["bars"])


def _work(url: str, ids: list[int], as_of: datetime, full: bool = False) -> dict[int, int]:
    with db.connect(url) as conn:
        return bars1d.refresh_work(conn, ids, as_of, full)


def test_the_work_estimate_counts_new_days_and_whole_histories_where_they_are_rebuilt(session_db_url: str) -> None:
    url = session_db_url
    a, b = new_asset_ids()
    rows = history(77, 60, gap_prob=0.0)
    start = rows[0]["timeopen"]
    load_rows(url, a, rows)
    load_rows(url, b, rows[:40])
    cut = start + timedelta(days=40)
    assert _work(url, [a, b], cut) == {a: 40, b: 40}  # never built: every day visible at the cutoff
    for asset in (a, b):
        refresh(url, asset, BARS, cut)
    later = start + timedelta(days=43)
    assert _work(url, [a, b], later) == {a: 3, b: 0}  # built: the new days after the 1d watermark
    assert _work(url, [a], later, full=True) == {a: 43}  # a full rebuild recomputes everything
    revised = [dict(r) for r in rows[10:11]]
    revised[0]["close"] *= 1.01
    load_rows(url, a, revised, source_file="revision")  # an old day loaded again: bars and EMAs may rebuild
    assert _work(url, [a], later) == {a: 43}
    unknown = max(a, b) + 10_000
    assert _work(url, [unknown], later) == {unknown: 0}  # no source rows: nothing to do


def test_a_daily_run_of_many_assets_is_one_cli_batch_and_a_deep_first_build_is_several(
        session_db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    url = session_db_url
    ids = new_asset_ids(6)
    rows = history(78, 30, gap_prob=0.0)
    start = rows[0]["timeopen"]
    for asset in ids:
        load_rows(url, asset, rows)
    opts = RunOptions(as_of=start + timedelta(days=30))
    assert cli_batches(url, ids, opts, BARS) == [ids]
    monkeypatch.setattr("ta_lab2.refresh.runner.BATCH_WORK_DAYS", 60)  # two first builds of 30 days per batch
    assert cli_batches(url, ids, opts, BARS) == [ids[0:2], ids[2:4], ids[4:6]]
