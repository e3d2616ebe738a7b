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
