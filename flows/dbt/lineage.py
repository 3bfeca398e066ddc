"""What dbt's manifest says about the nodes a run executes: their inputs, their code's fingerprint.

This is dbt knowledge - a node's parents read through ephemeral models, the checksum, config and
macros dbt records per node, the selectors that name exactly a set of them (a folder's `path:`,
a node's `fqn:`) - so it lives in flows/dbt and takes nothing but the manifest. What a run does
with it (the marks kept per environment, which nodes run, flows/run/changes.py) is the run's
policy, one layer up.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import PurePosixPath
from typing import Any

_CALL = r"""\b{name}\s*\(\s*(?:(['"])(?P<literal>[^'"]+)\1|(?P<other>[^)\s]))"""
_VAR = re.compile(_CALL.format(name="var"))
_ENV_VAR = re.compile(_CALL.format(name="env_var"))
_PLAIN_PATH = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./-]*")
"""A folder dbt's `path:` globs as itself and a selection splits nowhere."""
EVERY_VAR = "*"
"""What a node reads when a `var(...)` names its variable other than by a literal."""


class Lineage:
    """What the manifest says about each executable node's code and inputs.

    Args:
        vars: the values dbt's `var()` gives the root project in this run (`effective_vars`).
        env: the environment dbt's `env_var()` reads.
    """

    def __init__(
        self,
        manifest: Any,
        *,
        vars: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
    ):
        self._manifest = manifest
        self._vars = dict(vars or {})
        self._env = dict(env or {})
        self._fingerprints: dict[str, str] = {}
        self._values: dict[str, dict[str, str]] = {}
        self._macro_text: dict[str, str] = {}
        self._under: dict[PurePosixPath, set[str]] | None = None

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
        """Its code, config and macros, and those of the ephemeral models it reads. The code
        is compared without its comments and whitespace (`normalized`): an edit that cannot
        change what dbt runs is no change."""
        if unique_id in self._fingerprints:
            return self._fingerprints[unique_id]
        node = self.node(unique_id)
        config = node.config.to_dict(omit_none=True) if hasattr(node, "config") else {}
        code = _code_of(node)
        test = getattr(node, "test_metadata", None)
        parts = {
            # Seeds (and YAML snapshots) have no code: their file's checksum stands for it.
            "checksum": None
            if code
            else getattr(getattr(node, "checksum", None), "checksum", None),
            "code": normalized(code) if code else None,
            "test": test.to_dict(omit_none=True) if test is not None else None,
            "config": config,
            "macros": sorted(self._macro_digest(m) for m in self._macros_called(node)),
            "ephemeral": [
                self.fingerprint(p) for p in self._parents(unique_id) if self.is_ephemeral(p)
            ],
        }
        digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode())
        self._fingerprints[unique_id] = digest.hexdigest()[:20]
        self._values[unique_id] = self._read_values(unique_id, node, code, config)
        return self._fingerprints[unique_id]

    def values_read(self, unique_id: str) -> dict[str, str]:
        """The vars and env vars it reads - in its code, its config and hooks, the macros it
        calls, the ephemeral models it reads - each as a digest of its value in this run:
        `{"var:lookback_days": "...", "env:DBT_REGION": "..."}`. A `var()` that names its
        variable other than by a literal reads them all."""
        self.fingerprint(unique_id)
        return self._values[unique_id]

    def fingerprint_all(self, unique_ids: Iterable[str]) -> None:
        """Fingerprints taken before dbt executes: it changes its nodes' configs as it goes."""
        for unique_id in unique_ids:
            self.fingerprint(unique_id)

    def fqn_selector(self, unique_id: str) -> str:
        node = self.node(unique_id)
        if unique_id.startswith("unit_test."):
            return f"unit_test:{node.name}"
        return "fqn:" + ".".join(node.fqn)

    def selection(self, unique_ids: Iterable[str]) -> tuple[str, ...]:
        """Selectors that select exactly these nodes, as few as the project's folders allow.

        A folder every one of whose resources is among them is one `path:` selector; the rest
        are one `fqn:` each. dbt matches each selector against the whole graph, so a part of
        hundreds of nodes named one by one costs seconds before its first node runs, while a
        domain kept in a folder of its own is one `path:`. A folder is used only if dbt's
        `path:` method (any resource, of any package, whose file lies under it) can select
        nothing else - a source declared there only if every test on it is among them - and
        only if it is the root project's (dbt looks for it on disk there).
        """
        wanted = set(unique_ids)
        under = self._folders()
        usable = {folder for folder, found in under.items() if found <= wanted}
        chosen = sorted(f for f in usable if not any(p in usable for p in f.parents))
        covered = set().union(*(under[f] for f in chosen))
        return (
            *(f"path:{folder}" for folder in chosen),
            *(self.fqn_selector(n) for n in sorted(wanted - covered)),
        )

    def _folders(self) -> dict[PurePosixPath, set[str]]:
        """The root project's folders a `path:` may name, each with what it selects that counts:
        every resource under it, but for a source the tests on it (a selected source runs
        nothing itself; what it adds is the tests that indirect selection takes with it)."""
        if self._under is None:
            under: dict[PurePosixPath, set[str]] = {}
            ours: set[PurePosixPath] = set()
            root = getattr(getattr(self._manifest, "metadata", None), "project_name", None)
            tests_on = self._tests_on_sources()
            for unique_id, resource in self._resources():
                path = getattr(resource, "original_file_path", None)
                if not path:
                    continue
                counts = (
                    tests_on.get(unique_id, set()) if self.is_source(unique_id) else {unique_id}
                )
                for folder in PurePosixPath(path).parents[:-1]:  # every folder but the root
                    under.setdefault(folder, set()).update(counts)
                    if root is not None and getattr(resource, "package_name", None) == root:
                        ours.add(folder)
            self._under = {
                folder: found
                for folder, found in under.items()
                if folder in ours and _PLAIN_PATH.fullmatch(str(folder))
            }
        return self._under

    def _tests_on_sources(self) -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        for unique_id in self._manifest.nodes:
            if unique_id.startswith("test."):
                for parent in self._parents(unique_id):
                    if self.is_source(parent):
                        found.setdefault(parent, set()).add(unique_id)
        return found

    def _resources(self) -> Iterable[tuple[str, Any]]:
        """Every resource dbt's selector methods look at, of every package."""
        m = self._manifest
        for kind in (
            "nodes",
            "sources",
            "exposures",
            "metrics",
            "unit_tests",
            "semantic_models",
            "saved_queries",
            "functions",
        ):
            yield from (getattr(m, kind, None) or {}).items()

    def _parents(self, unique_id: str) -> list[str]:
        node = self.node(unique_id)
        depends = getattr(node, "depends_on", None)
        return list(getattr(depends, "nodes", None) or [])

    def _macros_called(self, node: Any) -> set[str]:
        """Every macro the node calls, and the macros those call."""
        seen: set[str] = set()
        todo = list(getattr(getattr(node, "depends_on", None), "macros", None) or [])
        while todo:
            macro_id = todo.pop()
            if macro_id in seen:
                continue
            seen.add(macro_id)
            macro = self._manifest.macros.get(macro_id)
            if macro is not None:
                todo += list(macro.depends_on.macros or [])
        return seen

    def _read_values(
        self, unique_id: str, node: Any, code: str, config: dict[str, Any]
    ) -> dict[str, str]:
        texts = [code, *_strings(config)]
        for macro_id in self._macros_called(node):
            macro = self._manifest.macros.get(macro_id)
            texts.append(macro.macro_sql if macro is not None else "")
        var_names: set[str] = set()
        env_names: set[str] = set()
        for text in texts:
            for found in _VAR.finditer(text):
                var_names |= {found["literal"]} if found["literal"] else {EVERY_VAR}
            for found in _ENV_VAR.finditer(text):
                env_names |= {found["literal"]} if found["literal"] else set(self._env)
        if EVERY_VAR in var_names:
            var_names = (var_names - {EVERY_VAR}) | set(self._vars)
        values = {f"var:{n}": _digest(self._vars.get(n)) for n in var_names}
        values |= {f"env:{n}": _digest(self._env.get(n)) for n in env_names}
        for parent in self._parents(unique_id):
            if self.is_ephemeral(parent):
                values |= self.values_read(parent)
        return dict(sorted(values.items()))

    def _macro_digest(self, macro_id: str) -> str:
        if macro_id not in self._macro_text:
            macro = self._manifest.macros.get(macro_id)
            text = macro.macro_sql if macro is not None else ""
            self._macro_text[macro_id] = hashlib.sha256(f"{macro_id}\n{text}".encode()).hexdigest()
        return self._macro_text[macro_id]


def _code_of(node: Any) -> str:
    return str(getattr(node, "raw_code", "") or getattr(node, "given", "") or "")


def _strings(value: Any) -> Iterable[str]:
    """Every string in a config (its hooks' SQL, its rendered values), nested or not."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def _digest(value: Any) -> str:
    """A value as the marks keep it: a digest, never the value (an env var may be a secret)."""
    if value is None:
        return "unset"
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def effective_vars(
    project_vars: Mapping[str, Any], project_name: str, given: Mapping[str, Any]
) -> dict[str, Any]:
    """The values `var()` gives the root project's nodes: `--vars` over the project's own
    scope (`vars: {<project>: {...}}` in dbt_project.yml) over its global `vars:`; other
    packages' scopes left out."""
    scoped = project_vars.get(project_name)
    values = {k: v for k, v in project_vars.items() if k != project_name}
    if isinstance(scoped, Mapping):
        values |= dict(scoped)
    else:
        values.pop(project_name, None)
    return values | dict(given)


_RAW_BLOCK = re.compile(r"({%-?\s*raw\s*-?%}.*?{%-?\s*endraw\s*-?%})", re.DOTALL)
_JINJA_COMMENT = re.compile(r"{#.*?#}", re.DOTALL)


def normalized(code: str) -> str:
    """SQL and Jinja as dbt would run them, without what cannot change that: Jinja comments
    (outside `{% raw %}`, where they are printed), SQL comments (`--`, `/* */`) and runs of
    whitespace, all outside string literals. A change inside a literal still counts."""
    pieces = _RAW_BLOCK.split(code)
    text = "".join(p if i % 2 else _JINJA_COMMENT.sub(" ", p) for i, p in enumerate(pieces))
    out: list[str] = []
    i, n = 0, len(text)

    def space() -> None:
        if out and out[-1] != " ":
            out.append(" ")

    while i < n:
        char = text[i]
        if char in "'\"`":  # a literal or quoted identifier, '' and "" escapes included
            end = i + 1
            while end < n and (text[end] != char or text[end + 1 : end + 2] == char):
                end += 2 if text[end] == char else 1
            out.append(text[i : end + 1])
            i = end + 1
        elif text.startswith("--", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
            space()
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
            space()
        elif char.isspace():
            while i < n and text[i].isspace():
                i += 1
            space()
        else:
            out.append(char)
            i += 1
    return "".join(out).strip()


def sources_read(lineage: Lineage, universe: Iterable[str]) -> list[str]:
    """The sources the nodes of `universe` read, directly or through ephemeral models."""
    return sorted({p for n in universe for p in lineage.inputs(n) if lineage.is_source(p)})
