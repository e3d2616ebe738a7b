"""CLI command implementations (argument parsing lives in :mod:`ta_lab2.cli`)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ta_lab2.cli import UsageError, parse_ids, refresh_options
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
    """Each file in its own transaction, streamed in chunks: one stderr line per rejected line
    (the first SHOWN_PROBLEMS per file, then a count), one accounting line per file on
    stdout. A refused file (empty, unrecognised header, unknown asset) is one stderr line,
    exit 2 after the other files loaded; a database error on a file (nothing of it written)
    exits 1."""
    import psycopg

    from ta_lab2.loader import ProblemReport, iter_file
    from ta_lab2.store import source

    missing = [str(f) for f in args.files if not Path(f).is_file()]
    if missing:
        raise UsageError(f"no such file: {', '.join(missing)}")
    url = db.resolve_url()
    with db.connect(url) as conn:
        schema.apply_schema(conn)
        registry = source.registry(conn)
    load_id = source.new_load_id("load")
    totals = [0, 0, 0, 0, 0]
    refused = failed = 0
    for path in map(Path, args.files):
        report = ProblemReport(lambda text: print(text, file=sys.stderr))
        try:
            with db.transaction(url) as conn:
                c = source.upsert_chunks(conn, iter_file(path, args.id, registry, strict=False), load_id=load_id,
                                         on_problem=report)
        except (psycopg.Error, OSError) as exc:
            failed += 1
            why = " ".join(str(exc).split())[:300]
            print(f"error: {path}: not loaded, nothing of it was written: {type(exc).__name__}: {why}", file=sys.stderr)
            continue
        report.finish()
        if c.refused:
            refused += 1
            print(f"error: {path}: {c.refused}", file=sys.stderr)
        print(c.line(path.name))
        totals = [a + b for a, b in zip(totals, (c.inserted, c.updated, c.unchanged, c.rejected, c.lines_read),
                                        strict=True)]
    print("total: inserted {}, updated {}, unchanged {}, rejected {} (of {} lines read)".format(*totals))
    print(f"load id {load_id} (accounting in cmc_load_audit)")
    return 2 if refused else 1 if failed else 0


def cmd_assets(args: argparse.Namespace) -> int:
    from ta_lab2.assets import parse_map
    from ta_lab2.store import source

    url = db.resolve_url()
    with db.connect(url) as conn:
        schema.apply_schema(conn)
    if args.assets_command == "import":
        if not args.file.is_file():
            raise UsageError(f"no such file: {args.file}")
        try:
            assets = parse_map(args.file.read_text(encoding="utf-8-sig"), str(args.file))
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        with db.transaction(url) as conn:
            inserted, updated = source.import_assets(conn, assets)
        print(f"{args.file.name}: {inserted} assets added, {updated} updated")
        return 0
    with db.connect(url) as conn:
        rows = source.list_assets(conn)
    from ta_lab2.ops.summary import table

    print(table(["id", "symbol", "name", "slug", "active", "first day", "last day"],
                [[str(r[0]), str(r[1]), str(r[2]), str(r[3] or ""), "yes" if r[4] else "no",
                  f"{r[5]:%Y-%m-%d}" if r[5] else "-", f"{r[6]:%Y-%m-%d}" if r[6] else "-"] for r in rows]))
    print(f"{len(rows)} assets; {sum(1 for r in rows if r[4] and r[5])} active with data (refreshed by ids=all)")
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from ta_lab2.cli import parse_as_of
    from ta_lab2.ingest import ApiAuthError, run_ingest
    from ta_lab2.ingest.cmc_api import api_config

    url = db.resolve_url()
    try:
        result = run_ingest(url, as_of=parse_as_of(args.as_of), ids=parse_ids(args.ids), dry_run=args.dry_run,
                            api=api_config())
    except ApiAuthError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None
    print("\n".join(result.lines()))
    return 0 if result.clean else 1


def cmd_synth(args: argparse.Namespace) -> int:
    from ta_lab2.synth import write_synth

    if args.assets <= 0 or args.days <= 0:
        raise UsageError("--assets and --days must be positive")
    paths = write_synth(args.out, args.assets, args.days, args.seed)
    print(f"wrote {len(paths)} files to {args.out}")
    return 0


def cmd_refresh(args: argparse.Namespace) -> int:
    """The DAG's run in one process (``ta_lab2.cli_refresh``): progress lines, the summary, the log path."""
    import sys

    from ta_lab2 import logsetup
    from ta_lab2.cli_refresh import run_refresh
    from ta_lab2.progress import ConsoleHandler
    from ta_lab2.refresh.runner import tune_gc

    tune_gc()

    components, ids, opts, params = refresh_options(args)
    url = db.resolve_url()
    with db.connect(url) as conn:
        if not opts.dry_run:  # a dry run writes nothing, DDL included
            schema.apply_schema(conn)
        try:
            asset_ids = resolve_ids(conn, ids)
            check_series(conn, opts.tfs, opts.periods, opts.tf_period_combos)
        except RequestError as exc:
            raise UsageError(str(exc)) from None
    keep = args.log_retention_days
    log_path, removed = logsetup.open_run_log(logsetup.log_dir(args.log_dir), keep)
    log.debug("python -m ta_lab2 %s; log %s; removed %d logs older than %d days: %s", args.argv, log_path,
              len(removed), keep, ", ".join(p.name for p in removed) or "none")
    verbose, quiet = args.verbose or args.refresh_verbose, args.quiet
    live = sys.stdout.isatty() and not quiet

    def to_console(console: object) -> None:
        logsetup.add_handler(ConsoleHandler(console), verbose=verbose, quiet=quiet, info_from=logsetup.REFRESH_CONSOLE)

    try:
        run = run_refresh(url, asset_ids, components, opts, params, live=live, on_console=to_console)
    finally:
        if live:
            logsetup.configure_console(verbose=verbose, quiet=quiet, info_from=logsetup.REFRESH_CONSOLE)
    logging.getLogger("ta_lab2.cli").info("summary:\n%s", run["text"], extra={"file_only": True})
    print(run["text"], flush=True)
    print(f"log: {log_path}", flush=True)
    return 1 if run["assets_failed"] or run["validation_fail"] else 0


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


def cmd_chart(args: argparse.Namespace) -> int:
    from ta_lab2.charts import ChartError
    from ta_lab2.cli import parse_periods
    from ta_lab2.ops.charting import write_chart

    out = args.out or Path(f"chart_{args.id}_{args.family}_{args.tf}.png")
    try:
        path = write_chart(db.resolve_url(), args.id, args.family, args.tf, parse_periods(args.periods), out,
                           args.bars)
    except ChartError as exc:
        raise UsageError(f"chart: {exc}") from None
    print(path)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from ta_lab2.demo import run_demo

    return run_demo(args.data, synthetic=args.synthetic)


def cmd_bench(args: argparse.Namespace) -> int:
    from ta_lab2.bench import run_bench

    return run_bench(assets=args.assets, days=args.days, airflow=args.airflow, out=args.out)


COMMANDS = {"schema": cmd_schema, "load": cmd_load, "assets": cmd_assets, "ingest": cmd_ingest, "synth": cmd_synth,
            "refresh": cmd_refresh, "validate": cmd_validate, "chart": cmd_chart, "demo": cmd_demo,
            "bench": cmd_bench}


def dispatch(args: argparse.Namespace) -> int:
    return COMMANDS[args.command](args)
