"""Logging for ``python -m ta_lab2``: the console, and the daily refresh log file.

* Console: ``ta_lab2`` lines at INFO (``--verbose``: DEBUG, with time, level and logger);
  ``--quiet``: ERROR only. Lines below WARNING go to stdout, warnings and errors to stderr
  (so ``refresh --all --quiet >/dev/null`` in cron mails only the errors). ``refresh`` shows
  its progress and run lines at INFO (:data:`REFRESH_CONSOLE`); each step's own INFO detail
  only with ``--verbose`` (always in the file). Third-party
  loggers (pgserver's "a postgres server is already running…", httpx, Airflow's) reach the
  console only at WARNING and above, and third-party Python warnings (``py.warnings``) not at
  all, unless ``--verbose``.
  A record logged with ``extra={"file_only": True}`` (the summary, printed separately) skips
  the console.
* File (``refresh`` only): ``<log dir>/refresh-YYYY-MM-DD.log`` (UTC day of the run's start,
  appended) receives the full verbose stream whatever the console shows. The log dir is
  ``--log-dir``, else env ``TA_LAB2_LOG_DIR``, else ``.logs`` under the current directory.
  Files named ``refresh-YYYY-MM-DD.log`` whose day is more than the retention (``--log-
  retention-days``, env ``TA_LAB2_LOG_RETENTION_DAYS``, default 30) before today are deleted
  by the command itself; no other file is touched. The file is opened once the request is
  accepted (what was logged before, e.g. the embedded server's start, is buffered and written
  first), so a refused request creates no file.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import re
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import IO

ENV_LOG_DIR = "TA_LAB2_LOG_DIR"
ENV_RETENTION = "TA_LAB2_LOG_RETENTION_DAYS"
DEFAULT_LOG_DIR = Path(".logs")
DEFAULT_RETENTION_DAYS = 30
LOG_NAME = re.compile(r"^refresh-(\d{4}-\d{2}-\d{2})\.log$")
VERBOSE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_TAG = "_ta_lab2_handler"
REFRESH_CONSOLE = ("ta_lab2.progress", "ta_lab2.cli")  # refresh: progress and run lines on the console


class _ConsoleFilter(logging.Filter):
    """Keep ``ta_lab2`` records; third-party ones only from WARNING up (unless verbose);
    ``below``: only records under that level (the stdout half of the console)."""

    def __init__(self, verbose: bool, below: int | None = None, info_from: tuple[str, ...] = ("ta_lab2",)) -> None:
        super().__init__()
        self.verbose, self.below, self.info_from = verbose, below, info_from

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "file_only", False):
            return False
        if self.below is not None and record.levelno >= self.below:
            return False
        if self.verbose:
            return True
        if record.name == "py.warnings":  # third-party Python warnings (e.g. platformdirs'): file only
            return False
        own = any(record.name == n or record.name.startswith(n + ".") for n in self.info_from)
        return own or record.levelno >= logging.WARNING


class _PlainFormatter(logging.Formatter):
    """The message alone; warnings and errors get their level in front."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return text if record.levelno < logging.WARNING else f"{record.levelname}: {text}"


def _tagged(handler: logging.Handler) -> logging.Handler:
    setattr(handler, _TAG, True)
    return handler


def reset_console() -> None:
    """Remove our console handlers (the file handler stays until :func:`close_run_log`)."""
    root = logging.getLogger()
    for h in [h for h in root.handlers
              if getattr(h, _TAG, False) and not isinstance(h, logging.FileHandler | logging.handlers.MemoryHandler)]:
        root.removeHandler(h)
        h.close()


def console_level(*, verbose: bool, quiet: bool) -> int:
    return logging.DEBUG if verbose else logging.ERROR if quiet else logging.INFO


