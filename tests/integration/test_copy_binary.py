"""The binary COPY writer stores exactly what the CSV writer stores, for every column type the
warehouse uses, with NULLs in any pattern and text of varying lengths, and falls back to CSV
where it cannot lay a column out (sub-microsecond instants, jsonb)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import psycopg
import pytest

from ta_lab2.store import db, io

COLUMNS = ("id", "big", "small", "tf", "ts", "day", "x", "flag", "note")
DDL = """CREATE TABLE {t} (id integer NOT NULL, big bigint, small smallint, tf text NOT NULL, ts timestamptz,
         day date, x double precision, flag boolean, note text, PRIMARY KEY (id))"""


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ts = pd.Series(pd.to_datetime("2020-01-01", utc=True) + pd.to_timedelta(rng.integers(0, 10**12, n), unit="us"))
    ts[rng.random(n) < 0.2] = pd.NaT
    x = rng.standard_normal(n) * 10.0 ** rng.integers(-300, 300, n)
    x[rng.random(n) < 0.2] = np.nan
    x[:3] = [0.1 + 0.2, -0.0, 5e-324]
    day = pd.Series(pd.to_datetime("1999-12-25") + pd.to_timedelta(rng.integers(0, 4000, n), unit="D"))
    day[rng.random(n) < 0.3] = pd.NaT
    note = np.array([None if r < 0.25 else "é" * int(k) + "x" for r, k in zip(rng.random(n), rng.integers(0, 5, n), strict=True)],
                    dtype=object)
    flag = np.array([None if r < 0.1 else bool(r > 0.5) for r in rng.random(n)], dtype=object)
    return pd.DataFrame({
        "id": np.arange(n), "big": _some_none(rng, rng.integers(-2**62, 2**62, n)),
        "small": rng.integers(-2**15, 2**15, n), "tf": rng.choice(["1D", "7D", "365D", "W-SUN", "M"], n),
        "ts": ts, "day": day, "x": x, "flag": flag, "note": note,
    })


def _some_none(rng: np.random.Generator, values: np.ndarray) -> np.ndarray:
    out = values.astype(object)
    out[rng.random(len(out)) < 0.1] = None
    return out


def _stored(conn: psycopg.Connection, table: str) -> list[tuple[object, ...]]:
    cols = ", ".join(COLUMNS)
    return conn.execute(f"SELECT {cols}, float8send(x) FROM {table} ORDER BY id").fetchall()


def test_binary_copy_stores_what_csv_stores(fresh_db_url: str) -> None:
    df = _frame(3000, 7)
    with db.connect(fresh_db_url) as conn:
        for t in ("via_binary", "via_csv"):
            conn.execute(DDL.format(t=t))
        assert io.copy_frame_binary(conn, "via_binary", COLUMNS, df) == len(df)
        assert io.copy_frame_csv(conn, "via_csv", COLUMNS, df) == len(df)
        binary, csv = _stored(conn, "via_binary"), _stored(conn, "via_csv")
    assert len(binary) == len(df)
    assert binary == csv  # float8send: the float bits too
    nulls = {c: sum(r[i] is None for r in binary) for i, c in enumerate(COLUMNS)}
    assert all(nulls[c] > 0 for c in ("big", "ts", "day", "x", "flag", "note")), nulls
    assert {len(r[3]) for r in binary} == {1, 2, 4, 5}


def test_copy_frame_falls_back_to_csv_for_what_binary_cannot_lay_out(fresh_db_url: str) -> None:
    sub_us = pd.DataFrame({"id": [1, 2], "ts": pd.to_datetime(["2021-01-01 00:00:00.0000007", "2021-01-02 00:00:00.0000000"], utc=True)})
    js = pd.DataFrame({"id": [1], "doc": [{"a": [1, 2]}]})
    with db.connect(fresh_db_url) as conn:
        conn.execute("CREATE TABLE t_ts (id integer, ts timestamptz)")
        conn.execute("CREATE TABLE t_js (id integer, doc jsonb)")
        with pytest.raises(Exception, match="timestamp"):
            io.copy_frame_binary(conn, "t_ts", ("id", "ts"), sub_us)
        conn.rollback()
        conn.execute("CREATE TABLE t_ts (id integer, ts timestamptz)")
        conn.execute("CREATE TABLE t_js (id integer, doc jsonb)")
        assert io.copy_frame(conn, "t_ts", ("id", "ts"), sub_us) == 2
        assert io.copy_frame(conn, "t_js", ("id", "doc"), js) == 1
        got = conn.execute("SELECT to_char(ts, 'US') FROM t_ts ORDER BY id").fetchall()
        doc = conn.execute("SELECT doc FROM t_js").fetchone()
    assert got == [("000001",), ("000000",)]  # the server rounded 0.7 us up, as the CSV path always did
    assert doc == ({"a": [1, 2]},)


def test_binary_copy_refuses_integers_out_of_range(fresh_db_url: str) -> None:
    with db.connect(fresh_db_url) as conn:
        conn.execute("CREATE TABLE t_int (id integer)")
        assert io.copy_frame_binary(conn, "t_int", ("id",), pd.DataFrame({"id": pd.Series([], dtype="int64")})) == 0
        with pytest.raises(ValueError, match="out of range for an integer column"):
            io.copy_frame_binary(conn, "t_int", ("id",), pd.DataFrame({"id": [1, 2**31]}))
