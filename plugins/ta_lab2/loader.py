"""Parse CoinMarketCap files into source rows (pure: lines in, rows and problems out).

Layouts are recognised by their header (BARS.md "Source"), never by a fixed column list:
any column order, quoted or not, ``;`` or ``,`` separated, with or without a UTF-8 BOM,
LF or CRLF line ends; extra columns are ignored.

* the historical-data export (today's 13 columns
  ``timeOpen;timeClose;timeHigh;timeLow;name;open;high;low;close;volume;marketCap;circulatingSupply;timestamp``;
  older exports lack ``circulatingSupply``). Its ``name`` is a CoinMarketCap internal
  number, so the asset comes from the file name (:mod:`ta_lab2.assets`).
* the per-coin CSV ``SNo,Name,Symbol,Date,High,Low,Open,Close,Volume,Marketcap`` (no
  intraday high/low times: ``timehigh``/``timelow`` stay NULL, the day is
  ``[Date 00:00:00, Date 23:59:59.999]`` UTC and ``timestamp`` is the close instant).

A header lacking a required column raises ``ValueError`` naming the missing columns; a file
whose asset cannot be resolved raises :class:`ta_lab2.assets.UnknownAsset` (one line with
the fix) before any row is returned. A line that cannot be parsed (wrong field count,
unparsable number or date, a second line for the same timestamp in one file) becomes a
:class:`LineProblem` with the file, line number and reason; it is never dropped silently.
Values that parse but are bad data (NaN, negative, zero prices) are loaded as they are: the
1d builder rejects them with a reason, because the source table is the raw record.

Files are read line by line and returned in chunks (:func:`iter_file`), so a file of
millions of lines never sits in memory whole.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from ta_lab2.assets import AssetRef, Registry, UnknownAsset, resolve, seed_registry

__all__ = ["SOURCE_COLUMNS", "LineProblem", "ParsedFile", "UnknownAsset", "detect_layout", "header_layout", "iter_file",
           "iter_lines", "parse_file", "parse_text"]

SOURCE_COLUMNS = ("id", "name", "timeopen", "timeclose", "timehigh", "timelow", "timestamp", "open",
                  "high", "low", "close", "volume", "marketcap", "circulating_supply", "source_file")
# header key (lower case, letters and digits only) -> (required?, label used in messages)
EXPORT_COLUMNS = {"timeopen": True, "timeclose": True, "timehigh": False, "timelow": False, "name": False,
                  "open": True, "high": True, "low": True, "close": True, "volume": False,
                  "marketcap": False, "circulatingsupply": False, "timestamp": True}
PERCOIN_COLUMNS = {"sno": False, "name": False, "symbol": False, "date": True, "high": True, "low": True,
                   "open": True, "close": True, "volume": False, "marketcap": False}
DAY_CLOSE = timedelta(days=1) - timedelta(milliseconds=1)
CHUNK_ROWS = 50_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


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
    asset: AssetRef | None = None


@dataclass(frozen=True)
class Layout:
    name: str  # "export" or "percoin"
    delimiter: str
    index: dict[str, int]  # header key -> field position
    width: int
    labels: dict[str, str]  # header key -> the header's own spelling (for messages)


def _key(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.strip().strip('"').lower())


def detect_layout(header_line: str) -> str:
    """'export' or 'percoin' from the header line; ValueError for anything else."""
    return header_layout(header_line).name


def header_layout(header_line: str) -> Layout:
    """The layout of a header line; ValueError naming what is missing for anything else."""
    header = header_line.lstrip("\ufeff").strip()
    delim = ";" if header.count(";") > header.count(",") else ","
    raw_cols = [c.strip().strip('"') for c in next(csv.reader([header], delimiter=delim))]
    cols = [_key(c) for c in raw_cols]
    index = {c: i for i, c in reversed(list(enumerate(cols)))}
    kind, spec = ("export", EXPORT_COLUMNS) if "timeopen" in index or "timeclose" in index else (
        ("percoin", PERCOIN_COLUMNS) if "date" in index else ("", {}))
    if not kind:
        raise ValueError(
            f"unrecognised header {header[:120]!r}: neither the CoinMarketCap export (needs "
            f"{', '.join(c for c, r in EXPORT_COLUMNS.items() if r)}) nor the per-coin CSV (needs "
            f"{', '.join(c for c, r in PERCOIN_COLUMNS.items() if r)})")
    missing = [c for c, required in spec.items() if required and c not in index]
    if kind == "percoin" and "name" not in index and "symbol" not in index:
        missing.append("name or symbol")
    if missing:
        layout = "CoinMarketCap export" if kind == "export" else "per-coin CSV"
        raise ValueError(f"header of a {layout} lacks required column(s) {', '.join(missing)} "
                         f"(header: {header[:160]!r})")
    return Layout(kind, delim, index, len(cols), {c: raw_cols[i] for c, i in index.items()})


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


def _day(text: str, column: str = "Date") -> date:
    text = text.strip().strip('"')
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        raise ValueError(f"column {column}: {text!r} is not a YYYY-MM-DD date") from None


class _Fields:
    """One split line, read by header key (absent optional columns read as empty)."""

    def __init__(self, layout: Layout, fields: list[str]) -> None:
        self.layout, self.fields = layout, fields

    def text(self, key: str) -> str:
        i = self.layout.index.get(key)
        return self.fields[i].strip().strip('"') if i is not None else ""

    def number(self, key: str) -> float | None:
        return _number(self.text(key), self.layout.labels.get(key, key))

    def instant(self, key: str) -> datetime | None:
        return _instant(self.text(key), self.layout.labels.get(key, key))


def _export_row(f: _Fields, asset: AssetRef, source: str) -> tuple[object, ...]:
    times = [f.instant(c) for c in ("timeopen", "timeclose", "timehigh", "timelow")]
    stamp = f.instant("timestamp")
    if stamp is None:
        raise ValueError("column timestamp: empty")
    values = [f.number(c) for c in ("open", "high", "low", "close", "volume", "marketcap", "circulatingsupply")]
    return (asset.id, asset.name, *times, stamp, *values, source)


def _percoin_row(f: _Fields, asset: AssetRef, source: str) -> tuple[object, ...]:
    day = _day(f.text("date"), f.layout.labels["date"])
    t_open = datetime(day.year, day.month, day.day, tzinfo=UTC)
    t_close = t_open + DAY_CLOSE
    values = [f.number(c) for c in ("open", "high", "low", "close", "volume", "marketcap")]
    return (asset.id, asset.name, t_open, t_close, None, None, t_close, *values, None, source)


def _split(raw: str, layout: Layout) -> list[str]:
    try:
        return next(csv.reader([raw], delimiter=layout.delimiter))
    except csv.Error as exc:
        raise ValueError(f"unreadable line ({exc})") from None


def _is_utf8(raw: str) -> bool:
    """False when the line held bytes that are not UTF-8 (read with ``surrogateescape``)."""
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _printable(raw: str) -> str:
    """The raw line as Postgres text can store it: undecodable bytes and NUL escaped."""
    return raw.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace").replace("\x00", "\\x00")


def _resolver(layout: Layout, registry: Registry, source: str, asset_id: int | None) -> Callable[[_Fields], AssetRef]:
    def find(f: _Fields) -> AssetRef:
        name = f.text("name") or None
        symbol = f.text("symbol") or None if layout.name == "percoin" else None
        return resolve(registry, source, override=asset_id, row_name=name, row_symbol=symbol)

    return find


def iter_lines(lines: Iterable[str], source_file: str, asset_id: int | None = None,
               registry: Registry | None = None, chunk_rows: int = CHUNK_ROWS) -> Iterator[ParsedFile]:
    """Parse a file's lines (header first) into chunks of at most ``chunk_rows`` rows; every
    chunk carries its own problems. Raises before the first chunk for a bad header or an
    unresolvable asset (resolved from the file name, else the first data line)."""
    it = iter(lines)
    header = next(it, None)
    if header is None or not header.strip("\ufeff \r\n"):
        raise ValueError(f"{source_file}: empty file (no header line)")
    layout = header_layout(header)
    find = _resolver(layout, registry or seed_registry(), source_file, asset_id)
    make = _export_row if layout.name == "export" else _percoin_row
    out = ParsedFile(source_file, layout.name)
    asset: AssetRef | None = None
    first_symbol: str | None = None
    seen: dict[int, int] = {}  # timestamp in microseconds since the epoch -> line (compact for big files)
    for line_no, raw in enumerate(it, start=2):
        raw = raw.rstrip("\r\n")
        if not raw.strip():
            continue
        try:
            if not raw.isascii() and not _is_utf8(raw):
                raise ValueError("line is not valid UTF-8")
            fields = _split(raw, layout)
            if len(fields) != layout.width:
                raise ValueError(f"expected {layout.width} fields, found {len(fields)}")
            f = _Fields(layout, fields)
            if asset is None:
                asset = find(f)
                first_symbol = f.text("symbol").upper() or None
                out.asset = asset
                out.symbols[asset.id] = (asset.symbol, asset.name)
            elif first_symbol and f.text("symbol").upper() != first_symbol:
                raise ValueError(f"symbol {f.text('symbol')!r} differs from the file's {first_symbol!r}")
            row = make(f, asset, source_file)
        except UnknownAsset:
            raise
        except ValueError as exc:
            out.problems.append(LineProblem(source_file, line_no, str(exc), _printable(raw)))
            continue
        stamp = row[6]
        assert isinstance(stamp, datetime)
        key = (stamp - EPOCH) // MICROSECOND
        if key in seen:
            out.problems.append(LineProblem(
                source_file, line_no, f"duplicate timestamp {stamp} (first seen on line {seen[key]}; kept)",
                _printable(raw)))
            continue
        seen[key] = line_no
        out.rows.append(row)
        if len(out.rows) >= chunk_rows:
            yield out
            out = ParsedFile(source_file, layout.name, asset=asset)
    yield out


def iter_file(path: Path | Any, asset_id: int | None = None, registry: Registry | None = None,
              chunk_rows: int = CHUNK_ROWS) -> Iterator[ParsedFile]:
    """:func:`iter_lines` over a file read line by line (UTF-8, BOM stripped, any line end; a
    line with bytes that are not UTF-8 becomes a line problem, not an error for the file).
    ``path`` is a :class:`~pathlib.Path` or anything with ``.name`` and ``.open("rb")``
    (e.g. ``airflow.sdk.ObjectStoragePath``)."""
    path = Path(path) if isinstance(path, str) else path
    with path.open("rb") as raw, io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape", newline=None) as fh:
        yield from iter_lines(fh, path.name, asset_id, registry, chunk_rows)


def merge(chunks: Iterable[ParsedFile]) -> ParsedFile:
    """One :class:`ParsedFile` from a file's chunks."""
    out: ParsedFile | None = None
    for c in chunks:
        if out is None:
            out = c
            continue
        out.rows += c.rows
        out.problems += c.problems
    assert out is not None  # iter_lines yields at least one chunk
    return out


def parse_text(text: str, source_file: str, asset_id: int | None = None,
               registry: Registry | None = None) -> ParsedFile:
    """Parse one file's text whole (small inputs, tests, benchmarks)."""
    return merge(iter_lines(text.lstrip("\ufeff").splitlines(), source_file, asset_id, registry))


def parse_file(path: Path, asset_id: int | None = None, registry: Registry | None = None) -> ParsedFile:
    """Parse one file whole; :func:`iter_file` streams it in chunks instead."""
    return merge(iter_file(path, asset_id, registry))
