"""``make bench``'s DAG run: which scale gets it, its figures (the Airflow share) and its report
section. Pure logic only: no Airflow is started and nothing is timed."""

from __future__ import annotations

from typing import Any

import pytest

from ta_lab2.bench.dagrun import airflow_share, dag_scale, figures
from ta_lab2.bench.report import dag_run, dag_verdict, missed, render

SCALES = [(100, 1095), (1000, 400)]


@pytest.mark.parametrize(("setting", "want"), [
    (None, (1000, 400)), ("", (1000, 400)), ("largest", (1000, 400)), (" LARGEST ", (1000, 400)),
    ("off", None), ("100", (100, 1095)), ("1000", (1000, 400)), ("500", None),
])
def test_the_dag_run_goes_to_the_scale_with_the_most_assets_unless_told(setting: str | None,
                                                                        want: tuple[int, int] | None) -> None:
    assert dag_scale(SCALES, setting) == want
    assert dag_scale([(1000, 400), (100, 1095)], setting) == want  # order does not matter


def test_a_bad_dag_setting_is_refused() -> None:
    with pytest.raises(ValueError, match="TA_LAB2_BENCH_DAG"):
        dag_scale(SCALES, "big")
    assert dag_scale([], None) is None


def test_airflow_share_is_the_slot_time_not_spent_in_the_engine() -> None:
    assert airflow_share(120.0, 60.0, 4) == pytest.approx(0.5)  # 240 slot-seconds, 120 in the engine
    assert airflow_share(0.0, 60.0, 4) == pytest.approx(1.0)
    assert airflow_share(10.0, None, 4) is None
    assert airflow_share(10.0, 0.0, 4) is None


def _ti(task: str, map_index: int, state: str, duration: float, queued: str, start: str) -> dict[str, Any]:
    return {"task_id": task, "map_index": map_index, "state": state, "duration": duration,
            "queued_when": queued, "start_date": start}


RUN = {"state": "success", "queued_at": "2026-01-01T00:00:00Z", "end_date": "2026-01-01T00:01:40Z",
       "data_interval_end": "2021-02-05T06:00:00Z"}
TIS = [
    _ti("prepare", -1, "success", 3.0, "2026-01-01T00:00:04Z", "2026-01-01T00:00:05Z"),
    _ti("asset.bars.1d", 0, "success", 10.0, "2026-01-01T00:00:10Z", "2026-01-01T00:00:12Z"),
    _ti("asset.bars.1d", 1, "success", 14.0, "2026-01-01T00:00:10Z", "2026-01-01T00:00:14Z"),
    _ti("summary", -1, "success", 3.0, "2026-01-01T00:01:30Z", "2026-01-01T00:01:31Z"),
]
AUDIT = [
    {"asset_id": 1, "component": "bars.1d", "status": "ok", "rows_written": 5, "duration_s": 4.0},
    {"asset_id": 2, "component": "bars.1d", "status": "ok", "rows_written": 7, "duration_s": 6.0},
    {"asset_id": 2, "component": "freshness", "status": "ok", "rows_written": 0, "duration_s": 1.0},
    {"asset_id": 3, "component": "emas.v2", "status": "failed", "rows_written": 0, "duration_s": 30.0,
     "error": "boom"},
]


def test_figures_from_the_run_its_task_instances_and_its_audit_rows() -> None:
    f = figures(RUN, TIS, AUDIT, parallelism=4, max_active_tasks=8, client_wall_s=101.5)
    assert f["wall_s"] == pytest.approx(100.0)  # server clock, not the bench's polls
    assert f["client_wall_s"] == 101.5
    assert f["slots"] == 4
    assert f["task_instances"] == 4 and f["mapped_instances"] == 2
    assert f["ti_s"] == pytest.approx(30.0)
    assert f["engine_s"] == pytest.approx(40.0)  # the gate's verdicts are not engine work
    assert f["airflow_share"] == pytest.approx(1 - 40.0 / 400.0)
    assert f["task_share"] == pytest.approx(1 - 40.0 / 30.0)
    assert f["first_task_s"] == pytest.approx(5.0)
    assert f["rows"] == 12
    assert f["failed"] == ["3 emas.v2: boom"]
    one_d = f["per_task"]["asset.bars.1d"]
    assert (one_d["instances"], one_d["seconds"], one_d["max_s"]) == (2, 24.0, 14.0)
    assert one_d["wait_s"] / one_d["waits"] == pytest.approx(3.0)
    assert f["ti_states"] == {"success": 4}
    assert f["retried"] == 0
    assert figures(RUN, [{**TIS[0], "try_number": 2}], [], parallelism=4, max_active_tasks=8)["retried"] == 1
    assert figures(RUN, TIS, AUDIT, parallelism=4, max_active_tasks=2)["slots"] == 2


def test_without_server_times_the_bench_wall_is_used() -> None:
    f = figures({"state": "failed"}, [], [], parallelism=4, max_active_tasks=None, client_wall_s=12.0)
    assert f["wall_s"] == 12.0 and f["slots"] == 4 and f["task_share"] is None


