"""What `ferry ci diff` found, as stored in diff.json and read back by the pull-request comment.

Versioned: a reader refuses a record of another version rather than guessing at its fields.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

DIFF_FILE = "diff.json"


class DiffStatus(StrEnum):
    """What happened to one model's data."""

    IDENTICAL = "identical"
    CHANGED = "changed"
    NEW = "new"
    """Built by the pull request, with no production relation to compare with."""
    REMOVED = "removed"
    """In production, gone from the pull request's project."""
    SKIPPED = "skipped"
    """Not compared; `reason` says why (ephemeral, not built, the budget ran out)."""
    ERROR = "error"
    """The comparison failed for this model; `reason` has the warehouse's message."""


class Rows(BaseModel):
    model_config = ConfigDict(frozen=True)

    base: int | None = None
    """Rows in production (None: no production relation)."""
    pr: int | None = None
    """Rows built by the pull request (None: no relation)."""


class TypeChange(BaseModel):
    model_config = ConfigDict(frozen=True)

    column: str
    base: str
    pr: str


class Columns(BaseModel):
    model_config = ConfigDict(frozen=True)

    added: list[str] = Field(default_factory=list)
    removed: list[str] = Field(default_factory=list)
    type_changed: list[TypeChange] = Field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed or self.type_changed)


class Example(BaseModel):
    """One row that differs, by its key; values as text, never a sensitive column's."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["added", "removed", "changed"]
    key: dict[str, str | None]
    changed: dict[str, tuple[str | None, str | None] | None] = Field(default_factory=dict)
    """Changed columns: (production, pull request); None for a sensitive column's values."""


class ColumnProfile(BaseModel):
    """A column's figures on each side (a model without a key): (production, pull request)."""

    model_config = ConfigDict(frozen=True)

    column: str
    nulls: tuple[int, int]
    distinct: tuple[int, int]
    min: tuple[float | None, float | None] | None = None
    max: tuple[float | None, float | None] | None = None
    mean: tuple[float | None, float | None] | None = None

    @property
    def changed(self) -> bool:
        return any(
            pair is not None and pair[0] != pair[1]
            for pair in (self.nulls, self.distinct, self.min, self.max, self.mean)
        )


class ModelDiff(BaseModel):
    """One model: the pull request's relation against production's."""

    model_config = ConfigDict(frozen=True)

    unique_id: str
    name: str
    status: DiffStatus
    reason: str | None = None
    base_relation: str | None = None
    pr_relation: str | None = None
    rows: Rows = Field(default_factory=Rows)
    columns: Columns = Field(default_factory=Columns)
    key: list[str] | None = None
    """The key rows were matched by; None: compared as multisets of rows."""
    key_from: str | None = None
    """Where the key was found: meta, primary key, unique_key, tests."""
    added: int | None = None
    """Rows only in the pull request (by key, or as a multiset without one)."""
    removed: int | None = None
    """Rows only in production."""
    changed: int | None = None
    """Keyed only: rows in both whose compared columns differ in any value."""
    changed_by_column: dict[str, int] = Field(default_factory=dict)
    """Keyed only: per compared column, the rows whose value changed (most first)."""
    profiles: list[ColumnProfile] = Field(default_factory=list)
    """Without a key: per compared column, nulls, distinct values, min/max/mean."""
    sample: float | None = None
    """The share of keys compared when the model was above --max-rows (None: all of them)."""
    examples: list[Example] = Field(default_factory=list)
    seconds: float = 0.0


class DataDiff(BaseModel):
    """Every model a pull-request run built, compared with production."""

    model_config = ConfigDict(frozen=True)

    version: Literal[1] = 1
    run_id: str
    project: str
    state_env: str
    warehouse: str
    """dbt's adapter type: duckdb, postgres, redshift."""
    started_at: datetime
    duration_s: float
    max_rows: int
    budget_s: float
    values_shown: bool
    models: list[ModelDiff]
