"""What an apply did (or, in a dry run, would do) to one named object on the Prefect server."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ChangeKind(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    DELETED_DUPLICATE = "deleted duplicate"


@dataclass(frozen=True)
class Change:
    """One line of an apply's report, e.g. `updated: ferry - dbt run failed`."""

    kind: ChangeKind
    name: str

    def __str__(self) -> str:
        return f"{self.kind.value}: {self.name}"


class NotifyConfigError(ValueError):
    """The alerting configuration cannot be applied as written; the message says what to fix."""
