"""Versions of an environment's data: how they are named, which publications are kept, which one
a rollback returns to, and which versioned schemas may go. Pure: the ledger's rows come in,
decisions come out.

A *version* is what one run built: the schemas `<schema>__<version>`. A *publication* is what
consumers read after one publish or rollback: every consumer relation and the versioned
relation it reads. A partial build publishes only the models it built, so one publication may
read several versions; a version's schemas are kept while a kept publication reads them.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from flows.publish.statements import Relation

SEPARATOR = "__"
VERSION = re.compile(r"^[a-z][a-z0-9]{0,31}$")
"""A version label: no underscore, so `<schema>__<version>` splits on its last `__`."""
MAX_IDENTIFIER = 63
"""PostgreSQL's limit on a name (Redshift's is 127 bytes, DuckDB has none): the tightest wins."""


class InvalidVersion(ValueError):
    """A version label or a versioned schema name that cannot be (exit code 2)."""


class NotKept(LookupError):
    """The publication a rollback asks for is no longer kept, or never was (exit code 2)."""


def version_for_run(run_id: str) -> str:
    """The version a run builds: `r` and the first 12 letters or digits of its id (a Prefect
    flow run id is a UUID: 12 hex digits make a collision between two runs negligible)."""
    letters = re.sub(r"[^0-9a-z]", "", run_id.lower())
    if not letters:
        raise InvalidVersion(f"run id {run_id!r} has no letter or digit to name a version by")
    return "r" + letters[:12]


def check_version(version: str) -> str:
    if not VERSION.match(version):
        raise InvalidVersion(
            f"version {version!r}: lowercase letters and digits, starting with a letter, at most 32"
        )
    return version


def version_schema(schema: str, version: str) -> str:
    """Where a run builds what consumers read as `<schema>`."""
    name = f"{schema}{SEPARATOR}{check_version(version)}"
    if len(name.encode()) > MAX_IDENTIFIER:
        raise InvalidVersion(
            f"schema {name!r} is longer than {MAX_IDENTIFIER} bytes: shorten the schema"
        )
    return name


def split_version_schema(name: str) -> tuple[str, str] | None:
    """(consumer schema, version) of a versioned schema's name; None for any other name."""
    schema, sep, version = name.rpartition(SEPARATOR)
    if not sep or not schema or not VERSION.match(version):
        return None
    return schema, version


@dataclass(frozen=True)
class Publication:
    """What consumers read after one publish (or rollback) of an environment."""

    seq: int
    version: str
    """The version published; for a rollback, the version returned to."""
    kind: Literal["publish", "rollback"]
    published_at: datetime
    mapping: tuple[tuple[Relation, Relation], ...]
    """(consumer, versioned source) pairs, sorted."""

    @property
    def sources(self) -> dict[Relation, Relation]:
        return dict(self.mapping)

    @property
    def schemas(self) -> set[str]:
        """The versioned schemas this publication reads."""
        return {source.schema for _, source in self.mapping}


def publications_of(rows: Iterable[Sequence[Any]]) -> list[Publication]:
    """The ledger's rows (statements.ledger_select) as publications, oldest first."""
    grouped: dict[int, list[Sequence[Any]]] = {}
    for row in rows:
        grouped.setdefault(int(row[0]), []).append(row)
    out = []
    for seq in sorted(grouped):
        first = grouped[seq][0]
        at = first[3]
        mapping = sorted(
            (Relation(str(r[4]), str(r[5])), Relation(str(r[6]), str(r[7]))) for r in grouped[seq]
        )
        out.append(
            Publication(
                seq=seq,
                version=str(first[1]),
                kind="rollback" if first[2] == "rollback" else "publish",
                published_at=at if isinstance(at, datetime) else datetime.fromisoformat(str(at)),
                mapping=tuple(mapping),
            )
        )
    return out


def next_mapping(
    current: Publication | None, changes: dict[Relation, Relation]
) -> tuple[tuple[Relation, Relation], ...]:
    """What consumers read after `changes`: the current publication's mapping, with the
    consumers a run built (or a rollback restores) pointed at their new source."""
    mapping = dict(current.mapping) if current else {}
    mapping.update(changes)
    return tuple(sorted(mapping.items()))


def kept(publications: Sequence[Publication], keep: int) -> list[Publication]:
    """The publications kept: those of the `keep` versions published most recently (a version
    counts once, however many times it was published or rolled back to), the current one
    always among them. Oldest first."""
    if keep < 1:
        raise ValueError("at least one version is kept: the one consumers read")
    recent: list[str] = []
    for publication in reversed(publications):
        if publication.version not in recent:
            recent.append(publication.version)
    versions = set(recent[:keep])
    return [p for p in publications if p.version in versions]


def rollback_target(publications: Sequence[Publication], to: str | None = None) -> Publication:
    """The publication a rollback restores: the latest one before the current one that read
    another version (after a rollback, that is the publication rolled back from), or the latest
    publish of version `to`.

    Raises:
        NotKept: there is nothing to return to, or version `to` is not (or no longer) kept.
    """
    if not publications:
        raise NotKept("nothing was ever published here: there is nothing to roll back to")
    current = publications[-1]
    if to is None:
        for publication in reversed(publications[:-1]):
            if publication.version != current.version:
                return publication
        raise NotKept(f"no version before {current.version} is kept: nothing to return to")
    for publication in reversed(publications):
        if publication.version == to and publication.kind == "publish":
            return publication
    listed = ", ".join(sorted({p.version for p in publications if p.kind == "publish"}))
    raise NotKept(f"version {to!r} is not kept (kept: {listed})")


def version_named(name: str, publications: Sequence[Publication]) -> str:
    """The kept version a user names: the version itself (`rb83228268561`), or the id of the
    run that built it (its summary's run id, a Prefect flow run id).

    Raises:
        NotKept: no kept publication is of that version or run.
    """
    published = {p.version for p in publications if p.kind == "publish"}
    if name in published:
        return name
    with contextlib.suppress(InvalidVersion):
        if (version := version_for_run(name)) in published:
            return version
    listed = ", ".join(sorted(published)) or "none"
    raise NotKept(
        f"no kept version is {name!r}, nor was built by a run of that id (kept: {listed})"
    )


def droppable_schemas(
    publications: Sequence[Publication], keep: int, existing: Iterable[str]
) -> list[str]:
    """The versioned schemas no kept publication reads: versions of this environment's
    consumer schemas that were dropped from the ledger, or built and never published (a run
    that failed). Everything else in `existing` is left alone."""
    kept_schemas: set[str] = set()
    for publication in kept(publications, keep):
        kept_schemas |= publication.schemas
    consumers = {c.schema for p in publications for c, _ in p.mapping}
    out = []
    for name in existing:
        split = split_version_schema(name)
        if split and split[0] in consumers and name not in kept_schemas:
            out.append(name)
    return sorted(out)
