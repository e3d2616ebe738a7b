"""Advisory locks are taken in ONE global order (namespace rank, asset id), so no two
refresh/load transactions can deadlock (docs/operations/STATE_MANAGEMENT.md §4)."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import psycopg

from ta_lab2.refresh.context import RunOptions
from ta_lab2.refresh.runner import locks_for, plan_components, run_batch, upstream_of
from ta_lab2.store import io
from tests.support.warehouse import history, load_rows, new_asset_ids, refresh


def test_locks_come_in_namespace_rank_then_asset_order_and_exclusive_wins(session_db_url: str) -> None:
    wanted = [("emas.v2", 9, False), ("bars.1d", 9, True), ("bars.1d", 3, True), ("source", 9, True),
              ("bars.multi_tf", 3, False), ("bars.1d", 9, False)]
    with psycopg.connect(session_db_url) as conn:
        taken = io.lock_in_order(conn, wanted)
        held = conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = "
                            "pg_backend_pid() AND granted").fetchone()
    assert taken == [("source", 9, True), ("bars.1d", 3, True), ("bars.1d", 9, False),
                     ("bars.multi_tf", 3, False), ("emas.v2", 9, False)]
    assert held == (5,)


def _holds(url: str, pid: int, key: int) -> bool:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = %s "
                           "AND classid = %s::bigint::oid AND objid = %s::bigint::oid AND objsubid = 1",
                           (pid, (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF)).fetchone()
    return bool(row and row[0])


def test_a_real_run_waiting_behind_a_dry_run_holds_no_lock_the_dry_run_still_needs(session_db_url: str) -> None:
    """The old deadlock: a dry run of emas.v2 held ("bars.1d", id) exclusively and then wanted
    ("emas.v2", id); a real emas.v2 step held ("emas.v2", id) and waited for ("bars.1d", id).
    Now the real step waits for ("bars.1d", id) FIRST, holding nothing of the asset, and both end."""
    (asset,) = new_asset_ids(1)
    rows = history(asset, 60)
    load_rows(session_db_url, asset, rows)
    as_of = rows[-1]["timeopen"] + timedelta(days=1)
    refresh(session_db_url, asset, plan_components(["bars"]), as_of)
    dry = psycopg.connect(session_db_url)
    chain = [*upstream_of("emas.v2"), "emas.v2"]  # what a dry run of emas.v2 replays
    io.lock_in_order(dry, [(ns, asset, shared) for c in chain for ns, shared in locks_for(c)])
    results: list = []
    real = threading.Thread(target=lambda: results.extend(
        run_batch(session_db_url, "emas.v2", [asset], RunOptions(as_of=as_of, periods=(5,)), record=False)))
    real.start()
    try:
        deadline = time.monotonic() + 20
        waiter = None
        while waiter is None and time.monotonic() < deadline:
            with psycopg.connect(session_db_url) as conn:
                row = conn.execute("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                                   "AND pid <> %s", (dry.info.backend_pid,)).fetchone()
            waiter = row[0] if row else None
            time.sleep(0.05)
        assert waiter is not None, "the real run never waited for the dry run"
        assert _holds(session_db_url, dry.info.backend_pid, io.lock_key("emas.v2", asset))  # the probe works
        assert not _holds(session_db_url, waiter, io.lock_key("emas.v2", asset))
        time.sleep(1.5)  # longer than deadlock_timeout (1 s): a cycle would have been broken by now
        assert real.is_alive() and not results
    finally:
        dry.rollback()
        dry.close()
        real.join(60)
    assert [r.status for r in results] == ["ok"], results
