"""Labels of the mapped ``asset`` instances: which assets a map index holds.

The DAG gives every task of the mapped group ``map_index_template = MAP_INDEX_TEMPLATE`` (through
the group's ``default_args``) and the macro :func:`batch_label` (``user_defined_macros``). Airflow
renders the template before the task body runs (from the batch alone: ``ids 1, 52``) and again
after it; by then :func:`ta_lab2.orchestration.publish_symbols` has put the batch's symbols into
the task context, so the grid and the instance list show ``BTC, ETH``. The REST API returns the
label as ``rendered_map_index``.

A template that fails to render after a successful task fails that task, so the macro never
raises: unknown symbols, an empty batch or a malformed value still give a label.

>>> batch_label([1, 1027], {1: "BTC", 1027: "ETH"})
'BTC, ETH'
>>> batch_label([825])
'id 825'
>>> batch_label(list(range(1, 21)))
'ids 1–20 (20)'
>>> batch_label(list(range(1, 21)), {1: "BTC", 2: "ETH"})
'BTC, ETH, id 3 +17 (ids 1–20)'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

MAX_NAMED = 5  # batches up to this size list every asset; larger ones are abbreviated
SYMBOLS_KEY = "ta_lab2_symbols"  # task-context key the task bodies fill (orchestration.publish_symbols)
MAP_INDEX_TEMPLATE = ("{{ ta_lab2_batch_label(task.op_kwargs.get('batch'), "
                      "ta_lab2_symbols | default(none)) }}")


def _ids(batch: Any) -> list[int]:
    if batch is None or isinstance(batch, (str, bytes)):
        return []
    out = []
    for value in batch if isinstance(batch, Iterable) else [batch]:
        try:
            out.append(int(value))
        except (TypeError, ValueError):
            continue
    return out


def batch_label(batch: Any, symbols: Mapping[Any, Any] | None = None) -> str:
    """``BTC, ETH`` for a small batch (``id 825`` for an asset without a known symbol),
    ``ids 1–20 (20)`` for a large batch without symbols, ``BTC, ETH, SOL +17 (ids 1–20)`` with.
    Never raises (the label must not fail a task)."""
    try:
        ids = _ids(batch)
        if not ids:
            return "no assets"
        known = {int(k): str(v) for k, v in (symbols or {}).items() if v not in (None, "")}
        names = [known.get(a) or f"id {a}" for a in ids]
        if len(ids) <= MAX_NAMED:
            if known or len(ids) == 1:
                return ", ".join(names)
            return "ids " + ", ".join(map(str, ids))
        span = f"{min(ids)}–{max(ids)}"
        if not known:
            return f"ids {span} ({len(ids)})"
        return f"{', '.join(names[:3])} +{len(ids) - 3} (ids {span})"
    except Exception:  # a label is never worth a failed task
        return f"batch {batch!r}"[:100]


MACROS = {"ta_lab2_batch_label": batch_label}
