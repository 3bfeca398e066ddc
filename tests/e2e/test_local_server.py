"""ferry's local Prefect server (demo, tests, benches) records what a build reports in batches."""

from __future__ import annotations

import httpx
import pytest

from flows.prefect import server as prefect_server

pytestmark = pytest.mark.e2e


def test_the_local_server_batches_task_runs_and_events_unless_told_otherwise(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFECT_SERVER_SERVICES_EVENT_PERSISTER_FLUSH_INTERVAL", "2")
    server = prefect_server.start(tmp_path / "server")
    try:
        settings = httpx.get(f"{server.api_url}/admin/settings", timeout=10).json()
    finally:
        prefect_server.stop(server.pid)
    services = settings["server"]["services"]
    recorder, persister = services["task_run_recorder"], services["event_persister"]
    assert (recorder["batch_size"], recorder["read_batch_size"]) == (200, 200)
    assert (persister["batch_size"], persister["read_batch_size"]) == (200, 200)
    assert recorder["flush_interval"] == 1
    assert persister["flush_interval"] == 2  # the environment's value wins
