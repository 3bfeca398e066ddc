"""Where a version is built: the nodes a run executes, pointed at `<schema>__<version>` in dbt's
manifest before dbt executes them.

The project's own naming (its `generate_schema_name`, custom schemas, aliases) decides where
consumers read a model; the version's schema is that name with `__<version>` appended, whatever
the naming. Only the nodes the run executes move: a `ref` to a node the run does not build
resolves to what consumers read (the published view), as `--defer` would; a `ref` between two
nodes of the run reads this version; `{{ this }}` is the version's relation, which an
incremental model or a snapshot continues from once it is copied there (publisher.continue_from).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flows.publish.statements import Relation
from flows.publish.versions import version_schema

BUILT_TYPES = ("model", "seed", "snapshot")
"""What a run builds as a relation consumers read (tests, unit tests and sources are not)."""


@dataclass(frozen=True)
class VersionedNode:
    """A node the run builds into its version."""

    unique_id: str
    consumer: Relation
    """Where consumers read it: the project's own schema and name."""
    built: Relation
    """Where the run builds it: `<consumer schema>__<version>`, same name."""
    continues: bool
    """An incremental model or a snapshot: it continues from what consumers read."""


def build_into_version(
    manifest: Any, unique_ids: Iterable[str], version: str, *, full_refresh: bool
) -> list[VersionedNode]:
    """Points the executed nodes that build a relation at the version's schemas, in `manifest`
    (changed in place: the manifest dbt executes). Ephemeral models have no relation.

    Args:
        full_refresh: incremental models start from scratch, so they continue from nothing
            (snapshots ignore it, as dbt does).

    Raises:
        InvalidVersion: a versioned schema's name would be too long for the warehouse.
    """
    out = []
    for unique_id in sorted(set(unique_ids)):
        node = manifest.nodes.get(unique_id)
        if node is None or _resource_type(node) not in BUILT_TYPES:
            continue
        materialized = str(getattr(node.config, "materialized", "") or "")
        if materialized == "ephemeral":
            continue
        consumer = Relation(str(node.schema), str(node.alias or node.name))
        built = Relation(version_schema(consumer.schema, version), consumer.name)
        node.schema = built.schema
        if getattr(node, "relation_name", None):
            node.relation_name = _in_schema(node.relation_name, built.schema)
        snapshot = _resource_type(node) == "snapshot"
        incremental = materialized == "incremental" and not full_refresh
        out.append(VersionedNode(unique_id, consumer, built, continues=snapshot or incremental))
    return out


def restore_consumer_names(manifest_json: Path, nodes: Iterable[VersionedNode]) -> None:
    """Rewrites dbt's manifest.json (written at the end of the run, with the versions' schemas)
    so each node names where consumers read it again: the manifest is the state a later run
    defers to or compares with (`--defer`, `state:modified`), and consumers' names are the ones
    that stay. run_results.json keeps where each node was built."""
    if not manifest_json.is_file():
        return
    document = json.loads(manifest_json.read_bytes())
    for versioned in nodes:
        node = document.get("nodes", {}).get(versioned.unique_id)
        if node is None:
            continue
        node["schema"] = versioned.consumer.schema
        if node.get("relation_name"):
            node["relation_name"] = _in_schema(node["relation_name"], versioned.consumer.schema)
    manifest_json.write_text(json.dumps(document))


def _resource_type(node: Any) -> str:
    return str(getattr(node.resource_type, "value", node.resource_type))


def _in_schema(relation_name: str, schema: str) -> str:
    """dbt's rendered `database.schema.identifier` (each part maybe quoted, a quoted part maybe
    holding a dot) in another schema, as the run's artifacts report where each node was built."""
    parts = _dotted_parts(relation_name)
    if len(parts) < 2:
        return relation_name
    old = parts[-2]
    quote = old[0] if old[:1] in ('"', "`") else ""
    parts[-2] = f"{quote}{schema}{quote}"
    return ".".join(parts)


def _dotted_parts(name: str) -> list[str]:
    """`a."b.c".d` as [`a`, `"b.c"`, `d`]: split on the dots outside quotes."""
    parts, current, quote = [], "", ""
    for char in name:
        if quote:
            quote = "" if char == quote else quote
        elif char in ('"', "`"):
            quote = char
        elif char == ".":
            parts.append(current)
            current = ""
            continue
        current += char
    return [*parts, current]
