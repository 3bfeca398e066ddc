"""Only what changed, decided over a real dbt manifest: why each node runs, and what it skips.

A tiny project is parsed by dbt itself (no warehouse is opened: `dbt parse` never connects), so
the lineage, checksums and macro dependencies are dbt's own, not fakes of its objects:

    source shop.orders (freshness) -> stg_shop__orders -> fct_orders -> rpt_revenue (macro)
    source shop.customers (none)   -> stg_shop__customers -> dim_customers
    seed countries -> int_countries (ephemeral) -> dim_countries
    seed countries -> dim_regions -> rpt_regions
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from dbt.cli.main import dbtRunner

from flows.dbt.commands import DbtCommand
from flows.dbt.lineage import Lineage, normalized, sources_read
from flows.dbt.nodes import NodeResult, NodeStatus
from flows.run.changes import ChangeReport, Marks, advance, decide
from flows.run.request import InvalidRunRequest, RunRequest
from flows.run.summary import markdown_report, summarize
from flows.run.verdict import Outcome, judge

T0 = datetime(2026, 1, 1, tzinfo=UTC)
P = "tiny"
ORDERS, CUSTOMERS = f"source.{P}.shop.orders", f"source.{P}.shop.customers"
STG_ORDERS, FCT_ORDERS, RPT_REVENUE = (
    f"model.{P}.stg_shop__orders",
    f"model.{P}.fct_orders",
    f"model.{P}.rpt_revenue",
)
STG_CUSTOMERS, DIM_CUSTOMERS = f"model.{P}.stg_shop__customers", f"model.{P}.dim_customers"
COUNTRIES, INT_COUNTRIES, DIM_COUNTRIES = (
    f"seed.{P}.countries",
    f"model.{P}.int_countries",
    f"model.{P}.dim_countries",
)
DIM_REGIONS, RPT_REGIONS = f"model.{P}.dim_regions", f"model.{P}.rpt_regions"
LOADED = "2026-01-01T00:00:00+00:00"
LATER = "2026-01-01T01:00:00+00:00"

PROJECT = {
    "dbt_project.yml": f"""
name: {P}
version: "1.0"
config-version: 2
profile: {P}
flags:
  send_anonymous_usage_stats: false
models:
  {P}:
    +materialized: table
    staging:
      +materialized: view
""",
    "profiles.yml": f"""
{P}:
  target: duckdb
  outputs:
    duckdb:
      type: duckdb
      path: tiny.duckdb
      threads: 1
""",
    "models/staging/shop/_shop__sources.yml": """
version: 2
sources:
  - name: shop
    schema: raw
    tables:
      - name: orders
        loaded_at_field: loaded_at
        freshness:
          warn_after: {count: 1, period: day}
      - name: customers
""",
    "models/staging/shop/_shop__models.yml": """
version: 2
models:
  - name: stg_shop__orders
    columns:
      - name: order_id
        data_tests: [unique]
  - name: fct_orders
    columns:
      - name: order_id
        data_tests: [not_null]
  - name: dim_regions
    columns:
      - name: region
        data_tests: [not_null]
