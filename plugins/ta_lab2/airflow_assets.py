"""Airflow Assets of the warehouse: one per published table, derived from the registry.

A consumer DAG schedules on these (``schedule=[EMA_ASSETS[0]]`` or any of them) and the
daily DAG's ``publish`` task emits their events. Every table a family writes is one asset:
the 1d bars, each snapshot family's table and each EMA table (the ``cal`` and
``cal_anchor`` refreshers write two tables each, US and ISO). URIs follow the postgres
provider's form ``postgres://host:port/database/schema/table``.

The host/port/database part is LOGICAL, not read from the ``ta_lab2_db`` connection: the DAG
processor parses this at import with no DB or secrets-backend call, and an asset's identity
must not change when the connection is moved (consumers would silently stop being
triggered). Default ``ta-lab2-warehouse:5432/ta_lab2``; a deployment with several warehouses
sets ``TA_LAB2_ASSET_AUTHORITY=host:port/db`` identically on every Airflow component
(docs/decisions.md D-visibility-1).

Light on purpose: imported by the DAG files at parse time (only ``airflow.sdk``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from airflow.sdk import Asset, AssetAlias

from ta_lab2.registry import BAR_FAMILIES, EMA_FAMILIES

AUTHORITY_ENV = "TA_LAB2_ASSET_AUTHORITY"
DEFAULT_AUTHORITY = "ta-lab2-warehouse:5432/ta_lab2"
SCHEMA = "public"
# The publish task's one outlet: it adds only the tables whose family succeeded in the run
# (a plain Asset outlet would get an event on every task success, failed family or not).
PUBLISH_ALIAS = AssetAlias(name="ta_lab2_published_tables", group="ta_lab2")


@dataclass(frozen=True)
class PublishedTable:
    """One warehouse table consumers can schedule on, and the run component that writes it."""

    component: str  # "bars.1d", "bars.multi_tf", "emas.cal", ... (refresh_run_assets.component)
    table: str
    kind: str  # "bars" | "emas"

    @property
    def asset_name(self) -> str:
        return f"ta_lab2.{self.table}"


def _tables() -> tuple[PublishedTable, ...]:
    bars = tuple(PublishedTable(f"bars.{f.name}", f.table, "bars") for f in BAR_FAMILIES)
    emas = tuple(PublishedTable(f"emas.{f.name}", v.table, "emas") for f in EMA_FAMILIES for v in f.variants)
    return bars + emas


PUBLISHED_TABLES: tuple[PublishedTable, ...] = _tables()


def authority() -> str:
    """``host:port/database`` of the asset URIs (env override, else the logical default)."""
    value = os.environ.get(AUTHORITY_ENV, "").strip().strip("/") or DEFAULT_AUTHORITY
    host, sep, db = value.partition("/")
    if not sep or not host or not db or "/" in db:
        raise ValueError(f"{AUTHORITY_ENV}={value!r}: expected host:port/database")
    return value


def asset_uri(table: str) -> str:
    return f"postgres://{authority()}/{SCHEMA}/{table}"


def table_asset(t: PublishedTable) -> Asset:
    return Asset(name=t.asset_name, uri=asset_uri(t.table), group="ta_lab2",
                 extra={"component": t.component, "kind": t.kind})


ASSETS: dict[str, Asset] = {t.table: table_asset(t) for t in PUBLISHED_TABLES}
BAR_ASSETS: tuple[Asset, ...] = tuple(ASSETS[t.table] for t in PUBLISHED_TABLES if t.kind == "bars")
EMA_ASSETS: tuple[Asset, ...] = tuple(ASSETS[t.table] for t in PUBLISHED_TABLES if t.kind == "emas")
