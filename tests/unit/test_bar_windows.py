"""Bar windows: BARS.md calendar fixtures, edge dates, and grid properties."""

from __future__ import annotations

import ast
import re
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ta_lab2.bars.windows import assign_windows, window_containing
from ta_lab2.timeframes import Timeframe

SEED_SQL = Path(__file__).resolve().parents[2] / "include" / "sql" / "ddl" / "002_dim_timeframe.sql"
_FIELDS = (
    "tf base_unit tf_qty tf_days_nominal alignment_type calendar_scheme roll_policy "
    "allow_partial_start allow_partial_end tf_days_min tf_days_max is_canonical sort_order"
).split()


def _seeded() -> dict[str, Timeframe]:
    """The timeframes seeded by 002_dim_timeframe.sql, parsed from its VALUES rows."""
    rows = re.findall(r"^\s*\(('.*?)\),?$", SEED_SQL.read_text(), flags=re.M)
    out = {}
    for row in rows:
        literal = re.sub(r"\bNULL\b", "None", row)
        literal = re.sub(r"\btrue\b", "True", re.sub(r"\bfalse\b", "False", literal))
        tf = Timeframe(**dict(zip(_FIELDS, ast.literal_eval(f"({literal})"), strict=True)))
        out[tf.tf] = tf
    return out


SEEDED = _seeded()
EXTRA = {
    tf.tf: tf
    for tf in (
        Timeframe("4D", "D", 4, 4, "tf_day", None, "rolling"),
        Timeframe("2M_CAL", "M", 2, 60, "calendar", None, "calendar"),
        Timeframe("2Y_CAL", "Y", 2, 730, "calendar", None, "calendar"),
        Timeframe("3W_CAL_ANCHOR_ISO", "W", 3, 21, "calendar", "ISO", "calendar_anchor"),
        Timeframe("5M_CAL_ANCHOR", "M", 5, 150, "calendar", None, "calendar_anchor"),
        Timeframe("2Y_CAL_ANCHOR", "Y", 2, 730, "calendar", None, "calendar_anchor"),
    )
}
TF = SEEDED | EXTRA
D = np.datetime64


def _window(day: str, tf: str, first_day: str | None = None) -> tuple[int, str, str]:
    seq, start, end = window_containing(D(day), TF[tf], D(first_day or day))
    return seq, str(start), str(end)


def test_seed_parser_sees_every_seeded_timeframe() -> None:
    assert len(SEEDED) == 32 and {"1D", "365D", "12M_CAL", "1Y_CAL_ANCHOR"} <= SEEDED.keys()


@pytest.mark.parametrize(
    ("first_day", "us_week", "iso_week", "month", "year"),
    [
        ("2010-07-13", "2010-07-18", "2010-07-19", "2010-08-01", "2011-01-01"),
        ("2025-01-01", "2025-01-05", "2025-01-06", "2025-01-01", "2025-01-01"),
        ("2025-01-05", "2025-01-05", "2025-01-06", "2025-02-01", "2026-01-01"),
        ("2024-12-29", "2024-12-29", "2024-12-30", "2025-01-01", "2025-01-01"),
    ],
)
def test_first_full_calendar_period_fixtures(
    first_day: str, us_week: str, iso_week: str, month: str, year: str
) -> None:
    for tf, expected in (
        ("1W_CAL_US", us_week),
        ("1W_CAL_ISO", iso_week),
        ("1M_CAL", month),
        ("1Y_CAL", year),
    ):
        assert _window(first_day, tf)[:2] == (1, expected), tf
        days = np.arange(D(first_day), D(expected) + 1)
        w = assign_windows(days, TF[tf], D(first_day))
        assert (
            (w.bar_seq[:-1] == -1).all()
            and np.isnat(w.win_start[:-1]).all()
            and np.isnat(w.win_end[:-1]).all()
        )
        assert w.bar_seq[-1] == 1 and str(w.win_start[-1]) == expected


