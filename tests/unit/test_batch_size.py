"""``batch_size`` "auto": mapped instances stay bounded for any universe; an integer wins."""

from __future__ import annotations

import pytest

from ta_lab2.orchestration import AUTO_MAX_BATCH, batch_size_for, batches_of


@pytest.mark.parametrize(("n", "size", "instances"), [
    (1, 1, 1), (4, 1, 4), (16, 1, 16), (17, 2, 9), (100, 7, 15), (1_000, 63, 16), (4_000, 250, 16),
    (10_000, 250, 40),
])
def test_auto_spreads_the_universe_over_about_sixteen_instances(n: int, size: int, instances: int) -> None:
    assert batch_size_for("auto", n) == size
    assert len(batches_of(list(range(n)), size)) == instances


def test_auto_never_exceeds_the_cap_and_an_integer_wins() -> None:
    assert batch_size_for("auto", 10**6) == AUTO_MAX_BATCH
    assert batch_size_for(" AUTO ", 3) == 1
    assert batch_size_for(7, 1_000) == 7


@pytest.mark.parametrize("bad", ["big", 0, -3])
def test_a_bad_batch_size_is_refused_with_the_value(bad: object) -> None:
    with pytest.raises(Exception, match="batch_size must be"):
        batch_size_for(bad, 10)  # type: ignore[arg-type]


# -- the CLI's "auto" batches: sized by the work they hold and by their locks ---------------------
def test_the_cli_packs_consecutive_assets_while_their_days_fit_the_budget() -> None:
    from ta_lab2.refresh.runner import pack_batches

    daily = dict.fromkeys(range(1_000), 1)  # a daily run: one new day each
    assert [len(b) for b in pack_batches(list(range(1_000)), daily, budget=110_000, cap=1_250)] == [1_000]
    first = dict.fromkeys(range(1_000), 1_095)  # a first build, 3 years each: ~100 per batch
    sizes = [len(b) for b in pack_batches(list(range(1_000)), first, budget=110_000, cap=1_250)]
    assert sizes == [100] * 10
    mixed = {0: 1, 1: 5_000, 2: 1, 3: 1}  # order kept, an asset over the budget is a batch of its own
    assert pack_batches([0, 1, 2, 3], mixed, budget=3_000, cap=10) == [[0], [1], [2, 3]]
    assert pack_batches([5, 6, 7], {}, budget=10, cap=2) == [[5, 6], [7]]  # no estimate: 1 day each; the cap
    assert pack_batches([], {}) == []


def test_a_dry_run_takes_more_locks_per_asset_so_its_batches_are_smaller() -> None:
    from datetime import UTC, datetime

    from ta_lab2.refresh.context import RunOptions
    from ta_lab2.refresh.runner import BATCH_LOCKS, locks_per_asset, plan_components

    comps = plan_components(["bars", "emas"])
    now = datetime.now(UTC)
    real, dry = locks_per_asset(comps, RunOptions(as_of=now)), locks_per_asset(comps, RunOptions(as_of=now, dry_run=True))
    assert (real, dry) == (2, 5)  # own lock + what it reads; a dry run replays source -> 1d -> bars -> EMA
    assert BATCH_LOCKS // real >= 1_000 > BATCH_LOCKS // dry  # a daily run of 1,000 assets is one batch


def test_a_refreshing_process_collects_the_young_generation_less_often() -> None:
    import gc

    from ta_lab2.refresh.runner import GC_GEN0_THRESHOLD, tune_gc

    before = gc.get_threshold()
    try:
        gc.set_threshold(700, *before[1:])
        tune_gc()
        assert gc.get_threshold() == (GC_GEN0_THRESHOLD, *before[1:])
        assert gc.get_freeze_count() > 0  # modules and the registry out of the collector's way
        tune_gc()  # idempotent
        assert gc.get_threshold()[0] == GC_GEN0_THRESHOLD
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
