"""The run params, defined ONCE: the DAG builds its ``Param``s and the CLI its ``refresh`` flags
from :data:`RUN_PARAMS`, so the trigger form and the command line cannot drift apart
(``tests/unit/test_params_parity.py``).

Each :class:`RunParam` holds the param's name, default, JSON schema (the keywords Airflow's
``Param`` validates), help text and how it looks on the command line (``cli``):

* ``"csv"``     ``--builders 1d,multi_tf`` -> ``["1d", "multi_tf"]`` (list of strings);
* ``"ints"``    ``--periods 10,20`` -> ``[10, 20]``;
* ``"ids"``     ``--ids all`` / ``--ids 1,52`` (the string form of the param);
* ``"flag"``    ``--dry-run`` (a boolean whose default is false);
* ``"toggle"``  ``--validate`` / ``--no-validate`` (a boolean whose default is true);
* ``"number"``, ``"integer"``: ``--staleness-hours 24``, ``--batch-size 50``.

Adding a param is ONE entry here (plus the code that honours it). The module is imported by
the DAG file at every parse: it imports only the family registry (no pandas, no Airflow).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ta_lab2.registry import BAR_FAMILY_NAMES, EMA_FAMILY_NAMES

MAX_BATCH_SIZE = 10_000
IDS_PATTERN = r"^\s*(all|\d+(\s*,\s*\d+)*)\s*$"
CLI_KINDS = ("csv", "ints", "ids", "flag", "toggle", "number", "integer")


@dataclass(frozen=True)
class RunParam:
    """One run param: DAG ``Param(default, description=help, **schema)`` and CLI flag ``--name-with-dashes``."""

    name: str
    default: Any
    help: str
    cli: str
    schema: Mapping[str, Any] = field(default_factory=dict)
    metavar: str | None = None

    def __post_init__(self) -> None:
        if self.cli not in CLI_KINDS:
            raise ValueError(f"param {self.name}: cli kind {self.cli!r} not in {CLI_KINDS}")
        if self.cli == "flag" and self.default is not False:
            raise ValueError(f"param {self.name}: a 'flag' param must default to false (use 'toggle')")
        if self.cli == "toggle" and self.default is not True:
            raise ValueError(f"param {self.name}: a 'toggle' param must default to true (use 'flag')")

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def flags(self) -> tuple[str, ...]:
        """Every command-line spelling of this param (``--no-x`` for toggles)."""
        return (self.flag, "--no-" + self.flag[2:]) if self.cli == "toggle" else (self.flag,)


RUN_PARAMS: tuple[RunParam, ...] = (
    RunParam("targets", ["bars", "emas"], "bars, emas or both (an empty list is refused); on the command line "
             "one of --bars, --emas, --all or --targets is required", "csv",
             {"type": "array", "minItems": 1, "uniqueItems": True,
              "items": {"type": "string", "enum": ["bars", "emas"]}}, "bars,emas"),
    RunParam("ids", "all", '"all" (active dim_assets rows), "1,52" or a list of asset ids', "ids",
             {"oneOf": [{"type": "string", "pattern": IDS_PATTERN},
                        {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 1}}]}, "all|1,52"),
    RunParam("builders", list(BAR_FAMILY_NAMES), "bar builders to run (1d always runs first when selected)", "csv",
             {"type": "array", "uniqueItems": True, "items": {"type": "string", "enum": list(BAR_FAMILY_NAMES)}},
             ",".join(BAR_FAMILY_NAMES[:2])),
    RunParam("refreshers", list(EMA_FAMILY_NAMES), "EMA refreshers to run", "csv",
             {"type": "array", "uniqueItems": True, "items": {"type": "string", "enum": list(EMA_FAMILY_NAMES)}},
             ",".join(EMA_FAMILY_NAMES[:2])),
    RunParam("tfs", [], "restrict timeframes, e.g. 1D, 7D, 1M_CAL (empty = all canonical)", "csv",
             {"type": "array", "uniqueItems": True, "items": {"type": "string", "pattern": "^[0-9A-Z_]+$"}},
             "1D,7D"),
    RunParam("periods", [], "restrict EMA periods, e.g. 10, 20, 50 (empty = the default periods)", "ints",
             {"type": "array", "uniqueItems": True, "items": {"type": "integer", "minimum": 1}}, "10,20"),
    RunParam("tf_period_combos", [], 'explicit pairs such as "7D:10"; when given, win over tfs x periods', "csv",
             {"type": "array", "uniqueItems": True, "items": {"type": "string", "pattern": "^[0-9A-Z_]+:[1-9][0-9]*$"}},
             "7D:10,7D:20"),
    RunParam("full_rebuild", False, "ignore watermarks: delete and rebuild", "flag", {"type": "boolean"}),
    RunParam("dry_run", False, "plan only: log what would change, write nothing", "flag", {"type": "boolean"}),
    RunParam("skip_stale_check", False, "bypass the freshness gate", "flag", {"type": "boolean"}),
    RunParam("staleness_hours", 48, "freshness threshold in hours", "number",
             {"type": "number", "exclusiveMinimum": 0}, "HOURS"),
    RunParam("validate", True, "run the validation checks", "toggle", {"type": "boolean"}),
    RunParam("continue_on_error", True, "a failed asset skips only its own dependants and the others carry on "
             "(the run still ends failed); false: stop at the first failure, the rest is not run", "toggle",
             {"type": "boolean"}),
    RunParam("alert_on_error", True, "send Telegram alerts", "toggle", {"type": "boolean"}),
    RunParam("alert_per_task", False, "also alert every failed task and the failed run, not only the run's digest "
             "(the CLI has no tasks: it always sends the one digest)", "flag", {"type": "boolean"}),
    RunParam("batch_size", "auto", 'assets per mapped task instance: "auto" (about 16 instances of at most 250 '
             "assets each; the CLI: batches sized by the days to compute and by their locks) or an integer", "integer",
             {"oneOf": [{"type": "string", "enum": ["auto"]},
                        {"type": "integer", "minimum": 1, "maximum": MAX_BATCH_SIZE}]}, "auto|N"),
)

PARAM_NAMES: tuple[str, ...] = tuple(p.name for p in RUN_PARAMS)


def by_name(name: str) -> RunParam:
    for p in RUN_PARAMS:
        if p.name == name:
            return p
    raise KeyError(name)


def defaults() -> dict[str, Any]:
    """Every param at its default (fresh copies: the lists may be mutated by the caller)."""
    return {p.name: (list(p.default) if isinstance(p.default, list) else p.default) for p in RUN_PARAMS}


def airflow_params() -> dict[str, Any]:
    """``{name: airflow.sdk.Param}`` for the DAG (Airflow imported here, only by the DAG file)."""
    from airflow.sdk import Param

    return {p.name: Param(defaults()[p.name], description=p.help, **dict(p.schema)) for p in RUN_PARAMS}
