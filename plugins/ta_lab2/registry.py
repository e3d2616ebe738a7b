"""The one registry of bar builders and EMA refreshers.

Everything that loops over families (DDL, CLI, DAG task groups, validation, tests) reads
these tuples; no family is ever spelled out twice.

Timeframe selection is data: a bar family takes the ``dim_timeframe`` rows whose
``roll_policy`` matches and whose ``calendar_scheme`` is the family's scheme or NULL
(months and years are the same in the US and ISO schemes).
"""

from __future__ import annotations

from dataclasses import dataclass

SNAPSHOT_STATE_SUFFIX = "_state"


@dataclass(frozen=True)
class BarFamily:
    """A bar builder: its name (CLI/param value), table and timeframe selector."""

    name: str
    table: str
    roll_policy: str  # dim_timeframe.roll_policy this family builds
    scheme: str | None  # 'US' | 'ISO' | None (scheme-free)

    @property
    def state_table(self) -> str:
        return self.table + SNAPSHOT_STATE_SUFFIX

    @property
    def is_snapshot(self) -> bool:
        return self.name != "1d"

    @property
    def lock_key(self) -> str:
        return f"bars.{self.name}"


@dataclass(frozen=True)
class EmaVariant:
    """One EMA table of a refresher: which bar family defines its canonical closes."""

    alignment_source: str  # value of cmc_ema_multi_tf_u.alignment_source
    table: str
    bar_family: str  # BarFamily.name whose windows give the canonical closes

    @property
    def state_table(self) -> str:
        return self.table + SNAPSHOT_STATE_SUFFIX


@dataclass(frozen=True)
class EmaFamily:
    """An EMA refresher (CLI/param value) and the tables it writes."""

    name: str
    variants: tuple[EmaVariant, ...]
    daily_space_only: bool = False  # v2: ema only, ema_bar NULL
    watermark_column: str = ""  # column of cmc_ema_refresh_state

    @property
    def lock_key(self) -> str:
        return f"emas.{self.name}"


BAR_1D = BarFamily("1d", "cmc_price_bars_1d", "rolling", None)

BAR_FAMILIES: tuple[BarFamily, ...] = (
    BAR_1D,
    BarFamily("multi_tf", "cmc_price_bars_multi_tf", "rolling", None),
    BarFamily("cal_iso", "cmc_price_bars_multi_tf_cal_iso", "calendar", "ISO"),
    BarFamily("cal_us", "cmc_price_bars_multi_tf_cal_us", "calendar", "US"),
    BarFamily("cal_anchor_iso", "cmc_price_bars_multi_tf_cal_anchor_iso", "calendar_anchor", "ISO"),
    BarFamily("cal_anchor_us", "cmc_price_bars_multi_tf_cal_anchor_us", "calendar_anchor", "US"),
)
SNAPSHOT_FAMILIES: tuple[BarFamily, ...] = tuple(f for f in BAR_FAMILIES if f.is_snapshot)

EMA_FAMILIES: tuple[EmaFamily, ...] = (
    EmaFamily(
        "multi_tf",
        (EmaVariant("multi_tf", "cmc_ema_multi_tf", "multi_tf"),),
        watermark_column="last_load_ts_multi",
    ),
    EmaFamily(
        "cal",
        (
            EmaVariant("multi_tf_cal_us", "cmc_ema_multi_tf_cal_us", "cal_us"),
            EmaVariant("multi_tf_cal_iso", "cmc_ema_multi_tf_cal_iso", "cal_iso"),
        ),
        watermark_column="last_load_ts_cal",
    ),
    EmaFamily(
        "cal_anchor",
        (
            EmaVariant("multi_tf_cal_anchor_us", "cmc_ema_multi_tf_cal_anchor_us", "cal_anchor_us"),
            EmaVariant("multi_tf_cal_anchor_iso", "cmc_ema_multi_tf_cal_anchor_iso", "cal_anchor_iso"),
        ),
        watermark_column="last_load_ts_cal_anchor",
    ),
    EmaFamily(
        "v2",
        (EmaVariant("multi_tf_v2", "cmc_ema_multi_tf_v2", "multi_tf"),),
        daily_space_only=True,
        watermark_column="last_load_ts_daily",
    ),
)

EMA_VARIANTS: tuple[EmaVariant, ...] = tuple(v for f in EMA_FAMILIES for v in f.variants)

BAR_FAMILY_NAMES: tuple[str, ...] = tuple(f.name for f in BAR_FAMILIES)
EMA_FAMILY_NAMES: tuple[str, ...] = tuple(f.name for f in EMA_FAMILIES)
# Which bar builder an EMA refresher depends on (DAG edges and CLI ordering).
EMA_BAR_DEPENDENCIES: dict[str, tuple[str, ...]] = {
    f.name: tuple(dict.fromkeys(v.bar_family for v in f.variants)) for f in EMA_FAMILIES
}


def bar_family(name: str) -> BarFamily:
    for fam in BAR_FAMILIES:
        if fam.name == name:
            return fam
    raise KeyError(f"unknown bar builder {name!r}; known: {', '.join(BAR_FAMILY_NAMES)}")


def ema_family(name: str) -> EmaFamily:
    for fam in EMA_FAMILIES:
        if fam.name == name:
            return fam
    raise KeyError(f"unknown EMA refresher {name!r}; known: {', '.join(EMA_FAMILY_NAMES)}")
