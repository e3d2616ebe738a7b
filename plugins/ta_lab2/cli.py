"""``python -m ta_lab2 COMMAND``: the same code path the DAG tasks call.

Commands: ``schema`` (apply DDL), ``load FILE... [--id N]``, ``assets import FILE|list``,
``ingest [--ids ...] [--as-of ISO]`` (inbox + CoinMarketCap API), ``synth``, ``refresh``,
``validate``, ``chart``, ``demo`` and ``bench``. Bad ids, dates, builders, refreshers, timeframes or periods exit 2 with one
line on stderr; a refresh where any (asset, component) failed exits 1.

``refresh`` needs a target (``--bars``, ``--emas``, ``--all`` or ``--targets``); its other flags are
the DAG's params, built from :mod:`ta_lab2.params`; it runs in :mod:`ta_lab2.cli_refresh`.
"""

from __future__ import annotations

import argparse
import logging
import sys
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from ta_lab2.refresh.context import RunOptions
from ta_lab2.registry import BAR_FAMILY_NAMES

log = logging.getLogger("ta_lab2")


class UsageError(ValueError):
    """A bad argument: reported as one line, exit code 2."""


def _csv(text: str | None) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()] if text else []


def parse_ids(text: str | None) -> list[int] | None:
    """``all``/None -> None (active assets); ``1,52`` -> [1, 52]."""
    if text is None or text.strip().lower() == "all":
        return None
    try:
        ids = [int(t) for t in _csv(text)]
    except ValueError:
        raise UsageError(f"--ids: {text!r} is not 'all' or a comma-separated list of integers") from None
    if not ids or any(i <= 0 for i in ids):
        raise UsageError(f"--ids: {text!r}: ids must be positive integers")
    return ids


def parse_as_of(text: str | None) -> datetime:
    if text is None:
        return datetime.now(UTC)
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--as-of: {text!r} is not an ISO-8601 date or instant") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def parse_periods(text: str | None) -> tuple[int, ...]:
    try:
        periods = tuple(int(t) for t in _csv(text))
    except ValueError:
        raise UsageError(f"--periods: {text!r} is not a comma-separated list of integers") from None
    if any(p <= 0 for p in periods):
        raise UsageError(f"--periods: {text!r}: periods must be positive")
    return periods


