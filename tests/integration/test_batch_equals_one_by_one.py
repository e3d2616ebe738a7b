"""A batch of N assets == the same N assets run one by one, bitwise, for every bar, EMA,
reject and state table (bookkeeping columns aside), over a full build and two incremental
as-of steps; also when one asset of the batch fails (the batch is redone asset by asset under
savepoints and the failed asset leaves nothing behind). ``on_result`` streams every result once."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest

from ta_lab2.refresh.context import RunOptions
from ta_lab2.refresh.runner import plan_components, run_asset, run_components
from tests.support.warehouse import all_tables, assert_twins_equal, history, load_rows, new_asset_ids

ALL = plan_components(["bars", "emas"])
SMALL_EMA = {"tfs": ("7D", "14D", "1W_CAL_US", "1W_CAL_ISO", "1M_CAL", "1W_CAL_ANCHOR_US",
                     "1W_CAL_ANCHOR_ISO", "1M_CAL_ANCHOR"), "periods": (2, 3, 5)}
N_DAYS = 75
CUTS = (50, 51, N_DAYS + 1)  # a full build, one new day, the rest


def _poison(rows: list[dict]) -> list[dict]:
    out = [dict(r) for r in rows]
    for r in out[5:20]:  # 15 negative closes: above max(10, 1 %) -> DataCorruptionError
        r["close"] = -abs(r["close"])
    return out


@pytest.mark.parametrize(("seed", "poisoned"), [(11, False), (23, True)])
def test_a_batch_equals_its_assets_run_one_by_one(session_db_url: str, seed: int, poisoned: bool) -> None:
    n = 4
    batch_ids, single_ids = new_asset_ids(n), new_asset_ids(n)
    start = None
    for k in range(n):
        rows = history(seed * 100 + k, N_DAYS, gap_prob=0.05 * k)
        if poisoned and k == 1:
            rows = _poison(rows)
        start = rows[0]["timeopen"]
        load_rows(session_db_url, batch_ids[k], rows)
        load_rows(session_db_url, single_ids[k], rows)
    assert start is not None
    for c in CUTS:
        opts = RunOptions(as_of=start + timedelta(days=c), **SMALL_EMA)  # type: ignore[arg-type]
        streamed: list = []
        batch = run_components(session_db_url, batch_ids, ALL, opts, record=False, on_result=streamed.append)
        assert sorted((r.asset_id, r.component) for r in streamed) == sorted((r.asset_id, r.component) for r in batch)
        single = [r for a in single_ids for r in run_asset(session_db_url, a, ALL, opts, record=False)]
        assert [(r.component, r.status, r.rows_written) for r in batch] == \
            [(r.component, r.status, r.rows_written) for r in single]
        failed = {r.asset_id for r in batch if r.status == "failed"}
        assert failed == ({batch_ids[1]} if poisoned else set())
    for k, (a, b) in enumerate(zip(batch_ids, single_ids, strict=True)):
        assert_twins_equal(session_db_url, a, b, all_tables("all"), empty=poisoned and k == 1)
    if poisoned:
        with psycopg.connect(session_db_url) as conn:
            row = conn.execute("SELECT count(*) FROM cmc_price_bars_1d WHERE id = %s", (batch_ids[1],)).fetchone()
        assert row == (0,)
