"""Which Postgres server the tests use, chosen explicitly (issue 11):

1. env ``TA_LAB2_TEST_SERVER_URL`` (a URL to the server's maintenance database);
2. else the local server on 127.0.0.1:5432 when something listens there;
3. else the embedded ``pgserver`` one (started under ``.local/pgdata``).

The choice is printed once in pytest's report header. A server that is chosen but refuses
(bad login, missing role, not Postgres, ...) is an error naming the server and the fix:
never a silent switch to another server.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import psycopg

ENV = "TA_LAB2_TEST_SERVER_URL"
LOCAL_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


class TestServerError(RuntimeError):
    """The chosen server cannot be used (one line, with the fix)."""

    __test__ = False  # not a pytest test class


@dataclass(frozen=True)
class ServerChoice:
    url: str
    source: str

    def describe(self) -> str:
        info = psycopg.conninfo.conninfo_to_dict(self.url)
        where = f"{info.get('host', 'socket')}:{info.get('port', 5432)}, " if self.source.startswith("env") else ""
        return f"test database server: {self.source} ({where}user {info.get('user', '?')})"


def is_listening(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _check(url: str, source: str, fix: str) -> None:
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        why = " ".join(str(exc).split())
        raise TestServerError(f"{source}: cannot use it ({why}); {fix}") from None


def choose_server(env: Mapping[str, str], embedded: Callable[[], str], local_url: str = LOCAL_URL) -> ServerChoice:
    """The server for this test session (see the module docstring)."""
    url = env.get(ENV)
    if url:
        _check(url, f"{ENV}", f"fix {ENV} or unset it")
        return ServerChoice(url, f"env {ENV}")
    info = psycopg.conninfo.conninfo_to_dict(local_url)
    host, port = str(info.get("host", "127.0.0.1")), int(info.get("port", 5432))
    if is_listening(host, port):
        _check(local_url, f"the local server on {host}:{port}",
               f"fix its login for {local_url!r}, or set {ENV} to a server the tests may use")
        return ServerChoice(local_url, f"local server on {host}:{port}")
    return ServerChoice(embedded(), f"embedded pgserver (nothing listens on {host}:{port}, {ENV} unset)")
