"""What one dbt command is asked to do, as plain values dbt's command line takes.

The run's request (flows/run/request.py) is built and judged above this layer; a dbt invocation
needs only its command, selection, flags, target, vars and whether to defer. Taking this value
rather than the request keeps flows/dbt free of the run's types (STYLE.md, "Layers point one
way").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flows.dbt.commands import DbtCommand


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
