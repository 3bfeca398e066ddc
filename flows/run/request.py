"""What a caller asks dbt to do, checked before dbt or the warehouse is touched.

A `RunRequest` is built from the flow's parameters (or the CLI's flags). Everything that can be
judged without the project - the command, the flags that command accepts, the shape of `vars` -
is judged here, so a typo fails in milliseconds with a message that says what to do.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field


class InvalidRunRequest(ValueError):
    """The request cannot run as given; the message says what to change. Exit code 2."""


class DbtCommand(StrEnum):
    """dbt commands the flow runs. Values are what a user types after `dbt`."""

    BUILD = "build"
    RUN = "run"
    TEST = "test"
    SEED = "seed"
    SNAPSHOT = "snapshot"
    SOURCE_FRESHNESS = "source freshness"
    RETRY = "retry"
    COMPILE = "compile"
    DOCS_GENERATE = "docs generate"

    @property
    def argv(self) -> list[str]:
        return self.value.split(" ")

    @property
    def resource_types(self) -> tuple[str, ...]:
        """dbt resource types the command executes; a selection must match one of them."""
        return _RESOURCE_TYPES[self]

    @property
    def accepts_full_refresh(self) -> bool:
        return self in {DbtCommand.BUILD, DbtCommand.RUN, DbtCommand.SEED}

    @property
    def accepts_selection(self) -> bool:
        return self is not DbtCommand.RETRY

    @property
    def materializes(self) -> bool:
        """Whether a success leaves the warehouse matching the manifest (for deferral state)."""
        return self in {DbtCommand.BUILD, DbtCommand.RUN}


_ALL_EXECUTABLE = ("model", "seed", "snapshot", "test", "unit_test")
_RESOURCE_TYPES: dict[DbtCommand, tuple[str, ...]] = {
    DbtCommand.BUILD: _ALL_EXECUTABLE,
    DbtCommand.RUN: ("model",),
    DbtCommand.TEST: ("test", "unit_test"),
    DbtCommand.SEED: ("seed",),
    DbtCommand.SNAPSHOT: ("snapshot",),
    DbtCommand.SOURCE_FRESHNESS: ("source",),
    DbtCommand.RETRY: (),
    DbtCommand.COMPILE: ("model", "test", "unit_test", "snapshot", "analysis"),
    DbtCommand.DOCS_GENERATE: ("model", "seed", "snapshot", "source"),
}

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
    bad_keys = [k for k in parsed if not isinstance(k, str) or not k]
    if bad_keys:
        raise InvalidRunRequest(f"vars keys must be non-empty strings, got {bad_keys!r}")
    try:
        json.dumps(parsed)
    except (TypeError, ValueError) as exc:
        raise InvalidRunRequest(f"vars must be JSON-serialisable: {exc}") from None
    return parsed


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


class RunRequest(BaseModel):
    """One dbt invocation, validated. Travels into summaries and artifacts as-is."""

    model_config = ConfigDict(frozen=True)

    command: DbtCommand = DbtCommand.BUILD
    select: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    selector: str | None = None
    vars: dict[str, Any] = Field(default_factory=dict)
    full_refresh: bool = False
    target: str | None = None
    threads: int | None = None
    fail_fast: bool = False
    retry_of: str | None = None
    defer: bool = False

    @classmethod
    def build(
        cls,
        *,
        command: str | DbtCommand = DbtCommand.BUILD,
        select: str | list[str] | tuple[str, ...] | None = None,
        exclude: str | list[str] | tuple[str, ...] | None = None,
        selector: str | None = None,
        vars: Mapping[str, Any] | str | None = None,
        full_refresh: bool = False,
        target: str | None = None,
        threads: int | None = None,
        fail_fast: bool = False,
        retry_of: str | None = None,
        defer: bool = False,
    ) -> RunRequest:
        """Builds a request from loose user input, refusing what cannot run.

        Raises:
            InvalidRunRequest: with a message naming the bad parameter and how to fix it.
        """
        cmd = parse_command(command)
        selects, excludes = _selection(select), _selection(exclude)
        selector = (selector or "").strip() or None
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
        if full_refresh and not cmd.accepts_full_refresh:
            raise InvalidRunRequest(
                f"full_refresh applies to build, run and seed, not to {cmd.value!r}"
            )
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)):
            raise InvalidRunRequest(f"threads must be a whole number, got {threads!r}")
        if threads is not None and not 1 <= threads <= 64:
            raise InvalidRunRequest(f"threads must be between 1 and 64, got {threads}")
        retry_of = (retry_of or "").strip() or None
        if retry_of and cmd is not DbtCommand.RETRY:
            raise InvalidRunRequest("retry_of is only meaningful with command 'retry'")
        if retry_of and not _RUN_ID.match(retry_of):
            raise InvalidRunRequest(
                f"retry_of {retry_of!r} is not a run id; pass the failed run's id as its summary "
                "shows it (letters, digits, '-' and '_'), or leave it out for the latest failure"
            )
        if defer and not cmd.accepts_selection:
            raise InvalidRunRequest(
                "retry runs with the failed run's own state; it cannot defer to production"
            )
        target = (target or "").strip() or None
        return cls(
            command=cmd,
            select=selects,
            exclude=excludes,
            selector=selector,
            vars=parse_vars(vars),
            full_refresh=full_refresh,
            target=target,
            threads=threads,
            fail_fast=fail_fast,
            retry_of=retry_of,
            defer=defer,
        )

    @property
    def has_selection(self) -> bool:
        return bool(self.select or self.exclude or self.selector)

    @property
    def compares_state(self) -> bool:
        """Whether the selection compares against a previous manifest (`state:modified+`...)."""
        return any("state:" in word for word in self.select + self.exclude)

    @property
    def needs_state(self) -> bool:
        """Whether dbt needs the production manifest (`--state`): to defer or to compare."""
        return self.defer or self.compares_state

    def selection_args(self) -> list[str]:
        args: list[str] = []
        if self.select:
            args += ["--select", *self.select]
        if self.exclude:
            args += ["--exclude", *self.exclude]
        if self.selector:
            args += ["--selector", self.selector]
        return args

    def describe(self) -> str:
        """A short human label, e.g. `build --select tag:daily`."""
        parts = [self.command.value, *self.selection_args()]
        if self.full_refresh:
            parts.append("--full-refresh")
        if self.defer:
            parts.append("--defer")
        if self.retry_of:
            parts.append(f"(of run {self.retry_of})")
        return " ".join(parts)


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