@pytest.mark.parametrize(
    ("first_day", "tf", "day", "expected"),
    [
        ("2025-01-05", "1W_CAL_US", "2025-01-05", (1, "2025-01-05", "2025-01-11")),
        ("2025-01-05", "2W_CAL_US", "2025-01-05", (1, "2025-01-05", "2025-01-18")),
        ("2025-01-05", "2W_CAL_US", "2025-01-19", (2, "2025-01-19", "2025-02-01")),
        ("2025-01-01", "1M_CAL", "2025-01-01", (1, "2025-01-01", "2025-01-31")),
        ("2025-11-01", "3M_CAL", "2025-11-01", (1, "2025-11-01", "2026-01-31")),
        ("2025-11-01", "3M_CAL", "2026-02-01", (2, "2026-02-01", "2026-04-30")),
        ("2024-01-15", "1M_CAL", "2024-02-29", (1, "2024-02-01", "2024-02-29")),
        ("2023-01-15", "1M_CAL", "2023-02-28", (1, "2023-02-01", "2023-02-28")),
        ("2020-12-01", "1W_CAL_ISO", "2021-01-03", (4, "2020-12-28", "2021-01-03")),
        ("2024-06-15", "12M_CAL", "2024-07-01", (1, "2024-07-01", "2025-06-30")),
        ("2024-06-15", "12M_CAL", "2025-07-01", (2, "2025-07-01", "2026-06-30")),
        ("2025-01-01", "1Y_CAL", "2026-12-31", (2, "2026-01-01", "2026-12-31")),
        ("2025-01-01", "7D", "2025-01-08", (2, "2025-01-08", "2025-01-14")),
        ("2025-01-01", "4D", "2025-01-04", (1, "2025-01-01", "2025-01-04")),
        ("2024-12-30", "1D", "2025-01-02", (4, "2025-01-02", "2025-01-02")),
    ],
)
def test_rolling_and_calendar_bar_windows(first_day: str, tf: str, day: str, expected: tuple) -> None:
    assert _window(day, tf, first_day) == expected


@pytest.mark.parametrize(
    ("tf", "day", "start", "end"),
    [
        ("1W_CAL_ANCHOR_US", "2025-01-01", "2024-12-29", "2025-01-04"),
        ("1W_CAL_ANCHOR_ISO", "2025-01-01", "2024-12-30", "2025-01-05"),
        ("2W_CAL_ANCHOR_US", "2025-01-01", "2024-12-22", "2025-01-04"),
        ("2W_CAL_ANCHOR_ISO", "2025-01-01", "2024-12-23", "2025-01-05"),
        ("2W_CAL_ANCHOR_US", "2026-02-05", "2026-02-01", "2026-02-14"),
        ("2W_CAL_ANCHOR_ISO", "2026-02-05", "2026-02-02", "2026-02-15"),
        ("3M_CAL_ANCHOR", "2025-02-15", "2025-01-01", "2025-03-31"),
        ("3M_CAL_ANCHOR", "2025-11-15", "2025-10-01", "2025-12-31"),
        ("6M_CAL_ANCHOR", "2025-05-01", "2025-01-01", "2025-06-30"),
        ("1M_CAL_ANCHOR", "2024-02-10", "2024-02-01", "2024-02-29"),
        ("1W_CAL_ANCHOR_ISO", "2021-01-01", "2020-12-28", "2021-01-03"),  # ISO week 53 of 2020
        ("1Y_CAL_ANCHOR", "2025-06-01", "2025-01-01", "2025-12-31"),
        ("2Y_CAL_ANCHOR", "2025-06-01", "2024-01-01", "2025-12-31"),
        ("5M_CAL_ANCHOR", "2025-12-15", "2025-11-01", "2025-12-31"),  # truncated at Dec 31
        ("5M_CAL_ANCHOR", "2026-01-01", "2026-01-01", "2026-05-31"),
    ],
)
def test_anchored_window_fixtures(tf: str, day: str, start: str, end: str) -> None:
    assert _window(day, tf)[1:] == (start, end)
    assert _window(day, tf, "2015-03-07")[1:] == (start, end)  # the grid ignores the first day


