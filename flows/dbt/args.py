"""What one dbt command is asked to do, as plain values dbt's command line takes.

The run's request (flows/run/request.py) is built and judged above this layer; a dbt invocation
needs only its command, selection, flags, target, vars and whether to defer. Taking this value
rather than the request keeps flows/dbt free of the run's types (STYLE.md, "Layers point one
way").
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from flows.dbt.commands import DbtCommand
from flows.dbt.errors import InvalidDbtInput


def check_vars(value: dict[Any, Any]) -> dict[str, Any]:
    """dbt's `--vars`: a mapping of non-empty names to JSON values, or InvalidDbtInput saying
    which rule it breaks (a run's request and a bake spec share this one rule)."""
    bad_keys = [k for k in value if not isinstance(k, str) or not k]
    if bad_keys:
        raise InvalidDbtInput(f"vars keys must be non-empty strings, got {bad_keys!r}")
    try:
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise InvalidDbtInput(f"vars must be JSON-serialisable: {exc}") from None
    return value


@dataclass(frozen=True)
class DbtArgs:
    """A dbt command's arguments, before the paths of the invocation are added."""

    command: DbtCommand
    select: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    selector: str | None = None
    selection_flags: tuple[str, ...] = ()
    """Flags that change what is selected (`--indirect-selection cautious`): `dbt ls` gets them."""
    flags: tuple[str, ...] = ()
    """The command's other flags (`--full-refresh`, `--threads 4`)."""
    target: str | None = None
    vars: dict[str, Any] = field(default_factory=dict)
    defer: bool = False
    """Read refs to unselected models from the state (`--defer`), when one is given."""

    @property
    def has_selection(self) -> bool:
        return bool(self.select or self.exclude or self.selector)

    @property
    def compares_state(self) -> bool:
        """Whether the selection compares against a previous manifest (`state:modified+`...)."""
        return any("state:" in word for word in self.select + self.exclude)

    def selection_args(self) -> list[str]:
        """What dbt selects by: the selection and the flags that change it."""
        args: list[str] = []
        if self.select:
            args += ["--select", *self.select]
        if self.exclude:
            args += ["--exclude", *self.exclude]
        if self.selector:
            args += ["--selector", self.selector]
        return args + list(self.selection_flags)