""",
    "models/staging/shop/stg_shop__orders.sql": (
        "select order_id, amount_cents from {{ source('shop', 'orders') }}\n"
    ),
    "models/staging/shop/stg_shop__customers.sql": (
        "select customer_id from {{ source('shop', 'customers') }}\n"
    ),
    "models/marts/fct_orders.sql": "select * from {{ ref('stg_shop__orders') }}\n",
    "models/marts/rpt_revenue.sql": (
        "select {{ cents_to_dollars('amount_cents') }} as revenue from {{ ref('fct_orders') }}\n"
    ),
    "models/marts/dim_customers.sql": "select * from {{ ref('stg_shop__customers') }}\n",
    "models/intermediate/int_countries.sql": (
        "{{ config(materialized='ephemeral') }}\nselect code, region from {{ ref('countries') }}\n"
    ),
    "models/marts/dim_countries.sql": "select * from {{ ref('int_countries') }}\n",
    "models/marts/dim_regions.sql": "select distinct region from {{ ref('countries') }}\n",
    "models/marts/rpt_regions.sql": (
        "{{ config(materialized='view') }}\nselect * from {{ ref('dim_regions') }}\n"
    ),
    "macros/cents_to_dollars.sql": (
        "{% macro cents_to_dollars(column) %}{{ _divide(column, 100) }}{% endmacro %}\n"
    ),
    "macros/_divide.sql": "{% macro _divide(a, b) %}({{ a }} / {{ b }}){% endmacro %}\n",
    "seeds/countries.csv": "code,region\nFR,EU\nUS,NA\n",
}


def _write(project: Path) -> Path:
    for name, text in PROJECT.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text.lstrip())
    return project


def _parse(project: Path) -> Any:
    """dbt's own manifest of the project (`dbt parse` opens no warehouse connection)."""
    result = dbtRunner().invoke(
        [
            "parse",
            "--project-dir",
            str(project),
            "--profiles-dir",
            str(project),
            "--target-path",
            str(project / "target"),
            "--log-path",
            str(project / "logs"),
            "--quiet",
            "--no-write-json",  # manifest.json: a third of a second nobody reads here
        ]
    )
    assert result.success, result.exception
    return result.result


@pytest.fixture(scope="module")
def parsed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """The project and its manifest: one full parse for the module (dbt's own macros take
    most of it)."""
    project = _write(tmp_path_factory.mktemp("parsed") / P)
    return project, _parse(project)


@pytest.fixture(scope="module")
def manifest(parsed: tuple[Path, Any]) -> Any:
    return parsed[1]


def _reparsed(
    parsed: tuple[Path, Any], tmp_path: Path, path: str, text: str, **lineage: Any
) -> Lineage:
    """A copy of the project parsed again after one file (`path`) is given a new `text`
    (`lineage`: the run's vars and environment).

    The copy takes the first parse's partial-parse state with it, so dbt re-parses only what
    the edit touches, as it does in production with the image's baked state.
    """
    project = tmp_path / P
    shutil.copytree(parsed[0], project, ignore=shutil.ignore_patterns("logs", "*.duckdb"))
    (project / path).write_text(text)
    return Lineage(_parse(project), **lineage)


def _universe(manifest: Any) -> list[str]:
    """What `dbt build` executes (as flows.run.execute._universe has it): no ephemerals."""
    wanted = set(DbtCommand.BUILD.resource_types)
    lineage = Lineage(manifest)
    return [
        uid
        for uid, node in manifest.nodes.items()
        if str(node.resource_type) in wanted and not lineage.is_ephemeral(uid)
    ]


def _tests_of(manifest: Any, model: str) -> set[str]:
    return {
        uid
        for uid, node in manifest.nodes.items()
        if uid.startswith("test.") and model in node.depends_on.nodes
    }


def node(uid: str, status: str = "success") -> NodeResult:
    rtype = uid.split(".")[0]
    ok = "pass" if rtype == "test" and status == "success" else status
    return NodeResult(
        unique_id=uid,
        resource_type=rtype,
        name=uid.split(".")[-1],
        status=NodeStatus(ok),
        message=None,
        started_at=T0,
        finished_at=T0,
        execution_time=1.0,
    )


def _sources(orders: str | None = LOADED) -> dict[str, str | None]:
    return {ORDERS: orders, CUSTOMERS: None}


def _built(
    lineage: Lineage, universe: list[str], sources: dict[str, str | None] | None = None
) -> Marks:
    """The marks after a first build (run r1) in which every node of `universe` succeeded."""
    return advance(None, lineage, [node(n) for n in universe], sources or _sources(), "r1")


# --- the lineage dbt's manifest gives ------------------------------------------------------


