"""The SQL of blue-green publishing, per warehouse: pure text, no connection.

Consumers read `<schema>.<model>`; a run builds `<schema>__<version>.<model>`. Publishing makes
each consumer relation a view of its versioned relation, every one of them in the same
transaction (the executor sends these statements between one `begin` and one `commit`).

Per warehouse (docs/architecture.md, "Publishing the data: blue-green", says why):
- a view whose columns stay compatible is repointed in place (`create or replace view`): its
  grants and owner stay, and so do views others built on it;
- otherwise it is dropped and created again, and the SELECT grants it had are granted again;
- a table a direct build left is dropped and becomes a view, keeping its SELECT grants;
- Redshift's views are late-binding (`with no schema binding`): they hold no dependency on the
  versioned tables, so an old version is dropped without touching them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

DIALECTS = ("duckdb", "postgres", "redshift")
"""Warehouses whose statements are written and tested here; others get PostgreSQL's."""

Kind = Literal["absent", "table", "view"]
"""What a consumer name is before a publish."""

GranteeKind = Literal["user", "group", "role", "public"]

LEDGER_TABLE = "ferry_publications"
"""One row per (publication, consumer relation): what consumers read after each publish."""


def dialect_of(adapter_type: str) -> str:
    """The dialect of a dbt adapter; PostgreSQL's for the others (the most common ancestor)."""
    return adapter_type if adapter_type in DIALECTS else "postgres"


def quote(identifier: str) -> str:
    """A quoted identifier: double quotes on all three warehouses."""
    return '"' + identifier.replace('"', '""') + '"'


def literal(text: str) -> str:
    """A string literal (standard SQL: a quote is doubled)."""
    return "'" + text.replace("'", "''") + "'"


@dataclass(frozen=True, order=True)
class Relation:
    """A relation by schema and name, in the profile's database."""

    schema: str
    name: str

    def __str__(self) -> str:
        return f"{quote(self.schema)}.{quote(self.name)}"


@dataclass(frozen=True, order=True)
class Grant:
    """A privilege granted to one grantee: a user (PostgreSQL's roles are users here), a
    Redshift group or role, or everyone (`public`)."""

    privilege: str
    grantee: str
    grantee_kind: GranteeKind = "user"

    def to_sql(self, on: Relation) -> str:
        if self.grantee_kind == "public":
            to = "public"
        elif self.grantee_kind in ("group", "role"):
            to = f"{self.grantee_kind} {quote(self.grantee)}"
        else:
            to = quote(self.grantee)
        return f"grant {self.privilege.lower()} on {on} to {to}"


@dataclass(frozen=True)
class Repoint:
    """One consumer relation made to read one versioned relation.

    Attributes:
        columns: the versioned relation's columns, in order; the view selects them by name.
        existing: what the consumer name is now.
        in_place: the existing view can be replaced without being dropped (its columns stay
            compatible: `replaceable_in_place`).
        grants: the consumer's grants, granted again when it must be dropped.
    """

    consumer: Relation
    source: Relation
    columns: tuple[str, ...]
    existing: Kind = "absent"
    in_place: bool = False
    grants: tuple[Grant, ...] = field(default_factory=tuple)


def replaceable_in_place(
    dialect: str, old: Sequence[tuple[str, str]], new: Sequence[tuple[str, str]]
) -> bool:
    """Whether `create or replace view` accepts the new (name, type) columns over the old.

    PostgreSQL: the old columns, same names and types in the same order, may be followed by new
    ones. Redshift: the same columns exactly. DuckDB: anything.
    """
    if dialect == "duckdb":
        return True
    norm_old = [(n.lower(), t.lower()) for n, t in old]
    norm_new = [(n.lower(), t.lower()) for n, t in new]
    if dialect == "redshift":
        return norm_old == norm_new
    return norm_new[: len(norm_old)] == norm_old


