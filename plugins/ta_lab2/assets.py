"""Asset identity (pure): the registry, the built-in seed, and how a file finds its asset id.

``dim_assets`` is the registry (id, symbol, name, slug). A file's asset is resolved, in order:

1. ``--id N`` (the caller's override);
2. the export's file name: ``Solana_11_1_2025-3_27_2026_historical_data_coinmarketcap.csv``
   -> ``Solana`` (``Shiba Inu_…`` and ``Shiba_Inu_…`` -> ``Shiba Inu``), matched
   case-insensitively against the registry's names and slugs (``_``, ``-`` and spaces are
   equivalent);
3. the rows themselves: the per-coin CSV's ``Name`` then ``Symbol``; an export's ``name``
   column only when it is ``SYN<id>`` (synthetic data) or a registry name (today's exports
   carry a CoinMarketCap internal number there, not the coin).

An unresolvable or ambiguous file raises :class:`UnknownAsset` with one line saying how to
fix it (``--id N`` or ``python -m ta_lab2 assets import MAP``).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

# CoinMarketCap ids of well-known coins (facts from CMC's /v1/cryptocurrency/map).
SEED: tuple[tuple[int, str, str, str], ...] = (
    (1, "BTC", "Bitcoin", "bitcoin"), (2, "LTC", "Litecoin", "litecoin"), (52, "XRP", "XRP", "xrp"),
    (74, "DOGE", "Dogecoin", "dogecoin"), (825, "USDT", "Tether", "tether"),
    (1027, "ETH", "Ethereum", "ethereum"), (1839, "BNB", "BNB", "bnb"), (1958, "TRX", "TRON", "tron"),
    (1975, "LINK", "Chainlink", "chainlink"), (2010, "ADA", "Cardano", "cardano"),
    (3890, "MATIC", "Polygon", "polygon"), (5426, "SOL", "Solana", "solana"),
    (5805, "AVAX", "Avalanche", "avalanche"), (5994, "SHIB", "Shiba Inu", "shiba-inu"),
    (6636, "DOT", "Polkadot", "polkadot-new"),
)

_EXPORT_NAME = re.compile(
    r"^(?P<name>.+?)(?:_\d{1,2}_\d{1,2}_\d{4}-\d{1,2}_\d{1,2}_\d{4})?_historical_data_coinmarketcap", re.I)
_SYNTH = re.compile(r"^SYN(\d+)$")


class UnknownAsset(ValueError):
    """A file whose asset cannot be resolved (one line, with the fix)."""


@dataclass(frozen=True)
class AssetRef:
    id: int
    symbol: str
    name: str
    slug: str | None = None


def norm(text: str) -> str:
    """``'Shiba_Inu'``, ``'shiba-inu'``, ``' Shiba  Inu '`` -> ``'shiba inu'``."""
    return " ".join(re.sub(r"[_\-]+", " ", text).lower().split())


class Registry:
    """Lookups over a set of :class:`AssetRef` (the rows of ``dim_assets``)."""

    def __init__(self, assets: Iterable[AssetRef]) -> None:
        self.by_id: dict[int, AssetRef] = {a.id: a for a in assets}

    def _match(self, key: str, fields: tuple[str, ...]) -> list[AssetRef]:
        k = norm(key)
        return [a for a in self.by_id.values()
                if any(v is not None and norm(v) == k for v in (getattr(a, f) for f in fields))]

    def find(self, key: str, fields: tuple[str, ...], what: str) -> AssetRef | None:
        """The one asset whose ``fields`` match ``key``; None if none; UnknownAsset if several."""
        found = self._match(key, fields)
        if len(found) > 1:
            ids = ", ".join(f"{a.id} ({a.name})" for a in sorted(found, key=lambda a: a.id))
            raise UnknownAsset(f"{what} {key!r} is ambiguous in dim_assets (ids {ids}): pass --id N")
        return found[0] if found else None


def seed_registry() -> Registry:
    return Registry(AssetRef(*row) for row in SEED)


def name_from_filename(filename: str) -> str | None:
    """The coin name of a CoinMarketCap export file name, or None for other names."""
    m = _EXPORT_NAME.match(filename.rsplit("/", 1)[-1])
    return " ".join(m.group("name").replace("_", " ").split()) if m else None


def _fix_hint(hint: str) -> str:
    return (f"unknown asset ({hint}): pass --id N, or register it with "
            f"`python -m ta_lab2 assets import MAP.json|CSV` (CoinMarketCap /v1/cryptocurrency/map)")


def resolve(registry: Registry, filename: str, *, override: int | None = None, row_name: str | None = None,
            row_symbol: str | None = None) -> AssetRef:
    """The asset of one file (see the module docstring for the order)."""
    if override is not None:
        known = registry.by_id.get(override)
        return known or AssetRef(override, (row_symbol or row_name or str(override)).upper(),
                                 row_name or str(override))
    from_file = name_from_filename(filename)
    if from_file:
        found = registry.find(from_file, ("name", "slug"), "file name")
        if found:
            return found
    if row_name and (m := _SYNTH.match(row_name.strip())):
        return AssetRef(int(m.group(1)), row_name.strip().upper(), row_name.strip())
    if row_name and not row_name.strip().isdigit():
        found = registry.find(row_name, ("name", "slug"), "name")
        if found:
            return found
    if row_symbol:
        found = registry.find(row_symbol, ("symbol",), "symbol")
        if found:
            return found
    hint = ", ".join(f"{k} {v!r}" for k, v in (("file name", from_file), ("name", row_name),
                                               ("symbol", row_symbol)) if v)
    raise UnknownAsset(_fix_hint(hint or "no name in the file name or rows"))


def parse_map(text: str, source: str) -> list[tuple[AssetRef, bool]]:
    """``(asset, is_active)`` from a CMC ``/v1/cryptocurrency/map`` JSON or a CSV with a header
    ``id,symbol,name,slug`` (any order; ``is_active`` optional). ValueError with one line on a
    bad document."""
    text = text.lstrip("\ufeff")
    if text.lstrip().startswith(("{", "[")):
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{source}: not valid JSON ({exc})") from None
        items = doc.get("data") if isinstance(doc, dict) else doc
        if not isinstance(items, list):
            raise ValueError(f"{source}: expected {{\"data\": [{{id, name, symbol, slug, ...}}]}}")
    else:
        items = list(csv.DictReader(io.StringIO(text)))
        if items and not {"id", "symbol", "name"} <= {k.strip().lower() for k in items[0]}:
            raise ValueError(f"{source}: CSV header must have id,symbol,name[,slug] (got {list(items[0])})")
        items = [{k.strip().lower(): v for k, v in r.items()} for r in items]
    out = []
    for n, it in enumerate(items, start=1):
        try:
            ref = AssetRef(int(it["id"]), str(it["symbol"]).strip(), str(it["name"]).strip(),
                           (str(it.get("slug") or "").strip() or None))
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{source}: entry {n} lacks a valid id, symbol or name: {it!r}") from None
        if ref.id <= 0 or not ref.symbol or not ref.name:
            raise ValueError(f"{source}: entry {n} lacks a valid id, symbol or name: {it!r}")
        active = str(it.get("is_active", 1)).strip().lower() not in ("0", "false", "no")
        out.append((ref, active))
    return out
