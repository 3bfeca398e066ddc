"""The SQL of blue-green publishing per warehouse. Redshift cannot run here, so what is sent to
it is pinned (golden files in tests/fixtures/publish_sql/redshift/) and parsed in sqlglot's
Redshift dialect; every dialect's statements parse in their own. DuckDB and PostgreSQL run them
for real in tests/integration/test_publish.py.

After an intended change to the SQL: `UPDATE_GOLDEN=1 .venv/bin/pytest
tests/unit/test_publish_statements.py` rewrites the golden files; review their diff like code.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
import sqlglot
from sqlglot.errors import ErrorLevel

from flows.publish.statements import (
    DIALECTS,
    Grant,
    Relation,
    Repoint,
    continue_statements,
    dialect_of,
    grants_sql,
    kinds_sql,
    ledger_ddl,
    ledger_forget,
    ledger_insert,
    ledger_select,
    replaceable_in_place,
    repoint_statements,
)
from tests.golden import assert_golden

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "publish_sql"
SQLGLOT = {"duckdb": "duckdb", "postgres": "postgres", "redshift": "redshift"}
READERS = (Grant("select", "bi_reader"), Grant("select", "analysts", "group"))
ORDERS = Relation("analytics", "fct_orders")
CUSTOMERS = Relation("analytics", "dim_customers")
SESSIONS = Relation("analytics", "fct_sessions")
ITEMS = Relation("analytics", "fct_order_items")  # an incremental model
ITEMS_PUBLISHED = Relation("analytics__r0f9e8d", "fct_order_items")  # what consumers read
ITEMS_VERSION = Relation("analytics__r1a2b3c", "fct_order_items")  # where it continues

# One switch with every case: a view repointed in place, a view that must be dropped (a column
# went) and granted again, a table a direct build left, a consumer that is new.
REPOINTS = [
    Repoint(ORDERS, Relation("analytics__r1a2b3c", "fct_orders"), ("order_id", "amount"),
            existing="view", in_place=True, grants=READERS),
    Repoint(CUSTOMERS, Relation("analytics__r1a2b3c", "dim_customers"), ("customer_id",),
            existing="view", in_place=False, grants=READERS),
    Repoint(SESSIONS, Relation("analytics__r1a2b3c", "fct_sessions"), ("session_id",),
            existing="table", grants=(Grant("select", "", "public"),)),
    Repoint(Relation("analytics_marts", "fct_new"), Relation("analytics_marts__r1a2b3c",
            "fct_new"), ("id",)),
]  # fmt: skip


def statements(dialect: str) -> dict[str, str]:
    switch = repoint_statements(dialect, REPOINTS, create_schemas=["analytics_marts"])
    mapping = [(r.consumer, r.source) for r in REPOINTS]
    at = datetime(2025, 1, 2, 3, 4, 5)
    out = {f"switch_{i:02d}": s for i, s in enumerate(switch)}
    grants = grants_sql(dialect, "analytics", ["fct_orders", "dim_customers"])
    ddl = ledger_ddl("ferry_publish", create_schema=True)
    from_table = continue_statements(dialect, ITEMS_PUBLISHED, ITEMS_VERSION)
    from_view = continue_statements(dialect, ITEMS, ITEMS_VERSION, from_table=False)
    out |= {
        "kinds": kinds_sql(dialect, "analytics", ["fct_orders", "dim_customers"]),
        **({"grants": grants} if grants else {}),
        **{f"ledger_ddl_{i}": s for i, s in enumerate(ddl)},
        "ledger_select": ledger_select("ferry_publish", "prod"),
        "ledger_insert": ledger_insert("ferry_publish", "prod", seq=7, version="r1a2b3c",
                                       kind="publish", published_at=at, mapping=mapping),
        "ledger_forget": ledger_forget("ferry_publish", "prod", [3, 1]),
        **{f"continue_from_table_{i}": s for i, s in enumerate(from_table)},
        **{f"continue_from_view_{i}": s for i, s in enumerate(from_view)},
    }  # fmt: skip
    return out


@pytest.mark.parametrize("name", sorted(statements("redshift")))
def test_what_is_sent_to_redshift_is_pinned(name):
    assert_golden(GOLDEN / "redshift" / f"{name}.sql", statements("redshift")[name] + "\n")


def test_no_golden_file_is_left_over():
    pinned = {p.stem for p in (GOLDEN / "redshift").glob("*.sql")}
    assert pinned == set(statements("redshift"))


@pytest.mark.parametrize("dialect", DIALECTS)
def test_every_statement_parses_in_its_warehouse_dialect(dialect):
    for name, sql in statements(dialect).items():
        if sql.startswith("set local"):
            continue  # PostgreSQL's setting: sqlglot reads `set` as a generic command
        parsed = sqlglot.parse(sql, read=SQLGLOT[dialect], error_level=ErrorLevel.RAISE)
        assert len(parsed) == 1 and parsed[0] is not None, name


def test_redshift_views_are_late_binding_and_the_others_are_not():
    for dialect in DIALECTS:
        views = [s for s in repoint_statements(dialect, REPOINTS) if s.startswith("create")]
        assert views and all(
            s.endswith("with no schema binding") == (dialect == "redshift") for s in views
        ), dialect


def test_a_view_is_replaced_in_place_and_keeps_its_grants():
    switch = repoint_statements("postgres", REPOINTS)
    assert 'create or replace view "analytics"."fct_orders" as' in "\n".join(switch)
    assert not any("fct_orders" in s for s in switch if s.startswith(("grant", "drop")))


def test_a_dropped_view_or_table_is_granted_again_right_after_it_is_created():
    switch = repoint_statements("postgres", REPOINTS)
    at = switch.index('drop view "analytics"."dim_customers"')
    assert switch[at + 1].startswith('create view "analytics"."dim_customers" as')
    assert set(switch[at + 2 : at + 4]) == {
        'grant select on "analytics"."dim_customers" to "bi_reader"',
        'grant select on "analytics"."dim_customers" to group "analysts"',
    }
    at = switch.index('drop table "analytics"."fct_sessions"')
    assert switch[at + 2] == 'grant select on "analytics"."fct_sessions" to public'


def test_consumers_are_switched_in_name_order_after_the_schemas_they_need():
    switch = repoint_statements("postgres", REPOINTS, create_schemas=["analytics_marts"])
    assert switch[0] == "set local lock_timeout = '10s'"
    assert switch[1] == 'create schema if not exists "analytics_marts"'
    creates = [s.split(" as\n")[0].split()[-1] for s in switch if " view " in s]
    assert creates == sorted(creates)


def test_duckdb_has_no_grants_and_no_lock_timeout():
    switch = repoint_statements("duckdb", REPOINTS)
    assert not any(s.startswith(("grant", "set")) for s in switch)
    assert grants_sql("duckdb", "analytics", ["fct_orders"]) is None


@pytest.mark.parametrize(
    ("dialect", "old", "new", "expected"),
    [
        ("postgres", [("a", "int")], [("a", "int"), ("b", "text")], True),  # added at the end
        ("postgres", [("a", "int"), ("b", "text")], [("a", "int")], False),  # one dropped
        ("postgres", [("a", "int")], [("b", "text"), ("a", "int")], False),  # added before
        ("postgres", [("a", "int")], [("a", "bigint")], False),  # its type changed
        ("postgres", [("A", "INT")], [("a", "int")], True),
        ("redshift", [("a", "int")], [("a", "int"), ("b", "text")], False),  # identical only
        ("redshift", [("a", "int")], [("a", "int")], True),
        ("duckdb", [("a", "int")], [("b", "text")], True),
    ],
)
def test_replaceable_in_place(dialect, old, new, expected):
    assert replaceable_in_place(dialect, old, new) is expected


def test_quotes_in_names_and_values_are_escaped():
    odd = Repoint(Relation('we"ird', "o'k"), Relation('we"ird__r1', "o'k"), ('c"1',))
    (create,) = repoint_statements("duckdb", [odd])
    assert '"we""ird"."o\'k"' in create and '"c""1"' in create
    assert "'o''k'" in kinds_sql("postgres", 'we"ird', ["o'k"])


def test_redshift_copies_a_tables_definition_then_its_rows():
    assert continue_statements("redshift", ITEMS_PUBLISHED, ITEMS_VERSION) == [
        'create table "analytics__r1a2b3c"."fct_order_items" '
        '(like "analytics__r0f9e8d"."fct_order_items")',
        'insert into "analytics__r1a2b3c"."fct_order_items" '
        'select * from "analytics__r0f9e8d"."fct_order_items"',
    ]


@pytest.mark.parametrize(
    ("dialect", "from_table"),
    [
        ("redshift", False),  # `like` takes no view
        ("postgres", True),
        ("postgres", False),
        ("duckdb", True),
        ("duckdb", False),
    ],
)
def test_a_copy_is_one_statement_but_from_a_table_on_redshift(dialect, from_table):
    source = ITEMS_PUBLISHED if from_table else ITEMS
    assert continue_statements(dialect, source, ITEMS_VERSION, from_table=from_table) == [
        f'create table "analytics__r1a2b3c"."fct_order_items" as select * from {source}'
    ]


def test_other_adapters_get_postgres_sql():
    assert dialect_of("snowflake") == "postgres"
    assert dialect_of("redshift") == "redshift"
