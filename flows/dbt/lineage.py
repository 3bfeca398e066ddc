"""What dbt's manifest says about the nodes a run executes: their inputs, their code's fingerprint.

This is dbt knowledge - a node's parents read through ephemeral models, the checksum, config and
macros dbt records per node, the `fqn:` selector that names one - so it lives in flows/dbt and
takes nothing but the manifest. What a run does with it (the marks kept per environment,
which nodes run, flows/run/changes.py) is the run's policy, one layer up.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any


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
