"""Bad input, fuzzed, through the real CLI (``ta_lab2 load``) into a real Postgres.

A Hypothesis strategy writes a file line by line, each line either good (any float the
format allows: NaN, inf, negative, zero, high < low, empty fields, instants in the future or
off the day boundary) or bad in a known way (wrong field count, non-numeric or unparsable
fields, a duplicate timestamp with other values, invalid UTF-8, a NUL byte, binary garbage,
an overflowing number or instant), with LF or CRLF endings, a BOM or not, blank lines.

The contract, checked from outside: the command exits 0; every bad line is in
``cmc_load_rejects`` with its file, line number and a reason, and on stderr; every good line
is in ``cmc_price_histories7`` with its values; ``lines read = loaded + rejected`` in the
printed accounting and in ``cmc_load_audit``; no traceback. Whole-file refusals (empty,
header-only, UTF-16, garbage) and a 1 M-line file with bounded memory are separate cases.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import math
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ta_lab2.cli import main
from tests.conftest import create_database, drop_database
from tests.support.faults import EXPORT_HEAD, PERCOIN_HEAD, ROOT, assert_no_traceback, cli_env, run_cli

_ids = itertools.count(700_000)
_files = itertools.count(1)
START = datetime(2015, 1, 1, tzinfo=UTC)
MS = timedelta(milliseconds=1)


@pytest.fixture(scope="module")
def fuzz_db(pg_server_url: str) -> Iterator[str]:
    url = create_database(pg_server_url, "ta_lab2_fuzz")
    yield url
    drop_database(pg_server_url, url)


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


prices = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -1.0, -0.0, 1e-300, 5e300]),
    st.floats(0.01, 1e6),
)


@dataclass
class Good:
    day: int
    values: list[float | None]  # open, high, low, close, volume, marketcap
    off_boundary: bool = False  # export: a timestamp inside the day, not its close
    future: bool = False


@dataclass
class FileModel:
    layout: str
    asset: int
    crlf: bool
    bom: bool
    lines: list[bytes] = field(default_factory=list)  # data lines (no header, no line ending)
    good: dict[datetime, tuple[int, list[float | None]]] = field(default_factory=dict)  # ts -> (line, values)
    bad: dict[int, str] = field(default_factory=dict)  # line_no -> kind
    blank: int = 0

    def text(self) -> bytes:
        end = b"\r\n" if self.crlf else b"\n"
        head = (EXPORT_HEAD if self.layout == "export" else PERCOIN_HEAD).encode()
        return (b"\xef\xbb\xbf" if self.bom else b"") + end.join([head, *self.lines]) + end


def _num(v: float | None) -> str:
    return "" if v is None else repr(v)


def _good_fields(m: FileModel, g: Good) -> tuple[list[str], datetime]:
    t0 = (datetime(2090, 1, 1, tzinfo=UTC) if g.future else START) + timedelta(days=g.day)
    o, h, lo, c, v, mc = (_num(x) for x in g.values)
    if m.layout == "export":
        ts = t0 + timedelta(hours=13, minutes=7) if g.off_boundary else t0 + timedelta(days=1) - MS
        return [_iso(t0), _iso(t0 + timedelta(days=1) - MS), _iso(t0 + timedelta(hours=5)),
                _iso(t0 + timedelta(hours=9)), "Fuzz", o, h, lo, c, v, mc, _iso(ts)], ts
    return [str(g.day), "Fuzz", "FZZ", t0.strftime("%Y-%m-%d"), h, lo, o, c, v, mc], t0 + timedelta(days=1) - MS


BAD_KINDS = ("too_few", "too_many", "not_a_number", "bad_instant", "empty_timestamp", "overflow_number",
             "overflow_instant", "invalid_utf8", "nul_byte", "garbage", "duplicate")


@st.composite
def files(draw: st.DrawFn) -> FileModel:
    m = FileModel(draw(st.sampled_from(["export", "percoin"])), next(_ids), draw(st.booleans()), draw(st.booleans()))
    delim = ";" if m.layout == "export" else ","
    days = draw(st.lists(st.integers(0, 3000), min_size=0, max_size=25, unique=True))
    plan = draw(st.lists(st.sampled_from(["good"] * 4 + ["blank", *BAD_KINDS]), min_size=len(days),
                         max_size=len(days) + 15))
    day_iter = iter(days)
    for kind in plan:
        line_no = len(m.lines) + 2
        if kind == "blank":
            m.lines.append(draw(st.sampled_from([b"", b"   ", b"\t"])))
            m.blank += 1
            continue
        if kind == "duplicate":
            if not m.good:
                continue
            ts = draw(st.sampled_from(sorted(m.good)))
            first_line = m.good[ts][0]
            fields = m.lines[first_line - 2].decode().split(delim)
            fields[8 if m.layout == "export" else 7] = repr(draw(st.floats(1, 9)))  # another close
            m.lines.append(delim.join(fields).encode())
            m.bad[line_no] = kind
            continue
        day = next(day_iter, None)
        if day is None:
            continue
        g = Good(day, [draw(st.one_of(st.none(), prices)) if draw(st.booleans()) else draw(prices)
                       for _ in range(6)],
                 off_boundary=m.layout == "export" and draw(st.booleans()), future=draw(st.integers(0, 9)) == 0)
        fields, ts = _good_fields(m, g)
        if kind == "good":
            m.lines.append(delim.join(fields).encode())
            m.good[ts] = (line_no, g.values)
            continue
        num_at = draw(st.sampled_from([5, 6, 7, 8, 9, 10] if m.layout == "export" else [4, 5, 6, 7, 8, 9]))
        time_at = draw(st.sampled_from([0, 1, 2, 3, 11])) if m.layout == "export" else 3
        if kind == "too_few":
            fields = fields[: draw(st.integers(1, len(fields) - 1))]
        elif kind == "too_many":
            fields += ["1"] * draw(st.integers(1, 3))
        elif kind == "not_a_number":
            fields[num_at] = draw(st.sampled_from(["abc", "1.2.3", "--1", "12e", "0x1G", "١٢x", "N/A"]))
        elif kind == "bad_instant":
            fields[time_at] = draw(st.sampled_from(["2021-13-45", "yesterday", "2021-02-30T00:00:00Z", "12:00"]))
        elif kind == "empty_timestamp":
            fields[11 if m.layout == "export" else 3] = ""
        elif kind == "overflow_number":
            fields[num_at] = "1e999"
        elif kind == "overflow_instant":
            fields[time_at] = "9999-12-31T23:59:59-01:00" if m.layout == "export" else "99999-01-01"
        raw = delim.join(fields).encode()
        if kind == "invalid_utf8":
            raw = raw[:5] + b"\xff\xfe" + raw[5:]
        elif kind == "nul_byte":
            raw = raw[:3] + b"\x00" + raw[3:]
        elif kind == "garbage":
            raw = b"\xff" + bytes(b for b in draw(st.binary(min_size=1, max_size=200)) if b not in b"\r\n")
        m.lines.append(raw)
        m.bad[line_no] = kind
    return m


def _same(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return (math.isnan(a) and math.isnan(b)) or a == b


def _check_loaded(url: str, m: FileModel, name: str, out: str, err: str) -> None:
    assert_no_traceback(out, err)
    with psycopg.connect(url) as conn:
        rejects: dict[int, str] = dict(conn.execute("SELECT line_no, reason FROM cmc_load_rejects WHERE source_file = %s",
                                    (name,)).fetchall())
        rows = {r[0]: r[1:] for r in conn.execute(
            'SELECT "timestamp", open, high, low, close, volume, marketcap FROM cmc_price_histories7 '
            "WHERE id = %s", (m.asset,)).fetchall()}
        audit = conn.execute("SELECT lines_read, inserted, updated, unchanged, rejected, refused FROM cmc_load_audit "
                             "WHERE source_file = %s", (name,)).fetchall()
    assert set(rejects) == set(m.bad), (sorted(rejects.items()), m.bad)
    assert all(r.strip() for r in rejects.values())
    for line_no in m.bad:
        assert f"rejected {name}:{line_no}: " in err, (line_no, err)
    dup_reasons = [rejects[n] for n, k in m.bad.items() if k == "duplicate"]
    assert all(r.startswith("duplicate timestamp") for r in dup_reasons), dup_reasons
    assert set(rows) == set(m.good)
    for ts, (_, values) in m.good.items():
        assert all(_same(a, b) for a, b in zip(rows[ts], values, strict=True)), (ts, rows[ts], values)
    n_read = len(m.lines) - m.blank
    assert audit == [(n_read, len(m.good), 0, 0, len(m.bad), None)]
    assert f"{name}: inserted {len(m.good)}, updated 0, unchanged 0, rejected {len(m.bad)} (of {n_read} lines read)" \
        in out


def cli_in_process(url: str, *argv: str) -> tuple[int, str, str]:
    """``main(argv)`` with its stdout/stderr captured: the CLI entry point without the 2-3 s of
    interpreter start-up per example (an exception escaping ``main`` fails the test, which is
    what a traceback reaching the user would be). The subprocess cases below cover the rest."""
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        mp.setenv("TA_LAB2_DB_URL", url)
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


@given(files())
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_fuzzed_files_load_every_good_line_reject_every_bad_line_and_balance(
        fuzz_db: str, tmp_path_factory: pytest.TempPathFactory, m: FileModel) -> None:
    path = tmp_path_factory.mktemp("fuzz") / f"fuzz_{next(_files)}.csv"
    path.write_bytes(m.text())
    code, out, err = cli_in_process(fuzz_db, "load", "--id", str(m.asset), str(path))
    assert code == 0, err
    _check_loaded(fuzz_db, m, path.name, out, err)


def test_the_same_day_in_two_files_with_different_values_ends_with_the_later_file(
        fuzz_db: str, tmp_path: Path) -> None:
    asset = next(_ids)
    head = PERCOIN_HEAD + "\n"
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text(head + "1,X,X,2020-01-01,2,1,1.5,1.6,10,100\n2,X,X,2020-01-02,2,1,1.5,1.6,10,100\n")
    b.write_text(head + "1,X,X,2020-01-02,2,1,1.5,1.9,10,100\n2,X,X,2020-01-03,2,1,1.5,1.6,10,100\n")
    done = run_cli(fuzz_db, "load", "--id", str(asset), str(a), str(b))
    assert done.returncode == 0, done.stderr
    assert "b.csv: inserted 1, updated 1, unchanged 0, rejected 0 (of 2 lines read)" in done.stdout
    with psycopg.connect(fuzz_db) as conn:
        closes = conn.execute('SELECT "timestamp"::date::text, close, source_file FROM cmc_price_histories7 '
                              'WHERE id = %s ORDER BY 1', (asset,)).fetchall()
    assert closes == [("2020-01-01", 1.6, "a.csv"), ("2020-01-02", 1.9, "b.csv"), ("2020-01-03", 1.6, "b.csv")]


WHOLE_FILE = [
    # (case, bytes, exit code, stderr fragment, lines rejected)
    ("empty", b"", 2, "empty file", 0),
    ("header_only", (PERCOIN_HEAD + "\n").encode(), 0, None, 0),
    ("header_only_bom_crlf", b"\xef\xbb\xbf" + (EXPORT_HEAD + "\r\n").encode(), 0, None, 0),
    ("utf16", (PERCOIN_HEAD + "\n1,X,X,2020-01-01,2,1,1.5,1.6,10,100\n").encode("utf-16"), 2, "UTF-16", 3),
    ("latin1_header", "Datum;Öffnung\n1;2\n".encode("latin-1"), 2, "not valid UTF-8", 2),
    ("garbage", bytes(range(256)) * 3, 2, "NUL byte", 4),
    ("other_csv", b"a,b,c\n1,2,3\n\n4,5,6\n", 2, "unrecognised header", 3),
]


@pytest.mark.parametrize(("case", "data", "code", "fragment", "n_rejected"), WHOLE_FILE, ids=[w[0] for w in WHOLE_FILE])
def test_whole_file_problems_are_one_clear_line_and_fully_accounted(
        fuzz_db: str, tmp_path: Path, case: str, data: bytes, code: int, fragment: str | None, n_rejected: int) -> None:
    bad = tmp_path / f"{case}.csv"
    good = tmp_path / f"{case}_good.csv"
    bad.write_bytes(data)
    asset = next(_ids)
    good.write_text(PERCOIN_HEAD + "\n1,X,X,2020-01-01,2,1,1.5,1.6,10,100\n")
    rc, out, err = cli_in_process(fuzz_db, "load", "--id", str(asset), str(bad), str(good))  # good still loads
    assert rc == code, err
    assert_no_traceback(out, err)
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    if fragment:
        assert len(errors) == 1 and str(bad) in errors[0] and fragment in errors[0], err
    else:
        assert errors == []
    with psycopg.connect(fuzz_db) as conn:
        n_rej = conn.execute("SELECT count(*) FROM cmc_load_rejects WHERE source_file = %s", (bad.name,)).fetchone()
        audit = conn.execute("SELECT lines_read, rejected, inserted + updated + unchanged FROM cmc_load_audit "
                             "WHERE source_file = %s", (bad.name,)).fetchone()
        loaded = conn.execute("SELECT count(*) FROM cmc_price_histories7 WHERE id = %s", (asset,)).fetchone()
    assert n_rej == (n_rejected,)
    assert audit == (n_rejected, n_rejected, 0)
    assert loaded == (1,)


def test_a_fixed_file_reload_clears_its_old_rejects(fuzz_db: str, tmp_path: Path) -> None:
    asset = next(_ids)
    f = tmp_path / "fixme.csv"
    f.write_text(PERCOIN_HEAD + "\n1,X,X,2020-01-01,2,oops,1.5,1.6,10,100\n")
    assert run_cli(fuzz_db, "load", "--id", str(asset), str(f)).returncode == 0
    f.write_text(PERCOIN_HEAD + "\n1,X,X,2020-01-01,2,1,1.5,1.6,10,100\n")
    done = run_cli(fuzz_db, "load", "--id", str(asset), str(f))
    assert "inserted 1, updated 0, unchanged 0, rejected 0 (of 1 lines read)" in done.stdout
    with psycopg.connect(fuzz_db) as conn:
        assert conn.execute("SELECT count(*) FROM cmc_load_rejects WHERE source_file = 'fixme.csv'").fetchone() == (0,)


def _huge_file(path: Path, days: int, bad_every: int) -> int:
    """``days`` export lines of one synthetic asset SYN<id> (a file holds one asset), one day
    each; every ``bad_every``-th is broken. Returns the number of bad lines."""
    bad = 0
    name = f"SYN{next(_ids) * 10}"
    with path.open("w") as fh:
        fh.write(EXPORT_HEAD + "\n")
        for d in range(days):
            t0 = START + timedelta(days=d)
            if d % bad_every == 0:
                fh.write(f"{_iso(t0)};broken line {d}\n")
                bad += 1
                continue
            fh.write(f"{_iso(t0)};{_iso(t0 + timedelta(days=1) - MS)};;;{name};1.5;2;1;1.75;10;100;"
                     f"{_iso(t0 + timedelta(days=1) - MS)}\n")
    return bad


def _peak_rss_mb(url: str, path: Path) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Peak RSS of a ``ta_lab2 load`` subprocess (a wrapper interpreter whose only child it is)."""
    wrapper = ("import resource, subprocess, sys\n"
               "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
               "sys.stderr.write(p.stderr[-20000:]); sys.stdout.write(p.stdout[-20000:])\n"
               "print('RSS_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, p.returncode)\n")
    done = subprocess.run([sys.executable, "-c", wrapper, sys.executable, "-m", "ta_lab2", "load", str(path)],
                          cwd=ROOT, env=cli_env(url), capture_output=True, text=True, timeout=600, check=False)
    tail = done.stdout.strip().splitlines()[-1].split()
    assert tail[0] == "RSS_KB" and tail[2] == "0", done.stdout[-2000:] + done.stderr[-2000:]
    return int(tail[1]) / 1024, done


