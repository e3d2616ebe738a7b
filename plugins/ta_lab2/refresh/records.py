"""A batch's connection session and the audit writes (light: no pandas at import, so the
freshness and summary tasks that only record results do not pay for the refresh engine)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import psycopg

from ta_lab2.refresh.context import ComponentResult
from ta_lab2.store import audit, db

if TYPE_CHECKING:
    from ta_lab2.store.batch import BatchReads

log = logging.getLogger(__name__)


class Session:
    """A connection (opened on first use, reopened after a failure) and the cached reads of
    one batch of assets, shared by the components run on it."""

    def __init__(self, url: str, asset_ids: Sequence[int]) -> None:
        self.url = url
        self.ids = list(asset_ids)
        self._conn: psycopg.Connection | None = None
        self._reads: BatchReads | None = None

    def connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = db.connect(self.url)
            self._reads = None
        return self._conn

    def reads(self) -> BatchReads:
        from ta_lab2.store.batch import BatchReads  # pandas: only for tasks that compute

        if self._reads is None:
            self._reads = BatchReads(self.connection(), self.ids)
        return self._reads

    def reset(self) -> None:
        """Drop the connection (after an error) and everything read on it."""
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # already broken: nothing to release
                pass
        self._conn = None
        self._reads = None

    close = reset


def record_results(session: Session, run_id: str, results: Sequence[ComponentResult]) -> None:
    """Audit rows of a batch in one transaction; an audit failure is logged, never raised.

    A broken connection (e.g. the session terminated right after the step's data commit) is
    retried once on a new one: the DAG's later tasks read these rows (``orchestration.runnable``),
    and a lost ``ok`` row would hold the asset back as a failure no task retry repairs."""
    rows = [r.to_dict() for r in results]
    for attempt in (1, 2):
        try:
            conn = session.connection()
            audit.put_asset_results(conn, run_id, rows)
            conn.commit()
            return
        except Exception as exc:
            session.reset()
            if attempt == 1 and db.is_transient(exc):
                continue
            log.warning("%d audit rows of run %s not written: %s", len(results), run_id, exc)
            return


def record_many(url: str, run_id: str, results: Sequence[ComponentResult]) -> None:
    """Audit rows in one transaction on their own connection; an audit failure is logged, never raised."""
    if not results:
        return
    sess = Session(url, sorted({r.asset_id for r in results}))
    try:
        record_results(sess, run_id, results)
    finally:
        sess.close()


def record_result(url: str, run_id: str, result: ComponentResult) -> None:
    """One audit row in its own transaction; an audit failure is logged, never raised."""
    record_many(url, run_id, [result])
