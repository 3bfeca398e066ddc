"""Only what changed: which nodes a `build` or `run` must execute, and why.

Each environment keeps a mark per node in the artifact store (`<project>/<env>/state/marks.json`),
written when the node last succeeded there: a fingerprint of its code and config, and the
version of each input it was built from - a source's newest `loaded_at` (dbt source freshness),
a model's or seed's build (the run that last built it). A node runs when any of these holds:

- it has no mark (new, or never built by a run that keeps marks): `new`;
- its fingerprint differs (SQL, config, the macros it calls, the ephemeral models it reads):
  `code changed`;
- it failed, errored or was skipped in the latest run that kept marks: `previously failed`;
- a source it reads has newer (or other) data than it was built from: `new data in <source>`;
- a source it reads has no freshness to tell (no `loaded_at_field`, its query failed):
  `freshness unknown for <source>` - conservative, it runs;
- a node it reads runs now, or was rebuilt since it was built: `upstream <node> ...`.

Otherwise it is unchanged and skipped. Because a mark names the exact input versions, a partial
run never loses anything: what it did not rebuild keeps its older marks, and a later run still
sees that its inputs moved. Tests are nodes like the others: they follow their models.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from flows.artifacts import ArtifactStore, state_key
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


class Lineage:
    """What the manifest says about each executable node's code and inputs."""

    def __init__(self, manifest: Any):
        self._manifest = manifest
        self._fingerprints: dict[str, str] = {}
        self._macro_text: dict[str, str] = {}

    def node(self, unique_id: str) -> Any:
        m = self._manifest
        return m.nodes.get(unique_id) or m.unit_tests.get(unique_id) or m.sources.get(unique_id)

    def is_source(self, unique_id: str) -> bool:
        return unique_id in self._manifest.sources

    def is_ephemeral(self, unique_id: str) -> bool:
        node = self._manifest.nodes.get(unique_id)
        return node is not None and getattr(node.config, "materialized", None) == "ephemeral"

    def inputs(self, unique_id: str) -> list[str]:
        """Sources and executed nodes it reads; ephemeral models are read through."""
        found: list[str] = []
        for parent in self._parents(unique_id):
            if self.is_ephemeral(parent):
                found += [p for p in self.inputs(parent) if p not in found]
            elif parent not in found:
                found.append(parent)
        return found

    def fingerprint(self, unique_id: str) -> str:
        """Its code, config and macros, and those of the ephemeral models it reads."""
        if unique_id in self._fingerprints:
            return self._fingerprints[unique_id]
        node = self.node(unique_id)
        config = node.config.to_dict(omit_none=True) if hasattr(node, "config") else {}
        parts = {
            "checksum": getattr(getattr(node, "checksum", None), "checksum", None),
            "code": None if getattr(node, "checksum", None) else _code_of(node),
            "config": config,
            "macros": sorted(self._macros(getattr(node, "depends_on", None))),
            "ephemeral": [
                self.fingerprint(p) for p in self._parents(unique_id) if self.is_ephemeral(p)
            ],
        }
        digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode())
        self._fingerprints[unique_id] = digest.hexdigest()[:20]
        return self._fingerprints[unique_id]

    def fingerprint_all(self, unique_ids: Iterable[str]) -> None:
        """Fingerprints taken before dbt executes: it changes its nodes' configs as it goes."""
        for unique_id in unique_ids:
            self.fingerprint(unique_id)

    def fqn_selector(self, unique_id: str) -> str:
        node = self.node(unique_id)
        if unique_id.startswith("unit_test."):
            return f"unit_test:{node.name}"
        return "fqn:" + ".".join(node.fqn)

    def _parents(self, unique_id: str) -> list[str]:
        node = self.node(unique_id)
        depends = getattr(node, "depends_on", None)
        return list(getattr(depends, "nodes", None) or [])

    def _macros(self, depends: Any) -> set[str]:
        """The text of every macro the node calls, and of the macros those call."""
        seen: set[str] = set()
        todo = list(getattr(depends, "macros", None) or [])
        while todo:
            macro_id = todo.pop()
            if macro_id in seen:
                continue
            seen.add(macro_id)
            macro = self._manifest.macros.get(macro_id)
            if macro is not None:
                todo += list(macro.depends_on.macros or [])
        return {self._macro_digest(m) for m in seen}

    def _macro_digest(self, macro_id: str) -> str:
        if macro_id not in self._macro_text:
            macro = self._manifest.macros.get(macro_id)
            text = macro.macro_sql if macro is not None else ""
            self._macro_text[macro_id] = hashlib.sha256(f"{macro_id}\n{text}".encode()).hexdigest()
        return self._macro_text[macro_id]


def _code_of(node: Any) -> str:
    return str(getattr(node, "raw_code", "") or getattr(node, "given", "") or "")


def sources_read(lineage: Lineage, universe: Iterable[str]) -> list[str]:
    """The sources the nodes of `universe` read, directly or through ephemeral models."""
    return sorted({p for n in universe for p in lineage.inputs(n) if lineage.is_source(p)})


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
) -> Marks:
    """The marks after a run: each node it built gets a new mark; the others keep theirs."""
    before = marks or Marks()
    built = {n.unique_id for n in nodes if n.status in _BUILT}
    after = Marks(nodes=dict(before.nodes), failed=set(before.failed))
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
            "inputs": inputs,
            "version": run_id,
            "built_at": now,
        }
    after.failed -= built
    after.failed |= {n.unique_id for n in nodes if n.failed or n.status in _NOT_BUILT}
    return after


def _short(unique_id: str) -> str:
    """`model.shop.stg_orders` as `stg_orders`."""
    return unique_id.split(".", 2)[-1]
