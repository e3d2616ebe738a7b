"""Labels of mapped instances (``ta_lab2.labels``): the assets a map index holds, and never an
exception (a label that fails to render after a successful task would fail that task)."""

from __future__ import annotations

from typing import Any

import pytest

from ta_lab2.labels import batch_label


@pytest.mark.parametrize(("batch", "symbols", "label"), [
    ([1, 1027], {1: "BTC", 1027: "ETH"}, "BTC, ETH"),
    ([1, 1027], {"1": "BTC", "1027": "ETH"}, "BTC, ETH"),  # keys as they come back from JSON
    ([825], {}, "id 825"),  # looked up, unknown: no symbol
    ([825, 52], {52: "XRP", 825: None}, "id 825, XRP"),  # NULL symbol
    ([1, 52], None, "ids 1, 52"),  # not looked up yet (rendered before the task body)
    (list(range(1, 21)), None, "ids 1–20 (20)"),
    (list(range(1, 21)), {1: "BTC", 2: "ETH", 3: "USDT"}, "BTC, ETH, USDT +17 (ids 1–20)"),
    ([5, 3, 9, 1, 7, 2], {}, "ids 1–9 (6)"),
])
def test_batch_label_names_the_assets(batch: list[int], symbols: dict[Any, Any] | None, label: str) -> None:
    assert batch_label(batch, symbols) == label


@pytest.mark.parametrize("batch", [None, [], "1,52", 7, [None, "x"], {"a": 1}])
def test_batch_label_never_raises_on_odd_values(batch: Any) -> None:
    label = batch_label(batch, {1: "BTC"})
    assert isinstance(label, str) and label


def test_batch_label_survives_broken_symbols() -> None:
    assert batch_label([1], {"not-an-id": "X"}).startswith("batch ")  # still a label, not an exception