def test_inputs_read_through_ephemeral_models_and_sources_are_found(manifest):
    lineage = Lineage(manifest)
    assert lineage.is_ephemeral(INT_COUNTRIES) and not lineage.is_ephemeral(DIM_COUNTRIES)
    assert lineage.inputs(DIM_COUNTRIES) == [COUNTRIES]
    assert lineage.inputs(STG_ORDERS) == [ORDERS]
    assert lineage.is_source(ORDERS) and not lineage.is_source(STG_ORDERS)
    assert sources_read(lineage, _universe(manifest)) == sorted([ORDERS, CUSTOMERS])
    assert sources_read(lineage, [DIM_REGIONS, DIM_COUNTRIES]) == []
    assert lineage.fqn_selector(FCT_ORDERS) == f"fqn:{P}.marts.fct_orders"


# --- first run, then nothing new ------------------------------------------------------------


def test_without_marks_every_node_is_new(manifest):
    universe = _universe(manifest)
    decided = decide(Lineage(manifest), universe, None, _sources())
    assert set(decided.ran) == set(universe) and decided.unchanged == []
    assert INT_COUNTRIES not in decided.ran  # ephemeral: dbt never executes it
    assert all(why == "new (no earlier build recorded)" for why in decided.ran.values())
    assert decided.sources == _sources()


def test_after_a_full_successful_build_the_same_sources_run_nothing(manifest):
    lineage, universe = Lineage(manifest), _universe(manifest)
    marks = _built(lineage, universe)
    assert marks.failed == set()
    assert {m["version"] for m in marks.nodes.values()} == {"r1"}
    # shop.customers has no freshness: its readers always run; every other node is skipped.
    decided = decide(lineage, universe, marks, _sources())
    assert set(decided.ran) == {STG_CUSTOMERS, DIM_CUSTOMERS}
    assert set(decided.unchanged) == set(universe) - {STG_CUSTOMERS, DIM_CUSTOMERS}
    # ...and with a known loaded_at for it, nothing runs at all.
    known = {ORDERS: LOADED, CUSTOMERS: LOADED}
    marks = _built(lineage, universe, sources=known)
    decided = decide(lineage, universe, marks, known)
    assert decided.ran == {} and decided.unchanged == universe


# --- sources ----------------------------------------------------------------------------------


def test_new_data_in_a_source_runs_its_readers_their_descendants_and_tests(manifest):
    lineage, universe = Lineage(manifest), _universe(manifest)
    decided = decide(lineage, universe, _built(lineage, universe), _sources(LATER))
    assert decided.ran[STG_ORDERS] == "new data in source shop.orders"
    assert decided.ran[FCT_ORDERS] == "upstream stg_shop__orders runs"
    assert decided.ran[RPT_REVENUE] == "upstream fct_orders runs"
    for test in _tests_of(manifest, STG_ORDERS) | _tests_of(manifest, FCT_ORDERS):
        assert decided.ran[test].startswith("upstream "), test
    for unrelated in (COUNTRIES, DIM_COUNTRIES, DIM_REGIONS, RPT_REGIONS):
        assert unrelated in decided.unchanged
    assert not _tests_of(manifest, DIM_REGIONS) & set(decided.ran)


def test_a_source_without_freshness_always_runs_its_readers(manifest):
    lineage, universe = Lineage(manifest), _universe(manifest)
    marks = _built(lineage, universe)
    for _ in range(2):  # and again after they ran: still unknown
        decided = decide(lineage, universe, marks, _sources())
        assert decided.ran[STG_CUSTOMERS] == "freshness unknown for source shop.customers"
        assert decided.ran[DIM_CUSTOMERS] == "upstream stg_shop__customers runs"
        ran = [node(n) for n in decided.ran]
        marks = advance(marks, lineage, ran, _sources(), "r2")
    # a source missing from the freshness answer is unknown too
    decided = decide(lineage, universe, marks, {ORDERS: LOADED})
    assert decided.ran[STG_CUSTOMERS] == "freshness unknown for source shop.customers"


