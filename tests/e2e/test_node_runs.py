"""The node reporter against a real server: task runs recorded from events, in every mode."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from prefect.events.worker import EventsWorker
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.dbt.nodes import NodeResult, NodeStarted, NodeStatus
from flows.prefect import node_runs
from flows.prefect.node_runs import PrefectNodeReporter
from flows.settings import NodeReporting

pytestmark = pytest.mark.e2e


@pytest.fixture
def flow_run_id(api) -> str:
    flow = api.client.post("/flows/", json={"name": "node-runs-test"}).raise_for_status().json()
    run = api.client.post(
        "/flow_runs/", json={"flow_id": flow["id"], "name": f"t-{uuid.uuid4().hex[:6]}"}
    ).raise_for_status()
    return run.json()["id"]


def started(uid: str) -> NodeStarted:
    return NodeStarted(uid, "model", uid.split(".")[-1], datetime.now(UTC))


def finished(uid: str, status: str, message: str | None = None) -> NodeResult:
    now = datetime.now(UTC)
    return NodeResult(
        unique_id=uid,
        resource_type="model",
        name=uid.split(".")[-1],
        status=NodeStatus(status),
        message=message,
        started_at=now - timedelta(seconds=2),
        finished_at=now,
        execution_time=2.0,
    )


def wait_for(api, flow_run_id: str, predicate, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = {r["name"]: r for r in api.task_runs(flow_run_id)}
        if predicate(runs):
            return runs
        time.sleep(0.3)
    raise AssertionError(f"task runs never matched: {runs}")


def test_live_mode_shows_slow_nodes_running_and_fast_nodes_only_final(
    prefect_api, api, flow_run_id
):
    with temporary_settings(updates={PREFECT_API_URL: prefect_api}):
        with PrefectNodeReporter(flow_run_id, NodeReporting.LIVE, running_after_s=0.5) as rep:
            rep.node_started(started("model.p.slow"))
            rep.node_started(started("model.p.fast"))
            rep.node_finished(finished("model.p.fast", "error", "Database Error\n  boom"))
            runs = wait_for(
                api,
                flow_run_id,
                lambda r: (
                    r.get("model.p.slow", {}).get("state_type") == "RUNNING" and "model.p.fast" in r
                ),
            )
            assert runs["model.p.fast"]["state_type"] == "FAILED"
            assert "boom" in runs["model.p.fast"]["state"]["message"]
            rep.node_finished(finished("model.p.slow", "success"))
        assert rep.emitted == 3  # slow: Running + Completed; fast: only Failed
    runs = wait_for(api, flow_run_id, lambda r: r["model.p.slow"]["state_type"] == "COMPLETED")
    slow = runs["model.p.slow"]
    assert slow["flow_run_id"] == flow_run_id and slow["total_run_time"] == pytest.approx(2.0)
    assert set(slow["tags"]) == {"dbt", "dbt:model"}


@pytest.mark.parametrize(("mode", "events"), [(NodeReporting.FINAL, 1), (NodeReporting.OFF, 0)])
def test_final_and_off_modes(prefect_api, api, flow_run_id, mode, events):
    with temporary_settings(updates={PREFECT_API_URL: prefect_api}):
        with PrefectNodeReporter(flow_run_id, mode) as rep:
            rep.node_started(started("model.p.one"))
            rep.node_finished(finished("model.p.one", "warn", "Got 3 results"))
        assert rep.emitted == events
    if events:
        runs = wait_for(api, flow_run_id, lambda r: "model.p.one" in r)
        assert runs["model.p.one"]["state_name"] == "Warned"
    else:
        # A later node reported in final mode on the same run: once the server has recorded it,
        # it has recorded whatever reached it before - and in off mode that must be nothing.
        with (
            temporary_settings(updates={PREFECT_API_URL: prefect_api}),
            PrefectNodeReporter(flow_run_id, NodeReporting.FINAL) as marker,
        ):
            marker.node_finished(finished("model.p.marker", "success"))
        runs = wait_for(api, flow_run_id, lambda r: "model.p.marker" in r)
        assert set(runs) == {"model.p.marker"}


def test_nodes_go_in_batches_related_as_prefect_relates_its_own_task_runs(
    prefect_api, api, flow_run_id
):
    nodes = [f"model.p.m{i:03d}" for i in range(150)]  # the filter reads up to 200
    with (
        temporary_settings(updates={PREFECT_API_URL: prefect_api}),
        PrefectNodeReporter(flow_run_id, NodeReporting.FINAL) as rep,
    ):
        for uid in nodes:
            rep.node_finished(finished(uid, "success"))
    assert rep.emitted == 150 and 1 <= rep.batches <= 3  # one request per half second or so
    runs = wait_for(api, flow_run_id, lambda r: len(r) == 150)
    assert all(r["state_name"] == "Completed" for r in runs.values())
    [event] = api.stored_events(
        {
            "event": {"name": ["prefect.task-run.Completed"]},
            "resource": {"labels": {"prefect.resource.name": ["model.p.m000"]}},
            "related": {"id": [f"prefect.flow-run.{flow_run_id}"]},
        },
    )
    related = {r["prefect.resource.id"]: r for r in event["related"]}
    assert related[f"prefect.flow-run.{flow_run_id}"]["prefect.resource.role"] == "flow-run"
    assert "prefect.tag.dbt" in related


def test_an_api_that_refuses_batches_still_gets_every_node(
    prefect_api, api, flow_run_id, monkeypatch, caplog
):
    monkeypatch.setattr(node_runs, "_EVENTS_ROUTE", "/events/not-a-route")
    with temporary_settings(updates={PREFECT_API_URL: prefect_api}):
        with PrefectNodeReporter(flow_run_id, NodeReporting.FINAL) as rep:
            for i in range(20):
                rep.node_finished(finished(f"model.p.m{i:02d}", "success"))
        EventsWorker.drain_all()  # the events worker's queue, as the process's end drains it
    assert rep.batches == 0
    runs = wait_for(api, flow_run_id, lambda r: len(r) == 20)
    assert {r["state_name"] for r in runs.values()} == {"Completed"}
    [warning] = [r for r in caplog.records if "did not take a batch" in r.getMessage()]
    assert "one by one" in warning.getMessage()


@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
def test_an_api_that_is_gone_costs_the_run_at_most_the_last_send_wait(caplog):
    from flows.prefect.server import free_port

    gone = f"http://127.0.0.1:{free_port()}/api"  # nothing listens there
    began = time.monotonic()
    with (
        temporary_settings(updates={PREFECT_API_URL: gone}),
        PrefectNodeReporter(str(uuid.uuid4()), NodeReporting.FINAL) as rep,
    ):
        for i in range(5):
            rep.node_finished(finished(f"model.p.m{i}", "success"))
    assert time.monotonic() - began < node_runs._LAST_SEND_S + 2
    assert rep.batches == 0
    assert any("Prefect API" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")
