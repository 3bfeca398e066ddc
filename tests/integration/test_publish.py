"""Blue-green publishing on DuckDB and PostgreSQL, through dbt's adapter as a run would use it.

Two versions of two related tables (customers, and orders that reference them; every row says
which version it is): the first publish turns a table a direct build left into a view; the
second switches both consumers at once while a reader on its own connection joins them in a
loop (PostgreSQL) and never sees a mix; a rollback reads the first version again row for row; a
read-only role keeps its SELECT throughout, whether a view was replaced in place (a column
added) or dropped and created again (a column removed).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg2
import pytest

from flows.dbt.profiles import DbtProject
from flows.dbt.warehouse import QueryFailed, Warehouse, open_warehouse
from flows.publish.publisher import (
    MissingRelation,
    drop_unkept,
    publications,
    publish,
    rollback,
)
from flows.publish.statements import Relation
from flows.publish.versions import NotKept, version_schema
from tests.conftest import SHOP

pytestmark = pytest.mark.integration

DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test"
ENV = "prod"


def version_tables(base: str, version: str, customers: int, extra_column: bool) -> list[str]:
    """A version of both tables: v1 has orders.legacy, v2 drops it and adds customers.tier."""
    schema = version_schema(base, version)
    tier = ", 'gold' as tier" if extra_column else ""
    legacy = "" if extra_column else ", 0 as legacy"
    return [
        f'create schema "{schema}"',
        f'create table "{schema}".customers as select i as customer_id, '
        f"'c' || cast(i as varchar) as name, '{version}' as version{tier} "
        f"from generate_series(1, {customers}) as g(i)",
        f'create table "{schema}".orders as select i as order_id, 1 + i % {customers} as '
        f"customer_id, i * 10 as amount{legacy}, '{version}' as version "
        f"from generate_series(1, {customers * 3}) as g(i)",
    ]


def rows(warehouse: Warehouse, relation: str) -> list[tuple[Any, ...]]:
    return warehouse.query(f"select * from {relation} order by 1")


@pytest.fixture(params=["duckdb", "postgres"])
def warehouse(request, tmp_path, monkeypatch) -> Iterator[tuple[Warehouse, str]]:
    """The warehouse, and a base schema of this test's own (dropped afterwards, with every
    `<base>...` schema: its versions and the ledger's)."""
    base = f"fpub_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("FERRY_DUCKDB_PATH", str(tmp_path / "publish.duckdb"))
    project = DbtProject.load(SHOP)
    with open_warehouse(project, request.param, tmp_path / "work") as opened:
        yield opened, base
    if request.param == "postgres":
        _drop_pg_schemas(base)


def _drop_pg_schemas(prefix: str) -> None:
    conn = psycopg2.connect(DSN)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("select nspname from pg_namespace where nspname like %s", (prefix + "%",))
        for (name,) in cur.fetchall():
            cur.execute(f'drop schema "{name}" cascade')
    conn.close()


def setup_two_versions(warehouse: Warehouse, base: str) -> None:
    """A direct build's table where consumers read, and two versions built beside it."""
    warehouse.run_in_transaction(
        [
            f'create schema "{base}"',
            f'create table "{base}".orders as select 0 as order_id, 0 as customer_id',
            *version_tables(base, "v1", customers=10, extra_column=False),
            *version_tables(base, "v2", customers=20, extra_column=True),
        ]
    )


