"""Which models a pull-request run's diff compares, and how: read from dbt's manifests.

The pull request's manifest says what it built and where (its own schema), production's state
manifest - the one the run deferred to - where production keeps the same model. Keys and
sensitive columns come from the pull request's own definitions (and production's marks, so
removing a `sensitive` mark in the pull request does not show the values it hid).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from flows.ci.diff.sql import quote

_BUILT = {"success", "pass", "warn"}
# Key-defining tests: (the test's name, whether its column(s) are also not null by it).
_UNIQUE_TESTS = {"unique", "unique_combination_of_columns"}


@dataclass(frozen=True)
class Relation:
    database: str | None
    schema: str
    identifier: str

    @property
    def sql(self) -> str:
        parts = [self.database] if self.database else []
        return ".".join(quote(p) for p in [*parts, self.schema, self.identifier])

    def __str__(self) -> str:
        return f"{self.schema}.{self.identifier}"


@dataclass(frozen=True)
class Target:
    """One model to report on."""

    unique_id: str
    name: str
    pr: Relation | None
    base: Relation | None
    key: tuple[str, ...] = ()
    key_from: str | None = None
    sensitive: frozenset[str] = frozenset()
    skipped: str | None = None
    """Why it is listed but not compared (ephemeral, not built)."""


def targets(
    pr_manifest: dict[str, Any], state_manifest: dict[str, Any], results: list[dict[str, Any]]
) -> list[Target]:
    """The models to report on, in the order the run built them, then removed ones.

    - every model the run built (the edited ones and what `state:modified+` rebuilt below them);
    - models it selected but did not build (an error upstream): skipped, with dbt's status;
    - ephemeral models the pull request changed or added: skipped (no relation of their own);
    - production models the pull request's project no longer has: removed.
    """
    pr_nodes: dict[str, Any] = pr_manifest.get("nodes") or {}
    base_nodes: dict[str, Any] = state_manifest.get("nodes") or {}
    tests = _tests_by_model(pr_nodes.values())
    found: list[Target] = []
    for result in results:
        uid = str(result.get("unique_id"))
        node = pr_nodes.get(uid)
        if not uid.startswith("model.") or node is None:
            continue
        base = base_nodes.get(uid)
        status = str(result.get("status"))
        key, key_from = find_key(node, tests.get(uid, []))
        found.append(
            Target(
                unique_id=uid,
                name=str(node.get("name")),
                pr=_relation(node),
                base=_relation(base) if base and _materialized(base) != "ephemeral" else None,
                key=key,
                key_from=key_from,
                sensitive=sensitive_columns(node) | sensitive_columns(base or {}),
                skipped=None if status in _BUILT else f"not built by the pull request ({status})",
            )
        )
    for uid, node in pr_nodes.items():
        if not uid.startswith("model.") or _materialized(node) != "ephemeral":
            continue
        base = base_nodes.get(uid)
        if base is not None and _checksum(base) == _checksum(node):
            continue
        found.append(
            Target(
                unique_id=uid,
                name=str(node.get("name")),
                pr=None,
                base=None,
                skipped="ephemeral: it has no table of its own; the models that read it show "
                "what it changed",
            )
        )
    for uid, base in base_nodes.items():
        if uid.startswith("model.") and uid not in pr_nodes and _materialized(base) != "ephemeral":
            found.append(
                Target(
                    unique_id=uid,
                    name=str(base.get("name")),
                    pr=None,
                    base=_relation(base),
                    sensitive=sensitive_columns(base),
                )
            )
    return found


def find_key(
    node: dict[str, Any], tests: list[dict[str, Any]]
) -> tuple[tuple[str, ...], str | None]:
    """The columns that identify a row, and where they were found, in this order:

    `meta: {ferry: {key: ...}}` (the owner said so), a primary-key constraint, the `unique_key`
    config, a column with both `unique` and `not_null` tests (or `not_null` as a constraint), a
    `unique_combination_of_columns` test. None found: ((), None).
    """
    for meta in (node.get("meta") or {}, (node.get("config") or {}).get("meta") or {}):
        declared = (meta.get("ferry") or {}).get("key") if isinstance(meta, dict) else None
        if declared:
            return _names(declared), "meta"
    for constraint in node.get("constraints") or []:
        if constraint.get("type") == "primary_key" and constraint.get("columns"):
            return _names(constraint["columns"]), "primary key"
    columns: dict[str, Any] = node.get("columns") or {}
    for name, column in columns.items():
        if any(c.get("type") == "primary_key" for c in column.get("constraints") or []):
            return (str(column.get("name") or name),), "primary key"
    unique_key = (node.get("config") or {}).get("unique_key")
    if unique_key and all(_is_column(k) for k in _names(unique_key)):
        return _names(unique_key), "unique_key"
    unique = {
        str(t.get("column_name")).lower()
        for t in tests
        if _test_name(t) == "unique" and t.get("column_name")
    }
    not_null = {
        str(t.get("column_name")).lower()
        for t in tests
        if _test_name(t) == "not_null" and t.get("column_name")
    }
    not_null |= {
        str(column.get("name") or name).lower()
        for name, column in columns.items()
        if any(c.get("type") == "not_null" for c in column.get("constraints") or [])
    }
    for name in sorted(unique & not_null):
        return (name,), "tests"
    for test in tests:
        if _test_name(test) == "unique_combination_of_columns":
            combination = ((test.get("test_metadata") or {}).get("kwargs") or {}).get(
                "combination_of_columns"
            )
            if combination and all(_is_column(c) for c in _names(combination)):
                return _names(combination), "tests"
    return (), None


def sensitive_columns(node: dict[str, Any]) -> frozenset[str]:
    """Columns whose values never leave the warehouse: `meta` (or `config.meta`) with
    `sensitive: true`, `pii: true` or `ferry: {sensitive: true}`. Lowercase names."""
    marked = set()
    for name, column in (node.get("columns") or {}).items():
        metas = [column.get("meta") or {}, (column.get("config") or {}).get("meta") or {}]
        if any(_marks_sensitive(meta) for meta in metas):
            marked.add(str(column.get("name") or name).lower())
    return frozenset(marked)


def _marks_sensitive(meta: Any) -> bool:
    if not isinstance(meta, dict):
        return False
    ferry = meta.get("ferry")
    marked_by_ferry = isinstance(ferry, dict) and bool(ferry.get("sensitive"))
    return bool(meta.get("sensitive") or meta.get("pii") or marked_by_ferry)


def _tests_by_model(nodes: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The tests of one model each (a relationships test, on two, is no key's)."""
    found: dict[str, list[dict[str, Any]]] = {}
    for node in nodes:
        parents = (node.get("depends_on") or {}).get("nodes") or []
        if node.get("resource_type") == "test" and len(parents) == 1:
            found.setdefault(str(node.get("attached_node") or parents[0]), []).append(node)
    return found


def _test_name(test: dict[str, Any]) -> str:
    return str((test.get("test_metadata") or {}).get("name") or "")


def _names(value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, list | tuple) else [value]
    return tuple(str(item).strip() for item in items if str(item).strip())


def _is_column(name: str) -> bool:
    """A plain column name, not an expression (`unique_key` may be `a || '-' || b`)."""
    return name.replace("_", "").isalnum()


def _relation(node: dict[str, Any]) -> Relation:
    return Relation(
        database=node.get("database") or None,
        schema=str(node.get("schema")),
        identifier=str(node.get("alias") or node.get("name")),
    )


def _materialized(node: dict[str, Any]) -> str:
    return str((node.get("config") or {}).get("materialized") or "")


def _checksum(node: dict[str, Any]) -> str:
    return str((node.get("checksum") or {}).get("checksum") or "")
