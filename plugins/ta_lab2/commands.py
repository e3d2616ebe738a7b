"""CLI command implementations (argument parsing lives in :mod:`ta_lab2.cli`)."""

from __future__ import annotations

import argparse
import logging
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

from ta_lab2.cli import UsageError, parse_ids, refresh_options
from ta_lab2.ops.summary import format_summary
from ta_lab2.refresh.plan import RequestError, check_series, resolve_ids
from ta_lab2.store import db, schema

log = logging.getLogger("ta_lab2")


def cmd_schema(args: argparse.Namespace) -> int:
    url = db.resolve_url()
    with db.connect(url) as conn:
        schema.apply_schema(conn)
    print(f"schema applied to {db.redact(url)}")
    return 0


SHOWN_PROBLEMS = 200  # per file on stderr; every one is in cmc_load_rejects


def cmd_load(args: argparse.Namespace) -> int:
    """Each file in its own transaction, streamed in chunks: one stderr line per rejected line
    (the first SHOWN_PROBLEMS per file), one accounting line per file on stdout. A refused
    file (empty, unrecognised header) exits 2 after the other files loaded; a database error
    on a file (nothing of it written) exits 1."""
    import psycopg

    from ta_lab2.loader import stream_file
    from ta_lab2.store.source import load_stream

    missing = [str(f) for f in args.files if not Path(f).is_file()]
    if missing:
        raise UsageError(f"no such file: {', '.join(missing)}")
    url = db.resolve_url()
    with db.connect(url) as conn:
        schema.apply_schema(conn)
    load_id = f"load__{datetime.now(UTC):%Y%m%dT%H%M%S}_{uuid.uuid4().hex[:6]}"
    totals = [0, 0, 0, 0, 0]
    refused = failed = 0
    for path in map(Path, args.files):
        shown = [0]

        def show(p: object, shown: list[int] = shown) -> None:
            if shown[0] < SHOWN_PROBLEMS:
                print(f"rejected {p}", file=sys.stderr)
            shown[0] += 1

        try:
            with path.open("rb") as fh, db.transaction(url) as conn:
                c = load_stream(conn, path.name, stream_file(fh, path.name, args.id), load_id=load_id,
                                clear_rejects=True, on_problem=show)
        except (psycopg.Error, OSError) as exc:
            failed += 1
            why = " ".join(str(exc).split())[:300]
            print(f"error: {path}: not loaded, nothing of it was written: {type(exc).__name__}: {why}", file=sys.stderr)
            continue
        if shown[0] > SHOWN_PROBLEMS:
            print(f"{path.name}: {shown[0] - SHOWN_PROBLEMS} more rejected lines not shown (see cmc_load_rejects)",
                  file=sys.stderr)
        if c.refused:
            refused += 1
            print(f"error: {path}: {c.refused}; file not loaded", file=sys.stderr)
        print(f"{path.name}: inserted {c.inserted}, updated {c.updated}, unchanged {c.unchanged}, "
              f"rejected {c.rejected} (of {c.lines_read} lines read)")
        totals = [a + b for a, b in zip(totals, (c.inserted, c.updated, c.unchanged, c.rejected, c.lines_read),
                                        strict=True)]
    print("total: inserted {}, updated {}, unchanged {}, rejected {} (of {} lines read)".format(*totals))
    print(f"load id {load_id} (accounting in cmc_load_audit)")
    return 2 if refused else 1 if failed else 0


def cmd_synth(args: argparse.Namespace) -> int:
    from ta_lab2.synth import write_synth

    if args.assets <= 0 or args.days <= 0:
        raise UsageError("--assets and --days must be positive")
    paths = write_synth(args.out, args.assets, args.days, args.seed)
    print(f"wrote {len(paths)} files to {args.out}")
    return 0


def cmd_refresh(args: argparse.Namespace) -> int:
    from ta_lab2.refresh.runner import run_asset

    components, ids, opts = refresh_options(args)
    url = db.resolve_url()
    with db.connect(url) as conn:
        if not opts.dry_run:  # a dry run writes nothing, DDL included
            schema.apply_schema(conn)
        try:
            asset_ids = resolve_ids(conn, ids)
            check_series(conn, opts.tfs, opts.periods, opts.tf_period_combos)
        except RequestError as exc:
            raise UsageError(str(exc)) from None
    results = []
    for k, asset in enumerate(asset_ids, start=1):
        results += run_asset(url, asset, components, opts, retries=2)
        log.info("progress: %d/%d assets done, %d remaining", k, len(asset_ids), len(asset_ids) - k)
    print(format_summary([r.to_dict() for r in results], run_id=opts.run_id, dry_run=opts.dry_run))
    return 1 if any(r.status == "failed" for r in results) else 0


def cmd_validate(args: argparse.Namespace) -> int:
    from ta_lab2.ops.validation import run_validation

    url = db.resolve_url()
    ids = parse_ids(args.ids)
    with db.connect(url) as conn:
        try:
            asset_ids = resolve_ids(conn, ids)
        except RequestError as exc:
            raise UsageError(str(exc)) from None
    report = run_validation(url, asset_ids, run_id=args.run_id or "cli-validate")
    print(report.format())
    return 1 if report.worst == "FAIL" else 0


def cmd_demo(args: argparse.Namespace) -> int:
    from ta_lab2.demo import run_demo

    return run_demo(args.data, synthetic=args.synthetic)


def cmd_bench(args: argparse.Namespace) -> int:
    from ta_lab2.bench import run_bench

    return run_bench(assets=args.assets, days=args.days, airflow=args.airflow, out=args.out)


COMMANDS = {"schema": cmd_schema, "load": cmd_load, "synth": cmd_synth, "refresh": cmd_refresh,
            "validate": cmd_validate, "demo": cmd_demo, "bench": cmd_bench}


def dispatch(args: argparse.Namespace) -> int:
    return COMMANDS[args.command](args)
