"""The local stack behind `make demo`: the real thing on 127.0.0.1, started and stopped by pid.

A Prefect server, a `process` work pool with its worker, the `*-local` deployments from
prefect.yaml, the automations with a local webhook receiver as their channel. Every process it
starts is recorded in a pid file under the stack's home and stopped by that pid alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

from flows.exit_codes import ExitCode
from flows.prefect import server as prefect_server

LOCAL_DEPLOYMENTS = (
    "run-local",
    "build-local",
    "build-changed-local",
    "freshness-local",
    "retry-local",
    "docs-local",
    "rollback-local",
    "part-local",
)
POOL = "ferry-local"

Say = Callable[[str], None]
"""Where the stack reports its steps, a line each: the CLI passes print; tests record them."""


def _silent(line: str) -> None:
    pass


@dataclass(frozen=True)
class Stack:
    home: Path
    port: int
    repo: Path

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def flow_run_url(self, flow_run_id: str) -> str:
        return f"{self.ui_url}/runs/flow-run/{flow_run_id}"

    @property
    def alerts_file(self) -> Path:
        return self.home / "alerts.jsonl"

    def channel_env(self) -> dict[str, str]:
        """Every channel of automations.yaml, pointed at the local receiver.

        Slack posts to /slack and the generic webhook to /alerts; e-mail has no local
        stand-in, so its key is a placeholder and its sends fail on the server, harmlessly.
        """
        receiver = f"http://127.0.0.1:{self.port + 1}"
        return {
            "FERRY_SLACK_WEBHOOK_URL": f"{receiver}/slack",
            "FERRY_ALERT_WEBHOOK_URL": f"{receiver}/alerts",
            "FERRY_ALERT_WEBHOOK_TOKEN": "local-demo",
            "FERRY_SENDGRID_API_KEY": "local-demo-no-email",
        }

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "PREFECT_API_URL": self.api_url,
            "PREFECT_UI_URL": f"http://127.0.0.1:{self.port}",
            "FERRY_DUCKDB_PATH": str(self.home / "shop.duckdb"),
            # The worker's runs keep everything they write under the stack's home.
            "FERRY_ARTIFACTS": str(self.home / "artifacts"),
            "FERRY_WORK_DIR": str(self.home / "runs"),
            "FERRY_TARGET_PATH": str(self.home / "target"),
            # The worker looks for scheduled runs every 2 s instead of 10: a snappier demo.
            "PREFECT_WORKER_QUERY_SECONDS": "2",
        }


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def _run(stack: Stack, *args: str, extra_env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        list(args),
        cwd=stack.repo,
        env={**stack.env(), **(extra_env or {})},
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(args[:4])} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
        )
    return proc.stdout


def _start_background(stack: Stack, name: str, args: list[str]) -> int:
    """Starts a long-running helper in its own process group; records its pid."""
    pid_file = stack.home / f"{name}.pid"
    if pid_file.is_file() and prefect_server.alive(int(pid_file.read_text())):
        return int(pid_file.read_text())
    log = (stack.home / f"{name}.log").open("ab")
    proc = subprocess.Popen(
        args,
        cwd=stack.repo,
        env=stack.env(),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    pid_file.write_text(str(proc.pid))
    return proc.pid


def up(stack: Stack, say: Say = _silent) -> None:
    """Brings the stack up; each step is idempotent, so running it twice is harmless.

    Args:
        stack: Where and on which ports.
        say: Told each step as it is done, the UI's address first.
    """
    stack.home.mkdir(parents=True, exist_ok=True)
    server_home = stack.home / "prefect"
    if prefect_server.running(server_home) is None:
        say(f"Prefect server: starting, its UI will be at {stack.ui_url} (about 30 s)")
        prefect_server.start(server_home, stack.port, ui=True)
    say(f"Prefect server: up, UI at {stack.ui_url}")
    _start_background(
        stack,
        "receiver",
        [
            sys.executable,
            "-m",
            "flows.prefect.local_stack",
            "receiver",
            "--port",
            str(stack.port + 1),
            "--out",
            str(stack.alerts_file),
        ],
    )
    _run(stack, _bin("prefect"), "work-pool", "create", POOL, "--type", "process", "--overwrite")
    _start_background(stack, "worker", [_bin("prefect"), "worker", "start", "--pool", POOL])
    say(f"work pool {POOL}: its worker started (log: {stack.home / 'worker.log'})")
    names = [arg for name in LOCAL_DEPLOYMENTS for arg in ("--name", name)]
    _run(stack, _bin("prefect"), "--no-prompt", "deploy", "--prefect-file", "prefect.yaml", *names)
    say(f"deployments: {', '.join(LOCAL_DEPLOYMENTS)}")
    channels = stack.channel_env()
    _run(stack, _bin("ferry"), "alerts", "channels", "apply", extra_env=channels)
    _run(stack, _bin("ferry"), "alerts", "automations", "apply", extra_env=channels)
    say(
        "alerts: the automations of automations.yaml, their channels posting to a local "
        f"receiver (http://127.0.0.1:{stack.port + 1}, kept in {stack.alerts_file})"
    )


def down(home: Path) -> list[str]:
    """Stops what `up` started, by pid; harmless when nothing runs."""
    stopped = []
    for name in ("worker", "receiver"):
        pid_file = home / f"{name}.pid"
        if pid_file.is_file():
            pid = int(pid_file.read_text())
            if prefect_server.alive(pid):
                prefect_server.stop(pid)  # its process group: SIGTERM, then SIGKILL
                stopped.append(name)
            pid_file.unlink(missing_ok=True)
    if prefect_server.stop_recorded(home / "prefect"):
        stopped.append("prefect server")
    return stopped


def run_deployment(
    stack: Stack,
    name: str,
    params: dict[str, Any],
    timeout: float = 600,
    on_created: Callable[[dict[str, Any]], None] | None = None,
    job_variables: dict[str, Any] | None = None,
) -> dict:
    """Starts a flow run of `dbt/<name>` and waits for its final state.

    Args:
        stack: The stack whose API to use.
        name: The deployment, without the flow's name (`run-local`).
        params: The flow run's parameters.
        timeout: Seconds to wait for a final state.
        on_created: Called with the new flow run as soon as it exists, before it is waited for.
        job_variables: This run's own, over the deployment's (e.g. {"env": {...}}).

    Returns:
        The flow run, as the API returns it, in its final state.

    Raises:
        TimeoutError: no final state within `timeout`.
    """
    client = prefect_server.api_client(stack.api_url)
    deployment = client.get(f"/deployments/name/dbt/{name}").raise_for_status().json()
    request = {"parameters": params, "job_variables": job_variables or {}}
    run = (
        client.post(f"/deployments/{deployment['id']}/create_flow_run", json=request)
        .raise_for_status()
        .json()
    )
    if on_created is not None:
        on_created(run)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = client.get(f"/flow_runs/{run['id']}").raise_for_status().json()
        if current["state_type"] in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}:
            return current
        time.sleep(1)
    raise TimeoutError(f"flow run {run['id']} of {name} did not finish in {timeout:.0f} s")


def wait_for_alert(
    stack: Stack, flow_run_id: str, timeout: float = 60, subject_containing: str = ""
) -> dict | None:
    """The first alert the receiver got that names this flow run (and whose subject holds
    `subject_containing`: a run may have a warning and a timing alert)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stack.alerts_file.is_file():
            for line in stack.alerts_file.read_text().splitlines():
                alert = json.loads(line)
                if (
                    alert["path"] == "/alerts"
                    and flow_run_id in json.dumps(alert)
                    and subject_containing in str(alert["body"].get("subject", ""))
                ):
                    return alert
        time.sleep(0.5)
    return None


