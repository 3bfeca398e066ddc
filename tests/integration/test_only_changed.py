"""Only what changed ends where a full build ends, on DuckDB and on PostgreSQL.

Two warehouses get the same raw loads: A is built in full after each change, B with
`only_changed` (after the last step, nothing new, A needs no rebuild and B must run nothing).
After every step every table of A equals its twin in B, row for row (as multisets, both ways),
the incremental model and the snapshot included, while B ran only what the step changed.
The steps that change a node's code or what it reads (an edit, a var, an env var, a comment) run
on DuckDB alone: which nodes they run is decided from the manifest, the same on either warehouse;
the data steps, whose new rows each warehouse is asked about, run on both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from flows.run.owner import run
from flows.run.request import RunRequest
from flows.run.summary import RunSummary
from flows.run.verdict import Outcome
from tests.conftest import load_generator, make_settings
from tests.integration.tables import differences

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Side:
    """One warehouse: where its data is, and the environment its runs are filed under."""

    env: str
    location: str  # the DuckDB file, or the PostgreSQL schema


@pytest.mark.parametrize("warehouse", ["duckdb", "postgres"])
def test_only_changed_ends_where_a_full_build_ends(
    warehouse, shop_project, tmp_path, monkeypatch, request
):
    project = shop_project
    generator = load_generator(project)
    if warehouse == "duckdb":
        a = Side("full", str(tmp_path / "a.duckdb"))
        b = Side("changed", str(tmp_path / "b.duckdb"))
        variable, target = "FERRY_DUCKDB_PATH", "duckdb"
    else:
        schema = request.getfixturevalue("pg_schema")  # dropped afterwards, with f"{schema}b"
        a, b = Side("full", schema), Side("changed", f"{schema}b")
        variable, target = "FERRY_PG_SCHEMA", "postgres"

    def on(side: Side) -> None:
        monkeypatch.setenv(variable, side.location)

    def load(*args: str) -> None:
        for side in (a, b):
            on(side)
            where = ["--duckdb-path", side.location] if warehouse == "duckdb" else []
            assert generator.main(["--target", target, *where, *args]) == 0

    given: dict[str, object] = {}  # the runs' vars, from a step on

    def build(side: Side, *, only_changed: bool) -> RunSummary:
        on(side)
        settings = make_settings(
            project,
            tmp_path,
            env=side.env,
            target_path=tmp_path / side.env / "target",  # no re-parse at each switch
            history=False,  # not what is proved here, and its report costs each run
        )
        # Tables are what is compared: dbt's tests leave them as they are (unit tests prove that
        # tests follow their models), so both sides leave them out and the proof stays fast.
        untested = ["resource_type:test", "resource_type:unit_test"]
        request = RunRequest.build(
            command="build", target=target, exclude=untested, only_changed=only_changed, **given
        )
        done = run(request, settings).summary
        assert done.outcome in (Outcome.SUCCESS, Outcome.WARNINGS), done.verdict
        return done

    def step(change: Callable[[], None] | None) -> tuple[RunSummary | None, RunSummary]:
        """A change (None: nothing new, so A, equal to B before, needs no rebuild), then A
        built in full and B with only_changed, then every table compared."""
        if change is not None:
            change()
        full = build(a, only_changed=False) if change is not None else None
        changed = build(b, only_changed=True)
        assert differences(warehouse, a.location, b.location) == []
        assert changed.changes is not None
        print(f"only changed: {changed.changes.describe()}")
        return full, changed

    full, changed = step(lambda: load("--as-of", "2026-11-30"))
    assert set(changed.changes.ran.values()) == {"new (no earlier build recorded)"}
    assert full is not None and changed.nodes_total == full.nodes_total

    _, changed = step(lambda: load("--append", "payments"))
    ran = changed.changes.ran
    assert ran["model.shop.stg_payments__payments"] == "new data in source payments.payments"
    assert "model.shop.stg_web__sessions" not in ran and "model.shop.dim_products" not in ran
    assert ran["model.shop.fct_orders"].startswith("upstream ")

    _, changed = step(lambda: load("--append", "sessions"))
    ran = changed.changes.ran
    assert ran["model.shop.stg_web__sessions"] == "new data in source web.sessions"
    assert "model.shop.stg_payments__payments" not in ran and "model.shop.fct_orders" not in ran

    _, changed = step(lambda: load("--late-batch"))  # late orders, a customer's new email
    ran = changed.changes.ran
    assert "snapshot.shop.snap_customers" in ran and "model.shop.fct_order_items" in ran

    # What a node's code reads changes which nodes run the same way on either warehouse.
    if warehouse == "duckdb":

        def edit_a_model() -> None:
            path = project / "models" / "marts" / "core" / "dim_products.sql"
            old = "coalesce(product_sales.units_sold, 0) as units_sold"
            assert old in path.read_text()
            path.write_text(path.read_text().replace(old, old.replace(", 0)", ", 0) * 2")))

        _, changed = step(edit_a_model)
        assert changed.changes.ran["model.shop.dim_products"] == "code changed"
        assert set(changed.changes.ran) == {"model.shop.dim_products"}

        # What a node's code reads (vars, env vars) and what in it is code (not comments).
        def edit(path: str, old: str, new: str) -> None:
            file = project / path
            assert old in file.read_text()
            file.write_text(file.read_text().replace(old, new))

        # A var read by one model (the incremental's lookback): it and what reads it run.
        _, changed = step(lambda: given.update(vars={"lookback_days": 5}))
        assert changed.changes.ran["model.shop.fct_order_items"] == "var changed: lookback_days"
        assert "model.shop.dim_products" not in changed.changes.ran

        # An env var a macro reads: the models calling the macro run, nothing else.
        macro = "macros/cents_to_dollars.sql"
        _, changed = step(lambda: edit(macro, "/ 100.0", "/ {{ env_var('SHOP_CENTS', '100.0') }}"))
        callers = set(changed.changes.ran)
        reasons = set(changed.changes.ran.values())
        assert "code changed" in reasons and all(
            r == "code changed" or r.startswith("upstream") for r in reasons
        ), reasons
        _, changed = step(lambda: monkeypatch.setenv("SHOP_CENTS", "100.00"))
        assert "env var changed: SHOP_CENTS" in changed.changes.ran.values()
        assert set(changed.changes.ran) <= callers

        # Comments and whitespace change nothing dbt runs: nothing runs (A needs no rebuild).
        edit(
            "models/marts/core/dim_customers.sql", "from customers\n", "from customers  -- all\n\n"
        )
        nothing = build(b, only_changed=True)
        assert nothing.changes is not None and nothing.changes.ran == {}, nothing.changes
        assert differences(warehouse, a.location, b.location) == []
        # A string literal is code: it runs.
        _, changed = step(
            lambda: edit("models/marts/core/dim_customers.sql", "'returning'", "'repeat'")
        )
        assert changed.changes.ran["model.shop.dim_customers"] == "code changed"

    # A was only ever built in full: its marks came from those builds, so an only-changed run
    # right after the last one has nothing to do (the hourly follows the nightly).
    after_full = build(a, only_changed=True)
    assert after_full.changes is not None and after_full.changes.ran == {}, after_full.changes

    _, changed = step(None)  # nothing new
    assert changed.changes.ran == {} and changed.nodes_total == 0
    assert changed.counts == {"unchanged": len(changed.changes.unchanged)}
    assert changed.verdict.startswith("dbt build ran no nodes (nothing changed:")
    assert Path(tmp_path / "artifacts").is_dir()
