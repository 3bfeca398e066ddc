"""Only what changed: which nodes a `build` or `run` must execute, and why.

Each environment keeps a mark per node in the artifact store (`<project>/<env>/state/marks.json`),
written when the node last succeeded there: a fingerprint of its code and config, and the
version of each input it was built from - a source's newest `loaded_at` (dbt source freshness),
a model's or seed's build (the run that last built it). A node runs when any of these holds:

- it has no mark (new, or never built by a run that keeps marks): `new`;
- its fingerprint differs (SQL, config, the macros it calls, the ephemeral models it reads;
  comments and whitespace aside): `code changed`;
- a var or env var it reads (in its code, config, hooks, macros, ephemeral parents) has another
  value than it was built with: `var changed: <name>`, `env var changed: <NAME>`;
- it failed, errored or was skipped in the latest run that kept marks: `previously failed`;
- a source it reads has newer (or other) data than it was built from: `new data in <source>`;
- a source it reads has no freshness to tell (no `loaded_at_field`, its query failed):
  `freshness unknown for <source>` - conservative, it runs;
- a node it reads runs now, or was rebuilt since it was built: `upstream <node> ...`.

Otherwise it is unchanged and skipped. Because a mark names the exact input versions, a partial
run never loses anything: what it did not rebuild keeps its older marks, and a later run still
sees that its inputs moved. Tests are nodes like the others: they follow their models.

This is the run's policy over the artifact store; what the manifest says about a node (its
inputs, its fingerprint) is dbt knowledge, in flows/dbt/lineage.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from flows.artifacts import ArtifactStore, state_key
from flows.dbt.lineage import Lineage
from flows.dbt.nodes import NodeResult, NodeStatus

MARKS_FILE = "marks.json"
_BUILT = {NodeStatus.SUCCESS, NodeStatus.PASS, NodeStatus.WARN}
_NOT_BUILT = {NodeStatus.SKIPPED}


def marks_key(project: str, env: str) -> str:
    return state_key(project, env, MARKS_FILE)


class ChangeReport(BaseModel):
    """What an only-changed run decided: the nodes it ran and why, the ones it skipped."""

    model_config = ConfigDict(frozen=True)

    ran: dict[str, str] = Field(default_factory=dict)
    """unique_id: why it ran (`code changed`, `new data in source shop.orders`...)."""
    unchanged: list[str] = Field(default_factory=list)
    """Nodes skipped as unchanged: never run, never counted as passed."""
    sources: dict[str, str | None] = Field(default_factory=dict)
    """Each source read's newest loaded_at when the run began (None: unknown)."""
    fixed_s: float = 0.0
    """Seconds spent deciding: the marks read, the freshness query."""

    def reasons(self) -> dict[str, int]:
        """How many nodes ran for each kind of reason, most first."""
        kinds: dict[str, int] = {}
        for reason in self.ran.values():
            kind = "upstream rebuilt" if reason.startswith("upstream") else reason
            kind = kind.split(" (", 1)[0]
            kinds[kind] = kinds.get(kind, 0) + 1
        return dict(sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0])))

    def describe(self) -> str:
        if not self.ran:
            return f"nothing changed: {len(self.unchanged)} node(s) unchanged, none run"
        why = ", ".join(f"{kind}: {n}" for kind, n in self.reasons().items())
        return f"{len(self.ran)} node(s) ran ({why}); {len(self.unchanged)} unchanged, skipped"


@dataclass
class Marks:
    """The environment's marks: per node its fingerprint, input versions and build."""

    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    failed: set[str] = field(default_factory=set)

    def version(self, unique_id: str) -> str | None:
        mark = self.nodes.get(unique_id)
        return mark["version"] if mark else None

    def dumps(self) -> bytes:
        body = {"format": 1, "nodes": self.nodes, "failed": sorted(self.failed)}
        return json.dumps(body, indent=1, sort_keys=True).encode()

    @classmethod
    def loads(cls, raw: bytes) -> Marks:
        body = json.loads(raw)
        return cls(nodes=dict(body.get("nodes") or {}), failed=set(body.get("failed") or ()))