@pytest.mark.slow
def test_a_million_line_file_streams_in_bounded_memory(fuzz_db: str, tmp_path: Path) -> None:
    small, huge = tmp_path / "small.csv", tmp_path / "huge.csv"
    _huge_file(small, 2000, bad_every=97)
    bad = _huge_file(huge, 1_000_000, bad_every=97)  # 1,000,000 lines (2015 .. year 4752), ~110 MB
    small_mb, _ = _peak_rss_mb(fuzz_db, small)
    huge_mb, done = _peak_rss_mb(fuzz_db, huge)
    assert_no_traceback(done.stdout, done.stderr)
    assert f"huge.csv: inserted {1_000_000 - bad}, updated 0, unchanged 0, rejected {bad} (of 1000000 lines read)" \
        in done.stdout
    # a whole-file parse holds ~1 GB of Python objects for this file; streaming stays near the
    # small file's footprint (chunks of 20,000 lines)
    print(f"peak RSS: small file {small_mb:.0f} MB, 1 M-line file {huge_mb:.0f} MB")
    assert huge_mb < small_mb + 75, (small_mb, huge_mb)  # measured: 85 MB vs 116 MB
    with psycopg.connect(fuzz_db) as conn:
        assert conn.execute("SELECT lines_read, rejected FROM cmc_load_audit WHERE source_file = 'huge.csv'"
                            ).fetchone() == (1_000_000, bad)
