"""The explicit choice of the test database server (tests/support/dbserver.py)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import psycopg
import pytest

from tests.support.dbserver import ENV, TestServerError, choose_server, is_listening


class Embedded:
    """Stands in for starting pgserver: records that the embedded server was asked for."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        return "postgresql://postgres@/postgres?host=/nonexistent-embedded"


def _with_user(url: str, user: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(url)
    info["user"] = user
    return psycopg.conninfo.make_conninfo(**info)  # type: ignore[arg-type]


def _tcp(url: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(url)
    if str(info.get("host", "")).startswith("/"):
        pytest.skip("the session's server is a unix socket (embedded pgserver): no TCP server to probe")
    return url


@pytest.fixture
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def not_postgres() -> Iterator[int]:
    """A TCP server on 127.0.0.1 that accepts and hangs up: listening, but not Postgres."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    stop = threading.Event()

    def serve() -> None:
        srv.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
                conn.close()
            except OSError:
                continue

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield int(srv.getsockname()[1])
    stop.set()
    t.join()
    srv.close()


def test_the_env_url_wins_and_the_embedded_server_is_not_started(pg_server_url: str) -> None:
    emb = Embedded()
    choice = choose_server({ENV: pg_server_url}, emb, local_url="postgresql://postgres@127.0.0.1:1/postgres")
    assert (choice.url, choice.source, emb.calls) == (pg_server_url, f"env {ENV}", 0)
    assert choice.describe().startswith(f"test database server: env {ENV} (")


def test_a_bad_env_url_is_an_error_not_a_switch(pg_server_url: str) -> None:
    emb = Embedded()
    with pytest.raises(TestServerError, match=rf"^{ENV}: cannot use it \(.*no_such_role_x.*\); fix {ENV} or unset it"):
        choose_server({ENV: _with_user(pg_server_url, "no_such_role_x")}, emb)
    assert emb.calls == 0


def test_a_listening_local_server_is_used(pg_server_url: str) -> None:
    url = _tcp(pg_server_url)
    emb = Embedded()
    choice = choose_server({}, emb, local_url=url)
    assert choice.url == url and choice.source.startswith("local server on ") and emb.calls == 0


def test_a_failed_login_on_the_listening_local_server_is_an_error(pg_server_url: str) -> None:
    url = _with_user(_tcp(pg_server_url), "no_such_role_x")
    emb = Embedded()
    with pytest.raises(TestServerError, match=r"^the local server on .*: cannot use it \(.*no_such_role_x"):
        choose_server({}, emb, local_url=url)
    assert emb.calls == 0


def test_something_else_listening_on_the_port_is_an_error(not_postgres: int) -> None:
    emb = Embedded()
    assert is_listening("127.0.0.1", not_postgres)
    with pytest.raises(TestServerError, match=rf"^the local server on 127.0.0.1:{not_postgres}: cannot use it"):
        choose_server({}, emb, local_url=f"postgresql://postgres@127.0.0.1:{not_postgres}/postgres")
    assert emb.calls == 0


def test_nothing_listening_means_the_embedded_server(free_port: int) -> None:
    emb = Embedded()
    choice = choose_server({}, emb, local_url=f"postgresql://postgres@127.0.0.1:{free_port}/postgres")
    assert emb.calls == 1 and choice.url == Embedded()()
    assert choice.source == f"embedded pgserver (nothing listens on 127.0.0.1:{free_port}, {ENV} unset)"


def test_the_choice_is_in_the_report_header(pytestconfig: pytest.Config) -> None:
    from tests.conftest import pytest_report_header

    assert pytest_report_header(pytestconfig).startswith("test database server: ")