def parse_combos(text: str | None) -> tuple[tuple[str, int], ...]:
    combos = []
    for item in _csv(text):
        tf, sep, p = item.partition(":")
        if not sep or not tf or not p.strip().lstrip("-").isdigit():
            raise UsageError(f"--tf-period-combos: {item!r} is not TF:PERIOD (e.g. 7D:10)")
        if int(p) <= 0:
            raise UsageError(f"--tf-period-combos: {item!r}: the period must be positive")
        combos.append((tf.strip(), int(p)))
    return tuple(combos)


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is ONE line on stderr (exit 2), like every other refusal
    (argparse's default prints the whole usage block first). ``-h`` still prints the usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} -h)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value


def _parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="python -m ta_lab2", description=__doc__,
                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-v", "--verbose", action="store_true")
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("schema", help="apply the idempotent DDL")
    ld = sub.add_parser("load", help="upsert CoinMarketCap files into cmc_price_histories7")
    ld.add_argument("files", nargs="+", type=Path)
    ld.add_argument("--id", type=_positive_int, default=None,
                    help="asset id for every row (default: from the file name or its rows via dim_assets)")
    asp = sub.add_parser("assets", help="the asset registry (dim_assets)")
    asub = asp.add_subparsers(dest="assets_command", required=True)
    aim = asub.add_parser("import", help="register assets from a CMC /v1/cryptocurrency/map JSON or an "
                                         "id,symbol,name,slug CSV")
    aim.add_argument("file", type=Path)
    asub.add_parser("list", help="print the registry")
    ing = sub.add_parser("ingest", help="load new inbox files (TA_LAB2_INBOX) and fetch missing days from the "
                                        "CoinMarketCap API (CMC_API_KEY)")
    ing.add_argument("--ids", default="all", help="restrict to these asset ids (default: all)")
    ing.add_argument("--as-of", default=None, help="fetch API days that closed before this instant (default now)")
    ing.add_argument("--dry-run", action="store_true", help="say what would be loaded and fetched, write nothing")
    sy = sub.add_parser("synth", help="write synthetic candle files")
    sy.add_argument("--assets", type=int, default=4)
    sy.add_argument("--days", type=int, default=1095)
    sy.add_argument("--seed", type=int, default=7)
    sy.add_argument("--out", type=Path, default=Path(".local/synth"))
    add_refresh_parser(sub)
    va = sub.add_parser("validate", help="run the validation checks")
    va.add_argument("--ids", default="all")
    va.add_argument("--run-id", default=None)
    ch = sub.add_parser("chart", help="candles of one bar family/timeframe with EMA lines, missing days marked")
    ch.add_argument("--id", type=_positive_int, required=True, help="asset id")
    ch.add_argument("--family", default="multi_tf", choices=list(BAR_FAMILY_NAMES), help="bar family")
    ch.add_argument("--tf", default="7D", help="timeframe, e.g. 7D, 1M_CAL (1D for the 1d family)")
    ch.add_argument("--periods", default="10,50", help="EMA periods to draw, e.g. 10,50")
    ch.add_argument("--bars", type=_positive_int, default=120, help="how many of the last bars to draw")
    ch.add_argument("--out", type=Path, default=None, help="PNG (or .svg) path; default chart_<id>_<family>_<tf>.png")
    de = sub.add_parser("demo", help="load data (the repo's CMC files, else synthetic), run the DAG once, print the summary")
    de.add_argument("--data", type=Path, default=None, help="folder of CMC files (default include/data/cmc, "
                                                            "synthetic when absent)")
    de.add_argument("--synthetic", action="store_true", help="use synthetic candles even if the real data exists")
    be = sub.add_parser("bench", help="measure refresh speed against raw COPY; write docs/BENCHMARKS.md")
    be.add_argument("--assets", type=int, default=100)
    be.add_argument("--days", type=int, default=1095)
    be.add_argument("--airflow", action=argparse.BooleanOptionalAction, default=True,
                    help="time a LocalExecutor DAG run of one new day at the scale with the most assets "
                         "(env TA_LAB2_BENCH_DAG: largest, off or an asset count); --no-airflow skips it")
    be.add_argument("--out", type=Path, default=Path("docs/BENCHMARKS.md"))
    return ap


TARGET_SHORTCUTS = ("bars", "emas", "all")
REFUSAL_NO_TARGET = ("refresh needs a target: --bars, --emas or --all (or --targets bars,emas); "
                     "a bare refresh does nothing on purpose")
# the refresh flags (argparse dests) that are not DAG params: the CLI's own run controls
CLI_ONLY_REFRESH = ("as_of", "run_id", "quiet", "refresh_verbose", "log_dir", "log_retention_days")


def add_refresh_parser(sub: Any) -> argparse.ArgumentParser:
    """The ``refresh`` flags: one per run param of :mod:`ta_lab2.params` (the DAG's params), plus
    the target shortcuts and the CLI's own run controls (:data:`CLI_ONLY_REFRESH`)."""
    from ta_lab2 import logsetup
    from ta_lab2.params import RUN_PARAMS

    rf = sub.add_parser("refresh", help="refresh bars and/or EMAs (needs --bars, --emas or --all)",
                        description="Refresh bars and/or EMAs: the DAG's params as flags, the same freshness "
                                    "gate, validation and summary. One of --bars, --emas, --all (or --targets) "
                                    "is required.")
    tg = rf.add_argument_group("target (one is required)")
    tg.add_argument("--bars", action="store_true", help="the six bar families (same as --targets bars)")
    tg.add_argument("--emas", action="store_true", help="the four EMA families (same as --targets emas)")
    tg.add_argument("--all", action="store_true", help="bars then EMAs (same as --targets bars,emas)")
    pg = rf.add_argument_group("run params (the DAG's params, same names with dashes)")
    for p in RUN_PARAMS:
        shown = ",".join(map(str, p.default)) if isinstance(p.default, list) else p.default
        help_ = f"{p.help} (default {shown})" if shown != "" else p.help
        if p.cli == "flag":
            pg.add_argument(p.flag, dest=p.name, action="store_true", help=p.help)
        elif p.cli == "toggle":
            pg.add_argument(p.flag, dest=p.name, action=argparse.BooleanOptionalAction, default=True,
                            help=p.help + " (default on)")
        elif p.name == "targets":
            pg.add_argument(p.flag, dest=p.name, default=None, metavar=p.metavar, help=p.help)
        else:
            pg.add_argument(p.flag, dest=p.name, default=None, metavar=p.metavar, help=help_)
    cg = rf.add_argument_group("CLI only")
    cg.add_argument("--as-of", default=None, help="source cutoff (exclusive), ISO-8601, default now "
                                                  "(the DAG uses its data-interval end)")
    cg.add_argument("--run-id", default=None, help="default cli__<UTC time>_<6 hex>")
    out = cg.add_mutually_exclusive_group()
    out.add_argument("-q", "--quiet", action="store_true", help="print only errors and the summary (for cron)")
    out.add_argument("-v", "--verbose", dest="refresh_verbose", action="store_true",
                     help="debug detail and third-party logs on the console")
    cg.add_argument("--log-dir", type=Path, default=None,
                    help=f"folder of refresh-YYYY-MM-DD.log (env {logsetup.ENV_LOG_DIR}, default .logs)")
    cg.add_argument("--log-retention-days", type=_positive_int, default=None,
                    help=f"delete refresh logs older than this (env {logsetup.ENV_RETENTION}, default "
                         f"{logsetup.DEFAULT_RETENTION_DAYS})")
    return rf


def _targets(args: argparse.Namespace) -> list[str]:
    shortcuts = [t for t in TARGET_SHORTCUTS if getattr(args, t)]
    if args.targets is not None:
        if shortcuts:
            raise UsageError(f"--targets and --{shortcuts[0]} together: use one of them")
        return _csv(args.targets)  # ``--targets ""`` is refused later like the DAG's ``targets: []``
    if not shortcuts:
        raise UsageError(REFUSAL_NO_TARGET)
    return ["bars", "emas"] if "all" in shortcuts else [t for t in ("bars", "emas") if t in shortcuts]


def _positive_number(flag: str, text: str, *, integer: bool, maximum: float | None = None) -> float | int:
    try:
        value: float | int = int(text) if integer else float(text)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise UsageError(f"{flag}: {text!r} is not {kind}") from None
    if not value > 0 or (maximum is not None and value > maximum):
        raise UsageError(f"{flag}: {text!r} must be > 0" + (f" and <= {maximum:g}" if maximum is not None else ""))
    return value


def refresh_params(args: argparse.Namespace) -> dict[str, Any]:
    """The run's params, in the DAG's shape (``context["params"]``), from the flags."""
    from ta_lab2.params import MAX_BATCH_SIZE, RUN_PARAMS, defaults

    params = defaults()
    params["targets"] = _targets(args)
    for p in RUN_PARAMS:
        value = getattr(args, p.name)
        if p.name == "targets" or value is None:
            continue
        if p.cli in ("flag", "toggle"):
            params[p.name] = bool(value)
        elif p.name == "ids":
            parse_ids(value)
            params[p.name] = value
        elif p.name == "periods":
            params[p.name] = list(parse_periods(value))
        elif p.name == "tf_period_combos":
            params[p.name] = [f"{tf}:{n}" for tf, n in parse_combos(value)]
        elif p.cli == "csv":
            params[p.name] = _csv(value)
        elif p.name == "batch_size" and value.strip().lower() == "auto":
            params[p.name] = "auto"
        elif p.name == "batch_size":
            params[p.name] = _positive_number(p.flag, value, integer=True, maximum=MAX_BATCH_SIZE)
        elif p.cli in ("number", "integer"):
            params[p.name] = _positive_number(p.flag, value, integer=p.cli == "integer",
                                              maximum=p.schema.get("maximum"))
        else:  # pragma: no cover - a new cli kind must be handled here
            raise AssertionError(f"unhandled cli kind {p.cli} for {p.name}")
    return params


def refresh_options(args: argparse.Namespace) -> tuple[list[str], list[int] | None, RunOptions, dict[str, Any]]:
    from ta_lab2.refresh.runner import plan_components

    params = refresh_params(args)
    try:
        components = plan_components(params["targets"], params["builders"] or None, params["refreshers"] or None)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    opts = RunOptions(as_of=parse_as_of(args.as_of), full_rebuild=params["full_rebuild"],
                      dry_run=params["dry_run"], tfs=tuple(params["tfs"]), periods=tuple(params["periods"]),
                      tf_period_combos=parse_combos(",".join(params["tf_period_combos"])),
                      run_id=args.run_id or f"cli__{datetime.now(UTC):%Y%m%dT%H%M%S}_{uuid.uuid4().hex[:6]}")
    return components, parse_ids(params["ids"]), opts, params


def _precheck(args: argparse.Namespace) -> None:
    """The argument checks that need neither the database nor the heavy imports, so that a
    typo is refused at once (the commands repeat them; they are cheap and pure)."""
    if args.command == "refresh":
        refresh_params(args)  # the target refusal and every value check
        parse_as_of(args.as_of)
    elif args.command == "validate":
        parse_ids(args.ids)
    elif args.command == "chart":
        if not parse_periods(args.periods):
            raise UsageError(f"--periods: {args.periods!r}: give at least one period")
        if args.out is not None and args.out.suffix.lower() not in (".png", ".svg"):
            raise UsageError(f"--out: {str(args.out)!r} must end in .png or .svg")
    elif args.command == "ingest":
        parse_ids(args.ids)
        parse_as_of(args.as_of)


def main(argv: Sequence[str] | None = None) -> int:
    from ta_lab2 import logsetup

    args = _parser().parse_args(argv)
    refresh = args.command == "refresh"
    verbose = args.verbose or (refresh and args.refresh_verbose)
    logsetup.configure_console(verbose=verbose, quiet=refresh and args.quiet,
                               info_from=logsetup.REFRESH_CONSOLE if refresh else ("ta_lab2",))
    try:
        _precheck(args)
        if refresh:  # the day's log file gets the full verbose stream once the run starts (logsetup.py)
            try:
                args.log_retention_days = logsetup.retention_days(args.log_retention_days)
            except ValueError as exc:
                raise UsageError(str(exc)) from None
            args.argv = " ".join(sys.argv[1:] if argv is None else argv)
            logsetup.buffer_run_log()
        from ta_lab2 import commands  # heavy imports (pandas, psycopg) only after argument checks

        return commands.dispatch(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # the warehouse down, restarting or full outside a retried step: one line
        if not type(exc).__module__.startswith("psycopg"):
            raise
        print(f"error: database: {type(exc).__name__}: {' '.join(str(exc).split())[:300]} (nothing was written "
              "by the failed statement; rerun when the warehouse is back)", file=sys.stderr)
        return 1
    finally:  # a caller running main() in-process (tests, scripts) keeps no handler bound to its streams
        logsetup.close_run_log()
        logsetup.reset_console()
