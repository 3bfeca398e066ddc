"""The Prefect UI still opens the run page of a 2,000-node build, with its task runs, in a real
browser: the nodes reported as a run reports them (flows.prefect.node_runs), the UI that
Prefect's server serves."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.dbt.nodes import NodeResult, NodeStatus
from flows.prefect import server as prefect_server
from flows.prefect.node_runs import PrefectNodeReporter
from flows.settings import NodeReporting
from tests.conftest import REPO, load_module

pytestmark = pytest.mark.e2e

harness = load_module(REPO / "bench" / "harness.py", "bench_harness")

NODES = 2_000
# What opening the page costs the browser and the server, in CPU seconds: measured 22-25 s
# (13-18 s of wall on 2 cores, most of it the graph's first draw). CPU, not wall: on a machine
# busy with other work the same page has taken 63 s of wall. Each step's wait bounds the wall.
OPENS_WITHIN_CPU_S = 60.0
STEP_WAIT_MS = 90_000


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[prefect_server.LocalServer]:
    server = prefect_server.start(tmp_path_factory.mktemp("prefect-ui"), ui=True)
    try:
        yield server
    finally:
        prefect_server.stop(server.pid)


def _set_state(client, flow_run_id: str, state_type: str, message: str = "") -> None:
    state = {"type": state_type, "name": state_type.title(), "message": message}
    client.post(
        f"/flow_runs/{flow_run_id}/set_state", json={"state": state, "force": True}
    ).raise_for_status()


def _a_big_build(server: prefect_server.LocalServer) -> str:
    """A flow run with NODES task runs, reported as `ferry run` reports them; its id."""
    client = prefect_server.api_client(server.api_url)
    flow = client.post("/flows/", json={"name": "dbt"}).raise_for_status().json()
    body = {"flow_id": flow["id"], "name": f"build-{uuid.uuid4().hex[:6]}"}
    flow_run_id = client.post("/flow_runs/", json=body).raise_for_status().json()["id"]
    _set_state(client, flow_run_id, "RUNNING")
    start = datetime.now(UTC)
    with (
        temporary_settings(updates={PREFECT_API_URL: server.api_url}),
        PrefectNodeReporter(flow_run_id, NodeReporting.FINAL) as reporter,
    ):
        for i in range(NODES):
            began = start + timedelta(milliseconds=5 * i)
            reporter.node_finished(
                NodeResult(
                    unique_id=f"model.shop.m{i:04d}",
                    resource_type="model",
                    name=f"m{i:04d}",
                    status=NodeStatus.SUCCESS,
                    message=None,
                    started_at=began,
                    finished_at=began + timedelta(milliseconds=400),
                    execution_time=0.4,
                )
            )
    count = {"flow_runs": {"id": {"any_": [flow_run_id]}}}
    deadline = time.monotonic() + 60
    while (n := client.post("/task_runs/count", json=count).json()) < NODES:
        assert time.monotonic() < deadline, f"the server recorded {n} of {NODES} task runs"
        time.sleep(0.3)
    _set_state(client, flow_run_id, "COMPLETED", f"{NODES} of {NODES} nodes passed")
    return flow_run_id


def test_the_run_page_of_a_2000_node_build_opens_with_its_task_runs(ui_server, browser):
    flow_run_id = _a_big_build(ui_server)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        began = time.monotonic()
        cpu0 = harness.cpu_seconds_below(os.getpid())
        with page.expect_response(
            lambda r: r.url.endswith("/graph-v2"), timeout=STEP_WAIT_MS
        ) as graph:
            page.goto(f"{ui_server.ui_url}/runs/flow-run/{flow_run_id}")
        assert graph.value.ok and len(graph.value.json()["nodes"]) == NODES  # the graph's data
        page.get_by_text(f"{NODES} Task runs", exact=True).wait_for(timeout=STEP_WAIT_MS)
        page.get_by_text("Task Runs", exact=True).click()
        page.get_by_text(f"{NODES:,} Task runs", exact=True).wait_for(timeout=STEP_WAIT_MS)
        page.get_by_text(f"model.shop.m{NODES - 1:04d}", exact=True).wait_for(timeout=STEP_WAIT_MS)
        cpu = harness.cpu_seconds_below(os.getpid()) - cpu0
        opened = time.monotonic() - began
        assert cpu < OPENS_WITHIN_CPU_S, f"the run page took {cpu:.1f} CPU s ({opened:.1f} s)"
        assert page.get_by_text("Something went wrong").count() == 0
    finally:
        page.close()
