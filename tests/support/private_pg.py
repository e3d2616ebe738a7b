"""A private Postgres cluster a test may stop, crash and restart (or starve of connections)
without touching the shared server: pgserver's bundled binaries (``initdb``, ``pg_ctl``) on a
throwaway data directory and a free TCP port. As root the cluster runs as the ``pgserver``
system user, as pgserver itself does."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivatePostgres:
    def __init__(self, max_connections: int = 30, *, host_auth: str = "trust") -> None:
        """``host_auth="scram-sha-256"``: TCP logins need a password (the socket stays trust,
        for :meth:`admin_url`)."""
        from pgserver._commands import POSTGRES_BIN_PATH

        self.bin = Path(POSTGRES_BIN_PATH)
        self.root = Path(tempfile.mkdtemp(prefix="ta_lab2_private_pg_"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.max_connections = max_connections
        self.user: str | None = None
        if os.geteuid() == 0:
            from pgserver.utils import ensure_user_exists

            self.user = "pgserver"
            ensure_user_exists(self.user)
            shutil.chown(self.root, self.user)
        self.root.chmod(0o755)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth-local=trust",
                  f"--auth-host={host_auth}", "--no-sync", "-E", "UTF8")

    def _run(self, exe: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        kw: dict[str, Any] = {"user": self.user} if self.user else {}
        return subprocess.run([str(self.bin / exe), *args], capture_output=True, text=True, check=check,
                              timeout=60, cwd=self.root, **kw)

    def start(self) -> None:
        opts = (f"-p {self.port} -h 127.0.0.1 -k {self.data} -c max_connections={self.max_connections} "
                "-c superuser_reserved_connections=0 -c fsync=off -c synchronous_commit=off")
        self._run("pg_ctl", "-D", str(self.data), "-w", "-l", str(self.root / "log"), "-o", opts, "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-w", "-m", mode, "stop", check=False)

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def admin_url(self, dbname: str = "postgres") -> str:
        """Superuser over the Unix socket (trust), whatever the TCP authentication is."""
        return f"postgresql://postgres@/{dbname}?host={self.data}&port={self.port}"

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)
