"""Write CoinMarketCap historical-data exports (the 13- and 12-column layouts) from real
per-coin rows of include/data/cmc/, for fixtures and format variants in tests."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path

COLUMNS_13 = ("timeOpen", "timeClose", "timeHigh", "timeLow", "name", "open", "high", "low", "close", "volume",
              "marketCap", "circulatingSupply", "timestamp")
COLUMNS_12 = tuple(c for c in COLUMNS_13 if c != "circulatingSupply")
CMC_DIR = Path(__file__).resolve().parents[2] / "include" / "data" / "cmc"


def percoin_rows(file: str, last: int | None = None) -> list[dict[str, str]]:
    with (CMC_DIR / file).open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    return rows[-last:] if last else rows


def export_records(rows: Sequence[dict[str, str]], *, start: date | None = None,
                   cmc_name: str = "2781") -> list[dict[str, str]]:
    """Export records (oldest first) from per-coin rows; ``start`` re-dates them from that day.
    timeHigh/timeLow are placeholders inside the day (the per-coin CSV has none) and
    circulatingSupply is marketCap / close."""
    out = []
    for k, r in enumerate(rows):
        d = start + timedelta(days=k) if start else date.fromisoformat(r["Date"][:10])
        day = d.isoformat()
        supply = float(r["Marketcap"]) / float(r["Close"]) if float(r["Close"]) else 0.0
        out.append({"timeOpen": f"{day}T00:00:00.000Z", "timeClose": f"{day}T23:59:59.999Z",
                    "timeHigh": f"{day}T14:23:00.000Z", "timeLow": f"{day}T03:41:00.000Z", "name": cmc_name,
                    "open": r["Open"], "high": r["High"], "low": r["Low"], "close": r["Close"],
                    "volume": r["Volume"], "marketCap": r["Marketcap"], "circulatingSupply": f"{supply:.2f}",
                    "timestamp": f"{day}T23:59:59.999Z"})
    return out


def export_text(records: Sequence[dict[str, str]], *, columns: Sequence[str] = COLUMNS_13, delimiter: str = ";",
                quoted: bool = True, newest_first: bool = True, bom: bool = False, crlf: bool = False) -> str:
    q = (lambda v: f'"{v}"') if quoted else (lambda v: v)
    lines = [delimiter.join(q(c) for c in columns)]
    ordered = list(reversed(records)) if newest_first else list(records)
    lines += [delimiter.join(q(r[c]) for c in columns) for r in ordered]
    nl = "\r\n" if crlf else "\n"
    return ("\ufeff" if bom else "") + nl.join(lines) + nl