class _Receiver(BaseHTTPRequestHandler):
    out: Path

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0))).decode()
        try:
            parsed: Any = json.loads(body)
        except ValueError:
            parsed = body
        with self.out.open("a") as fh:
            fh.write(json.dumps({"path": self.path, "received_at": time.time(), "body": parsed}))
            fh.write("\n")
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def serve_receiver(port: int, out: Path) -> None:
    """A webhook receiver for the demo: each POST becomes a line of `out`."""
    handler = type("Receiver", (_Receiver,), {"out": out})
    HTTPServer(("127.0.0.1", port), handler).serve_forever()


if __name__ == "__main__":
    if sys.argv[1:2] == ["receiver"]:
        serve_receiver(
            int(sys.argv[sys.argv.index("--port") + 1]), Path(sys.argv[sys.argv.index("--out") + 1])
        )


def demo(stack: Stack, say: Say = _silent) -> ExitCode:
    """`make demo`: the stack up, one selector run that passes and one made to fail, its alert.

    Args:
        stack: Where and on which ports.
        say: Told each step as it happens, a line each: the UI's address first, then each
            run's link as it starts and its final state, then the alert.

    Returns:
        The exit code: FAILED when no alert arrives within 60 s of the failed run.
    """
    up(stack, say)
    generator = stack.repo / "dbt_project" / "scripts" / "generate_raw_data.py"
    duckdb_path = stack.home / "shop.duckdb"
    _run(stack, sys.executable, str(generator), "--duckdb-path", str(duckdb_path))
    say(f"raw data: the example project's raw tables, generated into {duckdb_path}")
    _demo_run(stack, say, "run-local --selector daily", {"selector": "daily"})
    failing = {"selector": "daily", "vars": {"fail_models": ["int_orders_enriched"]}}
    bad = _demo_run(stack, say, "run-local made to fail (int_orders_enriched)", failing)
    say("waiting for the failed run's alert (up to 60 s)")
    alert = wait_for_alert(stack, bad["id"])
    if alert is None:
        say("no alert arrived within 60 s of the failed run")
        return ExitCode.FAILED
    body = alert["body"]
    say("alert received:")
    if isinstance(body, dict):
        say(f"  subject: {body.get('subject', '')}")
        say("  body:")
        for line in str(body.get("text", body)).splitlines():
            say(f"    {line}")
    else:
        say(f"  {body}")
    say(f"Prefect UI: {stack.ui_url} ('make down' stops the stack)")
    return ExitCode.OK


def _demo_run(stack: Stack, say: Say, label: str, params: dict[str, Any]) -> dict:
    """One run of the demo: its link as soon as it exists, its final state when it ends."""
    run = run_deployment(
        stack,
        "run-local",
        params,
        on_created=lambda created: say(f"{label}: started {stack.flow_run_url(created['id'])}"),
    )
    say(f"{label}: {run['state_name']}: {run['state']['message']}")
    return run