# --- code -------------------------------------------------------------------------------------


def test_an_edited_model_runs_with_its_descendants(manifest, parsed, tmp_path):
    marks = _built(Lineage(manifest), _universe(manifest))
    edited = _reparsed(
        parsed,
        tmp_path,
        "models/marts/dim_regions.sql",
        "select distinct upper(region) as region from {{ ref('countries') }}\n",
    )
    decided = decide(edited, _universe(manifest), marks, _sources())
    assert decided.ran[DIM_REGIONS] == "code changed"
    assert decided.ran[RPT_REGIONS] == "upstream dim_regions runs"
    for test in _tests_of(manifest, DIM_REGIONS):
        assert decided.ran[test] == "upstream dim_regions runs"
    for unrelated in (COUNTRIES, DIM_COUNTRIES, STG_ORDERS, FCT_ORDERS, RPT_REVENUE):
        assert unrelated in decided.unchanged


def test_a_change_to_a_macro_the_model_calls_is_a_code_change(manifest, parsed, tmp_path):
    marks = _built(Lineage(manifest), _universe(manifest))
    edited = _reparsed(
        parsed,
        tmp_path,
        "macros/cents_to_dollars.sql",
        "{% macro cents_to_dollars(column) %}{{ _divide(column, 100.0) }}{% endmacro %}\n",
    )
    decided = decide(edited, _universe(manifest), marks, _sources())
    assert decided.ran.get(RPT_REVENUE) == "code changed"
    assert FCT_ORDERS in decided.unchanged and STG_ORDERS in decided.unchanged


def test_a_change_to_a_macro_called_by_that_macro_is_a_code_change(manifest, parsed, tmp_path):
    marks = _built(Lineage(manifest), _universe(manifest))
    edited = _reparsed(
        parsed,
        tmp_path,
        "macros/_divide.sql",
        "{% macro _divide(a, b) %}(1.0 * {{ a }} / {{ b }}){% endmacro %}\n",
    )
    decided = decide(edited, _universe(manifest), marks, _sources())
    assert decided.ran.get(RPT_REVENUE) == "code changed"


KNOWN = {ORDERS: LOADED, CUSTOMERS: LOADED}  # every source has a known loaded_at


def test_comments_and_whitespace_are_no_change_but_a_string_literal_is(manifest, parsed, tmp_path):
    marks = _built(Lineage(manifest), _universe(manifest), KNOWN)
    reformatted = _reparsed(
        parsed,
        tmp_path / "reformatted",
        "models/marts/dim_regions.sql",
        "{# regions, once each #}\nselect distinct\n    region  -- the region\n"
        "from {{ ref('countries') }} /* seeded */\n",
    )
    decided = decide(reformatted, _universe(manifest), marks, KNOWN)
    assert DIM_REGIONS in decided.unchanged and RPT_REGIONS in decided.unchanged
    in_a_literal = _reparsed(
        parsed,
        tmp_path / "literal",
        "models/marts/dim_regions.sql",
        "select distinct region from {{ ref('countries') }} where region <> '--  x'\n",
    )
    assert decide(in_a_literal, _universe(manifest), marks, KNOWN).ran[DIM_REGIONS] == (
        "code changed"
    )


def test_normalized_code_keeps_literals_and_printed_comments():
    assert normalized("select  1 -- one\n,\t2 /* two */") == "select 1 , 2"
    assert normalized("select 'a  -- b', \"x  y\" {# gone #}") == "select 'a  -- b', \"x  y\""
    assert normalized("select 'it''s  -- here'") == "select 'it''s  -- here'"
    kept = "{% raw %}{# printed #}{% endraw %}"
    assert normalized(f"select '{kept}'") == f"select '{kept}'"
    assert normalized(f"select 1 {kept}") == f"select 1 {kept}"


READS_A_VAR = (
    "select distinct region from {{ ref('countries') }}\n"
    'where region <> \'{{ var("excluded_region", "none") }}\'\n'
)


