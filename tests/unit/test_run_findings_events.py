"""What a run tells the alerts about its history: the freshness outcome once per stale period,
one event per kind of finding, and their counts in the run's EMF line.

The events are captured where ferry hands them to Prefect (`emit_event`), with Prefect's
runtime answering as inside a flow run; everything of ferry's runs for real.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from flows.dbt.nodes import NodeResult, NodeStatus
from flows.history.signals import Regression, VolumeAnomaly
from flows.prefect import events
from flows.run import metrics
from flows.run.request import RunRequest
from flows.run.summary import RunSummary, summarize
from flows.run.verdict import TimeLimit, judge

T0 = datetime(2026, 11, 1, 6, 0, tzinfo=UTC)
FLOW_RUN_ID = "6f0c1a52-0000-4000-8000-000000000001"
ORDERS = "source.shop.raw.orders"
CUSTOMERS = "source.shop.raw.customers"
REGRESSIONS = [
    Regression(unique_id="model.shop.fct_orders", s=42.5, usual_s=10.0, runs=20),
    Regression(unique_id="model.shop.dim_customers", s=31.0, usual_s=12.25, runs=7),
]
ANOMALIES = [
    VolumeAnomaly(
        unique_id="model.shop.stg_orders",
        kind="nothing_new",
        rows=0,
        usual_rows=1200.0,
        deviation=16.19,
        runs=20,
    )
]


@pytest.fixture
def emitted(monkeypatch) -> list[dict[str, Any]]:
    """Every event ferry emits, as Prefect's `emit_event` receives it, inside a flow run."""
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(events, "emit_event", lambda **event: sent.append(event))
    monkeypatch.setattr(events.flow_run, "get_id", lambda: FLOW_RUN_ID)
    monkeypatch.setattr(events.flow_run, "get_name", lambda: "daring-fox")
    monkeypatch.setattr(
        events.flow_run,
        "get_flow_run_ui_url",
        lambda: f"https://prefect.example.com/runs/flow-run/{FLOW_RUN_ID}",
    )
    return sent


def node(uid: str, status: str, resource_type: str | None = None) -> NodeResult:
    return NodeResult(
        unique_id=uid,
        resource_type=resource_type or uid.split(".")[0],
        name=uid.split(".")[-1],
        status=NodeStatus(status),
        message="Source is 30 hours old (warn after 24 hours)" if status == "warn" else None,
        started_at=T0,
        finished_at=T0,
        execution_time=0.5,
    )


def summary_of(command: str, nodes: list[NodeResult], **extra: Any) -> RunSummary:
    request = RunRequest.build(command=command)
    return summarize(
        run_id="r-1",
        flow_run_id=FLOW_RUN_ID,
        project="shop",
        env="prod",
        request=request,
        target="prod",
        nodes=nodes,
        verdict=judge(request, nodes, dbt_ok=True, error=None),
        started_at=T0,
        finished_at=T0 + timedelta(seconds=30),
        artifacts="s3://ferry-artifacts/dbt/shop/prod/runs/2026-11-01/r-1",
        report="s3://ferry-artifacts/dbt/shop/prod/report/index.html",
        **extra,
    )


def freshness_warned(newly_stale: list[str] | None) -> RunSummary:
    nodes = [node(ORDERS, "warn"), node(CUSTOMERS, "warn"), node("source.shop.raw.items", "pass")]
    return summary_of("source freshness", nodes, newly_stale=newly_stale)


def build_with(**findings: Any) -> RunSummary:
    nodes = [node("model.shop.fct_orders", "success"), node("model.shop.stg_orders", "success")]
    return summary_of("build", nodes, **findings)


# --- the outcome of a freshness run --------------------------------------------------------------


def test_a_freshness_run_with_nothing_newly_stale_is_still_stale(emitted):
    events.emit_outcome(freshness_warned(newly_stale=[]))

    [event] = emitted
    assert event["event"] == "ferry.dbt.freshness.still-stale" == events.STILL_STALE
    assert event["payload"]["newly_stale"] == []
    assert [n["unique_id"] for n in event["payload"]["warned"]] == [ORDERS, CUSTOMERS]


def test_a_freshness_run_with_a_newly_stale_source_warns_and_names_it(emitted):
    events.emit_outcome(freshness_warned(newly_stale=[ORDERS]))

    [event] = emitted
    assert event["event"] == "ferry.dbt.freshness.warned"
    assert event["payload"]["newly_stale"] == [ORDERS]
    assert event["payload"]["outcome"] == "warnings"
    assert event["resource"] == {
        "prefect.resource.id": f"prefect.flow-run.{FLOW_RUN_ID}",
        "prefect.resource.name": "daring-fox",
        "ferry.env": "prod",
        "ferry.command": "source freshness",
        "ferry.project": "shop",
    }


def test_a_freshness_run_that_does_not_know_what_is_new_warns(emitted):
    """None: the stale set could not be read, so every stale source is news."""
    events.emit_outcome(freshness_warned(newly_stale=None))

    [event] = emitted
    assert event["event"] == "ferry.dbt.freshness.warned"
    assert event["payload"]["newly_stale"] is None


def test_a_failed_freshness_run_with_nothing_newly_stale_is_still_stale(emitted):
    nodes = [node(ORDERS, "error")]
    events.emit_outcome(summary_of("source freshness", nodes, newly_stale=[]))

    assert [e["event"] for e in emitted] == [events.STILL_STALE]


