"""Where a blue-green run builds, decided over the example project's manifest as dbt parses it
(no warehouse is opened: `dbt parse` never connects), so the schemas, aliases and relation names
are dbt's own, the project's custom schema naming included, not fakes of its objects.

The example project has no ephemeral model: its copy here gets one (`int_order_counts`).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from flows.dbt import packages
from flows.dbt.args import DbtArgs
from flows.dbt.commands import DbtCommand
from flows.dbt.invoke import DbtInvocation
from flows.dbt.profiles import DbtProject
from flows.publish.build import _in_schema, build_into_version, restore_consumer_names
from flows.publish.statements import Relation
from flows.publish.versions import InvalidVersion
from tests.conftest import SHOP, copy_project

VERSION = "r5f0c2a1e9b7d"
DATABASE = '"shop"'  # the DuckDB file's name: FERRY_DUCKDB_PATH below
FCT_ORDERS = "model.shop.fct_orders"
FCT_ORDER_ITEMS = "model.shop.fct_order_items"  # incremental
STG_ORDERS = "model.shop.stg_shop__orders"  # a view
COUNTRY_CODES = "seed.shop.country_codes"
SNAP_CUSTOMERS = "snapshot.shop.snap_customers"  # custom schema `snapshots`
EPHEMERAL = "model.shop.int_order_counts"
UNIT_TEST = "unit_test.shop.fct_order_items.fct_order_items_rereads_the_lookback_window"
BUILT = [FCT_ORDERS, FCT_ORDER_ITEMS, STG_ORDERS, COUNTRY_CODES, SNAP_CUSTOMERS]

EPHEMERAL_SQL = """\
{{ config(materialized='ephemeral') }}

with

orders as (

    select * from {{ ref('stg_shop__orders') }}

),

final as (

    select
        customer_id,
        count(*) as order_count,
    from orders
    group by customer_id

)

