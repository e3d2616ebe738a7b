"""Parse CoinMarketCap files into source rows (pure: text in, rows and problems out).

Two layouts (BARS.md "Source"):

* the historical-data export, semicolon separated:
  ``timeOpen;timeClose;timeHigh;timeLow;name;open;high;low;close;volume;marketCap;timestamp``
* the per-coin CSV: ``SNo,Name,Symbol,Date,High,Low,Open,Close,Volume,Marketcap`` (no
  intraday high/low times: ``timehigh``/``timelow`` stay NULL, the day is
  ``[Date 00:00:00, Date 23:59:59.999]`` UTC and ``timestamp`` is the close instant).

A line that cannot be parsed (wrong field count, unparsable number or date, unknown asset,
a second line for the same timestamp in one file) becomes a :class:`LineProblem` with the
file, line number and reason; it is never dropped silently. Values that parse but are bad
data (NaN, negative, zero prices) are loaded as they are: the 1d builder rejects them with
a reason into ``cmc_price_bars_1d_rejects``, because the source table is the raw record.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

SYMBOL_IDS: dict[str, int] = {"BTC": 1, "ETH": 1027, "USDT": 825, "XRP": 52}
NAME_IDS: dict[str, int] = {"bitcoin": 1, "ethereum": 1027, "tether": 825, "xrp": 52}

EXPORT_HEADER = ("timeopen", "timeclose", "timehigh", "timelow", "name", "open", "high", "low",
                 "close", "volume", "marketcap", "timestamp")
PERCOIN_HEADER = ("sno", "name", "symbol", "date", "high", "low", "open", "close", "volume", "marketcap")
SOURCE_COLUMNS = ("id", "name", "timeopen", "timeclose", "timehigh", "timelow", "timestamp", "open",
                  "high", "low", "close", "volume", "marketcap", "source_file")
DAY_CLOSE = timedelta(days=1) - timedelta(milliseconds=1)


@dataclass(frozen=True)
class LineProblem:
    source_file: str
    line_no: int
    reason: str
    raw_line: str

    def __str__(self) -> str:
        return f"{self.source_file}:{self.line_no}: {self.reason}"


@dataclass
class ParsedFile:
    source_file: str
    layout: str
    rows: list[tuple[object, ...]] = field(default_factory=list)  # SOURCE_COLUMNS order
    problems: list[LineProblem] = field(default_factory=list)
    symbols: dict[int, tuple[str, str]] = field(default_factory=dict)  # id -> (symbol, name)


def _number(text: str, column: str) -> float | None:
    text = text.strip().strip('"')
    if text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"column {column}: {text!r} is not a number") from None
    if math.isinf(value) and text.lower().lstrip("+-") not in ("inf", "infinity"):
        raise ValueError(f"column {column}: {text!r} overflows")
    return value


def _instant(text: str, column: str) -> datetime | None:
    text = text.strip().strip('"')
    if text == "":
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"column {column}: {text!r} is not an ISO-8601 instant") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _day(text: str) -> date:
    text = text.strip().strip('"')
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        raise ValueError(f"column Date: {text!r} is not a YYYY-MM-DD date") from None


def detect_layout(header_line: str) -> str:
    """'export' or 'percoin' from the header line; ValueError for anything else."""
    for delim, layout, expected in ((";", "export", EXPORT_HEADER), (",", "percoin", PERCOIN_HEADER)):
        cols = tuple(c.strip().strip('"').lower() for c in header_line.strip().split(delim))
        if cols == expected:
            return layout
    raise ValueError(
        f"unrecognised header {header_line.strip()[:120]!r}; expected the CoinMarketCap export "
        f"({';'.join(EXPORT_HEADER)}) or the per-coin CSV ({','.join(PERCOIN_HEADER)})"
    )


def _resolve_id(symbol: str | None, name: str | None, override: int | None) -> int:
    if override is not None:
        return override
    if name and name.startswith("SYN") and name[3:].isdigit():
        return int(name[3:])  # synthetic assets (ta_lab2.synth)
    if symbol and symbol.upper() in SYMBOL_IDS:
        return SYMBOL_IDS[symbol.upper()]
    if name and name.lower() in NAME_IDS:
        return NAME_IDS[name.lower()]
    raise ValueError(f"unknown asset (symbol {symbol!r}, name {name!r}): pass --id N")


def _percoin_row(f: list[str], source: str, override: int | None) -> tuple[int, str, tuple[object, ...]]:
    asset = _resolve_id(f[2].strip(), f[1].strip(), override)
    day = _day(f[3])
    t_open = datetime(day.year, day.month, day.day, tzinfo=UTC)
    t_close = t_open + DAY_CLOSE
    values = [_number(f[i], c) for i, c in ((6, "Open"), (4, "High"), (5, "Low"), (7, "Close"),
                                            (8, "Volume"), (9, "Marketcap"))]
    row = (asset, f[1].strip(), t_open, t_close, None, None, t_close, *values, source)
    return asset, f[2].strip().upper(), row


def _export_row(f: list[str], source: str, override: int | None) -> tuple[int, str, tuple[object, ...]]:
    name = f[4].strip().strip('"')
    asset = _resolve_id(None, name, override)
    times = [_instant(f[i], c) for i, c in ((0, "timeOpen"), (1, "timeClose"), (2, "timeHigh"), (3, "timeLow"))]
    stamp = _instant(f[11], "timestamp")
    if stamp is None:
        raise ValueError("column timestamp: empty")
    values = [_number(f[i], c) for i, c in ((5, "open"), (6, "high"), (7, "low"), (8, "close"),
                                            (9, "volume"), (10, "marketCap"))]
    symbol = next((s for s, i in SYMBOL_IDS.items() if i == asset), name.upper())
    return asset, symbol, (asset, name, *times, stamp, *values, source)


def parse_text(text: str, source_file: str, asset_id: int | None = None) -> ParsedFile:
    """Parse one file's text; see the module docstring for the rules."""
    lines = text.splitlines()
    if not lines:
        raise ValueError(f"{source_file}: empty file")
    layout = detect_layout(lines[0])
    out = ParsedFile(source_file, layout)
    delim, width = (";", 12) if layout == "export" else (",", 10)
    make = _export_row if layout == "export" else _percoin_row
    seen: dict[tuple[int, object], int] = {}
    for line_no, raw in enumerate(lines[1:], start=2):
        if not raw.strip():
            continue
        fields = next(csv.reader(io.StringIO(raw), delimiter=delim))
        try:
            if len(fields) != width:
                raise ValueError(f"expected {width} fields, found {len(fields)}")
            asset, symbol, row = make(fields, source_file, asset_id)
        except ValueError as exc:
            out.problems.append(LineProblem(source_file, line_no, str(exc), raw))
            continue
        key = (asset, row[6])
        if key in seen:
            out.problems.append(LineProblem(
                source_file, line_no, f"duplicate timestamp {row[6]} (first seen on line {seen[key]}; kept)", raw))
            continue
        seen[key] = line_no
        out.rows.append(row)
        out.symbols.setdefault(asset, (symbol, str(row[1])))
    return out


def parse_file(path: Path, asset_id: int | None = None) -> ParsedFile:
    return parse_text(path.read_text(encoding="utf-8-sig"), path.name, asset_id)
