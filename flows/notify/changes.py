"""What an apply did (or, in a dry run, would do) to one named object on the Prefect server."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ChangeKind(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    DELETED_DUPLICATE = "deleted duplicate"
    DELETED = "deleted"


@dataclass(frozen=True)
class Change:
    """One line of an apply's report, e.g. `updated: ferry - dbt run failed`, or with a reason,
    `deleted: ferry - old alert (no longer in automations.yaml)`."""

    kind: ChangeKind
    name: str
    reason: str = ""

    def __str__(self) -> str:
        line = f"{self.kind.value}: {self.name}"
        return f"{line} ({self.reason})" if self.reason else line


class NotifyConfigError(ValueError):
    """The alerting configuration cannot be applied as written; the message says what to fix."""
