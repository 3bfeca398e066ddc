"""The example project built for real on DuckDB through ferry's run steps (no mocks of ours)."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import duckdb
import pytest
from moto import mock_aws

from flows.run.owner import run
from flows.run.request import InvalidRunRequest, RunRequest
from flows.run.verdict import Outcome
from tests.conftest import RecordingListener, load_generator, make_settings

pytestmark = pytest.mark.integration


def stored_run(summary) -> Path:
    return Path(summary.artifacts)


def test_a_build_reports_every_node_and_stores_its_artifacts(shop_duckdb, tmp_path, listener):
    settings = make_settings(shop_duckdb, tmp_path)
    report = run(RunRequest.build(command="build"), settings, listener=listener, run_id="run-build")
    summary = report.summary

    # warn-severity tests pass the run but are named in the verdict
    assert summary.outcome is Outcome.WARNINGS, summary.verdict
    assert "with warnings: test.shop.assert_orders_are_paid_in_full" in summary.verdict
    assert summary.nodes_total >= 20 and summary.counts.get("warn") == len(summary.warned) >= 1

    run_dir = stored_run(summary)
    assert {p.name for p in run_dir.iterdir()} >= {
        "manifest.json",
        "run_results.json",
        "dbt.log",
        "summary.json",
    }
    results = json.loads((run_dir / "run_results.json").read_text())["results"]
    # every node dbt ran was reported, live, exactly once, with the same status
    assert sorted(n.unique_id for n in listener.finished) == sorted(r["unique_id"] for r in results)
    assert {n.unique_id: n.status.value for n in listener.finished} == {
        r["unique_id"]: r["status"] for r in results
    }
    assert {n.unique_id for n in listener.started} == {r["unique_id"] for r in results}
    stored = json.loads((run_dir / "summary.json").read_text())
    assert stored["outcome"] == "warnings" and stored["run_id"] == "run-build"
    assert stored["dbt_version"].startswith("1.11")
    assert "Running with dbt" in (run_dir / "dbt.log").read_text()
    # a successful build becomes the deferral state
    state = tmp_path / "artifacts" / "shop" / "test" / "state"
    assert json.loads((state / "last-success.json").read_text())["run_id"] == "run-build"
    assert (state / "manifest.json").read_bytes() == (run_dir / "manifest.json").read_bytes()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"target": "prod"}, "target 'prod' is not defined in profile 'shop'"),
        ({"vars": "[1, 2"}, "vars is not valid JSON or YAML"),
        ({"select": "no_such_model"}, "matches no node in project 'shop'"),
        ({"select": "tagg:daily"}, "invalid selection .*not a valid method name"),
        ({"selector": "no_such_selector"}, "Could not find selector named no_such_selector"),
        ({"command": "seed", "select": "fct_orders"}, "'seed' runs only seed"),
        ({"command": "retry"}, "no failed run of project 'shop' in environment 'test'"),
        ({"target": "redshift"}, "FERRY_REDSHIFT_"),
    ],
)
def test_bad_input_is_refused_before_the_warehouse_is_touched(
    shop_project, tmp_path, params, message
):
    warehouse = tmp_path / "shop.duckdb"
    assert not warehouse.exists()
    with pytest.raises(InvalidRunRequest, match=message):
        run(RunRequest.build(**params), make_settings(shop_project, tmp_path))
    assert not warehouse.exists(), "the warehouse was opened for a request that cannot run"
    assert not (tmp_path / "artifacts").exists()


def test_the_deployments_default_target_is_checked_like_a_parameter(shop_project, tmp_path):
    settings = make_settings(shop_project, tmp_path, target="warehouse")  # FERRY_TARGET
    with pytest.raises(InvalidRunRequest, match="target 'warehouse' is not defined"):
        run(RunRequest.build(command="build"), settings)
    with pytest.raises(InvalidRunRequest, match="target 'duckdb_x' is not defined"):
        run(RunRequest.build(command="build", target="duckdb_x"), settings)  # a parameter wins


def test_late_arriving_rows_land_in_the_incremental_fact_without_duplicates(shop_duckdb, tmp_path):
    settings = make_settings(shop_duckdb, tmp_path)
    assert run(RunRequest.build(command="build"), settings).summary.outcome is not Outcome.FAILED
    select = {"command": "run", "select": "+fct_order_items"}
    db = tmp_path / "shop.duckdb"

    def fact_counts() -> tuple[int, int]:
        with duckdb.connect(str(db)) as con:
            total, distinct = con.execute(
                "select count(*), count(distinct order_item_id) from main.fct_order_items"
            ).fetchone()
        return total, distinct

    first_total, first_distinct = fact_counts()
    assert first_total == first_distinct
    load_generator(shop_duckdb).main(
        ["--target", "duckdb", "--duckdb-path", str(db), "--late-batch"]
    )
    assert run(RunRequest.build(**select), settings).summary.outcome is not Outcome.FAILED
    total, distinct = fact_counts()
    assert total == distinct, "the incremental fact duplicated keys on re-run"
    assert total > first_total, "late-arriving rows were not picked up"
    assert run(RunRequest.build(**select), settings).summary.outcome is not Outcome.FAILED
    assert fact_counts() == (total, distinct)  # idempotent re-run


@mock_aws
def test_a_failed_run_is_retried_from_s3_in_a_fresh_container(shop_duckdb, tmp_path):
    boto3.client("s3").create_bucket(Bucket="ferry-artifacts")
    first = make_settings(
        shop_duckdb, tmp_path, artifacts="s3://ferry-artifacts/dbt", work_dir=tmp_path / "c1"
    )
    failing = run(
        RunRequest.build(command="build", vars={"fail_models": ["int_orders_enriched"]}),
        first,
        run_id="run-failed",
    ).summary
    assert failing.outcome is Outcome.FAILED
    assert failing.verdict.startswith("1 of ")
    assert "nodes failed: model.shop.int_orders_enriched (" in failing.verdict
    assert "ferry_injected_failure__int_orders_enriched" in failing.verdict
    assert "skipped" in failing.verdict
    assert failing.artifacts == "s3://ferry-artifacts/dbt/shop/test/runs/" + (
        f"{failing.started_at:%Y-%m-%d}/run-failed"
    )
    s3 = boto3.client("s3")
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="ferry-artifacts")["Contents"]}
    for name in ("manifest.json", "run_results.json", "dbt.log", "summary.json"):
        assert f"dbt/shop/test/runs/{failing.started_at:%Y-%m-%d}/run-failed/{name}" in keys
    first_results = json.loads(
        s3.get_object(
            Bucket="ferry-artifacts",
            Key=f"dbt/shop/test/runs/{failing.started_at:%Y-%m-%d}/run-failed/run_results.json",
        )["Body"].read()
    )["results"]
    to_retry = {r["unique_id"] for r in first_results if r["status"] in {"error", "skipped"}}

    # the failed container is gone: a new work dir, and no local target state at all
    for leftover in (shop_duckdb / "target").glob("*.json"):
        leftover.unlink()
    second = make_settings(
        shop_duckdb, tmp_path, artifacts="s3://ferry-artifacts/dbt", work_dir=tmp_path / "c2"
    )
    retry_listener = RecordingListener()
    retried = run(
        RunRequest.build(command="retry", vars={"fail_models": []}),
        second,
        listener=retry_listener,
        run_id="run-retry",
    ).summary
    assert retried.outcome is not Outcome.FAILED, retried.verdict
    assert retried.retry_of == "run-failed"
    assert {n.unique_id for n in retry_listener.finished} == to_retry
    pointer = json.loads(
        s3.get_object(Bucket="ferry-artifacts", Key="dbt/shop/test/state/last-failure.json")[
            "Body"
        ].read()
    )
    assert pointer["run_id"] == "run-failed" and pointer["retried_by"] == "run-retry"


@mock_aws
def test_an_artifact_store_failure_keeps_the_verdict_and_the_local_copy(shop_duckdb, tmp_path):
    settings = make_settings(shop_duckdb, tmp_path, artifacts="s3://bucket-that-is-not-there/x")
    summary = run(RunRequest.build(command="seed"), settings, run_id="r1").summary
    assert summary.outcome is Outcome.SUCCESS, summary.verdict
    assert summary.artifact_errors and "bucket-that-is-not-there" in summary.artifact_errors[0]
    local = tmp_path / "runs" / "r1" / "artifacts"
    assert summary.artifacts.startswith(str(local))
    assert {"manifest.json", "run_results.json", "dbt.log", "summary.json"} <= {
        p.name for p in local.iterdir()
    }
    assert json.loads((local / "summary.json").read_text())["artifact_errors"]


def test_a_failing_data_test_is_named_with_its_failure_count(shop_duckdb, tmp_path):
    settings = make_settings(shop_duckdb, tmp_path)
    summary = run(
        RunRequest.build(
            command="build",
            select="+assert_order_subtotals_match_items",
            vars={"fail_tests": True},
        ),
        settings,
    ).summary
    assert summary.outcome is Outcome.FAILED
    assert "test.shop.assert_order_subtotals_match_items (" in summary.verdict
    assert "failure" in summary.verdict


def test_source_freshness_stores_sources_json(shop_duckdb, tmp_path):
    settings = make_settings(shop_duckdb, tmp_path)
    summary = run(RunRequest.build(command="source freshness"), settings).summary
    assert summary.outcome is Outcome.SUCCESS, summary.verdict
    sources = json.loads((Path(summary.artifacts) / "sources.json").read_text())
    assert sources["results"] and all(r["status"] == "pass" for r in sources["results"])
