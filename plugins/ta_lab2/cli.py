"""``python -m ta_lab2 COMMAND``: the same code path the DAG tasks call.

Commands: ``schema`` (apply DDL), ``load FILE... [--id N]``, ``synth``, ``refresh``,
``validate``, ``demo`` and ``bench``. Bad ids, dates, builders, refreshers, timeframes or periods exit 2 with one
line on stderr; a refresh where any (asset, component) failed exits 1.
"""

from __future__ import annotations

import argparse
import logging
import sys
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

from ta_lab2.refresh.context import RunOptions

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
                    help="asset id for every row (overrides the symbol map)")
    sy = sub.add_parser("synth", help="write synthetic candle files")
    sy.add_argument("--assets", type=int, default=4)
    sy.add_argument("--days", type=int, default=1095)
    sy.add_argument("--seed", type=int, default=7)
    sy.add_argument("--out", type=Path, default=Path(".local/synth"))
    rf = sub.add_parser("refresh", help="refresh bars and/or EMAs")
    rf.add_argument("--targets", default=None, help="bars,emas (default both)")
    rf.add_argument("--all", action="store_true", help="same as --targets bars,emas")
    rf.add_argument("--ids", default="all")
    rf.add_argument("--builders", default=None)
    rf.add_argument("--refreshers", default=None)
    rf.add_argument("--tfs", default=None)
    rf.add_argument("--periods", default=None)
    rf.add_argument("--tf-period-combos", default=None)
    rf.add_argument("--as-of", default=None, help="source cutoff (exclusive), ISO-8601, default now")
    rf.add_argument("--full-rebuild", action="store_true")
    rf.add_argument("--dry-run", action="store_true")
    rf.add_argument("--run-id", default=None)
    va = sub.add_parser("validate", help="run the validation checks")
    va.add_argument("--ids", default="all")
    va.add_argument("--run-id", default=None)
    de = sub.add_parser("demo", help="load data (the repo's CMC files, else synthetic), run the DAG once, print the summary")
    de.add_argument("--data", type=Path, default=None, help="folder of CMC files (default include/data/cmc, "
                                                            "synthetic when absent)")
    de.add_argument("--synthetic", action="store_true", help="use synthetic candles even if the real data exists")
    be = sub.add_parser("bench", help="measure refresh speed against raw COPY; write docs/BENCHMARKS.md")
    be.add_argument("--assets", type=int, default=100)
    be.add_argument("--days", type=int, default=1095)
    be.add_argument("--airflow", action="store_true", help="also time a LocalExecutor DAG run (slow)")
    be.add_argument("--out", type=Path, default=Path("docs/BENCHMARKS.md"))
    return ap


def refresh_options(args: argparse.Namespace) -> tuple[list[str], list[int] | None, RunOptions]:
    from ta_lab2.refresh.runner import plan_components

    # ``--targets ""`` is an empty list, refused like the DAG's ``targets: []`` (not "both")
    targets = ["bars", "emas"] if args.all or args.targets is None else _csv(args.targets)
    try:
        components = plan_components(targets, _csv(args.builders) or None, _csv(args.refreshers) or None)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    opts = RunOptions(as_of=parse_as_of(args.as_of), full_rebuild=args.full_rebuild, dry_run=args.dry_run,
                      tfs=tuple(_csv(args.tfs)), periods=parse_periods(args.periods),
                      tf_period_combos=parse_combos(args.tf_period_combos),
                      run_id=args.run_id or f"cli__{datetime.now(UTC):%Y%m%dT%H%M%S}_{uuid.uuid4().hex[:6]}")
    return components, parse_ids(args.ids), opts


def _precheck(args: argparse.Namespace) -> None:
    """The argument checks that need neither the database nor the heavy imports, so that a
    typo is refused at once (the commands repeat them; they are cheap and pure)."""
    if args.command == "refresh":
        parse_ids(args.ids)
        parse_as_of(args.as_of)
        parse_periods(args.periods)
        parse_combos(args.tf_period_combos)
    elif args.command == "validate":
        parse_ids(args.ids)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        _precheck(args)
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