def test_a_changed_var_runs_exactly_the_models_that_read_it_and_their_descendants(
    manifest, parsed, tmp_path
):
    path = "models/marts/dim_regions.sql"
    before = _reparsed(parsed, tmp_path / "a", path, READS_A_VAR, vars={"excluded_region": "EU"})
    marks = _built(before, _universe(manifest), KNOWN)
    assert decide(before, _universe(manifest), marks, KNOWN).ran == {}
    after = _reparsed(parsed, tmp_path / "b", path, READS_A_VAR, vars={"excluded_region": "NA"})
    decided = decide(after, _universe(manifest), marks, KNOWN)
    assert decided.ran[DIM_REGIONS] == "var changed: excluded_region"
    assert decided.ran[RPT_REGIONS] == "upstream dim_regions runs"
    assert {DIM_REGIONS, RPT_REGIONS} | _tests_of(manifest, DIM_REGIONS) == set(decided.ran)
    other = _reparsed(  # a var nobody reads: nothing runs
        parsed, tmp_path / "c", path, READS_A_VAR, vars={"excluded_region": "EU", "x": 1}
    )
    assert decide(other, _universe(manifest), marks, KNOWN).ran == {}


def test_a_var_named_other_than_by_a_literal_reads_them_all(manifest, parsed, tmp_path):
    path = "models/marts/dim_regions.sql"
    code = "{% set name = 'any' %}select '{{ var(name, 1) }}' as region\n"
    before = _reparsed(parsed, tmp_path / "a", path, code, vars={"any": 1, "other": 1})
    marks = _built(before, _universe(manifest), KNOWN)
    after = _reparsed(parsed, tmp_path / "b", path, code, vars={"any": 1, "other": 2})
    assert decide(after, _universe(manifest), marks, KNOWN).ran[DIM_REGIONS] == (
        "var changed: other"
    )


def test_an_env_var_read_by_a_macro_runs_the_models_that_call_it(manifest, parsed, tmp_path):
    path = "macros/_divide.sql"
    code = (
        "{% macro _divide(a, b) %}({{ a }} / {{ b }} * "
        "{{ env_var('TINY_SCALE', '1') }}){% endmacro %}\n"
    )
    before = _reparsed(parsed, tmp_path / "a", path, code, env={"TINY_SCALE": "1"})
    marks = _built(before, _universe(manifest), KNOWN)
    after = _reparsed(parsed, tmp_path / "b", path, code, env={"TINY_SCALE": "2"})
    decided = decide(after, _universe(manifest), marks, KNOWN)
    assert decided.ran == {RPT_REVENUE: "env var changed: TINY_SCALE"}
    kept = advance(marks, after, [node(RPT_REVENUE)], KNOWN, "r2").nodes[RPT_REVENUE]["values"]
    assert set(kept) == {"env:TINY_SCALE"} and kept["env:TINY_SCALE"] not in ("1", "2")  # a digest


def test_a_change_to_an_ephemeral_model_runs_the_model_that_reads_it(manifest, parsed, tmp_path):
    marks = _built(Lineage(manifest), _universe(manifest))
    edited = _reparsed(
        parsed,
        tmp_path,
        "models/intermediate/int_countries.sql",
        "{{ config(materialized='ephemeral') }}\n"
        "select lower(code) as code, region from {{ ref('countries') }}\n",
    )
    decided = decide(edited, _universe(manifest), marks, _sources())
    assert decided.ran.get(DIM_COUNTRIES) == "code changed"
    assert INT_COUNTRIES not in decided.ran
    assert COUNTRIES in decided.unchanged and DIM_REGIONS in decided.unchanged


# --- failures and skips -----------------------------------------------------------------------