def view_sql(dialect: str, repoint: Repoint, *, replace: bool) -> str:
    """The `create view` of one consumer: its columns by name, so a reader sees what the
    version built and nothing a later change of the source could add."""
    select = ",\n    ".join(quote(c) for c in repoint.columns)
    verb = "create or replace view" if replace else "create view"
    binding = " with no schema binding" if dialect == "redshift" else ""
    return f"{verb} {repoint.consumer} as\nselect\n    {select}\nfrom {repoint.source}{binding}"


def repoint_statements(
    dialect: str,
    repoints: Sequence[Repoint],
    *,
    create_schemas: Sequence[str] = (),
    lock_timeout_s: int = 10,
) -> list[str]:
    """The statements that make every consumer read its versioned relation, to be run in ONE
    transaction, consumers in name order (readers of several take their locks in the order
    they name them; one order for the publisher keeps a reader naming them in that order from
    ever deadlocking with it).

    Args:
        create_schemas: consumer schemas that do not exist yet.
        lock_timeout_s: PostgreSQL: how long the publish waits for a lock a long reader holds
            before it gives up (and changes nothing) rather than queue every new reader behind
            it. Redshift and DuckDB have no such setting.
    """
    out: list[str] = []
    if dialect == "postgres":
        out.append(f"set local lock_timeout = '{lock_timeout_s}s'")
    out += [f"create schema if not exists {quote(s)}" for s in sorted(set(create_schemas))]
    for repoint in sorted(repoints, key=lambda r: r.consumer):
        if repoint.existing == "view" and repoint.in_place:
            out.append(view_sql(dialect, repoint, replace=True))
            continue
        if repoint.existing != "absent":
            out.append(f"drop {repoint.existing} {repoint.consumer}")
        out.append(view_sql(dialect, repoint, replace=False))
        if dialect != "duckdb":  # DuckDB has no grants
            out += [g.to_sql(repoint.consumer) for g in sorted(set(repoint.grants))]
    return out


def continue_statements(
    dialect: str, published: Relation, version: Relation, *, from_table: bool = True
) -> list[str]:
    """A copy of what consumers read, for an incremental model or a snapshot to continue from
    in its new version (its schema exists).

    Redshift copies the table's definition first (`like`: its distribution and sort keys, its
    column encodings), then its rows (from a view, `like` cannot: one statement, as on the
    others); PostgreSQL and DuckDB copy both in one statement. Both
    run in a transaction (Redshift's `ALTER TABLE APPEND` would move the rows instead of
    copying them, but it cannot, and it would empty what consumers read).
    """
    if dialect == "redshift" and from_table:
        return [
            f"create table {version} (like {published})",
            f"insert into {version} select * from {published}",
        ]
    return [f"create table {version} as select * from {published}"]


# --- what the catalog says ---------------------------------------------------------------------
def kinds_sql(dialect: str, schema: str, names: Sequence[str]) -> str:
    """Rows (name, kind) of the names that exist in the schema, kind `table` or `view`."""
    listed = ", ".join(literal(n) for n in sorted(names))
    if dialect == "duckdb":
        return (
            "select table_name, case when table_type = 'VIEW' then 'view' else 'table' end\n"
            "from information_schema.tables\n"
            f"where table_catalog = current_database() and table_schema = {literal(schema)}\n"
            f"    and table_name in ({listed})"
        )
    return (
        "select c.relname, case when c.relkind = 'v' then 'view' else 'table' end\n"
        "from pg_class as c\n"
        "inner join pg_namespace as n on n.oid = c.relnamespace\n"
        f"where n.nspname = {literal(schema)} and c.relname in ({listed})\n"
        "    and c.relkind in ('r', 'p', 'v', 'm')"
    )


