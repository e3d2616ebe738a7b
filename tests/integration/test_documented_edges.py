"""Behaviour the operator docs state, pinned (docs/operations/DAILY_REFRESH.md sections 1 and 10,
STATE_MANAGEMENT.md section 3, decisions.md D13).

- A dry run replays only the upstream steps the run selected: an EMA-only dry run plans against
  the bars as they are, as the real EMA-only run would; with every upstream step selected, the
  plan sees the bars the same run would build first.
- ``validate: false`` (or a dry run) makes ``asset.validate`` a no-op that succeeds with
  ``not_selected``; it does not even connect to the warehouse.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from ta_lab2 import orchestration
from ta_lab2.refresh.context import RunOptions
from ta_lab2.refresh.runner import plan_components, run_step, upstream_of
from ta_lab2.store.db import airflow_conn_uri as db_uri
from tests.integration.test_failure_policy import DEAD, _context
from tests.support.warehouse import history, load_rows, new_asset_ids, refresh

START = datetime(2024, 1, 1, tzinfo=UTC)


def test_a_dry_run_replays_only_the_selected_upstream_steps(session_db_url: str) -> None:
    (a,) = new_asset_ids(1)
    load_rows(session_db_url, a, history(a, 40, gap_prob=0.0, start=START))
    refresh(session_db_url, a, plan_components(["bars", "emas"]), START + timedelta(days=30), periods=(3,))
    with psycopg.connect(session_db_url) as conn:  # ten source days the bars have not consumed
        before = conn.execute("SELECT count(*) FROM cmc_ema_multi_tf WHERE id = %s", (a,)).fetchone()
    opts = RunOptions(as_of=START + timedelta(days=60), dry_run=True, periods=(3,))
    emas_only = run_step(session_db_url, "emas.multi_tf", a, opts, record=False, selected=["emas.multi_tf"])
    with_bars = run_step(session_db_url, "emas.multi_tf", a, opts, record=False,
                         selected=[*upstream_of("emas.multi_tf"), "emas.multi_tf"])
    assert emas_only.status == with_bars.status == "dry_run"
    assert emas_only.rows_written == 0 < with_bars.rows_written, (emas_only, with_bars)
    with psycopg.connect(session_db_url) as conn:  # and nothing persisted
        after = conn.execute("SELECT count(*) FROM cmc_ema_multi_tf WHERE id = %s", (a,)).fetchone()
    assert before == after


@pytest.mark.parametrize("params", [{"validate": False}, {"dry_run": True}])
def test_validate_off_or_dry_run_succeeds_as_not_selected(params: dict[str, bool],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_TA_LAB2_DB", db_uri(DEAD))  # unreachable: it must not connect
    assert orchestration.validate_assets([1], _context(**params)) == {"status": "not_selected"}
