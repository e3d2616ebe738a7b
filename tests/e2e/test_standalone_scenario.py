"""End to end against a REAL Airflow: ``airflow standalone`` (LocalExecutor, Postgres metadata,
its own home and port), driven only through the REST API, as an operator would drive it. The
support class is ``tests.support.standalone.StandaloneAirflow``; alerts go to the local fake
Telegram (``tests.support.fake_telegram``) through the ``telegram_default`` connection.

1. Failure isolation and alerts: a manual run over assets 1, 52 and 825 where 825's source is
   poisoned (15 negative closes > max(10, 1%), so ``bars.1d`` raises DataCorruptionError): 1 and
   52 finish with every EMA; 825's other bars, freshness gate and EMAs are ``skipped``
   (they ran all_done and found nothing ready); the run fails; Telegram receives exactly: the CRITICAL task alert (asset 825,
   bars.1d, run id, try, error, log link), the CRITICAL summary, the summary task's failure and
   the DAG-run failure.
2. Resume: the source is fixed (good rows upserted over the same timestamps) and ONLY 825's
   failed map index is cleared, with downstream: the run ends ``success`` (refresh_runs too, no
   validation WARN/FAIL), 1 and 52 are not recomputed (same try number and end date), no new
   alert is sent, and every bar/EMA/state/reject table of the three assets equals a clean CLI
   refresh (``python -m ta_lab2 refresh --all``) at the same as-of.
3. Backfill: ``POST /api/v2/backfills`` over three consecutive daily ticks (06:00 UTC, batch_size
   2): three successful runs with their EMAs, and the tables equal ONE CLI refresh at the last
   run's cutoff (its data-interval end = its logical date with the cron trigger timetable).

What a user must clear to resume (this test proves it): the failed ``asset.bars.1d`` instance,
with "Downstream" (API: ``clearTaskInstances`` with ``[task_id, map_index]``,
``include_downstream`` and ``only_failed: false``). Airflow follows the same map index inside
the mapped group and also clears the unmapped ``validate_global`` and ``summary`` after it, so
the summary is recomputed. Leaving ``only_failed`` at its API default (true) would skip the
tasks that had succeeded (``validate_global`` and 825's ``all_done`` validate), so the resumed
asset would not be validated.

About 4 minutes on 2 cores (40 s of it starting Airflow).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from ta_lab2.store import db, schema
from ta_lab2.store.db import airflow_conn_uri
from tests.conftest import create_database, drop_database
from tests.support.fake_telegram import FakeTelegram, check_html
from tests.support.standalone import StandaloneAirflow, sqlalchemy_url
from tests.support.warehouse import DAY, all_tables, history, load_rows, table_rows

pytestmark = pytest.mark.e2e

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DAG = "ta_lab2_daily_refresh"
N_DAYS = 120
# asset id -> seed of its synthetic history; these seeds have no gap in the last 8 days, so the
# freshness gate (48 h) passes for a manual run today and for the backfill ticks.
SCENARIO = {1: 3, 52: 6, 825: 7}
BACKFILL = {2: 17, 53: 18}
POISONED = 825
POISON_ROWS = 15  # > max(10, 1% of ~110 rows): DataCorruptionError (critical) in bars.1d
TOKEN = "123456:e2e-test-token-abcdefgh"
CHAT_ID = "4242"
RUN_TIMEOUT_S = 300


def _today() -> datetime:
    return datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def _rows(seed: int, today: datetime, gap_prob: float = 0.08) -> list[dict[str, Any]]:
    """Daily candles ending with yesterday's (gaps, but none in the last 8 days; ~3% of the rows
    have a broken time_high that the 1d builder repairs)."""
    start = today - N_DAYS * DAY
    rows = history(seed, N_DAYS, gap_prob=gap_prob, start=start)
    days = {int((r["timeopen"] - start) / DAY) for r in rows}
    assert all(d in days for d in range(N_DAYS - 8, N_DAYS)), f"seed {seed} has a gap in its last days"
    return rows


def _poisoned(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**r, "close": -r["close"]} if k % 5 == 0 and k // 5 < POISON_ROWS else r for k, r in enumerate(rows)]


def _cli_refresh(url: str, ids: list[int], as_of: datetime) -> None:
    """The reference: one ``python -m ta_lab2 refresh --all`` (same code path, no Airflow)."""
    env = {**os.environ, "TA_LAB2_DB_URL": url,
           "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT / "plugins"), str(PROJECT_ROOT)])}
    cmd = [sys.executable, "-m", "ta_lab2", "refresh", "--all", "--ids", ",".join(map(str, ids)),
           "--as-of", as_of.isoformat()]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=PROJECT_ROOT)
    assert proc.returncode == 0, f"{' '.join(cmd)} -> {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


def _assert_same_tables(url: str, ref_url: str, ids: list[int]) -> None:
    for asset in ids:
        for table in all_tables("all"):
            got, want = table_rows(url, table, asset), table_rows(ref_url, table, asset)
            pd.testing.assert_frame_equal(got, want, check_exact=True, obj=f"{table} id={asset}")
    with db.connect(url) as conn:  # and the comparison is not vacuous
        n = conn.execute("SELECT count(*) FROM cmc_ema_multi_tf WHERE id = ANY(%s)", (ids,)).fetchone()
    assert n and n[0] > 0, f"no EMA rows for {ids}"


def _as_of(run: dict[str, Any]) -> datetime:
    """orchestration.as_of: the data-interval end, else the logical date, else run_after."""
    value = run.get("data_interval_end") or run.get("logical_date") or run["run_after"]
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def _by_key(tis: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
    return {(t["task_id"], t["map_index"]): t for t in tis}


@contextmanager
def _explain(af: StandaloneAirflow, *run_ids: str) -> Generator[None, None, None]:
    """On a failed assertion or a timeout, print task states, failed task logs and the
    standalone output (pytest shows it under "Captured stdout")."""
    try:
        yield
    except BaseException:
        for run_id in run_ids:
            print(af.diagnostics(run_id))
        if not run_ids:
            print(af.output_tail())
        raise


# -- fixtures (module scope: one Airflow for the whole scenario) ---------------------------------
@pytest.fixture(scope="module")
def databases(pg_server_url: str) -> Iterator[dict[str, str]]:
    """Warehouse (the DAG's ta_lab2_db), reference warehouse (CLI runs), Airflow metadata."""
    urls: dict[str, str] = {}
    try:
        for name in ("warehouse", "reference", "metadata"):
            urls[name] = create_database(pg_server_url, f"ta_lab2_e2e_{name[:4]}")
        for name in ("warehouse", "reference"):
            with db.connect(urls[name]) as conn:
                schema.apply_schema(conn)
        yield urls
    finally:
        for url in urls.values():
            drop_database(pg_server_url, url)


@pytest.fixture(scope="module")
def telegram(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeTelegram]:
    record = tmp_path_factory.mktemp("telegram") / "messages.jsonl"
    with FakeTelegram(0, token=TOKEN, record_path=record) as fake:
        yield fake


@pytest.fixture(scope="module")
def airflow(databases: dict[str, str], telegram: FakeTelegram,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandaloneAirflow]:
    conn = {"conn_type": "telegram", "password": TOKEN, "host": CHAT_ID, "extra": {"base_url": telegram.base_url}}
    env = {
        "AIRFLOW_CONN_TA_LAB2_DB": airflow_conn_uri(databases["warehouse"]),
        "AIRFLOW_CONN_TELEGRAM_DEFAULT": json.dumps(conn),
        "TA_LAB2_ALERT_MIN_SEVERITY": "error",
        "TA_LAB2_DB_URL": "",  # never fall back to a developer's warehouse
        "TELEGRAM_BOT_TOKEN": "",
        "TELEGRAM_CHAT_ID": "",
    }
    home = tmp_path_factory.mktemp("airflow_home")
    af = StandaloneAirflow(home, metadata_db_url=sqlalchemy_url(databases["metadata"]), env=env, parallelism=4)
    try:
        _step(f"starting airflow standalone on port {af.port} (home {home})")
        af.start()
        _step("airflow healthy")
        with _explain(af):
            af.wait_dag()
            af.create_pool("ta_lab2_db", 4, "caps concurrent warehouse connections")
            af.unpause()
        _step("DAG parsed, pool created, DAG unpaused")
        yield af
    finally:
        af.stop()


# -- the scenario --------------------------------------------------------------------------------
def test_poisoned_asset_fails_alone_alerts_and_resumes_after_clearing_only_its_instance(
        airflow: StandaloneAirflow, databases: dict[str, str], telegram: FakeTelegram) -> None:
    af, wh, ref = airflow, databases["warehouse"], databases["reference"]
    today = _today()
    # no gaps here: a clean run is then fully clean (gaps are validation WARNs), so the resumed
    # run must end with status success and send no summary alert
    clean = {a: _rows(seed, today, gap_prob=0.0) for a, seed in SCENARIO.items()}
    for asset, rows in clean.items():
        load_rows(wh, asset, _poisoned(rows) if asset == POISONED else rows)
        load_rows(ref, asset, rows)
    ids = sorted(SCENARIO)

    run_id = af.trigger({"ids": ids})["dag_run_id"]  # default targets: bars and EMAs
    _step(f"triggered {run_id}")
    with _explain(af, run_id):
        assert af.wait_run(run_id, RUN_TIMEOUT_S) == "failed"
        _step("run failed as expected")
        batches = af.xcom(run_id, "prepare")
        assert batches == [[a] for a in ids]
        bad = batches.index([POISONED])
        tis = _by_key(af.task_instances(run_id))
        per_asset = {k: t for k, t in tis.items() if k[0].startswith("asset.")}
        assert tis[("asset.bars.1d", bad)]["state"] == "failed"
        for (task_id, mi), ti in per_asset.items():
            if mi != bad:  # the healthy assets finished everything, EMAs included
                assert ti["state"] == "success", (task_id, mi, ti["state"])
            elif task_id.startswith(("asset.bars.", "asset.emas.", "asset.freshness")) and task_id != "asset.bars.1d":
                # all_done + the run's audit rows (orchestration.runnable): ran, found nothing ready
                assert ti["state"] == "skipped", (task_id, mi, ti["state"])
        assert sum(1 for (t, _), ti in per_asset.items() if t.startswith("asset.emas.") and ti["state"] == "success") \
            == 4 * (len(ids) - 1)
        assert tis[("summary", -1)]["state"] == "failed"
        _assert_audit(wh, run_id, "failed", len(ids) - 1, 1)
        _assert_failure_alerts(telegram, run_id, bad)

        # what a user must clear: "only failed" would leave validate_global and 825's (all_done)
        # validate alone, so the resumed asset would not be validated: clear with only_failed off
        would = af.clear(run_id, [("asset.bars.1d", bad)], only_failed=True, include_downstream=True, dry_run=True)
        assert not {("validate_global", -1), ("asset.validate", bad)} & {(t["task_id"], t["map_index"]) for t in would}

    # fix the source (the same timestamps, good values) and clear ONLY the failed map index
    load_rows(wh, POISONED, clean[POISONED])
    before = _by_key(af.task_instances(run_id))
    n_alerts = len(telegram.messages)
    with _explain(af, run_id):
        cleared = af.clear(run_id, [("asset.bars.1d", bad)], only_failed=False, include_downstream=True)
        keys = {(t["task_id"], t["map_index"]) for t in cleared}
        # downstream follows the same map index inside the group, and reaches the unmapped tail
        assert {mi for t, mi in keys if t.startswith("asset.")} == {bad}, sorted(keys)
        assert {t for t, mi in keys if mi == bad} == {t for t, mi in per_asset if mi == bad}, sorted(keys)
        assert {("validate_global", -1), ("summary", -1)} <= keys, sorted(keys)
        assert ("prepare", -1) not in keys
        _step(f"cleared {len(cleared)} task instances")
        assert af.wait_run(run_id, RUN_TIMEOUT_S) == "success"
        _step("run success after the clear")
        after = _by_key(af.task_instances(run_id))
        assert all(ti["state"] == "success" for ti in after.values()), \
            {k: t["state"] for k, t in after.items() if t["state"] != "success"}
        for key, ti in after.items():
            if key not in keys:  # prepare and the healthy assets were NOT recomputed
                assert (ti["try_number"], ti["end_date"]) == (1, before[key]["end_date"]), (key, ti)
        assert after[("asset.bars.1d", bad)]["try_number"] == 2
        _assert_audit(wh, run_id, "success", len(ids), 0)

    # the resumed asset (and the others) equal one clean CLI refresh at the run's as-of
    _cli_refresh(ref, ids, _as_of(af.dag_run(run_id)))
    _assert_same_tables(wh, ref, ids)
    _step("tables equal the CLI reference")
    new = [m.text for m in telegram.messages[n_alerts:]]
    assert not any("Task failed" in t or "Refresh run" in t for t in new), new


def _assert_failure_alerts(telegram: FakeTelegram, run_id: str, bad: int) -> None:
    """The fake Telegram got: the CRITICAL task alert for 825's bars.1d, the CRITICAL summary, the
    summary task's own failure and the DAG-run failure; nothing about the healthy assets."""

    def texts() -> list[str]:
        return [m.text for m in telegram.messages]

    def titles() -> list[str]:
        return sorted(t.splitlines()[0] for t in texts())

    want = sorted([f"<b>[CRITICAL] Task failed: {DAG}.asset.bars.1d[{bad}]</b>",
                   "<b>[CRITICAL] Refresh run CRITICAL problems</b>",
                   f"<b>[ERROR] Task failed: {DAG}.summary</b>",
                   f"<b>[ERROR] DAG run failed: {DAG}</b>"])
    _wait_for(lambda: titles() == want, 60, titles)  # the DAG-run callback runs in the DAG processor
    _step("alerts: " + " | ".join(titles()))
    task_alert = next(t for t in texts() if ".asset.bars.1d[" in t)
    for part in (f"run: {run_id}", "task: asset.bars.1d", f"asset: {POISONED}", "try: 1 of 3",
                 f"DataCorruptionError: asset {POISONED}", "exceeds", "log: http"):
        assert part in task_alert, (part, task_alert)
    summary_alert = next(t for t in texts() if "Refresh run" in t)
    assert f"failed: {POISONED}" in summary_alert and "assets: 2 ok, 1 failed" in summary_alert, summary_alert
    assert all(check_html(t) is None for t in texts())


def _assert_audit(url: str, run_id: str, status: str, ok: int, failed: int) -> None:
    """The run row the summary task persisted to refresh_runs (no validation FAIL or WARN)."""
    with db.connect(url) as conn:
        row = conn.execute("SELECT status, assets_ok, assets_failed, validation_fail, validation_warn, "
                           "summary_text FROM refresh_runs WHERE run_id = %s", (run_id,)).fetchone()
    assert row is not None, f"no refresh_runs row for {run_id}"
    assert tuple(row[:5]) == (status, ok, failed, 0, 0), row[5]


def test_backfill_of_three_days_equals_one_refresh_at_the_last_cutoff(
        airflow: StandaloneAirflow, databases: dict[str, str]) -> None:
    af, wh, ref = airflow, databases["warehouse"], databases["reference"]
    today = _today()
    for asset, seed in BACKFILL.items():
        rows = _rows(seed, today)
        load_rows(wh, asset, rows)
        load_rows(ref, asset, rows)
    ids = sorted(BACKFILL)
    first = today - 3 * DAY + timedelta(hours=6)  # the cron ticks (06:00 UTC) of the last 3 days
    last = first + 2 * DAY

    # batch_size 2: both assets in one mapped instance (fewer task instances, and batching covered)
    conf = {"ids": ids, "batch_size": 2}
    backfill = af.create_backfill(first, last, conf, max_active_runs=1)
    _step(f"backfill {backfill['id']} created: {first:%Y-%m-%d} .. {last:%Y-%m-%d}")
    with _explain(af):
        runs = af.wait_backfill(backfill["id"], expected_runs=3, timeout=2 * RUN_TIMEOUT_S)
    with _explain(af, *(r["dag_run_id"] for r in runs)):
        assert [_as_of(r) for r in runs] == [first, first + DAY, last]
        assert [r["state"] for r in runs] == ["success"] * 3
        assert all(r["conf"] == conf for r in runs)
        for r in runs:  # one batch of both assets, EMAs included, in every run (fresh at each cutoff)
            tis = af.task_instances(r["dag_run_id"])
            assert {t["map_index"] for t in tis if t["task_id"].startswith("asset.")} == {0}
            assert sum(1 for t in tis if t["task_id"].startswith("asset.emas.") and t["state"] == "success") \
                == 4, r["dag_run_id"]
    _step("backfill runs finished")
    _cli_refresh(ref, ids, last)
    _assert_same_tables(wh, ref, ids)
    _step("tables equal the CLI reference")


def _step(what: str) -> None:
    """A timestamped progress line (shown with -s, and under "Captured stdout" on failure)."""
    print(f"[{datetime.now(UTC):%H:%M:%S}] {what}", flush=True)


def _wait_for(cond: Any, timeout: float, describe: Any) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met after {timeout}s: {describe()}")
        time.sleep(0.5)
