"""Header-driven parsing of every CoinMarketCap layout, and asset identity (pure, no database)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from ta_lab2.assets import AssetRef, Registry, UnknownAsset, name_from_filename, parse_map, seed_registry
from ta_lab2.loader import SOURCE_COLUMNS, iter_file, iter_lines, merge, parse_file, parse_text
from tests.support.cmc_export import COLUMNS_12, COLUMNS_13, export_records, export_text, percoin_rows

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "cmc"
SOLANA = FIXTURES / "Solana_11_1_2025-3_27_2026_historical_data_coinmarketcap.csv"
BTC_EXPORT = "Bitcoin_1_28_2021-2_27_2021_historical_data_coinmarketcap.csv"
RECORDS = export_records(percoin_rows("coin_Bitcoin.csv", 5))


def _row(parsed_row: tuple[object, ...]) -> dict[str, object]:
    return dict(zip(SOURCE_COLUMNS, parsed_row, strict=True))


def test_todays_13_column_export_loads_with_its_circulating_supply_and_the_asset_from_the_file_name() -> None:
    parsed = parse_file(SOLANA)
    assert parsed.layout == "export" and parsed.problems == []
    assert parsed.asset == AssetRef(5426, "SOL", "Solana", "solana")
    assert len(parsed.rows) == 147
    newest = _row(parsed.rows[0])  # the export is newest first
    assert newest["id"] == 5426 and newest["name"] == "Solana"
    assert newest["timeopen"] == datetime(2026, 3, 27, tzinfo=UTC)
    assert newest["timestamp"] == datetime(2026, 3, 27, 23, 59, 59, 999000, tzinfo=UTC)
    assert newest["timehigh"] == datetime(2026, 3, 27, 14, 23, tzinfo=UTC)
    assert (newest["open"], newest["close"], newest["marketcap"]) == (0.6530552, 0.66540248, 30722840711.0)
    assert newest["circulating_supply"] == 46171815757.28


def _variants() -> Iterator[tuple[str, str]]:
    shuffled = ("close", "timestamp", "name", "timeLow", "open", "circulatingSupply", "timeOpen", "high",
                "volume", "timeHigh", "low", "marketCap", "timeClose")
    yield "quoted ; newest first", export_text(RECORDS)
    yield "unquoted , oldest first", export_text(RECORDS, delimiter=",", quoted=False, newest_first=False)
    yield "BOM + CRLF", export_text(RECORDS, bom=True, crlf=True)
    yield "any column order", export_text(RECORDS, columns=shuffled)
    head, _, body = export_text([{**r, "Rank": "1"} for r in RECORDS], columns=(*COLUMNS_13, "Rank")).partition("\n")
    yield "lower-case header, extra column", head.lower() + "\n" + body


@pytest.mark.parametrize(("label", "text"), list(_variants()), ids=[v[0] for v in _variants()])
def test_every_spelling_of_the_export_gives_the_same_rows(label: str, text: str) -> None:
    base = sorted(parse_text(export_text(RECORDS), BTC_EXPORT).rows, key=lambda r: str(r[6]))
    parsed = parse_text(text, BTC_EXPORT)
    assert parsed.problems == [], label
    assert sorted(parsed.rows, key=lambda r: str(r[6])) == base


def test_crlf_and_bom_through_a_real_file_too(tmp_path: Path) -> None:
    f = tmp_path / BTC_EXPORT
    f.write_bytes(export_text(RECORDS, bom=True, crlf=True).encode())
    assert [r[:14] for r in parse_file(f).rows] == [r[:14] for r in parse_text(export_text(RECORDS), BTC_EXPORT).rows]


def test_the_older_12_column_export_has_no_circulating_supply() -> None:
    parsed = parse_file(FIXTURES / "Ethereum_1_28_2021-2_27_2021_historical_data_coinmarketcap.csv")
    assert parsed.asset is not None and parsed.asset.id == 1027
    assert len(parsed.rows) == 31 and parsed.problems == []
    assert {_row(r)["circulating_supply"] for r in parsed.rows} == {None}
    assert _row(parsed.rows[0])["marketcap"] == 1.68e11


def test_the_per_coin_csv_keeps_its_rules() -> None:
    text = "SNo,Name,Symbol,Date,High,Low,Open,Close,Volume,Marketcap\n1,XRP,XRP,2013-08-05,2,1,1.5,1.6,0,43\n"
    row = _row(parse_text(text, "coin_XRP.csv").rows[0])
    assert row["id"] == 52 and row["timehigh"] is None and row["circulating_supply"] is None
    assert row["timestamp"] == datetime(2013, 8, 5, 23, 59, 59, 999000, tzinfo=UTC)


@pytest.mark.parametrize(("drop", "message"), [
    (("close",), "lacks required column(s) close"),
    (("timeOpen", "timestamp"), "lacks required column(s) timeopen, timestamp"),
])
def test_a_missing_required_column_is_named_in_one_line(drop: tuple[str, ...], message: str) -> None:
    cols = tuple(c for c in COLUMNS_13 if c not in drop)
    with pytest.raises(ValueError, match=r"^header of a CoinMarketCap export " + message.replace("(", r"\(")
                       .replace(")", r"\)")) as exc:
        parse_text(export_text(RECORDS, columns=cols), BTC_EXPORT)
    assert "\n" not in str(exc.value)


def test_an_unknown_header_says_what_each_layout_needs() -> None:
    with pytest.raises(ValueError, match="unrecognised header 'a,b,c': neither the CoinMarketCap export"):
        parse_text("a,b,c\n1,2,3\n", "x.csv")


@pytest.mark.parametrize(("filename", "name"), [
    ("Solana_11_1_2025-3_27_2026_historical_data_coinmarketcap.csv", "Solana"),
    ("Shiba Inu_11_1_2025-3_27_2026_historical_data_coinmarketcap.csv", "Shiba Inu"),
    ("Shiba_Inu_11_1_2025-3_27_2026_historical_data_coinmarketcap.csv", "Shiba Inu"),
    ("Shiba_Inu_11_1_2025-3_27_2026_historical_data_coinmarketcap (1).csv", "Shiba Inu"),
    ("Bitcoin_historical_data_coinmarketcap.csv", "Bitcoin"),
    ("coin_Bitcoin.csv", None),
    ("prices.csv", None),
])
def test_the_coin_name_comes_from_the_export_file_name(filename: str, name: str | None) -> None:
    assert name_from_filename(filename) == name


def test_multi_word_names_match_name_or_slug_case_insensitively() -> None:
    text = export_text(RECORDS)
    for fname in ("Shiba_Inu_1_1_2026-1_31_2026_historical_data_coinmarketcap.csv",
                  "shiba-inu_1_1_2026-1_31_2026_historical_data_coinmarketcap.csv",
                  "SHIBA INU_1_1_2026-1_31_2026_historical_data_coinmarketcap.csv"):
        assert parse_text(text, fname).asset == AssetRef(5994, "SHIB", "Shiba Inu", "shiba-inu")


def test_an_unknown_coin_is_refused_before_any_row_with_the_fix_and_resolves_once_registered() -> None:
    fname = "Pepe_11_1_2025-3_27_2026_historical_data_coinmarketcap.csv"
    with pytest.raises(UnknownAsset) as exc:
        next(iter_lines(export_text(RECORDS).splitlines(), fname))
    assert str(exc.value) == ("unknown asset (file name 'Pepe', name '2781'): pass --id N, or register it with "
                              "`python -m ta_lab2 assets import MAP.json|CSV` (CoinMarketCap /v1/cryptocurrency/map)")
    registry = Registry([*seed_registry().by_id.values(), AssetRef(24478, "PEPE", "Pepe", "pepe")])
    assert {r[0] for r in parse_text(export_text(RECORDS), fname, registry=registry).rows} == {24478}
    assert {r[0] for r in parse_text(export_text(RECORDS), fname, asset_id=99).rows} == {99}


def test_an_ambiguous_name_is_refused() -> None:
    registry = Registry([AssetRef(1, "A", "Twin"), AssetRef(2, "B", "twin")])
    with pytest.raises(UnknownAsset, match=r"file name 'Twin' is ambiguous in dim_assets \(ids 1 \(Twin\), 2"):
        parse_text(export_text(RECORDS), "Twin_historical_data_coinmarketcap.csv", registry=registry)


def test_a_cmc_map_json_and_a_csv_register_assets() -> None:
    doc = ('{"status": {"error_code": 0}, "data": [{"id": 24478, "rank": 30, "name": "Pepe", "symbol": "PEPE", '
           '"slug": "pepe", "is_active": 1, "first_historical_data": "2023-04-17T00:00:00.000Z", '
           '"last_historical_data": "2026-03-27T00:00:00.000Z", "platform": null}, {"id": 7, "name": "Old", '
           '"symbol": "OLD", "slug": "old", "is_active": 0}]}')
    assert parse_map(doc, "map.json") == [(AssetRef(24478, "PEPE", "Pepe", "pepe"), True),
                                          (AssetRef(7, "OLD", "Old", "old"), False)]
    assert parse_map("id,symbol,name,slug\n24478,PEPE,Pepe,pepe\n", "m.csv") == [
        (AssetRef(24478, "PEPE", "Pepe", "pepe"), True)]
    with pytest.raises(ValueError, match="m.csv: CSV header must have id,symbol,name"):
        parse_map("sym,name\nX,Y\n", "m.csv")
    with pytest.raises(ValueError, match=r"map.json: entry 1 lacks a valid id"):
        parse_map('{"data": [{"name": "x"}]}', "map.json")


def test_files_stream_in_chunks_and_every_row_keeps_its_line_for_the_duplicate_check() -> None:
    """Chunks count lines (rows + problems); a second line for the same day in a later chunk
    is still a row here, with its line number: the load path rejects it in SQL across chunks
    (tests/integration/test_loader.py::test_a_duplicate_day_in_a_later_chunk_is_rejected_and_the_first_kept)."""
    records = export_records(percoin_rows("coin_Bitcoin.csv", 25))
    lines = export_text(records, newest_first=False).splitlines()
    lines.insert(5, "broken")
    lines.append(lines[3])  # the same day again, in a later chunk
    chunks = list(iter_lines(lines, BTC_EXPORT, chunk_rows=10))
    assert [(len(c.rows), len(c.problems), c.lines_read) for c in chunks] == [(9, 1, 10), (10, 0, 10), (7, 0, 7)]
    assert [n for n, _ in chunks[0].lines] == [2, 3, 4, 5, 7, 8, 9, 10, 11]
    assert chunks[2].lines[-1] == (28, lines[3])
    assert [c.asset for c in chunks] == [chunks[0].asset] * 3


def test_a_refused_file_read_for_loading_accounts_for_every_line() -> None:
    """strict=False: the refusal travels in the chunks and every non-blank line is a problem."""
    text = "a,b,c\n1,2,3\n\n4,5,6\n"
    parsed = merge(iter_lines(text.split("\n"), "x.csv", strict=False))
    assert parsed.refused is not None and parsed.refused.startswith("unrecognised header 'a,b,c'")
    assert parsed.rows == [] and parsed.lines_read == 3
    assert [(p.line_no, p.reason.split(":")[0]) for p in parsed.problems] == [
        (1, "unrecognised header 'a,b,c'"), (2, "file not loaded"), (4, "file not loaded")]
    pepe = "Pepe_11_1_2025-3_27_2026_historical_data_coinmarketcap.csv"
    chunks = list(iter_lines(export_text(RECORDS).splitlines(), pepe, chunk_rows=2, strict=False))
    assert all(c.refused and c.refused.startswith("unknown asset (file name 'Pepe'") for c in chunks)
    assert sum(len(c.rows) for c in chunks) == 0 and sum(c.lines_read for c in chunks) == len(RECORDS)
    assert merge(iter_lines([], "empty.csv", strict=False)).refused == "empty file (no header line)"


def test_lines_end_at_lf_only_and_odd_bytes_are_line_problems() -> None:
    """A form feed or a lone CR inside a line does not start a new line (line numbers are an
    editor's); an instant past year 9999 in UTC and a NUL byte are problems, not tracebacks."""
    head, first, second, third = export_text(RECORDS[:3], newest_first=False).split("\n")[:4]
    text = "\n".join([head, first + "\x0c", second.replace(";", ";\r", 1),
                      third.replace(RECORDS[2]["timestamp"], "9999-12-31T23:59:59-01:00"),
                      first.replace('"2781"', '"27\x0081"')])
    parsed = parse_text(text, BTC_EXPORT)
    assert [p.line_no for p in parsed.problems] == [3, 4, 5]
    assert parsed.problems[0].reason.startswith("unreadable line (new-line character seen in unquoted field")
    assert [p.reason for p in parsed.problems[1:]] == [
        "column timeClose: '9999-12-31T23:59:59-01:00' is past year 9999 in UTC", "contains a NUL byte"]
    assert [n for n, _ in parsed.lines] == [2]


def test_a_file_holds_one_asset() -> None:
    """A row naming another coin than the file's first row is a problem, never loaded as the
    file's coin (the per-coin CSV's Symbol, the export's name)."""
    head, first, second = export_text(RECORDS[:2], newest_first=False).split("\n")[:3]
    parsed = parse_text("\n".join([head.replace('"name"', '"Name"'), first.replace('"2781"', '"SYN9"'),
                                   second.replace('"2781"', '"SYN10"')]), "synth.csv")
    assert {r[0] for r in parsed.rows} == {9}
    assert [(p.line_no, p.reason) for p in parsed.problems] == [
        (3, "name 'SYN10' differs from the file's 'SYN9' (a file holds one asset)")]


def test_the_loader_reads_lines_as_it_goes() -> None:
    """An endless input still yields its first chunk: nothing waits for the whole file."""
    head = export_text(RECORDS[:1], newest_first=False).splitlines()
    day = RECORDS[0]["timeOpen"][:10]
    endless = itertools.chain(head[:1], (head[1].replace(day, (date(2000, 1, 1) + timedelta(days=k)).isoformat())
                                         for k in itertools.count()))
    first = next(iter_lines(endless, BTC_EXPORT, chunk_rows=1000))
    assert len(first.rows) == 1000


def test_iter_file_streams_a_real_file(tmp_path: Path) -> None:
    f = tmp_path / BTC_EXPORT
    f.write_text(export_text(export_records(percoin_rows("coin_Bitcoin.csv", 120)), columns=COLUMNS_12))
    assert [len(c.rows) for c in iter_file(f, chunk_rows=50)] == [50, 50, 20]


def test_undecodable_bytes_and_nul_are_line_problems_not_a_failed_file(tmp_path: Path) -> None:
    good = export_text(RECORDS[:2], newest_first=False).encode()
    lines = good.splitlines(keepends=True)
    f = tmp_path / BTC_EXPORT
    f.write_bytes(lines[0] + lines[1] + b'"\xff\xfe";"x"\n' + b'"2021-01-01\x00";"1"\n' + lines[2])
    parsed = parse_file(f)
    assert len(parsed.rows) == 2
    assert [(p.line_no, p.reason) for p in parsed.problems] == [
        (3, "line is not valid UTF-8"), (4, "expected 13 fields, found 2")]
    assert parsed.problems[0].raw_line == '"\\xff\\xfe";"x"' and "\x00" not in parsed.problems[1].raw_line
