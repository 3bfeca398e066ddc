"""`ferry stack demo` (make demo) says each step as it happens, the UI's address first."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from datetime import datetime

import pytest

from flows import local_stack, prefect_server
from flows.prefect_server import free_port
from tests.conftest import REPO
from tests.e2e.conftest import FERRY

pytestmark = pytest.mark.e2e


def _port_pair() -> int:
    """A free port whose next one (the webhook receiver's) is free too."""
    while True:
        port = free_port()
        try:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue


def _time(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def test_the_demo_says_each_step_as_it_happens(tmp_path):
    home, port = tmp_path / "demo", _port_pair()
    ui = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "FERRY_"))}
    lines: list[tuple[float, str]] = []  # (arrival, line)
    proc = subprocess.Popen(
        [str(FERRY), "stack", "demo", "--home", str(home), "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append((time.time(), line.rstrip("\n")))
        stderr = proc.stderr.read() if proc.stderr else ""
        assert proc.wait(timeout=60) == 0, "\n".join(text for _, text in lines) + stderr
        said = [text for _, text in lines]
        transcript = "\n".join(said)
        print(f"\n{transcript}")

        assert ui in said[0], transcript  # the address first: the runs can be watched live
        steps = [
            "Prefect server: up",
            "work pool ferry-local",
            "deployments: dbt/run-local",
            "alerts:",
            "raw data:",
            "run-local --selector daily: started",
            "run-local --selector daily: Completed",
            "run-local made to fail (int_orders_enriched): started",
            "run-local made to fail (int_orders_enriched): Failed",
            "alert received:",
            f"Prefect UI: {ui}",
        ]
        found = [next(i for i, text in enumerate(said) if step in text) for step in steps]
        assert found == sorted(found), transcript

        # Each run's link arrives while it runs, not after it ended.
        api = prefect_server.api_client(f"{ui}/api")
        links = [
            (at, m.group(1))
            for at, text in lines
            if (m := re.search(rf"{re.escape(ui)}/runs/flow-run/([0-9a-f-]{{36}})$", text))
        ]
        assert len(links) == 2, transcript
        for at, flow_run_id in links:
            run = api.get(f"/flow_runs/{flow_run_id}").raise_for_status().json()
            assert at < _time(run["end_time"]), (flow_run_id, run["state"])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        local_stack.down(home)


def _stack(*args: str, cwd=REPO) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "FERRY_"))}
    return subprocess.run(
        [str(FERRY), "stack", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_a_home_or_port_that_cannot_be_is_refused(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for args, message in (
        (("up", "--home", str(blocker / "demo")), f"but {blocker} is a file"),
        (("demo", "--home", str(blocker)), f"but {blocker} is a file"),
        (("down", "--home", str(blocker)), f"but {blocker} is a file"),
        (("up", "--home", str(tmp_path / "demo"), "--port", "65535"), "--port 65535 is no port"),
    ):
        result = _stack(*args)
        assert result.returncode == 2, result.stdout + result.stderr
        assert result.stderr.startswith(f"ferry stack {args[0]}: "), result.stderr
        assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "demo").exists()
    assert _stack("down", "--home", str(tmp_path / "demo")).stdout == "nothing was running\n"


def test_a_server_that_cannot_start_is_a_failure(tmp_path):
    with socket.socket() as taken:  # the port is someone else's: Prefect cannot listen there
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _stack("up", "--home", str(tmp_path / "demo"), "--port", str(port))
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.startswith(
        f"ferry stack up: Prefect server on port {port} did not start"
    ), result.stderr
    assert "Traceback" not in result.stderr.split("did not start", 1)[0]
    local_stack.down(tmp_path / "demo")
