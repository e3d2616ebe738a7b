"""The bench checkpoints before each timed refresh (``bench.common.settle``): on a server where the
role may, it does (the WAL's redo point moves), and says how long it took; where the role may not,
it says so and the bench goes on."""

from __future__ import annotations

import psycopg

from ta_lab2.bench.common import settle
from tests.conftest import create_database, drop_database


def _redo(url: str) -> str:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT redo_lsn::text FROM pg_control_checkpoint()").fetchone()
    assert row is not None
    return str(row[0])


def test_settle_checkpoints_and_a_role_that_may_not_is_reported(pg_server_url: str) -> None:
    url = create_database(pg_server_url, "ta_lab2_settle")
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g")  # WAL to checkpoint
            conn.execute("DROP ROLE IF EXISTS ta_lab2_settle_plain")
            conn.execute("CREATE ROLE ta_lab2_settle_plain LOGIN")
        before = _redo(url)
        took = settle(url)
        assert took is not None and took >= 0.0
        assert _redo(url) != before
        plain = psycopg.conninfo.make_conninfo(url, user="ta_lab2_settle_plain")
        assert settle(plain) is None
    finally:
        drop_database(pg_server_url, url)
        with psycopg.connect(pg_server_url, autocommit=True) as conn:
            conn.execute("DROP ROLE IF EXISTS ta_lab2_settle_plain")
