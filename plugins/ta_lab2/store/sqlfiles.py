"""Load SQL files from ``include/sql`` by name."""

from __future__ import annotations

from functools import cache
from pathlib import Path

SQL_DIR = Path(__file__).resolve().parents[3] / "include" / "sql"


@cache
def load(name: str) -> str:
    """Text of ``include/sql/<name>.sql`` (``name`` may contain a sub-folder)."""
    path = SQL_DIR / f"{name}.sql"
    if not path.is_file():
        raise FileNotFoundError(f"no SQL file {path}")
    return path.read_text()


def ddl_files() -> list[Path]:
    """Numbered DDL files in apply order (templates are applied per family separately)."""
    return sorted(p for p in (SQL_DIR / "ddl").glob("[0-9][0-9][0-9]_*.sql") if ".template" not in p.name)
