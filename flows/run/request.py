"""What a caller asks a run to do, checked before dbt or the warehouse is touched.

A `RunRequest` is built once at the edge, from the flow's parameters or `ferry run`'s flags, and
travels as-is into the plan, the summary and the stored artifacts. Its fields are the one
definition of a run's parameters: their descriptions become the Prefect UI's help and the CLI's,
and a field marked with `DbtFlag` reaches dbt's command line with no other code. Everything that
can be judged without the project - the command, the flags that command accepts, the shape of
`vars` - is judged here, so a typo fails in milliseconds with a message that says what to do.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.fields import FieldInfo

from flows.dbt.args import DbtArgs, check_vars
from flows.dbt.commands import DbtCommand
from flows.dbt.errors import InvalidDbtInput


class InvalidRunRequest(ValueError):
    """The request cannot run as given; the message says what to change. Exit code 2."""


@contextlib.contextmanager
def refused_as_request() -> Iterator[None]:
    """dbt's refusal of its input (`InvalidDbtInput`: a missing profile, a target or selection
    dbt refuses, packages that cannot install) raised again as the run's own, message unchanged.

    Usable as a decorator: `plan` and `execute` wear it, so a run raises one type of refusal.
    """
    try:
        yield
    except InvalidDbtInput as exc:
        raise InvalidRunRequest(str(exc)) from exc


# A run id names a folder of the artifact store (a Prefect flow-run id, a UUID): never a path.
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")

_COMMAND_ALIASES = {"freshness": DbtCommand.SOURCE_FRESHNESS, "docs": DbtCommand.DOCS_GENERATE}


def parse_command(value: str | DbtCommand) -> DbtCommand:
    """Accepts `build`, `source freshness`, `source-freshness`, `docs generate`...

    Raises:
        InvalidRunRequest: for anything else, listing what is accepted.
    """
    if isinstance(value, DbtCommand):
        return value
    normal = " ".join(str(value).replace("-", " ").replace("_", " ").split()).lower()
    if normal in _COMMAND_ALIASES:
        return _COMMAND_ALIASES[normal]
    try:
        return DbtCommand(normal)
    except ValueError:
        known = ", ".join(repr(c.value) for c in DbtCommand)
        raise InvalidRunRequest(f"unknown dbt command {value!r}; use one of {known}") from None


def parse_vars(value: Mapping[str, Any] | str | None) -> dict[str, Any]:
    """dbt `--vars` as a mapping, from a mapping or a JSON/YAML document.

    Raises:
        InvalidRunRequest: when the document does not parse or is not a mapping.
    """
    if value is None or value == "":
        return {}
    if isinstance(value, Mapping):
        parsed: Any = dict(value)
    else:
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise InvalidRunRequest(
                f"vars is not valid JSON or YAML ({_first_line(exc)}); pass a mapping such as "
                '{"start_date": "2024-01-01"}'
            ) from None
    if parsed is None:
        return {}
    if not isinstance(parsed, dict):
        raise InvalidRunRequest(
            f"vars must be a mapping of variable names to values, got {type(parsed).__name__} "
            f'{value!r}; e.g. {{"start_date": "2024-01-01"}}'
        )
    with refused_as_request():
        return check_vars(parsed)


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


class IndirectSelection(StrEnum):
    """Which tests of the selected nodes dbt selects too (dbt's --indirect-selection)."""

    EAGER = "eager"
    CAUTIOUS = "cautious"
    BUILDABLE = "buildable"
    EMPTY = "empty"


class PublishMode(StrEnum):
    """How what a run builds reaches the relations consumers read (docs/architecture.md,
    "Publishing the data: blue-green")."""

    DIRECT = "direct"
    BLUE_GREEN = "blue-green"


_PUBLISHES = (DbtCommand.BUILD, DbtCommand.RUN, DbtCommand.SEED, DbtCommand.SNAPSHOT)
_FANS_OUT = (*_PUBLISHES, DbtCommand.TEST, DbtCommand.RETRY)


@dataclass(frozen=True)
class DbtFlag:
    """Marks a request field that dbt takes as it is: `--flag` when true, `--flag value` when
    given, nothing when empty. A flag that changes what is selected goes to the selection check
    (`dbt ls`) too."""

    flag: str
    selects: bool = False


@dataclass(frozen=True)
class CliFlag:
    """The `ferry run` flags of a request field (default: `--field-name`)."""

    names: tuple[str, ...]


class RunRequest(BaseModel):
    """One dbt invocation, validated. Travels into summaries and artifacts as-is."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    command: DbtCommand = Field(
        default=DbtCommand.BUILD,
        description="The dbt command. `retry` re-runs only what failed in an earlier run (the "
        "latest failed run of this project and environment, or `retry_of`).",
    )
    select: Annotated[tuple[str, ...], CliFlag(("--select", "-s"))] = Field(
        default=(),
        description="dbt node selection, space-separated, e.g. `tag:marts fct_orders+`; empty "
        "for the whole project.",
    )
    exclude: tuple[str, ...] = Field(
        default=(), description="Nodes to leave out, same syntax as `select`, e.g. `tag:lookup`."
    )
    selector: str | None = Field(
        default=None,
        description="A named selector from selectors.yml instead of select/exclude, e.g. "
        "`daily` or `marts`.",
    )
    vars: dict[str, Any] = Field(
        default_factory=dict,
        description="dbt variables as a mapping (or a JSON/YAML document), e.g. "
        '{"lookback_days": 7}.',
    )
    indirect_selection: Annotated[
        IndirectSelection | None, DbtFlag("--indirect-selection", selects=True)
    ] = Field(
        default=None,
        description="Which tests of the selected nodes run too: eager (any that touches them), "
        "buildable, cautious (only those whose parents are all selected) or empty (none); "
        "empty for dbt's default, eager.",
    )
    full_refresh: Annotated[bool, DbtFlag("--full-refresh")] = Field(
        default=False,
        description="Rebuild incremental models and seeds from scratch (build, run, seed).",
    )
    target: str | None = Field(
        default=None,
        description="The profiles.yml target; empty for the deployment's (FERRY_TARGET) or the "
        "profile's default.",
    )
    threads: Annotated[int | None, DbtFlag("--threads")] = Field(
        default=None, description="dbt threads; empty for the profile's setting."
    )
    fail_fast: Annotated[bool, DbtFlag("--fail-fast")] = Field(
        default=False, description="Stop at the first failure."
    )
    retry_of: str | None = Field(
        default=None,
        description="With `retry`: the id of the failed run to retry (its flow run id); empty "
        "for the latest failure.",
    )
    defer: bool = Field(
        default=False,
        description="Read refs to unselected models from production (`--defer` to the state of "
        "FERRY_STATE_ENV); `state:modified+` selections compare with that state too.",
    )
    only_changed: bool = Field(
        default=False,
        description="build and run: of the selection, run only the nodes whose code changed, "
        "whose sources have new data, that failed last time, or that read such a node; skip "
        "the rest as unchanged.",
    )
    publish: PublishMode = Field(
        default=PublishMode.DIRECT,
        description="How consumers get what the run builds: direct (each model replaces what "
        "they read as it is built, dbt's way) or blue-green (the run builds and tests a new "
        "version beside it, and every model it built switches at once only if the whole run "
        "passed; `ferry rollback` returns to the previous version).",
    )
    fan_out: int = Field(
        default=0,
        description="Split the selection into at most this many parts that build independently "
        "(no part reads another's models), each its own flow run - its own ECS task - of the "
        "same deployment, with one verdict for them all; 0 or 1: one task. Pays only for "
        "selections with independent parts (domains), not for one long chain.",
    )
    part_of: str | None = Field(
        default=None,
        description="Leave empty: a fanned-out run sets it on each of its parts, naming "
        "itself, and a part alerts and records nothing of its own.",
    )

    @classmethod
    def build(cls, **given: Any) -> RunRequest:
        """Builds a request from loose user input (a flow's parameters, a CLI's flags),
        refusing what cannot run. Empty strings and None mean "not given".

        Raises:
            InvalidRunRequest: with a message naming the bad parameter and how to fix it.
        """
        unknown = sorted(set(given) - set(cls.model_fields))
        if unknown:
            raise InvalidRunRequest(f"unknown parameter(s) {', '.join(unknown)}")
        cmd = parse_command(given.get("command") or DbtCommand.BUILD)
        selects, excludes = _selection(given.get("select")), _selection(given.get("exclude"))
        selector = _given(given.get("selector"))
        if not cmd.accepts_selection and (selects or excludes or selector):
            raise InvalidRunRequest(
                "retry re-runs exactly what failed in an earlier run; it takes no select, "
                "exclude or selector"
            )
        if selector and (selects or excludes):
            raise InvalidRunRequest(
                f"selector {selector!r} cannot be combined with select/exclude; put the whole "
                "selection in selectors.yml or drop the selector"
            )
        if given.get("full_refresh") and not cmd.accepts_full_refresh:
            raise InvalidRunRequest(
                f"full_refresh applies to build, run and seed, not to {cmd.value!r}"
            )
        threads = given.get("threads")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)):
            raise InvalidRunRequest(f"threads must be a whole number, got {threads!r}")
        if threads is not None and not 1 <= threads <= 64:
            raise InvalidRunRequest(f"threads must be between 1 and 64, got {threads}")
        retry_of = _given(given.get("retry_of"))
        if retry_of and cmd is not DbtCommand.RETRY:
            raise InvalidRunRequest("retry_of is only meaningful with command 'retry'")
        if retry_of and not _RUN_ID.match(retry_of):
            raise InvalidRunRequest(
                f"retry_of {retry_of!r} is not a run id; pass the failed run's id as its summary "
                "shows it (letters, digits, '-' and '_'), or leave it out for the latest failure"
            )
        if given.get("only_changed") and cmd not in (DbtCommand.BUILD, DbtCommand.RUN):
            raise InvalidRunRequest(f"only_changed applies to build and run, not to {cmd.value!r}")
        if given.get("only_changed") and given.get("full_refresh"):
            raise InvalidRunRequest(
                "full_refresh rebuilds everything selected from scratch; drop only_changed, or "
                "full_refresh"
            )
        if given.get("defer") and not cmd.accepts_selection:
            raise InvalidRunRequest(
                "retry runs with the failed run's own state; it cannot defer to production"
            )
        fan_out = given.get("fan_out") or 0
        if isinstance(fan_out, bool) or not isinstance(fan_out, int) or not 0 <= fan_out <= 64:
            raise InvalidRunRequest(f"fan_out must be a whole number from 0 to 64, got {fan_out!r}")
        part_of = _given(given.get("part_of"))
        if part_of and not _RUN_ID.match(part_of):
            raise InvalidRunRequest(f"part_of {part_of!r} is not a run id")
        if fan_out > 1 and part_of:
            raise InvalidRunRequest("a part of a fanned-out run is not fanned out again")
        if fan_out > 1 and cmd not in _FANS_OUT:
            raise InvalidRunRequest(
                f"fan_out applies to what builds nodes (build, run, seed, snapshot, test, retry), "
                f"not to {cmd.value!r}"
            )
        publish = _given(given.get("publish"))
        if fan_out > 1 and publish == PublishMode.BLUE_GREEN:
            raise InvalidRunRequest(
                "a blue-green run publishes one version of the whole environment, built by one "
                "task: drop fan_out, or publish direct"
            )
        if publish == PublishMode.BLUE_GREEN and cmd is DbtCommand.RETRY:
            raise InvalidRunRequest(
                "a blue-green run is not retried: run it again (it builds a new version; the "
                "failed one was never published)"
            )
        if publish == PublishMode.BLUE_GREEN and cmd not in _PUBLISHES:
            raise InvalidRunRequest(
                f"publish blue-green applies to what builds relations (build, run, seed, "
                f"snapshot), not to {cmd.value!r}"
            )
        checked = {
            "command": cmd,
            "select": selects,
            "exclude": excludes,
            "selector": selector,
            "vars": parse_vars(given.get("vars")),
            "target": _given(given.get("target")),
            "retry_of": retry_of,
            "fan_out": fan_out,
            "part_of": part_of,
        }
        fields = {name: value for name, value in given.items() if value is not None}
        try:
            return cls.model_validate({**fields, **checked})
        except ValidationError as exc:
            raise InvalidRunRequest(_describe(exc)) from None

    @classmethod
    def parameter_docs(cls) -> str:
        """The `Args:` section of the `dbt` flow's docstring: the Prefect UI's help text."""
        lines = ["Args:"]
        for name, field in cls.model_fields.items():
            lines.append(f"    {name}: {field.description}")
        return "\n".join(lines)

    def dbt_flags(self, *, selecting: bool = False) -> list[str]:
        """The fields marked `DbtFlag`, as dbt's command line takes them.

        Args:
            selecting: only the flags that change what is selected (`selects`).
        """
        args: list[str] = []
        for name, field in type(self).model_fields.items():
            marker = dbt_flag(field)
            value = getattr(self, name)
            if marker is None or value is None or value is False or value in ("", ()):
                continue
            if marker.selects != selecting:
                continue
            args += [marker.flag] if value is True else [marker.flag, str(value)]
        return args

    def dbt_args(self) -> DbtArgs:
        """What dbt is asked to do, as flows/dbt takes it (no run-level field: retry_of,
        only_changed)."""
        return DbtArgs(
            command=self.command,
            select=self.select,
            exclude=self.exclude,
            selector=self.selector,
            selection_flags=tuple(self.dbt_flags(selecting=True)),
            flags=tuple(self.dbt_flags()),
            target=self.target,
            vars=dict(self.vars),
            defer=self.defer,
        )

    @property
    def has_selection(self) -> bool:
        return self.dbt_args().has_selection

    @property
    def compares_state(self) -> bool:
        """Whether the selection compares against a previous manifest (`state:modified+`...)."""
        return self.dbt_args().compares_state

    @property
    def needs_state(self) -> bool:
        """Whether dbt needs the production manifest (`--state`): to defer or to compare."""
        return self.defer or self.compares_state

    def selection_args(self) -> list[str]:
        """What dbt selects by: the selection and the flags that change it."""
        return self.dbt_args().selection_args()

    def describe(self) -> str:
        """A short human label, e.g. `build --select tag:daily`."""
        parts = [self.command.value, *self.selection_args(), *self.dbt_flags()]
        if self.defer:
            parts.append("--defer")
        if self.only_changed:
            parts.append("--only-changed")
        if self.publish is not PublishMode.DIRECT:
            parts.append(f"--publish {self.publish.value}")
        if self.fan_out > 1:
            parts.append(f"--fan-out {self.fan_out}")
        if self.retry_of:
            parts.append(f"(of run {self.retry_of})")
        return " ".join(parts)


def dbt_flag(field: FieldInfo) -> DbtFlag | None:
    return next((m for m in field.metadata if isinstance(m, DbtFlag)), None)


def cli_flags(name: str, field: FieldInfo) -> tuple[str, ...]:
    marker = next((m for m in field.metadata if isinstance(m, CliFlag)), None)
    return marker.names if marker else ("--" + name.replace("_", "-"),)


def _given(value: Any) -> Any:
    """None for an empty string: the Prefect UI's and the CLI's way of leaving a value out."""
    if isinstance(value, str):
        return value.strip() or None
    return value


def _describe(exc: ValidationError) -> str:
    """pydantic's report as one sentence per parameter, without its URLs and type codes."""
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or 'request'}: "
        f"{str(error['msg']).removeprefix('Value error, ')}, got {error['input']!r}"
        for error in exc.errors()
    )


def _selection(value: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """dbt selection words; a string is split on whitespace as dbt's CLI would."""
    if value is None:
        return ()
    items = value.split() if isinstance(value, str) else [w for v in value for w in str(v).split()]
    for item in items:
        if item.startswith("-"):
            raise InvalidRunRequest(
                f"selection {item!r} looks like a flag; pass node selectors only, e.g. "
                "'tag:daily' or 'fct_orders+'"
            )
    return tuple(items)
