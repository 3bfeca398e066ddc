"""Comparing each model's two relations in the warehouse, within a time budget.

A few statements per model, each an aggregate: the row counts (and null keys), then with a key
the keyed diff and, when something differs, a few examples; without one, the multiset difference
and the column profiles. A key that repeats shows as a join that multiplied rows: only then (or
before a sample, whose sizes are unknown) is it checked on its own. Above `max_rows` on either
side a keyed diff runs on a sample of keys chosen by a hash of the key, the same keys on both
sides. A model whose statements fail is that model's `error`; the others go on.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from flows.ci.diff.records import (
    ColumnProfile,
    Columns,
    DataDiff,
    DiffStatus,
    Example,
    ModelDiff,
    Rows,
    TypeChange,
)
from flows.ci.diff.sql import SAMPLE_BUCKETS, Compared, Pair, count, dialect_of
from flows.ci.diff.targets import Relation, Target
from flows.dbt.warehouse import Column, QueryFailed

HIDDEN = "(sensitive)"
"""What a sensitive key column's value shows as in an example."""


class Connection(Protocol):
    """What a diff needs of the warehouse (flows.dbt.warehouse.Warehouse)."""

    @property
    def adapter_type(self) -> str: ...

    def columns(self, database: str | None, schema: str, identifier: str) -> list[Column]: ...

    def query(self, sql: str) -> list[tuple[Any, ...]]: ...


@dataclass(frozen=True)
class Limits:
    max_rows: int = 10_000_000
    """Above this many rows on either side, a keyed diff compares a sample of keys."""
    budget_s: float = 600.0
    """Models not reached within this many seconds are listed as skipped."""
    examples: int = 5
    """Example rows per kind (added, removed, changed)."""
    values: bool = True
    """False: no example rows and no min/max/mean - counts only."""


def diff(
    warehouse: Connection,
    found: Sequence[Target],
    *,
    run_id: str,
    project: str,
    state_env: str,
    limits: Limits = Limits(),  # frozen: one shared default is safe
    clock: Callable[[], float] = time.monotonic,
) -> DataDiff:
    """Every target compared, in order, until the budget is spent."""
    started_at = datetime.now(UTC)
    start = clock()
    models = []
    for target in found:
        spent = clock() - start
        if spent > limits.budget_s:
            models.append(
                _listed(
                    target,
                    DiffStatus.SKIPPED,
                    f"budget: the diff's {limits.budget_s:g} s were spent before this model "
                    "(--budget-s)",
                )
            )
            continue
        began = clock()
        try:
            model = _ModelComparison(warehouse, target, limits).run()
        except QueryFailed as exc:
            model = _listed(target, DiffStatus.ERROR, str(exc))
        models.append(model.model_copy(update={"seconds": round(clock() - began, 3)}))
    return DataDiff(
        run_id=run_id,
        project=project,
        state_env=state_env,
        warehouse=warehouse.adapter_type,
        started_at=started_at,
        duration_s=round(clock() - start, 3),
        max_rows=limits.max_rows,
        budget_s=limits.budget_s,
        values_shown=limits.values,
        models=models,
    )


def _listed(target: Target, status: DiffStatus, reason: str | None = None) -> ModelDiff:
    return ModelDiff(
        unique_id=target.unique_id,
        name=target.name,
        status=status,
        reason=reason,
        base_relation=str(target.base) if target.base else None,
        pr_relation=str(target.pr) if target.pr else None,
        key=list(target.key) or None,
        key_from=target.key_from,
    )


