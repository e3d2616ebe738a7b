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

Lines are split on LF only (one CR before it is dropped), so line numbers are the ones an
editor shows and a form feed or a lone CR inside a line never starts a new one. A file holds
one asset.

A line that cannot be parsed (wrong field count, unparsable number or date, an instant past
year 9999, bytes that are not UTF-8, a NUL byte, another coin's symbol or name) becomes a
:class:`LineProblem` with the file, line number and reason; it is never dropped silently.
A second line for the same timestamp is found where the file is staged (in SQL, across
chunks: :func:`ta_lab2.store.source.upsert_chunks`). Values that parse but are bad data
(NaN, negative, zero prices) are loaded as they are: the 1d builder rejects them with a
reason, because the source table is the raw record.

A file is *refused* whole when it is empty, its header is not one of the layouts (names the
missing columns; binary garbage, UTF-16, another CSV) or its asset cannot be resolved
(:class:`ta_lab2.assets.UnknownAsset`, one line with the fix). With ``strict=True`` (the
default of the public readers) the refusal is raised; the load path reads with
``strict=False``: the refusal travels in the chunks (:attr:`ParsedFile.refused`) and every
line of the file becomes a problem, so a refused file is fully accounted and nothing of it
loads.

Files are read line by line and returned in chunks of at most ``chunk_rows`` lines
(:func:`iter_file`), so a file of millions of lines never sits in memory whole.
"""

from __future__ import annotations

import codecs
import csv
import math
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from ta_lab2.assets import AssetRef, Registry, UnknownAsset, resolve, seed_registry

__all__ = ["SOURCE_COLUMNS", "LineProblem", "ParsedFile", "ProblemReport", "UnknownAsset", "detect_layout",
           "header_layout", "iter_file", "iter_lines", "parse_file", "parse_text"]

SOURCE_COLUMNS = ("id", "name", "timeopen", "timeclose", "timehigh", "timelow", "timestamp", "open",
                  "high", "low", "close", "volume", "marketcap", "circulating_supply", "source_file")
# header key (lower case, letters and digits only) -> (required?, label used in messages)
EXPORT_COLUMNS = {"timeopen": True, "timeclose": True, "timehigh": False, "timelow": False, "name": False,
                  "open": True, "high": True, "low": True, "close": True, "volume": False,
                  "marketcap": False, "circulatingsupply": False, "timestamp": True}
PERCOIN_COLUMNS = {"sno": False, "name": False, "symbol": False, "date": True, "high": True, "low": True,
                   "open": True, "close": True, "volume": False, "marketcap": False}
DAY_CLOSE = timedelta(days=1) - timedelta(milliseconds=1)
CHUNK_ROWS = 20_000  # lines per chunk (rows + problems): bounds the loader's memory
SHOWN_PROBLEMS = 200  # rejected lines reported one by one per file; the rest are counted
_UTF16_BOMS = ("\udcff\udcfe", "\udcfe\udcff")  # b"\xff\xfe" / b"\xfe\xff" read with surrogateescape


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
    lines: list[tuple[int, str]] = field(default_factory=list)  # (line_no, raw) of each row, when known
    lines_read: int = 0  # non-blank lines this chunk accounts for (rows + problems)
    refusal: ValueError | None = None  # why the whole file is not loaded (strict=False readers)

    @property
    def refused(self) -> str | None:
        return str(self.refusal) if self.refusal is not None else None


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
    if header.startswith(_UTF16_BOMS):
        raise ValueError("UTF-16 text (byte-order mark): save the file as UTF-8")
    if not _is_utf8(header):
        raise ValueError("header is not valid UTF-8 (save the file as UTF-8)")
    if "\x00" in header:
        raise ValueError("header contains a NUL byte (not a text file)")
    delim = ";" if header.count(";") > header.count(",") else ","
    try:
        raw_cols = [c.strip().strip('"') for c in next(csv.reader([header], delimiter=delim))]
    except csv.Error as exc:
        raise ValueError(f"unreadable header ({exc}): {header[:120]!r}") from None
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
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except ValueError:
        raise ValueError(f"column {column}: {text!r} is not an ISO-8601 instant") from None
    except OverflowError:  # e.g. 9999-12-31T23:59:59-01:00 is past year 9999 in UTC
        raise ValueError(f"column {column}: {text!r} is past year 9999 in UTC") from None


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


def _export_values(f: _Fields) -> tuple[object, ...]:
    """SOURCE_COLUMNS from ``timeopen`` to ``circulating_supply``."""
    times = [f.instant(c) for c in ("timeopen", "timeclose", "timehigh", "timelow")]
    stamp = f.instant("timestamp")
    if stamp is None:
        raise ValueError("column timestamp: empty")
    values = [f.number(c) for c in ("open", "high", "low", "close", "volume", "marketcap", "circulatingsupply")]
    return (*times, stamp, *values)


def _percoin_values(f: _Fields) -> tuple[object, ...]:
    day = _day(f.text("date"), f.layout.labels["date"])
    t_open = datetime(day.year, day.month, day.day, tzinfo=UTC)
    t_close = t_open + DAY_CLOSE
    values = [f.number(c) for c in ("open", "high", "low", "close", "volume", "marketcap")]
    return (t_open, t_close, None, None, t_close, *values, None)


def _split(raw: str, layout: Layout) -> list[str]:
    try:
        return next(csv.reader([raw], delimiter=layout.delimiter))
    except csv.Error as exc:
        raise ValueError(f"unreadable line ({exc})") from None


def _is_utf8(raw: str) -> bool:
    """False when the line held bytes that are not UTF-8 (read with ``surrogateescape``)."""
    if raw.isascii():
        return True
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


def _line_text(raw: str) -> str:
    """A line without its LF and one CR before it (nothing else: LF is the only terminator)."""
    raw = raw[:-1] if raw.endswith("\n") else raw
    return raw[:-1] if raw.endswith("\r") else raw


def _chunks(lines: Iterable[str], source_file: str, asset_id: int | None, registry: Registry | None,
            chunk_rows: int | None, strict: bool) -> Iterator[ParsedFile]:
    """The one parser behind every reader (see the module docstring)."""
    size = chunk_rows or CHUNK_ROWS
    it = iter(lines)
    header = _line_text(next(it, "")).lstrip("\ufeff")
    refusal: ValueError | None = None
    layout: Layout | None = None
    out = ParsedFile(source_file, "none")
    if not header.strip():
        refusal = ValueError("empty file (no header line)")
    else:
        try:
            layout = header_layout(header)
        except ValueError as exc:
            refusal = exc
            out.lines_read = 1
            out.problems.append(LineProblem(source_file, 1, str(exc), _printable(header)))
    if refusal is not None and strict:
        raise refusal
    if layout is not None:
        out.layout = layout.name
        find = _resolver(layout, registry or seed_registry(), source_file, asset_id)
        make = _export_values if layout.name == "export" else _percoin_values
        same = "symbol" if layout.name == "percoin" else "name"  # one asset per file
    asset: AssetRef | None = None
    first_id: str | None = None
    for line_no, raw in enumerate(it, start=2):
        raw = _line_text(raw)
        if not raw.strip():
            continue
        out.lines_read += 1
        if refusal is not None or layout is None:
            why = f"file not loaded: line 1: {refusal}" if out.layout == "none" else f"file not loaded: {refusal}"
            out.problems.append(LineProblem(source_file, line_no, why, _printable(raw)))
        else:
            try:
                if not _is_utf8(raw):
                    raise ValueError("line is not valid UTF-8")
                fields = _split(raw, layout)
                if len(fields) != layout.width:
                    raise ValueError(f"expected {layout.width} fields, found {len(fields)}")
                f = _Fields(layout, fields)
                values = make(f)
                if "\x00" in raw:
                    raise ValueError("contains a NUL byte")
                if asset is None:
                    asset = find(f)
                    first_id = f.text(same).upper() or None
                    out.asset = asset
                    out.symbols[asset.id] = (asset.symbol, asset.name)
                elif first_id and f.text(same).upper() != first_id:
                    raise ValueError(f"{same} {f.text(same)!r} differs from the file's {first_id!r} "
                                     "(a file holds one asset)")
            except UnknownAsset as exc:  # nothing of the file loads: this and every later line are problems
                if strict:
                    raise
                refusal = exc
                out.symbols.clear()
                out.problems += [LineProblem(source_file, n, f"file not loaded: {exc}", r) for n, r in out.lines]
                out.rows.clear()
                out.lines.clear()
                out.problems.append(LineProblem(source_file, line_no, f"file not loaded: {exc}", _printable(raw)))
            except ValueError as exc:
                out.problems.append(LineProblem(source_file, line_no, str(exc), _printable(raw)))
            else:
                out.rows.append((asset.id, asset.name, *values, source_file))
                out.lines.append((line_no, raw))
        if out.lines_read >= size:
            out.refusal = refusal
            yield out
            out = ParsedFile(source_file, out.layout, asset=asset)
    out.refusal = refusal
    yield out


def iter_lines(lines: Iterable[str], source_file: str, asset_id: int | None = None,
               registry: Registry | None = None, chunk_rows: int | None = None, *,
               strict: bool = True) -> Iterator[ParsedFile]:
    """Parse a file's lines (header first) into chunks of at most ``chunk_rows`` lines
    (default :data:`CHUNK_ROWS`); every chunk carries its own problems. ``strict``: a refused
    file raises (``ValueError``; :class:`UnknownAsset` when its asset cannot be resolved, from
    the first good data line); otherwise the refusal travels in the chunks."""
    return _chunks(lines, source_file, asset_id, registry, chunk_rows, strict)


def _file_lines(fh: Iterable[bytes]) -> Iterator[str]:
    """A binary file's LF-separated lines as text; bytes that are not UTF-8 are kept (as
    surrogates) for the parser to report."""
    first = True
    for b in fh:
        if first and b.startswith(codecs.BOM_UTF8):
            b = b[len(codecs.BOM_UTF8):]
        first = False
        yield b.decode("utf-8", "surrogateescape")


def iter_file(path: Path | Any, asset_id: int | None = None, registry: Registry | None = None,
              chunk_rows: int | None = None, *, strict: bool = True) -> Iterator[ParsedFile]:
    """:func:`iter_lines` over a file read line by line (UTF-8, BOM stripped, LF or CRLF; a
    line with bytes that are not UTF-8 becomes a line problem, not an error for the file).
    ``path`` is a :class:`~pathlib.Path` or anything with ``.name`` and ``.open("rb")``
    (e.g. ``airflow.sdk.ObjectStoragePath``)."""
    path = Path(path) if isinstance(path, str) else path
    with path.open("rb") as fh:
        yield from _chunks(_file_lines(fh), path.name, asset_id, registry, chunk_rows, strict)


def merge(chunks: Iterable[ParsedFile]) -> ParsedFile:
    """One :class:`ParsedFile` from a file's chunks."""
    out: ParsedFile | None = None
    for c in chunks:
        if out is None:
            out = c
            continue
        out.rows += c.rows
        out.lines += c.lines
        out.problems += c.problems
        out.lines_read += c.lines_read
        out.symbols.update(c.symbols)
        out.asset = out.asset or c.asset
        out.refusal = out.refusal or c.refusal
    assert out is not None  # the parser yields at least one chunk
    return out