def load(store: ArtifactStore, project: str, env: str) -> Marks | None:
    """The environment's marks; None when it has none yet.

    Raises:
        flows.artifacts.ArtifactStoreError: the store could not be read.
        ValueError: the marks are unreadable.
    """
    raw = store.get_bytes(marks_key(project, env))
    return Marks.loads(raw) if raw else None


def decide(
    lineage: Lineage,
    universe: list[str],
    marks: Marks | None,
    sources: dict[str, str | None],
) -> ChangeReport:
    """Which nodes of `universe` run, and why; `sources` are the sources' newest loaded_at."""
    marks = marks or Marks()
    wanted = set(universe)
    decided: dict[str, str | None] = {}

    def reason(unique_id: str) -> str | None:
        if unique_id in decided:
            return decided[unique_id]
        decided[unique_id] = None  # a cycle cannot happen in dbt's DAG; this ends one anyway
        decided[unique_id] = _reason(unique_id)
        return decided[unique_id]

    def _reason(unique_id: str) -> str | None:
        mark = marks.nodes.get(unique_id)
        if mark is None:
            return "new (no earlier build recorded)"
        if mark.get("code") != lineage.fingerprint(unique_id):
            return "code changed"
        if changed := _values_changed(mark.get("values") or {}, lineage.values_read(unique_id)):
            return changed
        if unique_id in marks.failed:
            return "previously failed or skipped"
        built_from = mark.get("inputs") or {}
        for parent in lineage.inputs(unique_id):
            if lineage.is_source(parent):
                now = sources.get(parent)
                name = parent.removeprefix("source.").split(".", 1)[-1]
                if now is None:
                    return f"freshness unknown for source {name}"
                if built_from.get(parent) != now:
                    return f"new data in source {name}"
            elif parent in wanted and reason(parent) is not None:
                return f"upstream {_short(parent)} runs"
            elif built_from.get(parent) != marks.version(parent):
                return f"upstream {_short(parent)} rebuilt since"
        return None

    ran = {n: why for n in universe if (why := reason(n)) is not None}
    unchanged = [n for n in universe if n not in ran]
    return ChangeReport(ran=ran, unchanged=unchanged, sources=sources)


def advance(
    marks: Marks | None,
    lineage: Lineage,
    nodes: list[NodeResult],
    sources: dict[str, str | None],
    run_id: str,
    *,
    onto: Marks | None = None,
) -> Marks:
    """The marks after a run: each node it built gets a new mark; the others keep theirs.

    Args:
        marks: The marks the run decided from: its inputs are the versions it read.
        onto: The marks as they are now, when other runs may have advanced theirs since (runs
            of other nodes write at once); default: `marks`.
    """
    before = marks or Marks()
    built = {n.unique_id for n in nodes if n.status in _BUILT}
    now_marks = onto if onto is not None else before
    after = Marks(nodes=dict(now_marks.nodes), failed=set(now_marks.failed))
    now = datetime.now(UTC).isoformat()
    for unique_id in sorted(built):
        inputs: dict[str, str | None] = {}
        for parent in lineage.inputs(unique_id):
            if lineage.is_source(parent):
                inputs[parent] = sources.get(parent)
            elif parent in built:
                inputs[parent] = run_id
            else:
                inputs[parent] = before.version(parent)
        after.nodes[unique_id] = {
            "code": lineage.fingerprint(unique_id),
            "values": lineage.values_read(unique_id),
            "inputs": inputs,
            "version": run_id,
            "built_at": now,
        }
    after.failed -= built
    after.failed |= {n.unique_id for n in nodes if n.failed or n.status in _NOT_BUILT}
    return after


def _values_changed(before: dict[str, str], now: dict[str, str]) -> str | None:
    """`var changed: lookback_days` (and how many more), or None when the vars and env vars
    the node reads have the values it was built with."""
    changed = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
    if not changed:
        return None
    kind, name = changed[0].split(":", 1)
    more = f" and {len(changed) - 1} more" if len(changed) > 1 else ""
    return f"{'var' if kind == 'var' else 'env var'} changed: {name}{more}"


def _short(unique_id: str) -> str:
    """`model.shop.stg_orders` as `stg_orders`."""
    return unique_id.split(".", 2)[-1]
