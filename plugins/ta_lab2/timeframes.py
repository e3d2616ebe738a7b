"""Timeframes as data: one ``dim_timeframe`` row as a frozen dataclass, and selection.

A bar family builds the rows whose ``roll_policy`` is the family's and whose
``calendar_scheme`` is the family's scheme or NULL (months and years are scheme-free).
The rolling family ``multi_tf`` excludes ``1D`` (that is the 1d builder's own table).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ta_lab2.registry import BarFamily


@dataclass(frozen=True)
class Timeframe:
    tf: str
    base_unit: str  # 'D' | 'W' | 'M' | 'Y'
    tf_qty: int
    tf_days_nominal: int
    alignment_type: str  # 'tf_day' | 'calendar'
    calendar_scheme: str | None  # 'US' | 'ISO' | None
    roll_policy: str  # 'rolling' | 'calendar' | 'calendar_anchor'
    allow_partial_start: bool = False
    allow_partial_end: bool = True
    tf_days_min: int = 0
    tf_days_max: int = 0
    is_canonical: bool = False
    sort_order: int = 0

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Timeframe:
        return cls(**{k: row[k] for k in cls.__dataclass_fields__})

    def __post_init__(self) -> None:
        if self.base_unit not in ("D", "W", "M", "Y"):
            raise ValueError(f"timeframe {self.tf}: base_unit {self.base_unit!r} not in D/W/M/Y")
        if self.tf_qty <= 0 or self.tf_days_nominal <= 0:
            raise ValueError(f"timeframe {self.tf}: tf_qty and tf_days_nominal must be > 0")
        if self.roll_policy == "rolling" and self.base_unit != "D":
            raise ValueError(f"timeframe {self.tf}: rolling timeframes are counted in days (base_unit D)")
        if self.base_unit == "W" and self.calendar_scheme not in ("US", "ISO"):
            raise ValueError(f"timeframe {self.tf}: week timeframes need calendar_scheme US or ISO")


def belongs_to(tf: Timeframe, family: BarFamily, *, with_daily: bool = False) -> bool:
    """Does ``family`` build ``tf``? ``with_daily``: count 1D as a rolling timeframe (the
    EMA view of the rolling family: 1D bars are built by the 1d builder, but the multi_tf
    and v2 EMAs include 1D, whose every observed day is a canonical close)."""
    if family.name == "1d":
        return tf.tf == "1D"
    if tf.roll_policy != family.roll_policy:
        return False
    if family.roll_policy == "rolling":
        return tf.tf_days_nominal > 1 or (with_daily and tf.tf_days_nominal == 1)
    return tf.calendar_scheme in (None, family.scheme)


def select(
    all_tfs: Iterable[Timeframe], family: BarFamily, requested: Sequence[str] | None = None, *,
    with_daily: bool = False
) -> list[Timeframe]:
    """The family's timeframes: canonical ones by default, else exactly the requested
    ones that belong to the family (requested names of other families are ignored here;
    unknown names are the caller's error to raise, see :func:`unknown`)."""
    mine = [t for t in all_tfs if belongs_to(t, family, with_daily=with_daily)]
    chosen = [t for t in mine if t.tf in requested] if requested else [t for t in mine if t.is_canonical]
    return sorted(chosen, key=lambda t: (t.sort_order, t.tf))


def unknown(all_tfs: Iterable[Timeframe], requested: Sequence[str]) -> list[str]:
    known = {t.tf for t in all_tfs}
    return [r for r in requested if r not in known]
