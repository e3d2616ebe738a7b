"""The inbox: CoinMarketCap files dropped under ``TA_LAB2_INBOX`` are loaded exactly once.

The location is a local folder (``/data/inbox``) or any ``airflow.sdk.ObjectStoragePath`` URI
(``file:///data/inbox``; ``s3://conn_id@bucket/prefix`` needs
``apache-airflow-providers-amazon[s3fs]``, not installed here). Every ``*.csv`` under it
(sub-folders included, hidden files skipped) is hashed (sha256); a content already in
``source_files`` is skipped (re-dropped or renamed: a no-op), a new content is loaded in one
transaction together with its ``source_files`` row, and reported as *changed* when another
content was loaded from the same location before. Files are never moved. A file whose
header or asset cannot be resolved is refused with one line and retried on the next run
(it is not recorded in ``source_files``; its lines and accounting are in ``cmc_load_rejects``
and ``cmc_load_audit`` like any load), so ``assets import`` followed by the next run loads it.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ta_lab2.assets import Registry

if TYPE_CHECKING:
    from ta_lab2.ingest import IngestResult

log = logging.getLogger(__name__)
ENV_INBOX = "TA_LAB2_INBOX"
BLOCK = 1 << 20


def inbox_location() -> str | None:
    return os.environ.get(ENV_INBOX) or None


def inbox_root(location: str) -> Any:
    """A ``Path`` for a plain folder, an ``ObjectStoragePath`` for a URI."""
    if "://" in location:
        from airflow.sdk import ObjectStoragePath

        return ObjectStoragePath(location)
    return Path(location).expanduser()


def inbox_files(root: Any) -> list[Any]:
    """Every visible ``*.csv`` under ``root`` (recursive), in path order."""
    if not root.exists():
        raise FileNotFoundError(f"inbox {root} does not exist ({ENV_INBOX})")
    files = [p for p in root.rglob("*") if p.name.lower().endswith(".csv") and p.is_file()
             and not any(part.startswith(".") for part in p.relative_to(root).parts)]
    return sorted(files, key=str)


def sha256(path: Any) -> tuple[str, int]:
    h, size = hashlib.sha256(), 0
    with path.open("rb") as fh:
        while block := fh.read(BLOCK):
            h.update(block)
            size += len(block)
    return h.hexdigest(), size


def load_inbox(url: str, location: str, result: IngestResult, *, ids: list[int] | None, dry_run: bool) -> None:
    from ta_lab2.store import db, source, sqlfiles

    root = inbox_root(location)
    files = inbox_files(root)
    log.info("inbox %s: %d csv files", location, len(files))
    with db.connect(url) as conn:
        registry = source.registry(conn)
        known = {r[0]: r[1] for r in conn.execute(sqlfiles.load("queries/source_files_all")).fetchall()}
    seen_at = {loc: sha for sha, loc in known.items()}
    for path in files:
        sha, size = sha256(path)
        if sha in known:
            result.files_unchanged += 1
            continue
        where = str(path)
        changed = where in seen_at
        if dry_run:
            result.files_loaded.append(f"{path.name} (would load)")
            continue
        if _load_one(url, path, where, sha, size, registry, ids, result):
            result.files_loaded.append(path.name)
            if changed:
                result.files_changed.append(path.name)
            known[sha] = where


def _load_one(url: str, path: Any, where: str, sha: str, size: int, registry: Registry,
              ids: list[int] | None, result: IngestResult) -> bool:
    """Load one new inbox file through the loader's one path (``store.source.upsert_chunks``:
    one transaction, rejects with line numbers, duplicates in SQL, ``cmc_load_audit``).
    A refused file (bad header, unknown asset) is accounted there but not recorded in
    ``source_files``, so it is retried on the next run."""
    from ta_lab2.loader import ProblemReport, iter_file
    from ta_lab2.store import db, io, source, sqlfiles

    chunks = iter_file(path, None, registry, strict=False)
    first = next(chunks)  # the asset (for --ids) is known once the first chunk is parsed
    asset = first.asset
    if ids is not None and asset is not None and asset.id not in ids:
        result.files_deferred.append(path.name)
        return False
    report = ProblemReport(lambda text: log.warning("inbox: %s", text))
    with db.transaction(url) as conn:
        io.advisory_xact_lock(conn, "source_file", sha)
        counts = source.upsert_chunks(conn, itertools.chain([first], chunks), load_id=result.load_id,
                                      on_problem=report)
        if not counts.refused:
            conn.execute(sqlfiles.load("queries/source_files_put"),
                         {"sha256": sha, "location": where, "file_name": path.name, "size_bytes": size,
                          "asset_id": asset.id if asset else None, "rows_inserted": counts.inserted,
                          "rows_updated": counts.updated, "rows_rejected": counts.rejected})
    report.finish()
    if counts.refused:
        result.files_refused.append(f"{path.name}: {counts.refused}")
        log.warning("inbox: refused %s: %s", where, counts.refused)
        return False
    result.add_counts(counts)
    log.info("inbox: loaded %s (asset %s): %s", where, asset.id if asset else "?", counts.line(path.name))
    return True
