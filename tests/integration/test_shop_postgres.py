"""The same example project on PostgreSQL, the client-server stand-in for Redshift.

Never skipped: PostgreSQL runs on 127.0.0.1:5432 here and in CI.
"""

from __future__ import annotations

import json
from pathlib import Path

import psycopg2
import pytest

from flows.run.owner import run
from flows.run.request import RunRequest
from flows.run.verdict import Outcome
from tests.conftest import FIXTURES, copy_project, load_generator, make_settings

pytestmark = pytest.mark.integration

DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test"


def query(sql: str) -> list[tuple]:
    with psycopg2.connect(DSN) as conn, conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchall()


def test_the_shop_builds_and_rebuilds_on_postgres(shop_project, tmp_path, pg_schema):
    generator = load_generator(shop_project)
    assert generator.main(["--target", "postgres"]) == 0
    settings = make_settings(shop_project, tmp_path)

    first = run(RunRequest.build(command="build", target="postgres"), settings).summary
    assert first.outcome is Outcome.WARNINGS, first.verdict
    assert first.target == "postgres" and first.nodes_total >= 20
    assert not first.failed
    results = json.loads((Path(first.artifacts) / "run_results.json").read_text())["results"]
    unit_tests = [r for r in results if r["unique_id"].startswith("unit_test.")]
    assert len(unit_tests) >= 2 and all(r["status"] == "pass" for r in unit_tests)
    contracts = [r for r in results if r["unique_id"] == "model.shop.fct_orders"]
    assert contracts and contracts[0]["status"] == "success"

    ((total, distinct),) = query(
        f"select count(*), count(distinct order_item_id) from {pg_schema}.fct_order_items"
    )
    assert total == distinct > 0

    assert generator.main(["--target", "postgres", "--late-batch"]) == 0
    second = run(RunRequest.build(command="build", target="postgres"), settings).summary
    assert second.outcome is Outcome.WARNINGS, second.verdict
    ((total2, distinct2),) = query(
        f"select count(*), count(distinct order_item_id) from {pg_schema}.fct_order_items"
    )
    assert total2 == distinct2 > total, "late rows missing or duplicated on PostgreSQL"


def test_a_failure_on_postgres_names_the_database_error(shop_project, tmp_path, pg_schema):
    load_generator(shop_project).main(["--target", "postgres"])
    settings = make_settings(shop_project, tmp_path)
    summary = run(
        RunRequest.build(
            command="run",
            target="postgres",
            select="+int_orders_enriched",
            vars={"fail_models": ["int_orders_enriched"]},
        ),
        settings,
    ).summary
    assert summary.outcome is Outcome.FAILED
    assert "model.shop.int_orders_enriched (Database Error" in summary.verdict
    assert "does not exist" in summary.verdict


def test_another_project_runs_on_postgres(tmp_path, pg_schema):
    project = copy_project(FIXTURES / "other_project", tmp_path / "lighthouse")
    summary = run(
        RunRequest.build(command="build", target="pg"), make_settings(project, tmp_path)
    ).summary
    assert summary.outcome is Outcome.SUCCESS, summary.verdict
    assert query(f"select count(*) from {pg_schema}.keeper_hours") == [(3,)]