def test_a_freshness_run_that_errored_still_alerts(emitted):
    """dbt's own error is not a stale period: it is never silenced."""
    request = RunRequest.build(command="source freshness")
    summary = summary_of("source freshness", [], newly_stale=[]).model_copy(
        update={
            "outcome": judge(request, [], dbt_ok=False, error="boom").outcome,
            "error": "boom",
        }
    )

    events.emit_outcome(summary)

    assert [e["event"] for e in emitted] == ["ferry.dbt.freshness.failed"]


def test_a_freshness_run_dbt_failed_without_a_stale_source_still_alerts(emitted):
    """dbt failed with no failed node and no error text (every source it checked is fresh):
    nothing was alerted before, so this is no stale period to keep quiet about."""
    request = RunRequest.build(command="source freshness")
    nodes = [node(ORDERS, "pass")]
    verdict = judge(request, nodes, dbt_ok=False, error=None)
    summary = summary_of("source freshness", nodes, newly_stale=[]).model_copy(
        update={"outcome": verdict.outcome, "verdict": verdict.sentence}
    )

    events.emit_outcome(summary)

    assert [e["event"] for e in emitted] == ["ferry.dbt.freshness.failed"]


def test_a_freshness_run_that_timed_out_still_alerts(emitted):
    """The time limit clears the error (the verdict says it in words); the sources it checked
    before it stopped were already stale, but the run itself failed."""
    request = RunRequest.build(command="source freshness")
    nodes = [node(ORDERS, "warn")]
    verdict = judge(
        request,
        nodes,
        dbt_ok=False,
        error=None,
        time_limit=TimeLimit(600.0, "dbt source freshness"),
    )
    summary = summary_of("source freshness", nodes, newly_stale=[]).model_copy(
        update={"outcome": verdict.outcome, "verdict": verdict.sentence, "timed_out": True}
    )

    events.emit_outcome(summary)

    assert [e["event"] for e in emitted] == ["ferry.dbt.freshness.failed"]


def test_other_commands_carry_no_newly_stale(emitted):
    events.emit_outcome(build_with())

    [event] = emitted
    assert event["event"] == "ferry.dbt.run.succeeded"
    assert "newly_stale" not in event["payload"]


# --- findings against the history ----------------------------------------------------------------


def test_regressions_alone_are_one_timing_event_naming_each_node(emitted):
    events.emit_findings(build_with(regressions=REGRESSIONS))

    [event] = emitted
    assert event["event"] == "ferry.dbt.timing.regressed" == events.REGRESSED
    payload = event["payload"]
    assert payload["verdict"] == "2 node(s) slower than usual in dbt build"
    assert payload["nodes"] == [
        {
            "unique_id": "model.shop.fct_orders",
            "s": 42.5,
            "usual_s": 10.0,
            "runs": 20,
            "text": "model.shop.fct_orders: 42.5 s, usually 10.0 s",
        },
        {
            "unique_id": "model.shop.dim_customers",
            "s": 31.0,
            "usual_s": 12.25,
            "runs": 7,
            "text": "model.shop.dim_customers: 31.0 s, usually 12.2 s",
        },
    ]
    assert payload["report"] == "s3://ferry-artifacts/dbt/shop/prod/report/index.html"
    assert (payload["env"], payload["project"], payload["command"]) == ("prod", "shop", "build")
    assert payload["flow_run_url"] == f"https://prefect.example.com/runs/flow-run/{FLOW_RUN_ID}"
    assert event["resource"]["prefect.resource.id"] == f"prefect.flow-run.{FLOW_RUN_ID}"


def test_anomalies_are_one_volume_event_and_both_kinds_are_two(emitted):
    events.emit_findings(build_with(regressions=REGRESSIONS, anomalies=ANOMALIES))

    assert [e["event"] for e in emitted] == [events.REGRESSED, events.ANOMALOUS]
    volume = emitted[1]["payload"]
    assert volume["verdict"] == "1 node(s) with unusual row counts in dbt build"
    assert volume["nodes"] == [
        {
            "unique_id": "model.shop.stg_orders",
            "kind": "nothing_new",
            "rows": 0,
            "usual_rows": 1200.0,
            "deviation": 16.19,
            "runs": 20,
            "text": "model.shop.stg_orders: 0 rows, usually 1,200 "
            "(did its sources deliver nothing new?)",
        }
    ]


def test_no_findings_no_event(emitted):
    events.emit_findings(build_with())

    assert emitted == []


def test_outside_a_flow_run_nothing_is_emitted(emitted, monkeypatch):
    monkeypatch.setattr(events.flow_run, "get_id", lambda: None)

    events.emit_findings(build_with(regressions=REGRESSIONS))
    events.emit_outcome(freshness_warned(newly_stale=[ORDERS]))

    assert emitted == []


# --- the run's metrics ---------------------------------------------------------------------------


def run_metrics(summary: RunSummary) -> dict[str, Any]:
    first = metrics.emf_lines(summary.model_copy(update={"deployment": "build-prod"}), [])[0]
    return json.loads(first)


def test_the_emf_line_counts_regressions_and_anomalies():
    line = run_metrics(build_with(regressions=REGRESSIONS, anomalies=ANOMALIES))

    assert (line["TimingRegressions"], line["VolumeAnomalies"]) == (2, 1)
    names = [m["Name"] for m in line["_aws"]["CloudWatchMetrics"][0]["Metrics"]]
    assert {"TimingRegressions", "VolumeAnomalies"} <= set(names)


def test_the_emf_line_counts_zero_without_findings():
    line = run_metrics(build_with())

    assert (line["TimingRegressions"], line["VolumeAnomalies"]) == (0, 0)
