"""The Warehouse page's query on a real warehouse: coverage, gaps, rejects and the last run
per asset (DAG and CLI runs alike), checked against the loaded history computed in Python."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ta_lab2.ops.overview import asset_status, sort_statuses
from ta_lab2.refresh.context import RunOptions
from ta_lab2.refresh.runner import run_asset
from ta_lab2.store import audit, db
from ta_lab2.store.overview import overview_rows
from tests.support.warehouse import history, load_rows

START = datetime(2025, 1, 1, tzinfo=UTC)
DAYS = 60
AS_OF = START + timedelta(days=DAYS, hours=6)
A, B, NEVER = 401, 402, 403


def test_overview_rows_match_the_history_and_the_last_run(fresh_db_url: str) -> None:
    url = fresh_db_url
    hist = {A: history(5, DAYS, gap_prob=0.1, start=START), B: history(6, DAYS, gap_prob=0.0, start=START)}
    hist[B][20] = {**hist[B][20], "close": -1.0}  # one reject (and so one missing day)
    for asset, rows in hist.items():
        load_rows(url, asset, rows)
    load_rows(url, NEVER, history(7, 5, start=START))
    for asset in (A, B):
        run_asset(url, asset, ["bars.1d", "bars.multi_tf"], RunOptions(as_of=AS_OF, run_id="r1"))
    with db.transaction(url) as conn:  # a later DAG run in which B's v2 EMAs failed
        audit.put_run(conn, {"run_id": "r2", "dag_id": "d", "as_of": AS_OF, "status": "failed",
                             "params": {"staleness_hours": 1000}})
        audit.put_asset_result(conn, "r2", {"asset_id": B, "component": "emas.v2", "status": "failed",
                                            "error": "boom"})
    with db.connect(url) as conn:
        rows = {r["id"]: r for r in overview_rows(conn)}
    assert set(rows) == {A, B, NEVER}
    for asset, h in hist.items():
        days = sorted({r["timeopen"].date() for r in h if r["close"] > 0})
        r = rows[asset]
        assert r["last_day"] == days[-1]
        assert r["gaps"] == (days[-1] - days[0]).days + 1 - len(days) > 0
    assert (rows[A]["rejects_1d"], rows[B]["rejects_1d"]) == (0, 1)
    assert rows[A]["run_id"] == "r1" and rows[A]["components"] == {"bars.1d": "ok", "bars.multi_tf": "ok"}
    assert rows[A]["staleness_hours"] is None  # a CLI run: no refresh_runs row
    assert (rows[B]["run_id"], rows[B]["components"], rows[B]["errors"]) == \
        ("r2", {"emas.v2": "failed"}, {"emas.v2": "boom"})
    assert rows[B]["staleness_hours"] == 1000
    assert (rows[NEVER]["run_id"], rows[NEVER]["last_day"], rows[NEVER]["gaps"]) == (None, None, 0)
    now = AS_OF + timedelta(hours=1)
    assert [(a.id, a.status) for a in sort_statuses([asset_status(r, now) for r in rows.values()])] == \
        [(B, "failed"), (NEVER, "stale"), (A, "ok")]