@pytest.mark.parametrize("status", ["error", "skipped"])
def test_a_failed_or_skipped_node_keeps_its_mark_and_runs_until_it_succeeds(manifest, status):
    lineage, universe = Lineage(manifest), _universe(manifest)
    r1 = _built(lineage, universe)
    results = [node(n, status if n == FCT_ORDERS else "success") for n in universe]
    r2 = advance(r1, lineage, results, _sources(), "r2")
    assert FCT_ORDERS in r2.failed
    assert r2.nodes[FCT_ORDERS] == r1.nodes[FCT_ORDERS]  # not advanced
    assert r2.nodes[STG_ORDERS]["version"] == "r2"

    decided = decide(lineage, universe, r2, _sources())
    assert decided.ran[FCT_ORDERS] == "previously failed or skipped"
    assert decided.ran[RPT_REVENUE] == "upstream fct_orders runs"

    r3 = advance(r2, lineage, [node(n) for n in decided.ran], _sources(), "r3")
    assert FCT_ORDERS not in r3.failed
    assert r3.nodes[FCT_ORDERS]["version"] == "r3"
    assert FCT_ORDERS not in decide(lineage, universe, r3, _sources()).ran


# --- partial runs -----------------------------------------------------------------------------


def test_nodes_absent_from_a_partial_run_keep_their_marks(manifest):
    lineage, universe = Lineage(manifest), _universe(manifest)
    r1 = _built(lineage, universe)
    r2 = advance(r1, lineage, [node(STG_ORDERS)], _sources(LATER), "r2")
    assert r2.nodes[STG_ORDERS]["version"] == "r2"
    assert r2.nodes[STG_ORDERS]["inputs"] == {ORDERS: LATER}
    for absent in set(universe) - {STG_ORDERS}:
        assert r2.nodes[absent] == r1.nodes[absent], absent


def test_a_child_not_rebuilt_after_its_parent_was_runs_as_rebuilt_since(manifest):
    lineage, universe = Lineage(manifest), _universe(manifest)
    r1 = _built(lineage, universe)
    # A partial run (a selection) rebuilt stg_shop__orders only, on newer data.
    r2 = advance(r1, lineage, [node(STG_ORDERS)], _sources(LATER), "r2")
    decided = decide(lineage, universe, r2, _sources(LATER))
    assert STG_ORDERS in decided.unchanged
    assert decided.ran[FCT_ORDERS] == "upstream stg_shop__orders rebuilt since"
    assert decided.ran[RPT_REVENUE] == "upstream fct_orders runs"
    for test in _tests_of(manifest, STG_ORDERS):
        assert decided.ran[test] == "upstream stg_shop__orders rebuilt since"


def test_a_parent_outside_a_narrow_universe_rebuilt_since_runs_the_child(manifest):
    lineage, universe = Lineage(manifest), _universe(manifest)
    r1 = _built(lineage, universe)
    r2 = advance(r1, lineage, [node(DIM_REGIONS)], _sources(), "r2")
    selection = [RPT_REGIONS]  # e.g. --select rpt_regions
    decided = decide(lineage, selection, r2, _sources())
    assert decided.ran == {RPT_REGIONS: "upstream dim_regions rebuilt since"}
    # a parent outside the universe is never itself run, even when it has no mark at all
    decided = decide(lineage, selection, Marks(nodes={RPT_REGIONS: r1.nodes[RPT_REGIONS]}), {})
    assert DIM_REGIONS not in decided.ran
    assert decided.ran == {RPT_REGIONS: "upstream dim_regions rebuilt since"}
    # a parent outside the universe with news of its own is not run, nor is the child (the
    # parent was not rebuilt: what the child read is still what it was built from)
    decided = decide(lineage, [FCT_ORDERS], r1, _sources(LATER))
    assert decided.ran == {} and decided.unchanged == [FCT_ORDERS]


# --- the marks and the report -----------------------------------------------------------------