class _ModelComparison:
    """One target's statements, in order."""

    def __init__(self, warehouse: Connection, target: Target, limits: Limits) -> None:
        self.warehouse = warehouse
        self.target = target
        self.limits = limits
        self.dialect = dialect_of(warehouse.adapter_type)

    def run(self) -> ModelDiff:
        target = self.target
        if target.skipped:
            return _listed(target, DiffStatus.SKIPPED, target.skipped)
        if target.pr is None:  # removed by the pull request
            base_columns = self._columns(target.base) if target.base else []
            rows = self._count(target.base) if target.base and base_columns else None
            return _listed(target, DiffStatus.REMOVED).model_copy(
                update={
                    "rows": Rows(base=rows),
                    "columns": Columns(removed=[c.name for c in base_columns]),
                }
            )
        pr_columns = self._columns(target.pr)
        if not pr_columns:
            raise QueryFailed(f"the pull request's relation {target.pr} is not in the warehouse")
        base_columns = self._columns(target.base) if target.base else []
        if target.base is None or not base_columns:
            why = None if target.base is None else f"production has no relation {target.base}"
            return _listed(target, DiffStatus.NEW, why).model_copy(
                update={
                    "base_relation": None,
                    "rows": Rows(pr=self._count(target.pr)),
                    "columns": Columns(added=[c.name for c in pr_columns]),
                }
            )
        return self._compare(target.base, target.pr, base_columns, pr_columns)

    def _columns(self, relation: Relation | None) -> list[Column]:
        if relation is None:
            return []
        return self.warehouse.columns(relation.database, relation.schema, relation.identifier)

    def _count(self, relation: Relation) -> int:
        return int(self.warehouse.query(count(relation.sql))[0][0])

    def _compare(
        self, base: Relation, pr: Relation, base_columns: list[Column], pr_columns: list[Column]
    ) -> ModelDiff:
        target = self.target
        by_name = {c.name.lower(): c for c in base_columns}
        pr_by_name = {c.name.lower(): c for c in pr_columns}
        columns = Columns(
            added=[c.name for c in pr_columns if c.name.lower() not in by_name],
            removed=[c.name for c in base_columns if c.name.lower() not in pr_by_name],
            type_changed=[
                TypeChange(column=c.name, base=by_name[c.name.lower()].data_type, pr=c.data_type)
                for c in pr_columns
                if c.name.lower() in by_name and by_name[c.name.lower()].data_type != c.data_type
            ],
        )
        changed_type = {t.column.lower() for t in columns.type_changed}
        key, why_no_key = self._key(by_name, pr_by_name, changed_type)
        shared = self._shared(pr_columns, by_name, changed_type, key)
        pair = Pair(base.sql, pr.sql, self.dialect)
        base_rows, base_nulls, pr_rows, pr_nulls = (
            int(n or 0) for n in self.warehouse.query(pair.counts(key))[0]
        )
        share = self._share(max(base_rows, pr_rows))
        keyed: tuple[Any, ...] | None = None
        if key and (base_nulls or pr_nulls):
            why_no_key = self._not_a_key(key, base_nulls, pr_nulls, "null")
        elif key and share is not None:  # a sample's sizes are not known: check it first
            base_bad, pr_bad = self._bad_keys(pair, key, share)
            if base_bad or pr_bad:
                why_no_key = self._not_a_key(key, base_bad, pr_bad, "null or not unique")
        elif key:  # a join that multiplied rows says the key repeats: only then count them
            keyed = self.warehouse.query(pair.keyed(key, shared, share))[0]
            if (int(keyed[0] or 0), int(keyed[1] or 0)) != (base_rows, pr_rows):
                base_bad, pr_bad = self._bad_keys(pair, key, share)
                why_no_key = self._not_a_key(key, base_bad, pr_bad, "not unique")
                keyed = None
        if why_no_key and key:  # compared as multisets: the key's columns are compared too
            key = []
            shared = self._shared(pr_columns, by_name, changed_type, key)
        found = ModelDiff(
            unique_id=target.unique_id,
            name=target.name,
            status=DiffStatus.IDENTICAL,
            reason=why_no_key,
            base_relation=str(base),
            pr_relation=str(pr),
            rows=Rows(base=base_rows, pr=pr_rows),
            columns=columns,
            key=key or None,
            key_from=target.key_from if key else None,
            sample=round(share / SAMPLE_BUCKETS, 6) if share is not None else None,
        )
        if key:
            found = self._keyed(found, pair, key, shared, share, keyed)
            differs = bool(found.added or found.removed or found.changed)
        else:
            found = self._keyless(found, pair, shared, share, pr_by_name)
            differs = bool(found.added or found.removed)
        if differs or columns.changed or base_rows != pr_rows:
            found = found.model_copy(update={"status": DiffStatus.CHANGED})
        return found

    def _shared(
        self,
        pr_columns: list[Column],
        base: dict[str, Column],
        changed_type: set[str],
        key: list[str],
    ) -> list[Compared]:
        """The columns both sides have, but the key's, in the pull request's order."""
        keys = {k.lower() for k in key}
        return [
            Compared(
                name=c.name,
                as_text=c.name.lower() in changed_type,
                sensitive=c.name.lower() in self.target.sensitive,
            )
            for c in pr_columns
            if c.name.lower() in base and c.name.lower() not in keys
        ]

    def _key(
        self, base: dict[str, Column], pr: dict[str, Column], changed_type: set[str]
    ) -> tuple[list[str], str | None]:
        """The key's columns as the pull request names them, or [] and why not."""
        target = self.target
        if not target.key:
            return [], None
        described = f"key {', '.join(target.key)} ({target.key_from})"
        for name in target.key:
            lowered = name.lower()
            if lowered not in pr or lowered not in base:
                side = "the pull request" if lowered not in pr else "production"
                return [], f"{described}: {name} is not a column in {side}; compared without a key"
            if lowered in changed_type:
                return [], f"{described}: {name} changed type; compared without a key"
        return [pr[name.lower()].name for name in target.key], None

    def _share(self, rows: int) -> int | None:
        """The sample (buckets of SAMPLE_BUCKETS) that brings `rows` to about max_rows: never
        all of them (a sample of 100% would pay for the hash and save nothing)."""
        if rows <= self.limits.max_rows:
            return None
        share = math.floor(SAMPLE_BUCKETS * self.limits.max_rows / rows)
        return min(max(1, share), SAMPLE_BUCKETS - 1)

    def _bad_keys(self, pair: Pair, key: list[str], share: int | None) -> tuple[int, int]:
        base_bad, pr_bad = self.warehouse.query(pair.duplicate_keys(key, share))[0]
        return int(base_bad or 0), int(pr_bad or 0)

    def _not_a_key(self, key: list[str], base: int, pr: int, what: str) -> str:
        """Why a model found with a key is compared as multisets of rows."""
        where = (
            " and ".join(side for side, n in (("production", base), ("the pull request", pr)) if n)
            or "a side"
        )
        return (
            f"key {', '.join(key)} ({self.target.key_from}) is {what} in {where} "
            f"({max(base, pr):,} keys or rows); compared as multisets of rows"
        )

    def _keyed(
        self,
        found: ModelDiff,
        pair: Pair,
        key: list[str],
        shared: list[Compared],
        share: int | None,
        row: tuple[Any, ...] | None,
    ) -> ModelDiff:
        """The keyed diff's figures (`row` when already queried) and, if anything differs, a
        few examples."""
        if row is None:
            row = self.warehouse.query(pair.keyed(key, shared, share))[0]
        _, _, removed, added, changed = (int(n or 0) for n in row[:5])
        by_column = {c.name: int(n or 0) for c, n in zip(shared, row[5:], strict=True)}
        by_column = dict(sorted(((k, v) for k, v in by_column.items() if v), key=lambda i: -i[1]))
        examples: list[Example] = []
        if self.limits.values and self.limits.examples and (added or removed or changed):
            rows = self.warehouse.query(pair.examples(key, shared, share, self.limits.examples))
            examples = [self._example(r, key, shared) for r in rows]
        return found.model_copy(
            update={
                "added": added,
                "removed": removed,
                "changed": changed,
                "changed_by_column": by_column,
                "examples": examples,
            }
        )

    def _example(self, row: tuple[Any, ...], key: list[str], shared: list[Compared]) -> Example:
        kind = str(row[0])
        at = 1
        keys = {}
        for name in key:
            keys[name] = HIDDEN if name.lower() in self.target.sensitive else _text(row[at])
            at += 1
        changed: dict[str, tuple[str | None, str | None] | None] = {}
        for column in shared:
            differs = bool(row[at])
            at += 1
            values = None
            if not column.sensitive:
                values = (_text(row[at]), _text(row[at + 1]))
                at += 2
            if differs and kind == "changed":
                changed[column.name] = values
        return Example(kind=kind, key=keys, changed=changed)  # type: ignore[arg-type]

    def _keyless(
        self,
        found: ModelDiff,
        pair: Pair,
        shared: list[Compared],
        share: int | None,
        pr_columns: dict[str, Column],
    ) -> ModelDiff:
        if not shared:
            return found.model_copy(update={"reason": found.reason or "no column in common"})
        removed, added = (
            int(n or 0) for n in self.warehouse.query(pair.multiset(shared, share))[0]
        )
        numeric = set()
        if self.limits.values:
            numeric = {c.name for c in shared if pr_columns[c.name.lower()].numeric}
        row = self.warehouse.query(pair.profile(shared, numeric))[0]
        width = len(row) // 2
        base_side, pr_side = row[:width], row[width:]
        profiles = []
        at = 0
        for column in shared:
            with_numbers = column.name in numeric and not column.as_text and not column.sensitive
            size = 5 if with_numbers else 2
            b, p = base_side[at : at + size], pr_side[at : at + size]
            at += size
            profiles.append(
                ColumnProfile(
                    column=column.name,
                    nulls=(int(b[0] or 0), int(p[0] or 0)),
                    distinct=(int(b[1] or 0), int(p[1] or 0)),
                    min=(_number(b[2]), _number(p[2])) if with_numbers else None,
                    max=(_number(b[3]), _number(p[3])) if with_numbers else None,
                    mean=(_number(b[4]), _number(p[4])) if with_numbers else None,
                )
            )
        return found.model_copy(update={"added": added, "removed": removed, "profiles": profiles})


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _number(value: Any) -> float | None:
    return None if value is None else round(float(value), 6)
