"""A run's CloudWatch metrics: EMF lines that match the contract the alarms and dashboard read
(infra/ferry_infra/metrics.py), written only where a log driver delivers them."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta

import pytest

from flows.dbt.nodes import NodeResult, NodeStatus
from flows.run import metrics
from flows.run.request import RunRequest
from flows.run.summary import summarize
from flows.run.verdict import judge
from flows.settings import FerrySettings
from tests.conftest import REPO, load_module

CONTRACT = load_module(REPO / "infra" / "ferry_infra" / "metrics.py", "ferry_metrics_contract")
T0 = datetime(2026, 1, 1, 6, 0, tzinfo=UTC)


def node(uid: str, status: str, secs: float) -> NodeResult:
    return NodeResult(
        unique_id=uid,
        resource_type=uid.split(".")[0],
        name=uid.split(".")[-1],
        status=NodeStatus(status),
        message="Database Error\n  boom" if status == "error" else None,
        started_at=T0,
        finished_at=T0,
        execution_time=secs,
    )


def run_of(nodes: list[NodeResult], *, dbt_ok: bool):
    request = RunRequest.build(command="build", selector="daily")
    return summarize(
        run_id="r-1",
        flow_run_id="fr-1",
        project="shop",
        env="prod",
        request=request,
        target="redshift",
        nodes=nodes,
        verdict=judge(request, nodes, dbt_ok=dbt_ok, error=None),
        started_at=T0,
        finished_at=T0 + timedelta(seconds=42.5),
    )


def test_the_writer_mirrors_the_contract_the_alarms_and_dashboard_read():
    assert metrics.NAMESPACE == CONTRACT.NAMESPACE
    assert metrics.DIMENSION_SETS == CONTRACT.DIMENSION_SETS
    assert tuple((m.name, m.unit) for m in CONTRACT.RUN_METRICS) == metrics.RUN_METRICS
    assert metrics.SLOWEST_MODELS_PER_RUN == CONTRACT.SLOWEST_MODELS_PER_RUN


def test_a_failed_run_writes_its_metrics_and_its_slowest_models():
    nodes = [node(f"model.shop.m{i:02d}", "success", float(i)) for i in range(25)]
    nodes += [
        node("model.shop.broken", "error", 99.0),
        node("model.shop.after_broken", "skipped", 500.0),
        node("test.shop.slow_test", "pass", 1000.0),
        node("test.shop.warned", "warn", 0.1),
    ]
    summary = run_of(nodes, dbt_ok=False)

    emitted = metrics.emf_lines(summary.model_copy(update={"deployment": "build-prod"}), nodes)
    lines = [json.loads(line) for line in emitted]

    run, *models = lines
    [directive] = run["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == CONTRACT.NAMESPACE
    assert directive["Dimensions"] == [["Environment"], ["Environment", "Deployment"]]
    assert [m["Name"] for m in directive["Metrics"]] == [m.name for m in CONTRACT.RUN_METRICS]
    assert run["_aws"]["Timestamp"] == int((T0 + timedelta(seconds=42.5)).timestamp() * 1000)
    assert {k: run[k] for k in ("Environment", "Deployment", "Project", "FlowRunId", "RunId")} == {
        "Environment": "prod",
        "Deployment": CONTRACT.deployment("build", "prod"),
        "Project": "shop",
        "FlowRunId": "fr-1",
        "RunId": "r-1",
    }
    assert (run["RunSucceeded"], run["RunFailed"]) == (0, 1)
    assert (run["RunDurationSeconds"], run["NodesFailed"], run["NodesWarned"]) == (42.5, 1, 1)
    # Every metric the directive names has its value on the line (CloudWatch drops it else).
    assert all(isinstance(run[m["Name"]], int | float) for m in directive["Metrics"])

    # Models only, skipped ones left out, slowest first, at most the contract's number.
    assert len(models) == CONTRACT.SLOWEST_MODELS_PER_RUN
    assert [m[CONTRACT.MODEL] for m in models[:2]] == ["model.shop.broken", "model.shop.m24"]
    assert all("_aws" not in m and m["Deployment"] == "build-prod" for m in models)
    assert models[0][CONTRACT.MODEL_DURATION_SECONDS] == 99.0


def test_a_run_no_deployment_started_is_filed_as_ad_hoc_and_a_passing_run_succeeds():
    nodes = [node("model.shop.a", "success", 1.0), node("test.shop.t", "warn", 0.5)]
    out = io.StringIO()
    metrics.write(metrics.emf_lines(run_of(nodes, dbt_ok=True), nodes), out)
    run = json.loads(out.getvalue().splitlines()[0])
    assert (run["Deployment"], run["RunSucceeded"], run["RunFailed"]) == ("ad-hoc", 1, 0)
    assert out.getvalue().endswith("\n") and len(out.getvalue().splitlines()) == 2


@pytest.mark.parametrize(
    ("environ", "on"),
    [
        ({}, False),
        ({"ECS_CONTAINER_METADATA_URI_V4": "http://169.254.170.2/v4/x"}, True),
        (
            {"ECS_CONTAINER_METADATA_URI_V4": "http://169.254.170.2/v4/x", "FERRY_METRICS": "0"},
            False,
        ),
        ({"FERRY_METRICS": "true"}, True),
    ],
)
def test_metrics_are_written_in_ecs_unless_switched_off(monkeypatch, environ, on):
    for name in ("ECS_CONTAINER_METADATA_URI_V4", "FERRY_METRICS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert FerrySettings.from_env().run.metrics is on
