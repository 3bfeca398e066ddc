"""One real Prefect server for a worker's e2e tests (starting one costs 20-30 s here).

Package-scoped: it stops when the worker moves on to the tests after e2e (pytest runs e2e
first, see pyproject.toml), rather than idling beside them at ~5% of a core.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from flows.prefect import server as prefect_server

FERRY = Path(sys.executable).with_name("ferry")


@pytest.fixture(autouse=True)
def _fresh_events_worker() -> Iterator[None]:
    """Each test's events go to the API that test talks to.

    Prefect keeps one events worker per process for a self-hosted API, its client bound to the
    URL of the first event ever emitted: a test that emitted to its own server (since stopped)
    would otherwise leave every later test of this process emitting into the void.
    """
    from prefect.events.worker import EventsWorker

    yield
    # In a thread of its own: in one with an event loop running (a browser test's playwright),
    # drain_all returns a coroutine instead of draining.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(EventsWorker.drain_all, timeout=5).result()


@pytest.fixture(scope="package")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # Expired leases are swept every second, not every 15: a killed holder's test waits for
    # its lease, not for the sweep.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PREFECT_SERVER_SERVICES_REPOSSESSOR_LOOP_SECONDS", "1")
        server = prefect_server.start(tmp_path_factory.mktemp("prefect-home"))
    try:
        yield server.api_url
    finally:
        prefect_server.stop(server.pid)


def run_ferry(api_url: str, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    """`ferry ...` in a subprocess against the test server, as a user would run it."""
    full_env = {**os.environ, "PREFECT_API_URL": api_url, **(env or {})}
    return subprocess.run(
        [str(FERRY), *args], env=full_env, cwd=cwd, capture_output=True, text=True, timeout=600
    )


class Api:
    """The few Prefect REST calls the tests read the outcome with."""

    def __init__(self, url: str):
        self.client = prefect_server.api_client(url)

    def flow_run(self, flow_run_id: str) -> dict[str, Any]:
        return self.client.get(f"/flow_runs/{flow_run_id}").raise_for_status().json()

    def task_runs(self, flow_run_id: str) -> list[dict[str, Any]]:
        body = {"flow_runs": {"id": {"any_": [flow_run_id]}}, "limit": 200}
        return self.client.post("/task_runs/filter", json=body).raise_for_status().json()

    def wait_for_task_runs(
        self, flow_run_id: str, count: int, *, final: bool = True, timeout: float = 60
    ) -> list[dict[str, Any]]:
        """Task runs are recorded from events, asynchronously: wait until all have landed."""
        deadline = time.monotonic() + timeout
        runs: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            runs = self.task_runs(flow_run_id)
            done = [r for r in runs if not final or r["state_type"] != "RUNNING"]
            if len(runs) >= count and len(done) == len(runs):
                return runs
            time.sleep(0.5)
        return runs

    def events(
        self, flow_run_id: str, prefix: str = "ferry.", timeout: float = 30, quiet: float = 3.0
    ) -> list[dict[str, Any]]:
        """Events about a flow run whose names start with `prefix`, once the stream is quiet.

        Waits for the first, then until no new one has arrived for `quiet` seconds, so a test
        asserting "exactly one" sees a second one that arrives late.
        """
        body = {
            "filter": {
                "event": {"prefix": [prefix]},
                "resource": {"id": [f"prefect.flow-run.{flow_run_id}"]},
                "occurred": {"since": "2000-01-01T00:00:00Z"},
            },
            "limit": 50,
        }
        deadline = time.monotonic() + timeout
        found: list[dict[str, Any]] = []
        changed = time.monotonic()
        while time.monotonic() < deadline:
            now = self.client.post("/events/filter", json=body).raise_for_status().json()["events"]
            if len(now) != len(found):
                found, changed = now, time.monotonic()
            elif found and time.monotonic() - changed >= quiet:
                return found
            time.sleep(0.5)
        return found

    def stored_events(
        self, event_filter: dict[str, Any], timeout: float = 30
    ) -> list[dict[str, Any]]:
        """The events matching `event_filter`, once the server has stored any: it stores events
        with a service of their own, so a task run recorded from one says nothing of the event."""
        body = {"filter": event_filter}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.client.post("/events/filter", json=body).raise_for_status().json()
            if found["events"]:
                return found["events"]
            time.sleep(0.3)
        raise AssertionError(f"no event matched {event_filter} within {timeout} s")

    def artifacts(self, flow_run_id: str) -> list[dict[str, Any]]:
        body = {"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}}
        return self.client.post("/artifacts/filter", json=body).raise_for_status().json()


@pytest.fixture(scope="package")
def api(prefect_api: str) -> Api:
    return Api(prefect_api)


def dbt_interval(artifacts: str | Path) -> tuple[datetime, datetime]:
    """When dbt's first node started and its last one ended, from a run's run_results.json."""
    results = json.loads(Path(artifacts, "run_results.json").read_text())["results"]
    times = [
        (datetime.fromisoformat(t["started_at"]), datetime.fromisoformat(t["completed_at"]))
        for r in results
        for t in r["timing"]
        if t["name"] == "execute"
    ]
    return min(s for s, _ in times), max(e for _, e in times)


def domain_models(project: Path, folder: str = "models") -> tuple[str, ...]:
    """The unique ids of a bench/domains_project.py project's models in `folder`, sorted."""
    return tuple(sorted(f"model.domains.{p.stem}" for p in (project / folder).rglob("*.sql")))


def hold_lost(why: str) -> None:
    """What a test's own hold does when it is lost: fail the test."""
    raise AssertionError(f"holds lost: {why}")