def test_marks_round_trip_through_json(manifest):
    lineage, universe = Lineage(manifest), _universe(manifest)
    marks = advance(
        None,
        lineage,
        [node(n, "error" if n == DIM_REGIONS else "success") for n in universe],
        _sources(),
        "r1",
    )
    again = Marks.loads(marks.dumps())
    assert again == marks and again.failed == {DIM_REGIONS}
    assert again.version(STG_ORDERS) == "r1" and again.version("model.tiny.nope") is None
    assert Marks.loads(b'{"format": 1}') == Marks()
    assert decide(lineage, universe, again, _sources()) == decide(
        lineage, universe, marks, _sources()
    )


def test_the_report_groups_upstream_reasons_and_describes_itself():
    report = ChangeReport(
        ran={
            "model.a": "new data in source shop.orders",
            "model.b": "upstream a runs",
            "model.c": "upstream x rebuilt since",
            "model.d": "new (no earlier build recorded)",
            "model.e": "upstream b runs",
        },
        unchanged=["model.f", "model.g"],
    )
    assert report.reasons() == {
        "upstream rebuilt": 3,
        "new": 1,
        "new data in source shop.orders": 1,
    }
    assert report.describe() == (
        "5 node(s) ran (upstream rebuilt: 3, new: 1, new data in source shop.orders: 1); "
        "2 unchanged, skipped"
    )
    nothing = ChangeReport(unchanged=["model.f", "model.g"])
    assert nothing.reasons() == {}
    assert nothing.describe() == "nothing changed: 2 node(s) unchanged, none run"


# --- the verdict, the summary, the request ----------------------------------------------------

BUILD = RunRequest.build(command="build", only_changed=True)


def test_the_verdict_of_a_run_where_nothing_changed():
    verdict = judge(BUILD, [], dbt_ok=True, error=None, unchanged=7)
    assert verdict.outcome is Outcome.SUCCESS
    assert verdict.sentence == (
        "dbt build ran no nodes (nothing changed: 7 node(s) unchanged since they were last built)"
    )


def test_the_verdict_counts_unchanged_apart_from_passed():
    ran = [node(STG_ORDERS), node(FCT_ORDERS)]
    verdict = judge(BUILD, ran, dbt_ok=True, error=None, unchanged=5)
    assert verdict.outcome is Outcome.SUCCESS
    assert verdict.sentence == (
        "2 of 2 nodes passed; 5 unchanged since they were last built, not run"
    )
    failed = judge(BUILD, [node(STG_ORDERS, "error")], dbt_ok=False, error=None, unchanged=5)
    assert failed.outcome is Outcome.FAILED
    assert failed.sentence.endswith("; 5 unchanged since they were last built, not run")


def test_the_summary_counts_unchanged_and_the_report_says_why_each_node_ran():
    ran = [node(STG_ORDERS), node(FCT_ORDERS)]
    changes = ChangeReport(
        ran={STG_ORDERS: "new data in source shop.orders", FCT_ORDERS: "upstream x runs"},
        unchanged=[DIM_REGIONS, RPT_REGIONS, COUNTRIES],
    )
    summary = summarize(
        run_id="r1",
        flow_run_id=None,
        project=P,
        env="prod",
        request=BUILD,
        target=None,
        nodes=ran,
        verdict=judge(BUILD, ran, dbt_ok=True, error=None, unchanged=3),
        started_at=T0,
        finished_at=T0,
        changes=changes,
    )
    assert summary.counts == {"success": 2, "unchanged": 3}
    assert summary.nodes_total == 2
    text = markdown_report(summary, ran)
    assert f"- only changed: {changes.describe()}" in text
    assert f"- `{STG_ORDERS}`: new data in source shop.orders" in text


def test_only_changed_is_refused_where_it_cannot_apply():
    with pytest.raises(InvalidRunRequest, match="only_changed applies to build and run, not to"):
        RunRequest.build(command="test", only_changed=True)
    with pytest.raises(InvalidRunRequest, match="drop only_changed, or full_refresh"):
        RunRequest.build(command="build", only_changed=True, full_refresh=True)
    assert RunRequest.build(command="run", only_changed=True).only_changed
    assert BUILD.describe() == "build --only-changed"