def grants_sql(dialect: str, schema: str, names: Sequence[str]) -> str | None:
    """Rows (name, grantee, grantee kind) of the SELECT grants on the schema's named relations,
    but the owner's own; None where there are no grants (DuckDB)."""
    listed = ", ".join(literal(n) for n in sorted(names))
    if dialect == "duckdb":
        return None
    if dialect == "redshift":
        return (
            "select relation_name, identity_name, lower(identity_type)\n"
            "from svv_relation_privileges\n"
            f"where namespace_name = {literal(schema)} and relation_name in ({listed})\n"
            "    and privilege_type = 'SELECT'"
        )
    return (
        "select c.relname, coalesce(r.rolname, 'public'),\n"
        "    case when a.grantee = 0 then 'public' else 'user' end\n"
        "from pg_class as c\n"
        "inner join pg_namespace as n on n.oid = c.relnamespace\n"
        "cross join lateral aclexplode(c.relacl) as a\n"
        "left join pg_roles as r on r.oid = a.grantee\n"
        f"where n.nspname = {literal(schema)} and c.relname in ({listed})\n"
        "    and a.privilege_type = 'SELECT' and a.grantee <> c.relowner"
    )


# --- the ledger: what consumers read after each publication -----------------------------------
def ledger_ddl(ledger_schema: str, *, create_schema: bool) -> list[str]:
    """The ledger's table (and schema, when missing), created before the first publication.

    The key makes a second publisher of the same environment fail, and change nothing, where
    the warehouse enforces keys (PostgreSQL, DuckDB); the run's holds (flows/run/holds.py) are
    what prevent it.
    """
    table = Relation(ledger_schema, LEDGER_TABLE)
    key = ",\n    primary key (env, seq, consumer_schema, consumer_name)"
    schema = [f"create schema if not exists {quote(ledger_schema)}"] if create_schema else []
    return [
        *schema,
        f"create table if not exists {table} (\n"
        "    env varchar(128) not null,\n"
        "    seq integer not null,\n"
        "    version varchar(64) not null,\n"
        "    kind varchar(16) not null,\n"
        "    published_at timestamp not null,\n"
        "    consumer_schema varchar(128) not null,\n"
        "    consumer_name varchar(128) not null,\n"
        "    source_schema varchar(128) not null,\n"
        f"    source_name varchar(128) not null{key}\n"
        ")",
    ]


def ledger_select(ledger_schema: str, env: str) -> str:
    """Every row of one environment, oldest publication first."""
    return (
        "select seq, version, kind, published_at, consumer_schema, consumer_name, "
        "source_schema, source_name\n"
        f"from {Relation(ledger_schema, LEDGER_TABLE)}\n"
        f"where env = {literal(env)}\n"
        "order by seq, consumer_schema, consumer_name"
    )


def ledger_insert(
    ledger_schema: str,
    env: str,
    *,
    seq: int,
    version: str,
    kind: Literal["publish", "rollback"],
    published_at: datetime,
    mapping: Sequence[tuple[Relation, Relation]],
) -> str:
    """One publication: every consumer and what it reads from now on (the whole mapping, not
    only what changed, so any kept publication can be restored alone)."""
    at = literal(published_at.strftime("%Y-%m-%d %H:%M:%S"))
    rows = [
        f"({literal(env)}, {seq}, {literal(version)}, {literal(kind)}, cast({at} as timestamp), "
        f"{literal(c.schema)}, {literal(c.name)}, {literal(s.schema)}, {literal(s.name)})"
        for c, s in sorted(mapping)
    ]
    return (
        f"insert into {Relation(ledger_schema, LEDGER_TABLE)}\n"
        "    (env, seq, version, kind, published_at, consumer_schema, consumer_name, "
        "source_schema, source_name)\n"
        "values\n    " + ",\n    ".join(rows)
    )


def ledger_forget(ledger_schema: str, env: str, seqs: Sequence[int]) -> str:
    """Deletes the rows of publications no longer kept."""
    listed = ", ".join(str(s) for s in sorted(seqs))
    return (
        f"delete from {Relation(ledger_schema, LEDGER_TABLE)}\n"
        f"where env = {literal(env)} and seq in ({listed})"
    )
