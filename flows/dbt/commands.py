"""The dbt commands ferry runs, and what each of them executes and accepts."""

from __future__ import annotations

from enum import StrEnum


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