def test_publish_switches_all_together_and_rollback_restores_row_for_row(warehouse):
    warehouse, base = warehouse
    ledger = f"{base}_ledger"
    setup_two_versions(warehouse, base)
    built = [Relation(base, "customers"), Relation(base, "orders")]
    customers, orders = f'"{base}".customers', f'"{base}".orders'

    first = publish(warehouse, env=ENV, version="v1", built=built, ledger_schema=ledger)
    assert first.replaced is None  # nothing was published before
    assert f'drop table "{base}"."orders"' in first.statements  # the direct build's table...
    kinds = warehouse.query(
        "select table_name, table_type from information_schema.tables "
        f"where table_schema = '{base}' order by 1"
    )
    assert kinds == [("customers", "VIEW"), ("orders", "VIEW")]  # ...is now a view
    assert rows(warehouse, customers) == rows(warehouse, f'"{base}__v1".customers')
    assert rows(warehouse, orders) == rows(warehouse, f'"{base}__v1".orders')

    publish(warehouse, env=ENV, version="v2", built=built, ledger_schema=ledger)
    assert rows(warehouse, customers) == rows(warehouse, f'"{base}__v2".customers')
    assert rows(warehouse, orders) == rows(warehouse, f'"{base}__v2".orders')
    assert len(rows(warehouse, orders)) == 60  # v2 in full, its new column included
    assert warehouse.query(f"select distinct tier from {customers}") == [("gold",)]

    back = rollback(warehouse, env=ENV, ledger_schema=ledger)
    assert back.publication.version == "v1" and back.publication.kind == "rollback"
    assert back.replaced is not None and back.replaced.version == "v2"  # what the alert says
    assert rows(warehouse, customers) == rows(warehouse, f'"{base}__v1".customers')
    assert rows(warehouse, orders) == rows(warehouse, f'"{base}__v1".orders')
    assert [c for c in warehouse.columns(warehouse.database, base, "orders")][3].name == "legacy"

    ledger_rows = publications(warehouse, ENV, ledger)
    assert [(p.seq, p.version, p.kind) for p in ledger_rows] == [
        (1, "v1", "publish"),
        (2, "v2", "publish"),
        (3, "v1", "rollback"),
    ]

    # Keeping one version: v1 is read, v2 goes, and a rollback to it is refused.
    assert drop_unkept(warehouse, env=ENV, keep=1, ledger_schema=ledger) == [f"{base}__v2"]
    assert f"{base}__v2" not in warehouse.list_schemas()
    assert rows(warehouse, orders) == rows(warehouse, f'"{base}__v1".orders')
    with pytest.raises(NotKept, match="'v2' is not kept"):
        rollback(warehouse, env=ENV, to="v2", ledger_schema=ledger)
    with pytest.raises(NotKept):
        rollback(warehouse, env=ENV, ledger_schema=ledger)  # nothing before what is kept


def test_a_partial_build_publishes_what_it_built_and_rollback_restores_the_whole(warehouse):
    warehouse, base = warehouse
    ledger = f"{base}_ledger"
    setup_two_versions(warehouse, base)
    customers, orders = f'"{base}".customers', f'"{base}".orders'
    both = [Relation(base, "customers"), Relation(base, "orders")]
    publish(warehouse, env=ENV, version="v1", built=both, ledger_schema=ledger)

    warehouse.run_in_transaction(  # v3 built orders only (a selector run)
        [
            f'create schema "{base}__v3"',
            f'create table "{base}__v3".orders as select * from "{base}__v1".orders '
            "where order_id <= 5",
        ]
    )
    publish(
        warehouse, env=ENV, version="v3", built=[Relation(base, "orders")], ledger_schema=ledger
    )
    assert len(rows(warehouse, orders)) == 5
    assert rows(warehouse, customers) == rows(warehouse, f'"{base}__v1".customers')  # untouched

    # v2 is never published and v3 stays read: only v2's schema may go.
    assert drop_unkept(warehouse, env=ENV, keep=2, ledger_schema=ledger) == [f"{base}__v2"]

    rollback(warehouse, env=ENV, to="v1", ledger_schema=ledger)
    assert rows(warehouse, orders) == rows(warehouse, f'"{base}__v1".orders')


def test_a_failed_switch_changes_nothing(warehouse):
    warehouse, base = warehouse
    ledger = f"{base}_ledger"
    setup_two_versions(warehouse, base)
    built = [Relation(base, "customers"), Relation(base, "orders")]
    publish(warehouse, env=ENV, version="v1", built=built, ledger_schema=ledger)
    before = rows(warehouse, f'"{base}".orders')
    with pytest.raises(MissingRelation, match="refunds"):  # v2 did not build it
        publish(
            warehouse,
            env=ENV,
            version="v2",
            built=[*built, Relation(base, "refunds")],
            ledger_schema=ledger,
        )
    assert rows(warehouse, f'"{base}".orders') == before
    assert [p.version for p in publications(warehouse, ENV, ledger)] == ["v1"]
    # A view others built on ours: dropping `orders` (v2 removes a column) is refused, so the
    # whole switch is - customers included, although its own repointing would have worked.
    warehouse.run_in_transaction(
        [f'create view "{base}".big_orders as select * from "{base}".orders where amount > 50']
    )
    if warehouse.adapter_type == "postgres":
        with pytest.raises(QueryFailed, match="depend"):
            publish(warehouse, env=ENV, version="v2", built=built, ledger_schema=ledger)
        assert rows(warehouse, f'"{base}".orders') == before
        assert rows(warehouse, f'"{base}".customers') == rows(warehouse, f'"{base}__v1".customers')
        assert [p.version for p in publications(warehouse, ENV, ledger)] == ["v1"]


