"""Streaming progress for a CLI refresh: one line per (asset, component) as it completes, a
progress line per component with done/total and an ETA from the run's own pace.

:class:`ProgressReporter` only needs :meth:`ProgressReporter.on_result` to be called with each
:class:`~ta_lab2.refresh.context.ComponentResult` as it completes, so it works with a
per-asset runner as well as a batched one calling ``on_result`` per asset. Lines go through
``logging`` (logger ``ta_lab2.progress``): the console shows them at the default level,
``--quiet`` hides all but the failures, and the log file always has them. On a terminal
(``live=True``) a ``rich`` progress bar redraws in place below the lines.

Lines (``tests/integration/test_cli_progress.py``)::

    Processing ID 1... bars.multi_tf: 245 rows written (3.2s)
    Processing ID 825... bars.1d FAILED (0.1s): DataCorruptionError: ...
    bars.multi_tf complete: 4/4 assets (failed 0, skipped 0); 2/10 components complete, ~8 minutes remaining
    bars.multi_tf: 40/100 assets; run 14% done, ~12 minutes remaining        (every 30 s inside a component)
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

from ta_lab2.refresh.context import ComponentResult

log = logging.getLogger("ta_lab2.progress")
HEARTBEAT_S = 30.0


def human_duration(seconds: float) -> str:
    """``~45 seconds``, ``~8 minutes``, ``~1.5 hours`` (rounded for a human)."""
    if seconds < 1.5:
        return "~1 second"
    if seconds < 90:
        return f"~{round(seconds)} seconds"
    if seconds < 90 * 60:
        return f"~{round(seconds / 60)} minutes"
    return f"~{seconds / 3600:.1f} hours"


def result_line(r: ComponentResult) -> str:
    head = f"Processing ID {r.asset_id}... {r.component}"
    took = f"({r.duration_s:.1f}s)"
    if r.status == "ok":
        return f"{head}: {r.rows_written} rows written {took}"
    if r.status == "dry_run":
        return f"{head}: DRY RUN, {r.rows_written} rows would be written {took}"
    if r.status == "failed":
        return f"{head} FAILED {took}: {r.error}"
    return f"{head} {r.status.replace('_', ' ')}: {r.error}"


class ProgressReporter:
    """Counts results per component and for the run; logs lines; drives a live bar on a TTY."""

    def __init__(self, asset_ids: Sequence[int], components: Sequence[str], *, live: bool = False,
                 clock: Callable[[], float] = time.monotonic, heartbeat_s: float = HEARTBEAT_S) -> None:
        self.n_assets = len(asset_ids)
        self.components = list(components)
        self.total = self.n_assets * len(self.components)
        self.done = 0
        self.per_component: Counter[str] = Counter()
        self.outcomes: Counter[tuple[str, str]] = Counter()
        self.clock = clock
        self.heartbeat_s = heartbeat_s
        self.started = clock()
        self.last_line = self.started
        self.live = live
        self._bar: Any = None
        self._task: Any = None

    # -- a live bar on a terminal -------------------------------------------------------------
    def __enter__(self) -> ProgressReporter:
        if self.live:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("steps"), TimeRemainingColumn(), transient=True)
            self._task = self._bar.add_task("refresh", total=self.total)
            self._bar.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.stop()

    @property
    def console(self) -> Any:
        """The rich console the live bar draws on (log lines printed through it stay above the bar)."""
        return None if self._bar is None else self._bar.console

    # -- the pace -----------------------------------------------------------------------------
    def eta_seconds(self) -> float | None:
        if self.done == 0:
            return None
        return (self.clock() - self.started) / self.done * (self.total - self.done)

    def _remaining(self) -> str:
        eta = self.eta_seconds()
        if self.done >= self.total:
            return "done"
        return "ETA unknown" if eta is None else f"{human_duration(eta)} remaining"

    def components_complete(self) -> int:
        return sum(1 for c in self.components if self.per_component[c] >= self.n_assets)

    # -- the callback -------------------------------------------------------------------------
    def on_result(self, result: ComponentResult) -> None:
        self.done += 1
        self.per_component[result.component] += 1
        self.outcomes[(result.component, result.status)] += 1
        level = logging.ERROR if result.status == "failed" else logging.INFO
        log.log(level, "%s", result_line(result))
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done,
                             description=f"{result.component} {self.per_component[result.component]}"
                                         f"/{self.n_assets} assets")
        c = result.component
        if self.per_component[c] == self.n_assets:
            self.last_line = self.clock()
            log.info("%s complete: %d/%d assets (failed %d, skipped %d); %d/%d components complete, %s", c,
                     self.n_assets, self.n_assets, self.outcomes[(c, "failed")],
                     self.outcomes[(c, "skipped")] + self.outcomes[(c, "not_run")], self.components_complete(),
                     len(self.components), self._remaining())
        elif self.clock() - self.last_line >= self.heartbeat_s:
            self.last_line = self.clock()
            log.info("%s: %d/%d assets; run %d%% done, %s", c, self.per_component[c], self.n_assets,
                     100 * self.done // max(1, self.total), self._remaining())


class ConsoleHandler(logging.Handler):
    """A logging handler printing through a rich console, so lines scroll above the live bar."""

    def __init__(self, console: Any) -> None:
        super().__init__()
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.console.print(self.format(record), markup=False, highlight=False, soft_wrap=True)
        except Exception:  # never let a display problem break the run
            self.handleError(record)