select * from final
"""


@pytest.fixture(scope="module")
def parsed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    """The example project's manifest and the manifest.json dbt wrote with it: one parse for
    the module (every test changes a copy)."""
    root = tmp_path_factory.mktemp("build")
    project = copy_project(SHOP, root / "shop")
    (project / "models/intermediate/orders/int_order_counts.sql").write_text(EPHEMERAL_SQL)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("FERRY_DUCKDB_PATH", str(root / "shop.duckdb"))
        packages.ensure(project, log_path=root / "logs")
        invocation = DbtInvocation(
            DbtProject.load(project),
            DbtArgs(DbtCommand.BUILD),
            profiles_dir=project,
            target_path=root / "target",
            log_path=root / "logs",
        )
        manifest = invocation.parse().manifest
    return manifest, root / "target" / "manifest.json"


@pytest.fixture
def manifest(parsed: tuple[Any, Path]) -> Any:
    """A copy of the parsed manifest: build_into_version changes the one it is given."""
    return copy.deepcopy(parsed[0])


def _test_of(manifest: Any, model: str) -> str:
    return next(
        uid
        for uid, node in manifest.nodes.items()
        if uid.startswith("test.") and model in node.depends_on.nodes
    )


def test_executed_nodes_move_to_their_schema_with_the_version_appended(manifest):
    nodes = build_into_version(manifest, BUILT, VERSION, full_refresh=False)
    assert {n.unique_id: (n.consumer, n.built) for n in nodes} == {
        FCT_ORDERS: (Relation("main", "fct_orders"), Relation(f"main__{VERSION}", "fct_orders")),
        FCT_ORDER_ITEMS: (
            Relation("main", "fct_order_items"),
            Relation(f"main__{VERSION}", "fct_order_items"),
        ),
        STG_ORDERS: (
            Relation("main", "stg_shop__orders"),
            Relation(f"main__{VERSION}", "stg_shop__orders"),
        ),
        COUNTRY_CODES: (
            Relation("main", "country_codes"),
            Relation(f"main__{VERSION}", "country_codes"),
        ),
        SNAP_CUSTOMERS: (
            Relation("main_snapshots", "snap_customers"),
            Relation(f"main_snapshots__{VERSION}", "snap_customers"),
        ),
    }
    assert [n.unique_id for n in nodes] == sorted(BUILT)


def test_dbt_executes_the_versioned_schemas_and_relation_names(manifest):
    build_into_version(manifest, BUILT, VERSION, full_refresh=False)
    orders, snapshot = manifest.nodes[FCT_ORDERS], manifest.nodes[SNAP_CUSTOMERS]
    assert orders.schema == f"main__{VERSION}"
    assert orders.relation_name == f'{DATABASE}."main__{VERSION}"."fct_orders"'
    # the project's custom schema (dbt's default naming: `<target schema>_<custom>`) is kept
    assert snapshot.schema == f"main_snapshots__{VERSION}"
    assert snapshot.relation_name == f'{DATABASE}."main_snapshots__{VERSION}"."snap_customers"'


def test_a_node_named_twice_is_built_once(manifest):
    nodes = build_into_version(manifest, [FCT_ORDERS, FCT_ORDERS], VERSION, full_refresh=False)
    assert [n.unique_id for n in nodes] == [FCT_ORDERS]
    assert manifest.nodes[FCT_ORDERS].schema == f"main__{VERSION}"  # not main__r…__r…


def test_ephemeral_models_tests_and_unit_tests_are_left_alone(manifest, parsed):
    test = _test_of(manifest, FCT_ORDERS)
    left = [EPHEMERAL, test, UNIT_TEST, "model.shop.not_in_the_project"]
    assert manifest.nodes[EPHEMERAL].config.materialized == "ephemeral"
    assert build_into_version(manifest, left, VERSION, full_refresh=False) == []
    original = parsed[0]
    for uid in (EPHEMERAL, test):
        assert manifest.nodes[uid].schema == original.nodes[uid].schema
        assert manifest.nodes[uid].relation_name == original.nodes[uid].relation_name
    assert manifest.unit_tests[UNIT_TEST].schema == original.unit_tests[UNIT_TEST].schema


def test_nodes_the_run_does_not_execute_keep_what_consumers_read(manifest, parsed):
    build_into_version(manifest, [FCT_ORDERS, SNAP_CUSTOMERS], VERSION, full_refresh=False)
    original = parsed[0]
    moved = {
        uid
        for uid, node in manifest.nodes.items()
        if (node.schema, node.relation_name)
        != (original.nodes[uid].schema, original.nodes[uid].relation_name)
    }
    assert moved == {FCT_ORDERS, SNAP_CUSTOMERS}
    assert manifest.nodes[STG_ORDERS].relation_name == f'{DATABASE}."main"."stg_shop__orders"'


def test_incremental_models_and_snapshots_continue_from_what_consumers_read(manifest):
    nodes = build_into_version(manifest, BUILT, VERSION, full_refresh=False)
    assert {n.unique_id for n in nodes if n.continues} == {FCT_ORDER_ITEMS, SNAP_CUSTOMERS}


def test_a_full_refresh_starts_incremental_models_from_nothing_but_not_snapshots(manifest):
    nodes = build_into_version(manifest, BUILT, VERSION, full_refresh=True)
    assert {n.unique_id for n in nodes if n.continues} == {SNAP_CUSTOMERS}


def test_a_versioned_schema_too_long_for_the_warehouse_is_refused(manifest):
    manifest.nodes[FCT_ORDERS].schema = "analytics_" + "x" * 45  # fits alone, not versioned
    with pytest.raises(InvalidVersion, match="longer than 63 bytes: shorten the schema"):
        build_into_version(manifest, [FCT_ORDERS], VERSION, full_refresh=False)


def test_a_version_that_is_no_label_is_refused(manifest):
    with pytest.raises(InvalidVersion, match="lowercase letters and digits"):
        build_into_version(manifest, [FCT_ORDERS], "Not_a_version", full_refresh=False)


def test_the_run_s_manifest_json_names_what_consumers_read_again(manifest, parsed, tmp_path):
    consumers = json.loads(parsed[1].read_bytes())["nodes"]
    nodes = build_into_version(manifest, BUILT, VERSION, full_refresh=False)
    written = tmp_path / "manifest.json"
    manifest.write(str(written))  # as dbt writes it at the end of the run: the versions' names
    versioned = json.loads(written.read_bytes())["nodes"]
    assert versioned[SNAP_CUSTOMERS]["schema"] == f"main_snapshots__{VERSION}"

    restore_consumer_names(written, nodes)

    restored = json.loads(written.read_bytes())["nodes"]
    assert restored.keys() == consumers.keys()
    for uid, node in consumers.items():
        assert restored[uid]["schema"] == node["schema"], uid
        assert restored[uid]["relation_name"] == node["relation_name"], uid
    assert (
        restored[SNAP_CUSTOMERS]["relation_name"] == f'{DATABASE}."main_snapshots"."snap_customers"'
    )


def test_no_manifest_json_is_nothing_to_restore(manifest, tmp_path):
    nodes = build_into_version(manifest, [FCT_ORDERS], VERSION, full_refresh=False)
    restore_consumer_names(tmp_path / "manifest.json", nodes)
    assert not (tmp_path / "manifest.json").exists()


@pytest.mark.parametrize(
    ("relation_name", "expected"),
    [
        ('"shop"."main"."fct_orders"', '"shop"."main__r1"."fct_orders"'),
        ("shop.main.fct_orders", "shop.main__r1.fct_orders"),
        ('"main"."fct_orders"', '"main__r1"."fct_orders"'),  # no database
        ("main.fct_orders", "main__r1.fct_orders"),
        ("`proj`.`main`.`fct_orders`", "`proj`.`main__r1`.`fct_orders`"),
        ('"my.shop"."main"."fct_orders"', '"my.shop"."main__r1"."fct_orders"'),
        ("fct_orders", "fct_orders"),  # no schema to change
    ],
)
def test_a_relation_name_moves_to_another_schema_keeping_its_quoting(relation_name, expected):
    assert _in_schema(relation_name, "main__r1") == expected


def test_a_quoted_identifier_with_a_dot_keeps_its_name():
    assert _in_schema('"shop"."main"."orders.v2"', "main__r1") == '"shop"."main__r1"."orders.v2"'