def parse_text(text: str, source_file: str, asset_id: int | None = None,
               registry: Registry | None = None) -> ParsedFile:
    """Parse one file's text whole (small inputs, tests, benchmarks); LF-separated lines."""
    return merge(iter_lines(text.split("\n"), source_file, asset_id, registry))


def parse_file(path: Path, asset_id: int | None = None, registry: Registry | None = None) -> ParsedFile:
    """Parse one file whole; :func:`iter_file` streams it in chunks instead."""
    return merge(iter_file(path, asset_id, registry))


class ProblemReport:
    """Reports a file's rejected lines one by one up to ``limit``, then counts the rest (every
    one is in ``cmc_load_rejects``): ``report = ProblemReport(emit); ...; report.finish()``."""

    def __init__(self, emit: Callable[[str], None], limit: int = SHOWN_PROBLEMS) -> None:
        self.emit, self.limit, self.count = emit, limit, 0
        self.source_file = ""

    def __call__(self, problem: LineProblem) -> None:
        if self.count < self.limit:
            self.emit(f"rejected {problem}")
        self.count += 1
        self.source_file = problem.source_file

    def finish(self) -> None:
        if self.count > self.limit:
            self.emit(f"{self.source_file}: {self.count - self.limit} more rejected lines not shown "
                      "(see cmc_load_rejects)")
