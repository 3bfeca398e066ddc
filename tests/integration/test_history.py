"""`ferry history` over real runs: the example project on DuckDB and on PostgreSQL, one store."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from flows.exit_codes import ExitCode
from flows.run.owner import run
from flows.run.request import RunRequest
from flows.run.verdict import Outcome
from tests.conftest import load_generator, make_settings

pytestmark = pytest.mark.integration

FERRY = str(Path(sys.executable).with_name("ferry"))


def test_history_shows_duckdb_and_postgres_runs_with_node_stats(shop_duckdb, tmp_path, pg_schema):
    settings = make_settings(shop_duckdb, tmp_path)
    on_duckdb = run(RunRequest.build(command="run", select=["staging"]), settings).summary
    assert load_generator(shop_duckdb).main(["--target", "postgres"]) == 0
    on_postgres = run(
        RunRequest.build(
            command="build",
            select=["+fct_orders"],
            exclude=["resource_type:test", "resource_type:unit_test"],
            target="postgres",
        ),
        settings,
    ).summary
    assert on_duckdb.outcome is on_postgres.outcome is Outcome.SUCCESS

    def history(*flags: str) -> dict:
        done = subprocess.run(
            [
                FERRY,
                "history",
                "--json",
                "--env",
                "test",
                "--artifacts",
                settings.store.artifacts,
                "--cache-dir",
                str(tmp_path / "cache"),
                "--limit",
                "100",
                *flags,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == ExitCode.OK, done.stderr
        return json.loads(done.stdout)

    data = history()
    assert data["fetched"] == 2 and data["runs_total"] == 2
    assert [r["run_id"] for r in data["runs"]] == [on_postgres.run_id, on_duckdb.run_id]
    newest, oldest = data["runs"]
    assert newest["target"] == "postgres" and newest["deployment"] == "ad-hoc"  # no Prefect
    assert newest["selection"] == (
        "build --select +fct_orders --exclude resource_type:test resource_type:unit_test"
    )
    assert oldest["target"] == "duckdb" and oldest["selection"] == "run --select staging"
    assert newest["outcome"] == "success" and newest["failed"] == []
    # what each run found against the runs before it, as its summary has it: nothing (one
    # earlier run gives no usual time), and the JSON says so rather than leaving it out
    assert on_postgres.regressions == on_postgres.anomalies == on_duckdb.regressions == []
    assert [(r["regressions"], r["anomalies"]) for r in data["runs"]] == [([], []), ([], [])]
    assert newest["duration_s"] == on_postgres.duration_s

    nodes = {n["node"]: n for n in data["nodes"]}
    results = json.loads((Path(on_postgres.artifacts) / "run_results.json").read_text())["results"]
    fct = next(r for r in results if r["unique_id"] == "model.shop.fct_orders")
    assert fct["adapter_response"]["rows_affected"] > 0
    # fct_orders ran once (on PostgreSQL): its rows and time are that run's
    assert nodes["model.shop.fct_orders"]["runs"] == 1
    assert nodes["model.shop.fct_orders"]["last_rows"] == fct["adapter_response"]["rows_affected"]
    assert nodes["model.shop.fct_orders"]["last_s"] == pytest.approx(
        fct["execution_time"], abs=1e-3
    )
    # the staging models fct_orders reads ran on both; the others on DuckDB only
    both = {r["unique_id"] for r in results if r["unique_id"].startswith("model.shop.stg_")}
    staging = {
        n["node"]: n["runs"] for n in nodes.values() if n["node"].startswith("model.shop.stg_")
    }
    assert both and {node for node, runs in staging.items() if runs == 2} == both
    assert set(staging.values()) == {1, 2}
    assert all(n["failure_rate"] == 0 for n in nodes.values())

    again = history("--since", "1d")
    assert again["fetched"] == 0 and again["runs"] == data["runs"]
