"""Small frame helpers shared by the refresh steps (pure)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd


def changed_mask(new: pd.DataFrame, old: pd.DataFrame, key: str | Sequence[str], columns: Sequence[str]) -> pd.Series:
    """True for rows of ``new`` whose key (a column or several) is absent from ``old`` or whose
    ``columns`` differ (NaN equals NaN). Aligned with ``new``'s index."""
    if old.empty:
        return pd.Series(True, index=new.index)
    keys = [key] if isinstance(key, str) else list(key)
    merged = new[[*keys, *columns]].merge(old[[*keys, *columns]], on=keys, how="left", suffixes=("", "__old"),
                                          indicator=True)
    diff = merged["_merge"] == "left_only"
    for col in columns:
        a, b = merged[col], merged[f"{col}__old"]
        diff |= ~((a == b) | (a.isna() & b.isna()))
    return pd.Series(diff.to_numpy(), index=new.index)