def configure_console(*, verbose: bool = False, quiet: bool = False, stream: IO[str] | None = None,
                      info_from: tuple[str, ...] = ("ta_lab2",)) -> None:
    """Replace the console handlers (a second call in the same process does not duplicate lines).

    ``info_from``: the loggers whose INFO lines the console shows without ``--verbose``
    (``refresh`` passes :data:`REFRESH_CONSOLE`: its progress and run lines, not each step's own).

    ``stream``: one stream for every level (the TTY case, see :func:`add_handler`); default
    stdout below WARNING and stderr from WARNING."""
    reset_console()
    logging.captureWarnings(True)  # Python warnings become log records (py.warnings): console only if verbose
    root = logging.getLogger()
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("ta_lab2").setLevel(logging.DEBUG)  # the file always gets ta_lab2's debug lines
    fmt: logging.Formatter = logging.Formatter(VERBOSE_FORMAT) if verbose else _PlainFormatter("%(message)s")
    level = console_level(verbose=verbose, quiet=quiet)
    pairs: list[tuple[logging.StreamHandler[IO[str]], int | None]]
    if stream is not None:
        pairs = [(logging.StreamHandler(stream), None)]
    else:
        pairs = [(logging.StreamHandler(sys.stdout), logging.WARNING), (logging.StreamHandler(sys.stderr), None)]
    for handler, below in pairs:
        handler.setLevel(max(level, logging.WARNING) if below is None else level)
        handler.addFilter(_ConsoleFilter(verbose, below, info_from))
        handler.setFormatter(fmt)
        root.addHandler(_tagged(handler))


def add_handler(handler: logging.Handler, *, verbose: bool, quiet: bool,
                info_from: tuple[str, ...] = ("ta_lab2",)) -> None:
    """Replace the console handlers by ``handler`` (e.g. one printing above a live progress bar)."""
    reset_console()
    root = logging.getLogger()
    handler.setLevel(console_level(verbose=verbose, quiet=quiet))
    handler.addFilter(_ConsoleFilter(verbose, None, info_from))
    handler.setFormatter(logging.Formatter(VERBOSE_FORMAT) if verbose else _PlainFormatter("%(message)s"))
    root.addHandler(_tagged(handler))


def log_dir(flag: Path | None) -> Path:
    return flag if flag is not None else Path(os.environ.get(ENV_LOG_DIR) or DEFAULT_LOG_DIR)


def retention_days(flag: int | None) -> int:
    if flag is not None:
        return flag
    text = os.environ.get(ENV_RETENTION)
    if not text:
        return DEFAULT_RETENTION_DAYS
    try:
        days = int(text)
    except ValueError:
        raise ValueError(f"{ENV_RETENTION}: {text!r} is not a positive integer") from None
    if days <= 0:
        raise ValueError(f"{ENV_RETENTION}: {text!r} is not a positive integer")
    return days


def prune(folder: Path, keep_days: int, today: date) -> list[Path]:
    """Delete ``refresh-YYYY-MM-DD.log`` files dated more than ``keep_days`` before ``today``."""
    removed = []
    cutoff = today - timedelta(days=keep_days)
    for path in sorted(folder.glob("refresh-*.log")):
        m = LOG_NAME.match(path.name)
        if not m:
            continue
        try:
            day = date.fromisoformat(m.group(1))
        except ValueError:
            continue
        if day < cutoff:
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


class _Buffer(logging.handlers.MemoryHandler):
    """Holds the records logged before the run is accepted (e.g. pgserver's start-up lines):
    flushed into the day's file when the run starts, dropped when the request is refused."""

    def shouldFlush(self, record: logging.LogRecord) -> bool:
        return False


def buffer_run_log() -> None:
    handler = _Buffer(capacity=0)
    handler.setLevel(logging.DEBUG)
    logging.getLogger().addHandler(_tagged(handler))


def open_run_log(folder: Path, keep_days: int, now: datetime | None = None) -> tuple[Path, list[Path]]:
    """Attach the day's file handler (full verbose stream, the buffered records first), prune
    old files; (path, removed)."""
    now = now or datetime.now(UTC)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"refresh-{now:%Y-%m-%d}.log"
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter(VERBOSE_FORMAT))
    root = logging.getLogger()
    for buffer in [h for h in root.handlers if isinstance(h, _Buffer)]:
        root.removeHandler(buffer)
        for record in buffer.buffer:
            if record.levelno >= handler.level:
                handler.handle(record)
        buffer.buffer.clear()
    root.addHandler(_tagged(handler))
    return path, prune(folder, keep_days, now.date())


def close_run_log() -> None:
    """Detach the file handler and drop unflushed buffered records (a refused request)."""
    root = logging.getLogger()
    for h in [h for h in root.handlers if isinstance(h, logging.FileHandler | _Buffer)]:
        if isinstance(h, _Buffer):
            h.buffer.clear()
        root.removeHandler(h)
        h.close()
