"""Publishing and rolling back on a warehouse: reads the catalog and the ledger, plans the
statements (statements.py), and runs them in one transaction (Warehouse.run_in_transaction).

Consumers switch all together or not at all: the repointing and the ledger's new publication
are one transaction, so the ledger never says something consumers do not read.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, cast

from flows.dbt.warehouse import Warehouse
from flows.publish import statements as sql
from flows.publish.statements import LEDGER_TABLE, Relation, Repoint
from flows.publish.versions import (
    Publication,
    droppable_schemas,
    kept,
    next_mapping,
    publications_of,
    rollback_target,
    version_schema,
)

log = logging.getLogger(__name__)

DEFAULT_LEDGER_SCHEMA = "ferry_publish"


class MissingRelation(LookupError):
    """A relation to publish is not in its version's schema (the run did not build it)."""


@dataclass(frozen=True)
class Switched:
    """One publish or rollback: the publication consumers now read, and what was sent."""

    publication: Publication
    statements: tuple[str, ...]
    replaced: Publication | None = None
    """The publication consumers read until this switch; None before the first publish."""


def publications(warehouse: Warehouse, env: str, ledger_schema: str) -> list[Publication]:
    """The environment's kept publications, oldest first; none before the first publish."""
    dialect = sql.dialect_of(warehouse.adapter_type)
    if not warehouse.query(sql.kinds_sql(dialect, ledger_schema, [LEDGER_TABLE])):
        return []
    return publications_of(warehouse.query(sql.ledger_select(ledger_schema, env)))


def publish(
    warehouse: Warehouse,
    *,
    env: str,
    version: str,
    built: Sequence[Relation],
    ledger_schema: str = DEFAULT_LEDGER_SCHEMA,
    now: datetime | None = None,
) -> Switched:
    """Makes each consumer relation in `built` read `<schema>__<version>.<name>`, all in one
    transaction; the consumers not in `built` keep reading what they read.

    Raises:
        MissingRelation: a relation of `built` is not in the version's schema; nothing changed.
        QueryFailed: the warehouse refused the switch (a lock not granted in time, a view others
            built on ours that a dropped column would break...); nothing changed.
    """
    changes = {c: Relation(version_schema(c.schema, version), c.name) for c in built}
    return _switch(warehouse, env, ledger_schema, version, "publish", changes, now)


def rollback(
    warehouse: Warehouse,
    *,
    env: str,
    to: str | None = None,
    ledger_schema: str = DEFAULT_LEDGER_SCHEMA,
    now: datetime | None = None,
) -> Switched:
    """Makes consumers read what they read after the publication before the current one (or
    after the latest publish of version `to`), in one transaction, rebuilding nothing.

    A consumer first published after that publication keeps reading what it reads: dropping it
    could break what others built on it.

    Raises:
        NotKept: nothing to return to, or `to` is no longer kept; nothing changed.
        MissingRelation: a relation of that publication is gone; nothing changed.
    """
    target = rollback_target(publications(warehouse, env, ledger_schema), to)
    changes = dict(target.mapping)
    return _switch(warehouse, env, ledger_schema, target.version, "rollback", changes, now)


def continue_from(
    warehouse: Warehouse,
    *,
    env: str,
    continuing: Sequence[tuple[Relation, Relation]],
    ledger_schema: str = DEFAULT_LEDGER_SCHEMA,
) -> list[Relation]:
    """Copies what consumers read of each incremental model and snapshot into the version a run
    builds, so it continues from there as it would in place; one transaction, before dbt runs.

    Args:
        continuing: (consumer, versioned relation) pairs.

    Returns:
        The consumers copied; one consumers do not read yet (a first build) starts empty.
    """
    if not continuing:
        return []
    dialect = sql.dialect_of(warehouse.adapter_type)
    found = publications(warehouse, env, ledger_schema)
    published = found[-1].sources if found else {}
    schemas = set(warehouse.list_schemas())
    consumers = [c for c, _ in continuing]
    kinds = _kinds(
        warehouse,
        dialect,
        [*consumers, *(published[c] for c in consumers if c in published)],
        schemas,
    )
    statements: list[str] = []
    created: set[str] = set()
    copied = []
    for consumer, version in sorted(continuing):
        source = published.get(consumer)
        if source is None and consumer in kinds:  # a direct build's table (or a view of one)
            source = consumer
        if source is None:  # a first build: it starts empty
            continue
        # A model published as a view and incremental now copies from a view; a version gone
        # from the warehouse fails the copy, loudly: starting empty would lose its history.
        from_table = kinds.get(source, "table") == "table"
        if version.schema not in schemas and version.schema not in created:
            statements.append(f"create schema if not exists {sql.quote(version.schema)}")
            created.add(version.schema)
        statements.append(f"drop table if exists {version}")  # a transient retry's leftover
        statements += sql.continue_statements(dialect, source, version, from_table=from_table)
        copied.append(consumer)
    if statements:
        warehouse.run_in_transaction(statements)
        log.info("%d incremental model(s) and snapshot(s) continue from their copy", len(copied))
    return copied