@pytest.mark.parametrize(
    ("tf", "day", "bar_seq"),
    [
        ("1W_CAL_ANCHOR_US", "1970-01-04", 0),
        ("1W_CAL_ANCHOR_US", "1970-01-11", 1),
        ("1W_CAL_ANCHOR_ISO", "1970-01-11", 0),
        ("1W_CAL_ANCHOR_ISO", "1970-01-12", 1),
        ("3M_CAL_ANCHOR", "2025-02-15", 2025 * 4),
        ("3M_CAL_ANCHOR", "2025-11-15", 2025 * 4 + 3),
        ("5M_CAL_ANCHOR", "2025-12-15", 2025 * 3 + 2),
        ("1Y_CAL_ANCHOR", "2025-06-01", 2025),
        ("2Y_CAL_ANCHOR", "2025-06-01", 1012),
    ],
)
def test_anchored_bar_seq_is_the_grid_index(tf: str, day: str, bar_seq: int) -> None:
    assert _window(day, tf)[0] == bar_seq


def test_day_before_first_full_period_restarts_at_first_bar() -> None:
    assert _window("2025-01-02", "1M_CAL", "2025-01-02") == (1, "2025-02-01", "2025-02-28")
    assert _window("2025-06-30", "1Y_CAL", "2025-01-05") == (1, "2026-01-01", "2026-12-31")