# --- PostgreSQL: readers ----------------------------------------------------------------------
@pytest.fixture
def reader_role(warehouse) -> Iterator[str]:
    """A role that may only read the consumer schema's relations (created and dropped here)."""
    opened, _ = warehouse
    assert opened.adapter_type == "postgres", "roles and concurrent readers: PostgreSQL's"
    role = f"fpub_reader_{uuid.uuid4().hex[:8]}"
    conn = psycopg2.connect(DSN)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'create role "{role}" nologin')
    yield role
    with conn.cursor() as cur:
        cur.execute(f'drop owned by "{role}"')
        cur.execute(f'drop role "{role}"')
    conn.close()


def read_as(role: str, sql: str) -> list[tuple[Any, ...]]:
    conn = psycopg2.connect(DSN)
    try:
        with conn.cursor() as cur:
            cur.execute(f'set role "{role}"')
            cur.execute(sql)
            return cur.fetchall()
    finally:
        conn.close()


# DuckDB has no roles, and one process writes its file: nothing to prove there.
@pytest.mark.parametrize("warehouse", ["postgres"], indirect=True)
def test_a_read_only_role_keeps_its_access_and_a_reader_never_sees_a_mix(warehouse, reader_role):
    opened, base = warehouse
    ledger = f"{base}_ledger"
    setup_two_versions(opened, base)
    built = [Relation(base, "customers"), Relation(base, "orders")]
    # What the consumers had before blue-green: the direct build's table, granted to the role.
    opened.run_in_transaction(
        [
            f'grant usage on schema "{base}" to "{reader_role}"',
            f'grant select on "{base}".orders to "{reader_role}"',
        ]
    )
    publish(opened, env=ENV, version="v1", built=built, ledger_schema=ledger)
    opened.run_in_transaction([f'grant select on "{base}".customers to "{reader_role}"'])
    join = (
        f'select c.version, o.version, count(*) from "{base}".customers as c '
        f'inner join "{base}".orders as o on o.customer_id = c.customer_id '
        "group by c.version, o.version"
    )
    assert read_as(reader_role, join) == [("v1", "v1", 30)]
    with pytest.raises(psycopg2.errors.InsufficientPrivilege):  # the versions stay closed to it
        read_as(reader_role, f'select * from "{base}__v1".orders')

    seen: list[tuple[Any, ...]] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        conn = psycopg2.connect(DSN)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(f'set role "{reader_role}"')
                while not stop.is_set():
                    cur.execute(join)
                    seen.append(tuple(cur.fetchall()))
        except BaseException as exc:
            errors.append(exc)
        finally:
            conn.close()

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        for _ in range(5):  # v2 (customers in place, orders dropped and created), then back
            time.sleep(0.05)
            publish(opened, env=ENV, version="v2", built=built, ledger_schema=ledger)
            time.sleep(0.05)
            rollback(opened, env=ENV, to="v1", ledger_schema=ledger)
        time.sleep(0.05)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not errors, errors
    assert len(seen) > 20, len(seen)  # the reader ran all along
    assert set(seen) == {(("v1", "v1", 30),), (("v2", "v2", 60),)}, set(seen)

    # After the last rollback (both views dropped and created again): still readable.
    assert read_as(reader_role, join) == [("v1", "v1", 30)]
    publish(opened, env=ENV, version="v2", built=built, ledger_schema=ledger)
    assert read_as(reader_role, join) == [("v2", "v2", 60)]
