"""Parse CoinMarketCap files into source rows (pure: text in, rows and problems out).

Two layouts (BARS.md "Source"):

* the historical-data export, semicolon separated:
  ``timeOpen;timeClose;timeHigh;timeLow;name;open;high;low;close;volume;marketCap;timestamp``
* the per-coin CSV: ``SNo,Name,Symbol,Date,High,Low,Open,Close,Volume,Marketcap`` (no
  intraday high/low times: ``timehigh``/``timelow`` stay NULL, the day is
  ``[Date 00:00:00, Date 23:59:59.999]`` UTC and ``timestamp`` is the close instant).

A line that cannot be parsed (wrong field count, unparsable number or date, unknown asset,
a second line for the same timestamp in one file, bytes that are not UTF-8, a NUL byte)
becomes a :class:`LineProblem` with the file, line number and reason; it is never dropped
silently. Lines are split on LF only (a CR before it is dropped), so line numbers are the
ones an editor shows. A file whose header is not one of the two layouts (binary garbage,
UTF-16, another CSV) is *refused*: every line becomes a problem, nothing of it loads.
:func:`stream_file` reads a file in bounded chunks (the CLI path: memory does not grow with
the file); :func:`parse_text` parses a whole text at once. Values that parse but are bad
data (NaN, negative, zero prices) are loaded as they are: the 1d builder rejects them with
a reason into ``cmc_price_bars_1d_rejects``, because the source table is the raw record.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

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
    lines: list[tuple[int, str]] = field(default_factory=list)  # (line_no, raw) aligned with rows, when known
    lines_read: int = 0  # non-blank lines after a valid header (refused file: every non-blank line)
    refused: str | None = None  # why the whole file was not loaded


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


CHUNK_LINES = 20_000
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def _decoded(raw_lines: Iterable[bytes]) -> Iterator[tuple[int, str, str | None]]:
    """``(line_no, text, problem)`` per physical line: LF-split, CR and a UTF-8 BOM dropped,
    undecodable bytes and NULs shown escaped (the text is storable and printable)."""
    for line_no, b in enumerate(raw_lines, start=1):
        b = b.rstrip(b"\n")
        b = b[:-1] if b.endswith(b"\r") else b
        if line_no == 1 and b.startswith(codecs.BOM_UTF8):
            b = b[len(codecs.BOM_UTF8):]
        problem = None
        try:
            text = b.decode("utf-8")
        except UnicodeDecodeError as exc:
            text = b.decode("utf-8", "backslashreplace")
            problem = f"not valid UTF-8 (byte 0x{b[exc.start]:02x} at column {exc.start + 1})"
            if line_no == 1 and b.startswith(_UTF16_BOMS):
                problem = "UTF-16 text (byte-order mark): save the file as UTF-8"
        if "\x00" in text:
            text = text.replace("\x00", "\\x00")
            problem = problem or "contains a NUL byte"
        yield line_no, text, problem


def _parse_lines(lines: Iterator[tuple[int, str, str | None]], source_file: str, asset_id: int | None,
                 chunk_lines: int | None) -> Iterator[ParsedFile]:
    """ParsedFile chunks of at most ``chunk_lines`` lines (None: one chunk)."""
    first = next(lines, None)
    if first is None:
        yield ParsedFile(source_file, "none", refused="empty file")
        return
    _, header, problem = first
    try:
        if problem:
            raise ValueError(problem)
        layout = detect_layout(header)
    except ValueError as exc:
        yield from _refused(first, lines, source_file, str(exc), chunk_lines)
        return
    delim, width = (";", 12) if layout == "export" else (",", 10)
    make = _export_row if layout == "export" else _percoin_row
    out = ParsedFile(source_file, layout)
    for line_no, raw, problem in lines:
        if not raw.strip() and problem is None:
            continue
        out.lines_read += 1
        try:
            if problem:
                raise ValueError(problem)
            fields = next(csv.reader(io.StringIO(raw), delimiter=delim))
            if len(fields) != width:
                raise ValueError(f"expected {width} fields, found {len(fields)}")
            asset, symbol, row = make(fields, source_file, asset_id)
        except (ValueError, OverflowError, csv.Error) as exc:  # OverflowError: an instant beyond year 9999
            out.problems.append(LineProblem(source_file, line_no, str(exc), raw))
        else:
            out.rows.append(row)
            out.lines.append((line_no, raw))
            out.symbols.setdefault(asset, (symbol, str(row[1])))
        if chunk_lines and out.lines_read >= chunk_lines:
            yield out
            out = ParsedFile(source_file, layout)
    yield out


def _refused(first: tuple[int, str, str | None], rest: Iterator[tuple[int, str, str | None]], source_file: str,
             why: str, chunk_lines: int | None) -> Iterator[ParsedFile]:
    """Every non-blank line of a refused file as a problem (nothing of the file loads)."""
    out = ParsedFile(source_file, "none", refused=why)
    for line_no, raw, _ in itertools.chain([first], rest):
        if not raw.strip() and line_no != 1:
            continue
        out.lines_read += 1
        reason = why if line_no == 1 else f"file not loaded: line 1: {why}"
        out.problems.append(LineProblem(source_file, line_no, reason, raw))
        if chunk_lines and out.lines_read >= chunk_lines:
            yield out
            out = ParsedFile(source_file, "none", refused=why)
    yield out


def _merge(chunks: Iterable[ParsedFile]) -> ParsedFile:
    out: ParsedFile | None = None
    for c in chunks:
        if out is None:
            out = c
            continue
        out.rows += c.rows
        out.lines += c.lines
        out.problems += c.problems
        out.lines_read += c.lines_read
        for k, v in c.symbols.items():
            out.symbols.setdefault(k, v)
    assert out is not None  # _parse_lines always yields
    return out


def parse_text(text: str, source_file: str, asset_id: int | None = None) -> ParsedFile:
    """Parse one file's text at once; see the module docstring for the rules. A second line
    for the same (asset, timestamp) is a problem here (the stream path finds it in SQL)."""
    parsed = _merge(_parse_lines(_decoded(io.BytesIO(text.encode("utf-8", "surrogateescape"))),
                                 source_file, asset_id, None))
    if parsed.refused:
        raise ValueError(parsed.refused)
    seen: dict[tuple[int, object], int] = {}
    keep = []
    for row, (line_no, raw) in zip(parsed.rows, parsed.lines, strict=True):
        key = (int(row[0]), row[6])  # type: ignore[call-overload]
        if key in seen:
            parsed.problems.append(LineProblem(
                source_file, line_no, f"duplicate timestamp {row[6]} (first seen on line {seen[key]}; kept)", raw))
            continue
        seen[key] = line_no
        keep.append((row, (line_no, raw)))
    parsed.rows = [r for r, _ in keep]
    parsed.lines = [li for _, li in keep]
    parsed.problems.sort(key=lambda p: p.line_no)
    return parsed


def stream_file(fh: BinaryIO, source_file: str, asset_id: int | None = None,
                chunk_lines: int = CHUNK_LINES) -> Iterator[ParsedFile]:
    """Chunks of a binary file object, ``chunk_lines`` lines each (memory stays bounded).
    Duplicates across the whole file are resolved where the chunks are staged
    (:func:`ta_lab2.store.source.load_stream`); a refused file yields its lines as problems."""
    return _parse_lines(_decoded(fh), source_file, asset_id, chunk_lines)


def parse_file(path: Path, asset_id: int | None = None) -> ParsedFile:
    return parse_text(path.read_bytes().decode("utf-8", "surrogateescape"), path.name, asset_id)