def drop_unkept(
    warehouse: Warehouse, *, env: str, keep: int, ledger_schema: str = DEFAULT_LEDGER_SCHEMA
) -> list[str]:
    """Forgets the publications of all but the `keep` latest versions and drops the versioned
    schemas no kept publication reads (and those of runs that never published). Returns the
    schemas dropped. Run it after a publish, by the environment's one writer."""
    found = publications(warehouse, env, ledger_schema)
    if not found:
        return []
    keeping = kept(found, keep)
    forgotten = sorted({p.seq for p in found} - {p.seq for p in keeping})
    if forgotten:
        warehouse.run_in_transaction([sql.ledger_forget(ledger_schema, env, forgotten)])
    dropped = droppable_schemas(found, keep, warehouse.list_schemas())
    for schema in dropped:
        log.info("dropping %s: no kept publication reads it", schema)
        warehouse.drop_schema(schema)
    return dropped


def _switch(
    warehouse: Warehouse,
    env: str,
    ledger_schema: str,
    version: str,
    kind: Literal["publish", "rollback"],
    changes: dict[Relation, Relation],
    now: datetime | None,
) -> Switched:
    dialect = sql.dialect_of(warehouse.adapter_type)
    schemas = set(warehouse.list_schemas())
    _ensure_ledger(warehouse, dialect, ledger_schema, schemas)
    found = publications(warehouse, env, ledger_schema)
    current = found[-1] if found else None
    mapping = next_mapping(current, changes)
    repoints = _plan(warehouse, dialect, changes, schemas)
    publication = Publication(
        seq=(current.seq + 1) if current else 1,
        version=version,
        kind=kind,
        published_at=(now or datetime.now(UTC)).replace(tzinfo=None, microsecond=0),
        mapping=mapping,
    )
    statements = [
        *sql.repoint_statements(
            dialect,
            repoints,
            create_schemas=sorted({c.schema for c in changes} - schemas),
        ),
        sql.ledger_insert(
            ledger_schema,
            env,
            seq=publication.seq,
            version=version,
            kind=kind,
            published_at=publication.published_at,
            mapping=mapping,
        ),
    ]
    warehouse.run_in_transaction(statements)
    log.info("%s %s: %d consumer relation(s) switched", kind, version, len(repoints))
    return Switched(publication=publication, statements=tuple(statements), replaced=current)


def _ensure_ledger(
    warehouse: Warehouse, dialect: str, ledger_schema: str, schemas: set[str]
) -> None:
    if warehouse.query(sql.kinds_sql(dialect, ledger_schema, [LEDGER_TABLE])):
        return
    warehouse.run_in_transaction(
        sql.ledger_ddl(ledger_schema, create_schema=ledger_schema not in schemas)
    )


def _kinds(
    warehouse: Warehouse, dialect: str, relations: Sequence[Relation], schemas: set[str]
) -> dict[Relation, sql.Kind]:
    """What each of `relations` is in the catalog; absent ones are left out."""
    by_schema: dict[str, list[str]] = {}
    for relation in relations:
        by_schema.setdefault(relation.schema, []).append(relation.name)
    kinds: dict[Relation, sql.Kind] = {}
    for schema, names in by_schema.items():
        if schema in schemas:
            for name, kind in warehouse.query(sql.kinds_sql(dialect, schema, names)):
                kinds[Relation(schema, str(name))] = "view" if kind == "view" else "table"
    return kinds


def _plan(
    warehouse: Warehouse, dialect: str, changes: dict[Relation, Relation], schemas: set[str]
) -> list[Repoint]:
    """One Repoint per consumer, from what the catalog says of it and of its source."""
    kinds = _kinds(warehouse, dialect, list(changes), schemas)
    by_schema: dict[str, list[str]] = {}
    for consumer in changes:
        by_schema.setdefault(consumer.schema, []).append(consumer.name)
    grants: dict[Relation, list[sql.Grant]] = {}
    for schema, names in by_schema.items():
        if schema not in schemas:
            continue
        grants_query = sql.grants_sql(dialect, schema, names)
        for name, grantee, grantee_kind in warehouse.query(grants_query) if grants_query else []:
            grants.setdefault(Relation(schema, str(name)), []).append(
                sql.Grant("select", str(grantee), cast(sql.GranteeKind, str(grantee_kind)))
            )
    out = []
    for consumer, source in changes.items():
        new = warehouse.columns(warehouse.database, source.schema, source.name)
        if not new:
            raise MissingRelation(f"{source} does not exist: {consumer} cannot read it")
        existing: sql.Kind = kinds.get(consumer, "absent")
        in_place = False
        if existing == "view":
            old = warehouse.columns(warehouse.database, consumer.schema, consumer.name)
            in_place = sql.replaceable_in_place(
                dialect, [(c.name, c.data_type) for c in old], [(c.name, c.data_type) for c in new]
            )
        out.append(
            Repoint(
                consumer=consumer,
                source=source,
                columns=tuple(c.name for c in new),
                existing=existing,
                in_place=in_place,
                grants=tuple(grants.get(consumer, [])),
            )
        )
    return out