def _result(dag: dict[str, Any]) -> dict[str, Any]:
    return {"assets": 1000, "days": 400, "day": {"wall_s": 18.0}, "dag": dag}


def _dag(**over: Any) -> dict[str, Any]:
    base = figures(RUN, TIS, AUDIT, parallelism=4, max_active_tasks=8, client_wall_s=101.0)
    base.update({"parallelism": 4, "max_active_tasks": 8, "startup_s": 55.0, "as_of": "2021-02-05T06:00:00+00:00",
                 "conf": {"ids": "all", "batch_size": "auto"}})
    base.update(over)
    return base


def test_the_section_reports_the_target_the_share_and_the_tasks() -> None:
    text = "\n".join(dag_run([_result(_dag())]))
    assert "## Daily DAG run under LocalExecutor" in text
    assert "**100.0 s** (met: ≤ 5 min)" in text
    assert "**Airflow share**" in text and "**90 %**" in text
    assert "`asset.bars.1d` | 2 |" in text
    assert "55.0 s" in text  # the start is shown, apart
    assert "3 emas.v2: boom" in text
    assert "did not succeed" not in text


def test_a_slow_or_failed_run_is_missed_and_shows_why() -> None:
    slow = "\n".join(dag_run([_result(_dag(wall_s=301.0))]))
    assert "(**missed**: ≤ 5 min)" in slow
    failed = _dag(state="failed", error="run ended failed", diagnostics="asset.emas.v2[3] failed try=1")
    text = "\n".join(dag_run([_result(failed)]))
    assert "**The DAG run did not succeed:** run ended failed" in text
    assert "asset.emas.v2[3] failed try=1" in text
    assert "**missed**" in dag_verdict(_result(failed)) and "ended **failed**" in dag_verdict(_result(failed))
    crashed = {"error": "TimeoutError: airflow standalone not healthy after 600s", "diagnostics": "tail"}
    text = "\n".join(dag_run([_result(crashed)]))
    assert "not healthy" in text and "tail" in text
    assert "**failed**" in dag_verdict(_result(crashed))


def test_the_report_says_when_no_dag_run_was_measured() -> None:
    text = render([], {}, 1.0, complete=True)
    assert "## Daily DAG run under LocalExecutor" in text
    assert "Not measured in this run" in text
    assert "not part of this bench" not in text.lower() and "Not in this bench" not in text


def test_a_scale_that_crashed_before_its_dag_run_still_shows_the_dag_run_failed() -> None:
    crashed = {"assets": 1000, "days": 400, "error": "exit 1",
               "dag": {"error": "the scale's process failed before the DAG run (exit 1)"}}
    text = render([crashed], {}, 1.0, complete=True)
    assert "daily DAG run, 1,000 assets, LocalExecutor: **failed**" in text
    assert "**The DAG run did not succeed:** the scale's process failed before the DAG run" in text


def _scale(day_s: float, full_s: float) -> dict[str, Any]:
    cum = ["   ncalls  tottime  percall  cumtime  percall filename:lineno(function)",
           "     7286    4.957    0.001    5.805    0.001 connection.py:479(wait)",
           "        4    0.010    0.002    0.862    0.216 emas.py:132(refresh_emas_batch)"]
    own = ["   ncalls  tottime  percall  cumtime  percall filename:lineno(function)",
           "        6    0.031    0.005    0.298    0.050 batch.py:287(state_columns)"]
    return {"assets": 1000, "days": 400, "full": {"wall_s": full_s}, "day": {"wall_s": day_s, "components": dict.fromkeys("abcdefghij", {})},
            "day_profiled": {"wall_s": 15.0, "batches": 10}, "profile": {"cumulative": cum, "tottime": own},
            "copy_floor": {"t": {"rows": 1, "plain_s": 50.0, "indexed_s": 100.0}}}


def test_a_missed_day_share_is_explained_from_the_scales_own_profile() -> None:
    text = "\n".join(missed([_scale(13.4, 155.0)]))
    assert "## Where a target is missed" in text
    assert "8.6 % of the full build" in text and "3 % is 4.7 ms per asset; the day takes 13.4 ms" in text
    assert "5.8 s are spent waiting on Postgres (7,286 waits in 100 transactions of a batch and a component" in text
    assert "0.9 s in the EMA steps' Python" in text
    assert "0.3 s in reading the state rows (one query per state table, as columns)" in text
    assert "snapshot steps" not in text  # not in this profile: no fact
    assert missed([_scale(1.0, 155.0)]) == []  # met: no section


def test_the_report_says_whether_the_timed_refreshes_started_checkpointed() -> None:
    from ta_lab2.bench.report import _settled

    assert _settled({"full": 0.42, "day": 3.1, "day_profiled": 0.2}) == \
        "CHECKPOINT before the timed refreshes (not timed): full 0.4 s, day 3.1 s, day profiled 0.2 s."
    assert "ran unsettled" in _settled({"full": None, "day": None})
    assert _settled(None) == ""
