"""Which models a pull request's data diff reports on, the key each is matched by, the columns
whose values never leave the warehouse, and the comment section: from manifests shaped as dbt
writes them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flows.ci.diff.records import (
    Columns,
    DataDiff,
    DiffStatus,
    Example,
    ModelDiff,
    Rows,
    TypeChange,
)
from flows.ci.diff.render import render
from flows.ci.diff.targets import find_key, sensitive_columns, targets
from flows.dbt.warehouse import Column


def model(name: str, **extra: Any) -> dict[str, Any]:
    node = {
        "unique_id": f"model.shop.{name}",
        "resource_type": "model",
        "name": name,
        "database": "dev",
        "schema": "analytics",
        "alias": name,
        "config": {"materialized": "table"},
        "checksum": {"name": "sha256", "checksum": name},
        "columns": {},
    }
    node.update(extra)
    return node


def generic_test(
    kind: str, attached: str, column: str | None = None, **kwargs: Any
) -> dict[str, Any]:
    return {
        "unique_id": f"test.shop.{kind}_{attached}_{column}",
        "resource_type": "test",
        "attached_node": f"model.shop.{attached}",
        "column_name": column,
        "depends_on": {"nodes": [f"model.shop.{attached}"]},
        "test_metadata": {"name": kind, "kwargs": kwargs},
    }


def test_a_key_is_found_where_its_owner_said_it_first():
    tests = [generic_test("unique", "m", "id"), generic_test("not_null", "m", "id")]
    assert find_key(model("m"), tests) == (("id",), "tests")
    assert find_key(model("m"), tests[:1]) == ((), None)  # unique alone: nulls could repeat
    with_unique_key = model("m", config={"unique_key": ["a", "b"]})
    assert find_key(with_unique_key, tests) == (("a", "b"), "unique_key")
    expression = model("m", config={"unique_key": "a || '-' || b"})
    assert find_key(expression, []) == ((), None)  # an expression is no column
    constrained = model(
        "m",
        config={"unique_key": "a"},
        constraints=[{"type": "primary_key", "columns": ["x", "y"]}],
    )
    assert find_key(constrained, tests) == (("x", "y"), "primary key")
    column_pk = model("m", columns={"x": {"name": "x", "constraints": [{"type": "primary_key"}]}})
    assert find_key(column_pk, []) == (("x",), "primary key")
    meta = model("m", config={"meta": {"ferry": {"key": ["day", "shop"]}}}, constraints=[])
    assert find_key(meta, tests) == (("day", "shop"), "meta")
    not_null_constraint = model(
        "m", columns={"id": {"name": "id", "constraints": [{"type": "not_null"}]}}
    )
    assert find_key(not_null_constraint, tests[:1]) == (("id",), "tests")
    combination = generic_test(
        "unique_combination_of_columns", "m", None, combination_of_columns=["a", "b"]
    )
    assert find_key(model("m"), [combination]) == (("a", "b"), "tests")


def test_sensitive_columns_are_marked_in_meta():
    node = model(
        "m",
        columns={
            "email": {"name": "email", "meta": {"sensitive": True}},
            "Phone": {"name": "Phone", "config": {"meta": {"pii": True}}},
            "ssn": {"name": "ssn", "meta": {"ferry": {"sensitive": True}}},
            "city": {"name": "city", "meta": {"ferry": "not a mapping"}},
        },
    )
    assert sensitive_columns(node) == {"email", "phone", "ssn"}


def test_what_is_reported_built_new_removed_ephemeral_and_not_built():
    pr_nodes = {
        n["unique_id"]: n
        for n in (
            model("edited"),
            model("child", schema="ci_pr_4"),
            model("brand_new", schema="ci_pr_4"),
            model("eph", config={"materialized": "ephemeral"}, checksum={"checksum": "new"}),
            model("same_eph", config={"materialized": "ephemeral"}),
            model("failed_one"),
            generic_test("unique", "edited", "id"),
            generic_test("not_null", "edited", "id"),
        )
    }
    pr_nodes["model.shop.edited"]["schema"] = "ci_pr_4"
    pr_nodes["model.shop.edited"]["columns"] = {"email": {"name": "email", "meta": {"pii": True}}}
    state_nodes = {
        n["unique_id"]: n
        for n in (
            model("edited"),
            model("child"),
            model("eph", config={"materialized": "ephemeral"}, checksum={"checksum": "old"}),
            model("same_eph", config={"materialized": "ephemeral"}),
            model("failed_one"),
            model("gone"),
            model("gone_eph", config={"materialized": "ephemeral"}),
        )
    }
    results = [
        {"unique_id": "model.shop.edited", "status": "success"},
        {"unique_id": "test.shop.unique_edited_id", "status": "pass"},
        {"unique_id": "model.shop.child", "status": "success"},
        {"unique_id": "model.shop.brand_new", "status": "success"},
        {"unique_id": "model.shop.failed_one", "status": "error"},
    ]
    found = {t.name: t for t in targets({"nodes": pr_nodes}, {"nodes": state_nodes}, results)}
    assert list(found) == ["edited", "child", "brand_new", "failed_one", "eph", "gone"]
    edited = found["edited"]
    assert str(edited.pr) == "ci_pr_4.edited" and str(edited.base) == "analytics.edited"
    assert edited.pr is not None and edited.pr.sql == '"dev"."ci_pr_4"."edited"'
    assert (edited.key, edited.key_from, edited.sensitive) == (("id",), "tests", {"email"})
    assert found["brand_new"].base is None and found["brand_new"].skipped is None
    assert found["failed_one"].skipped == "not built by the pull request (error)"
    assert "ephemeral" in str(found["eph"].skipped)
    assert found["gone"].pr is None and found["gone"].base is not None


def diff_of(*models: ModelDiff) -> DataDiff:
    return DataDiff(
        run_id="r1",
        project="shop",
        state_env="prod",
        warehouse="postgres",
        started_at=datetime(2026, 12, 6, tzinfo=UTC),
        duration_s=1.25,
        max_rows=10_000_000,
        budget_s=600,
        values_shown=True,
        models=list(models),
    )


def test_the_section_lists_every_model_and_folds_each_changed_ones_examples():
    changed = ModelDiff(
        unique_id="model.shop.fct_orders",
        name="fct_orders",
        status=DiffStatus.CHANGED,
        base_relation="analytics.fct_orders",
        pr_relation="ci_pr_4.fct_orders",
        rows=Rows(base=1200, pr=1201),
        columns=Columns(
            added=["pr_flag"], type_changed=[TypeChange(column="a", base="int", pr="text")]
        ),
        key=["order_id"],
        key_from="primary key",
        added=1,
        removed=0,
        changed=37,
        changed_by_column={"order_total": 37, "email": 5},
        examples=[
            Example(kind="changed", key={"order_id": "10"}, changed={"order_total": ("1|0", "2")}),
            Example(kind="changed", key={"order_id": "11"}, changed={"email": None}),
            Example(kind="added", key={"order_id": "5001"}),
        ],
    )
    identical = ModelDiff(
        unique_id="model.shop.dim_customers",
        name="dim_customers",
        status=DiffStatus.IDENTICAL,
        rows=Rows(base=10, pr=10),
        key=["customer_id"],
        added=0,
        removed=0,
        changed=0,
    )
    skipped = ModelDiff(
        unique_id="model.shop.int_x",
        name="int_x",
        status=DiffStatus.SKIPPED,
        reason="ephemeral: it has no table of its own",
    )
    body = render(diff_of(identical, skipped, changed))
    lines = body.splitlines()
    assert lines[0] == "### What changed in the data"
    assert "(3 models in 1.2 s): 1 changed, 1 skipped, 1 identical." in body
    rows = [line for line in lines if line.startswith("| `")]
    assert [r.split("`")[1] for r in rows] == ["fct_orders", "int_x", "dim_customers"]
    assert rows[0].startswith("| `fct_orders` | 🔶 changed | 1,200 → 1,201 | 1 | 0 | 37 |")
    assert "`order_total` 37, `email` 5" in rows[0] and "`+pr_flag`" in rows[0]
    assert "ephemeral" in rows[1]
    assert body.count("<details>") == 1  # only the changed model is folded open
    assert "| changed | 10 | `order_total` | 1\\|0 | 2 |" in body  # a pipe never breaks the table
    assert "| changed | 11 | `email` | (sensitive) | (sensitive) |" in body
    assert "| added | 5001 | | | |" in body
    assert "- `a`: type int → text" in body


def test_a_run_that_built_no_model_says_so():
    assert "The run built no model" in render(diff_of())


class _Warehouse:
    """A warehouse whose every table has two columns and whose statements take 10 s each on
    the diff's clock; only the statements' order and count matter here."""

    adapter_type = "postgres"

    def __init__(self, clock: list[float]) -> None:
        self.clock = clock
        self.statements: list[str] = []

    def columns(self, database: str | None, schema: str, identifier: str) -> list[Column]:
        return [Column("id", "integer", True), Column("v", "integer", True)]

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        self.clock[0] += 10
        self.statements.append(sql)
        if "null_keys" in sql:
            return [(3, 0, 3, 0)]
        return [(3, 3, 0, 0, 0, 0)]  # the keyed diff: nothing differs


def test_the_budget_lists_the_models_not_reached_and_never_stops_one_midway():
    from flows.ci.diff.compare import Limits, diff
    from flows.ci.diff.targets import Relation, Target

    clock = [0.0]
    warehouse = _Warehouse(clock)
    models = [
        Target(
            unique_id=f"model.shop.m{i}",
            name=f"m{i}",
            pr=Relation("dev", "ci_pr_1", f"m{i}"),
            base=Relation("dev", "analytics", f"m{i}"),
            key=("id",),
            key_from="tests",
        )
        for i in range(4)
    ]
    found = diff(
        warehouse,
        models,
        run_id="r",
        project="shop",
        state_env="prod",
        limits=Limits(budget_s=25),
        clock=lambda: clock[0],
    )
    # Each model takes two statements (counts, then the keyed diff: nothing differs, no
    # examples), 20 s: m0 starts at 0 s, m1 at 20 s (within 25), m2 at 40 s is not reached.
    assert [m.status for m in found.models] == [
        DiffStatus.IDENTICAL,
        DiffStatus.IDENTICAL,
        DiffStatus.SKIPPED,
        DiffStatus.SKIPPED,
    ]
    assert found.models[2].reason == (
        "budget: the diff's 25 s were spent before this model (--budget-s)"
    )
    assert len(warehouse.statements) == 4 and found.duration_s == 40
    assert [m.seconds for m in found.models] == [20, 20, 0, 0]