@pytest.mark.parametrize(
    ("days", "first_day", "match"),
    [
        (["2025-01-02", "2025-01-01"], "2025-01-01", "sorted"),
        (["2025-01-01", "2025-01-01"], "2025-01-01", "unique"),
        (["2025-01-01"], "2025-01-02", "first_day"),
        (["2025-01-01T06:00"], "2025-01-01", "midnight"),
        (["NaT"], "2025-01-01", "NaT"),
    ],
)
def test_bad_days_are_rejected(days: list[str], first_day: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        assign_windows(np.array(days, dtype="datetime64[m]"), TF["1W_CAL_US"], D(first_day))


def test_day_before_first_day_is_a_backfill_error() -> None:
    with pytest.raises(ValueError, match="before first_day"):
        window_containing(D("2024-12-31"), TF["1M_CAL_ANCHOR"], D("2025-01-01"))


def test_nanosecond_days_are_accepted() -> None:
    days = np.array(["2025-01-05", "2025-01-12"], dtype="datetime64[ns]")
    assert assign_windows(days, TF["1W_CAL_US"], days[0]).bar_seq.tolist() == [1, 2]


@settings(max_examples=100, deadline=None)
@given(
    tf=st.sampled_from(sorted(TF)),
    first=st.dates(date(2009, 1, 1), date(2030, 12, 31)),
    offset=st.integers(0, 400),
    length=st.integers(1, 900),
)
def test_windows_contain_their_days_and_tile_the_calendar(
    tf: str, first: date, offset: int, length: int
) -> None:
    t = TF[tf]
    f = D(first, "D")
    days = np.arange(f + offset, f + offset + length)
    w = assign_windows(days, t, f)
    ok = w.bar_seq != -1 if t.roll_policy != "calendar_anchor" else np.ones(days.size, bool)
    assert (np.isnat(w.win_start) == ~ok).all()
    assert ((w.win_start[ok] <= days[ok]) & (days[ok] <= w.win_end[ok])).all()
    if t.roll_policy != "calendar_anchor":
        assert (days[~ok] < w.win_start[ok][:1]).all() if ok.any() else True
        assert (w.bar_seq[ok] >= 1).all()
    seq, start, end = w.bar_seq[ok], w.win_start[ok], w.win_end[ok]
    step = np.flatnonzero(np.diff(seq) != 0) + 1
    assert (np.diff(seq) >= 0).all() and (seq[step] == seq[step - 1] + 1).all()  # consecutive
    assert (start[step] == end[step - 1] + 1).all()  # windows tile the calendar
    if tf in SEEDED:
        lengths = (end - start).astype(np.int64) + 1
        assert ((t.tf_days_min <= lengths) & (lengths <= t.tf_days_max)).all()
    i = int(ok.argmax()) if ok.any() else None
    if i is not None:
        assert window_containing(days[i], t, f) == (seq[0], start[0], end[0])


# --- an independent oracle: BARS.md's rules spelled out with datetime.date, day by day ----------
_UNIT_START = {
    "D": lambda d: True,
    "W": None,  # depends on the scheme: Sunday (US) or Monday (ISO)
    "M": lambda d: d.day == 1,
    "Y": lambda d: d.month == 1 and d.day == 1,
}


def _is_unit_start(d: date, t: Timeframe) -> bool:
    if t.base_unit == "W":
        return d.weekday() == (6 if t.calendar_scheme == "US" else 0)
    return bool(_UNIT_START[t.base_unit](d))  # type: ignore[operator]


def _add_units(d: date, t: Timeframe, n: int) -> date:
    """``d`` (a unit start) moved ``n`` units forward, by calendar arithmetic."""
    if t.base_unit == "D":
        return d + timedelta(days=n)
    if t.base_unit == "W":
        return d + timedelta(weeks=n)
    if t.base_unit == "M":
        y, m = divmod(d.month - 1 + n, 12)
        return date(d.year + y, m + 1, 1)
    return date(d.year + n, 1, 1)


def _oracle_rolling_or_calendar(days: list[date], t: Timeframe, first: date) -> list[tuple[int, date, date] | None]:
    """Walk forward from ``first`` to the first unit start, then lay bars of ``tf_qty`` units
    end to end; each day gets the bar it falls in (None before the first bar)."""
    start = first
    while not _is_unit_start(start, t):
        start += timedelta(days=1)
    bars = []
    seq = 1
    while start <= days[-1]:
        nxt = _add_units(start, t, t.tf_qty)
        bars.append((seq, start, nxt - timedelta(days=1)))
        start, seq = nxt, seq + 1
    out: list[tuple[int, date, date] | None] = []
    for d in days:
        out.append(next((b for b in bars if b[1] <= d <= b[2]), None))
    return out


def _oracle_anchor(d: date, t: Timeframe) -> tuple[int, date, date]:
    """BARS.md's fixed grid: N-week blocks counted from the epoch week, N-month blocks that
    restart every January (the last one cut at Dec 31), N-year blocks of year // N."""
    n = t.tf_qty
    if t.base_unit == "W":
        epoch = date(1970, 1, 4) if t.calendar_scheme == "US" else date(1970, 1, 5)
        start = d
        while (start - epoch).days % (7 * n):  # step back to the block's first day
            start -= timedelta(days=1)
        return (start - epoch).days // (7 * n), start, start + timedelta(days=7 * n - 1)
    if t.base_unit == "M":
        block = (d.month - 1) // n
        start = date(d.year, block * n + 1, 1)
        end = min(_add_units(start, t, n), date(d.year + 1, 1, 1)) - timedelta(days=1)
        return d.year * -(-12 // n) + block, start, end
    start = date(d.year - d.year % n, 1, 1)
    return d.year // n, start, date(start.year + n, 1, 1) - timedelta(days=1)


@settings(max_examples=150, deadline=None)
@given(
    tf=st.sampled_from(sorted(TF)),
    first=st.dates(date(2009, 1, 1), date(2030, 12, 31)),
    offset=st.integers(0, 400),
    length=st.integers(1, 500),
    probe=st.integers(0, 10**6),
)
def test_windows_match_a_brute_force_calendar_oracle(
    tf: str, first: date, offset: int, length: int, probe: int
) -> None:
    """assign_windows and window_containing against an oracle that shares no code with them."""
    t = TF[tf]
    days = [first + timedelta(days=offset + i) for i in range(length)]
    w = assign_windows(np.array(days, dtype="datetime64[D]"), t, D(first, "D"))
    got = [None if s == -1 else (int(s), a.astype(date), b.astype(date))
           for s, a, b in zip(w.bar_seq, w.win_start, w.win_end, strict=True)]
    if t.roll_policy == "calendar_anchor":
        want = [_oracle_anchor(d, t) for d in days]
    else:
        want = _oracle_rolling_or_calendar(days, t, first)
    assert got == want
    day = days[probe % length]
    seq, start, end = window_containing(D(day, "D"), t, D(first, "D"))
    expected = want[probe % length]
    if expected is None:  # before the first full period: window_containing gives the first bar
        expected = next(b for b in _oracle_rolling_or_calendar(
            [first + timedelta(days=k) for k in range(800)], t, first) if b is not None)
        assert expected[0] == 1
    assert (int(seq), start.astype(date), end.astype(date)) == expected
