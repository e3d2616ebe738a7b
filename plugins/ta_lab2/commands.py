"""CLI command implementations (argument parsing lives in :mod:`ta_lab2.cli`)."""

from __future__ import annotations

import argparse
import logging
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


def cmd_load(args: argparse.Namespace) -> int:
    from ta_lab2.loader import parse_file
    from ta_lab2.store.source import upsert_parsed

    missing = [str(f) for f in args.files if not Path(f).is_file()]
    if missing:
        raise UsageError(f"no such file: {', '.join(missing)}")
    url = db.resolve_url()
    with db.connect(url) as conn:
        schema.apply_schema(conn)
    totals = [0, 0, 0, 0]
    for path in args.files:
        try:
            parsed = parse_file(Path(path), args.id)
        except ValueError as exc:
            raise UsageError(f"{path}: {exc}") from None
        with db.transaction(url) as conn:
            counts = upsert_parsed(conn, parsed)
        for p in parsed.problems:
            print(f"rejected {p}")
        print(f"{Path(path).name}: inserted {counts.inserted}, updated {counts.updated}, "
              f"unchanged {counts.unchanged}, rejected {counts.rejected}")
        totals = [a + b for a, b in zip(totals, (counts.inserted, counts.updated, counts.unchanged,
                                                 counts.rejected), strict=True)]
    print("total: inserted {}, updated {}, unchanged {}, rejected {}".format(*totals))
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    from ta_lab2.synth import write_synth

    if args.assets <= 0 or args.days <= 0:
        raise UsageError("--assets and --days must be positive")
    paths = write_synth(args.out, args.assets, args.days, args.seed)
    print(f"wrote {len(paths)} files to {args.out}")
    return 0


def cmd_refresh(args: argparse.Namespace) -> int:
    from ta_lab2.refresh.runner import CLI_BATCH_SIZE, run_components

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
    for k in range(0, len(asset_ids), CLI_BATCH_SIZE):
        batch = asset_ids[k:k + CLI_BATCH_SIZE]
        results += run_components(url, batch, components, opts, retries=2)
        done = k + len(batch)
        log.info("progress: %d/%d assets done, %d remaining", done, len(asset_ids), len(asset_ids) - done)
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
