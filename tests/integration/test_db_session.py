"""A warehouse session compiles no query with JIT unless the URL asks for it (D-engine-7)."""

from __future__ import annotations

import psycopg

from ta_lab2.store import db


def _with_options(url: str, options: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(url)
    info["options"] = options
    return psycopg.conninfo.make_conninfo(**info)  # type: ignore[arg-type]


def test_sessions_run_without_jit_unless_the_url_sets_it(session_db_url: str) -> None:
    with db.connect(session_db_url) as conn:
        assert conn.execute("SHOW jit").fetchone() == ("off",)
        assert conn.execute("SHOW application_name").fetchone() == ("ta_lab2",)
    with db.connect(_with_options(session_db_url, "-c jit=on")) as conn:
        assert conn.execute("SHOW jit").fetchone() == ("on",)
    with db.connect(_with_options(session_db_url, "-c work_mem=8MB")) as conn:  # other options kept
        assert conn.execute("SHOW jit").fetchone() == ("off",)
        assert conn.execute("SHOW work_mem").fetchone() == ("8MB",)
