"""The local stack end to end, as `make demo` leaves it: server, process worker, deployments,
automations, webhook receiver. One stack for the module: `ferry stack demo` brings it up and makes
its two runs, whose transcript and alert the first tests read; the later tests use the stack it
leaves running."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from fnmatch import fnmatch
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.dbt.commands import DbtCommand
from flows.exit_codes import ExitCode
from flows.prefect import local_stack
from flows.prefect import server as prefect_server
from flows.prefect.holds import WRITERS, holds
from flows.prefect.server import free_port
from flows.run.holds import Writes
from flows.run.summary import RunSummary
from tests.conftest import REPO
from tests.e2e.conftest import FERRY, Api

pytestmark = pytest.mark.e2e

FAILING = {"selector": "daily", "vars": {"fail_models": ["int_orders_enriched"]}}


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


def _user_env() -> dict[str, str]:
    """A user's shell: none of the test session's PREFECT_* or FERRY_* settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "FERRY_"))}


@dataclass(frozen=True)
class Demo:
    """What `ferry stack demo` did: its exit code, its lines as they arrived, the stack it left."""

    stack: local_stack.Stack
    returncode: int
    lines: list[tuple[float, str]]  # (arrival, line)
    stderr: str

    @property
    def transcript(self) -> str:
        return "\n".join(text for _, text in self.lines)

    def run_links(self) -> list[tuple[float, str]]:
        """(arrival, flow run id) of each run link the demo printed, in order."""
        link = re.compile(rf"{re.escape(self.stack.ui_url)}/runs/flow-run/([0-9a-f-]{{36}})$")
        return [(at, m.group(1)) for at, text in self.lines if (m := link.search(text))]


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Iterator[Demo]:
    home, port = tmp_path_factory.mktemp("stack") / "demo", _port_pair()
    stack = local_stack.Stack(home=home, port=port, repo=REPO)
    proc = subprocess.Popen(
        [str(FERRY), "stack", "demo", "--home", str(home), "--port", str(port)],
        cwd=REPO, env=_user_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stderr is not None
        lines = [(time.time(), line.rstrip("\n")) for line in proc.stdout]
        stderr = proc.stderr.read()
        yield Demo(stack, proc.wait(timeout=60), lines, stderr)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        local_stack.down(home)


@pytest.fixture(scope="module")
def stack(demo: Demo) -> local_stack.Stack:
    assert demo.returncode == ExitCode.OK, demo.transcript + demo.stderr
    return demo.stack


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_the_demo_says_each_step_as_it_happens(demo):
    transcript = demo.transcript
    print(f"\n{transcript}")
    assert demo.returncode == ExitCode.OK, transcript + demo.stderr
    said = [text for _, text in demo.lines]
    ui = demo.stack.ui_url
    assert ui in said[0], transcript  # the address first: the runs can be watched live
    steps = [
        "Prefect server: up",
        "work pool ferry-local",
        "deployments: run-local",
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
    api = prefect_server.api_client(demo.stack.api_url)
    links = demo.run_links()
    assert len(links) == 2, transcript
    for at, flow_run_id in links:
        run = api.get(f"/flow_runs/{flow_run_id}").raise_for_status().json()
        assert at < _time(run["end_time"]).timestamp(), (flow_run_id, run["state"])


def test_the_demos_failing_run_alerts_once_and_its_passing_run_warns(demo, stack):
    """The demo's runs: `run-local --selector daily`, then the same made to fail."""
    [(_, ok_id), (_, bad_id)] = demo.run_links()
    api = prefect_server.api_client(stack.api_url)
    ok = api.get(f"/flow_runs/{ok_id}").raise_for_status().json()
    assert ok["state_type"] == "COMPLETED", ok["state"]
    body = {"flow_runs": {"id": {"any_": [ok_id]}}, "sort": "EXPECTED_START_TIME_ASC"}
    tasks = api.post("/task_runs/filter", json=body).raise_for_status().json()
    first_node = min(_time(t["start_time"]) for t in tasks if t["start_time"])
    to_first_node = (first_node - _time(ok["created"])).total_seconds()
    print(f"\ndeployment run -> first dbt node: {to_first_node:.1f} s")

    bad = api.get(f"/flow_runs/{bad_id}").raise_for_status().json()
    assert bad["state_type"] == "FAILED"
    assert "model.shop.int_orders_enriched (" in bad["state"]["message"]
    alert = local_stack.wait_for_alert(stack, bad_id, timeout=60)
    assert alert is not None, "no alert within 60 s of the failed run"
    latency = alert["received_at"] - _time(bad["end_time"]).timestamp()
    print(f"alert latency (failed state -> webhook received): {latency:.2f} s")
    text = json.dumps(alert["body"])
    assert "model.shop.int_orders_enriched" in text
    assert "ferry_injected_failure__int_orders_enriched" in text  # its first error line
    # One notification per run, never one per node: counted once the server has acted on every
    # event of both runs an automation could fire on, so a second alert, however late, counts.
    assert _wait_until(lambda: _ended(api, [ok_id, bad_id]), timeout=60), "runs' processes live"
    marker = _post_marker(api)  # after both runs' processes ended, so after all they sent
    assert _wait_until(lambda: _events(api, resource={"id": [marker]}), timeout=60), marker
    owed = ["not asked yet"]

    def settled() -> bool:
        owed[:] = _owed_alerts(api, [ok_id, bad_id])
        return not owed

    assert _wait_until(settled, timeout=120), owed
    received = [json.loads(line) for line in stack.alerts_file.read_text().splitlines()]
    alerts = [a for a in received if a["path"] == "/alerts" and bad_id in json.dumps(a)]
    assert len(alerts) == 1, alerts  # on the webhook channel; Slack got its own one
    # the passing run had a warn-severity test: one warning-level notification, not an error
    [warning] = [a for a in received if a["path"] == "/alerts" and ok_id in json.dumps(a)]
    assert "warn" in warning["body"]["subject"].lower()
    assert "test.shop.assert_orders_are_paid_in_full" in json.dumps(warning)


_ACTED = ("prefect.automation.action.executed", "prefect.automation.action.failed")


def _events(api, **filters) -> list[dict]:
    """Every event the server has stored that `filters` (an EventFilter's fields) select."""
    body = {"filter": {"occurred": {"since": "2000-01-01T00:00:00Z"}, **filters}, "limit": 50}
    page = api.post("/events/filter", json=body).raise_for_status().json()
    found = page["events"]
    while page.get("next_page"):
        page = api.get(page["next_page"]).raise_for_status().json()
        found += page["events"]
    return found


def _ended(api, flow_run_ids: list[str]) -> bool:
    """The runs' processes have exited: whatever they had to send the server, they sent."""
    for flow_run_id in flow_run_ids:
        run = api.get(f"/flow_runs/{flow_run_id}").raise_for_status().json()
        assert run["infrastructure_pid"], run  # the process worker's pid of the run's process
        try:
            os.kill(int(str(run["infrastructure_pid"]).rsplit(":", 1)[-1]), 0)
        except ProcessLookupError:
            continue
        return False
    return True


def _post_marker(api) -> str:
    """An event of no automation's, sent now; its resource id. The server stores the events it
    receives in the order they arrived: once this one is stored, so is every one before it."""
    marker = str(uuid.uuid4())
    event = {
        "id": marker,
        "occurred": datetime.now(UTC).isoformat(),
        "event": "ferry.test.marker",
        "resource": {"prefect.resource.id": f"ferry.test.{marker}"},
    }
    api.post("/events", json=[event]).raise_for_status()
    return f"ferry.test.{marker}"


def _matches(labels: dict, spec: dict) -> bool:
    """A resource's labels against an automation's `match` (glob values, one or a list)."""
    return all(
        any(
            fnmatch(labels.get(label, ""), value)
            for value in ([want] if isinstance(want, str) else want)
        )
        for label, want in spec.items()
    )


def _owed_alerts(api, flow_run_ids: list[str]) -> list[str]:
    """What the server's automations still owe the runs, empty once it owes nothing: for each
    stored event about a run (as its resource or a related one) that an enabled reactive
    automation expects and matches, a firing of that automation (its prefect.automation.triggered
    event) whose every action has executed or failed (an action's event comes after its
    notification was sent and answered). Each run has such an event: its outcome's."""
    automations = [
        a
        for a in api.post("/automations/filter", json={}).raise_for_status().json()
        if a["enabled"] and a["trigger"].get("posture") == "Reactive"
    ]
    expected = sorted({name.rstrip("*") for a in automations for name in a["trigger"]["expect"]})
    runs = [f"prefect.flow-run.{flow_run_id}" for flow_run_id in flow_run_ids]
    events = _events(api, any_resource={"id": runs}, event={"prefix": expected})
    causes = [f"prefect.event.{event['id']}" for event in events]
    acts = ["prefect.automation.triggered", *_ACTED]
    caused = _events(api, any_resource={"id": causes}, event={"name": acts}) if causes else []
    owed: list[str] = []
    alerting: set[str] = set()
    for event, cause in zip(events, causes, strict=True):
        for automation in automations:
            trigger = automation["trigger"]
            if not any(fnmatch(event["event"], name) for name in trigger["expect"]):
                continue
            if not _matches(event["resource"], trigger.get("match") or {}):
                continue
            alerting |= {r["prefect.resource.id"] for r in [event["resource"], *event["related"]]}
            its = [
                e
                for e in caused
                if e["resource"]["prefect.resource.id"] == f"prefect.automation.{automation['id']}"
                and any(r["prefect.resource.id"] == cause for r in e["related"])
            ]
            firings = sum(e["event"] == "prefect.automation.triggered" for e in its)
            acted = sum(e["event"] in _ACTED for e in its)
            if not firings or acted < firings * len(automation["actions"]):
                name = automation["name"]
                owed.append(
                    f"{name!r} on {event['event']} ({cause}): {firings} fired, {acted} acted"
                )
    owed += [f"no event about {run} an automation fires on" for run in runs if run not in alerting]
    return owed


def _wait_until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def _state_type(api, flow_run_id: str) -> str:
    return api.get(f"/flow_runs/{flow_run_id}").raise_for_status().json()["state_type"]


def _process_of_run_alive(flow_run_id: str) -> bool:
    """Whether a process runs the flow run: the worker gives it PREFECT__FLOW_RUN_ID."""
    needle = f"PREFECT__FLOW_RUN_ID={flow_run_id}".encode()
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if needle in environ.read_bytes():
                return True
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return False


def _all_logs(api, flow_run_id: str) -> list[dict]:
    """Every log line of a flow run, oldest first."""
    logs: list[dict] = []
    while True:
        body = {"logs": {"flow_run_id": {"any_": [flow_run_id]}}, "limit": 200,
                "offset": len(logs), "sort": "TIMESTAMP_ASC"}  # fmt: skip
        page = api.post("/logs/filter", json=body).raise_for_status().json()
        logs += page
        if len(page) < 200:
            return logs


def test_a_failed_or_refused_runs_log_ends_with_its_verdict_not_a_traceback(demo, stack):
    """The run page is where users look first: a deployment run that failed (the demo's) or
    was refused (a selection that matches nothing) logs its verdict and its failed nodes as
    errors, and no engine traceback after them."""
    api = prefect_server.api_client(stack.api_url)
    [_, (_, failed_id)] = demo.run_links()
    deployment = api.get("/deployments/name/dbt/run-local").raise_for_status().json()
    nothing = {"parameters": {"selector": "", "select": "no_such_model"}}
    refused_id = (
        api.post(f"/deployments/{deployment['id']}/create_flow_run", json=nothing)
        .raise_for_status()
        .json()["id"]
    )
    for run_id, verdict in (
        (failed_id, "model.shop.int_orders_enriched ("),
        (refused_id, "no_such_model"),
    ):
        # Once the run is final and its process has exited, every line it wrote is in.
        assert _wait_until(lambda r=run_id: _state_type(api, r) == "FAILED", 300), run_id
        assert _wait_until(lambda r=run_id: not _process_of_run_alive(r), 120), run_id
        run = api.get(f"/flow_runs/{run_id}").raise_for_status().json()
        assert run["state_type"] == "FAILED" and verdict in run["state"]["message"], run["state"]
        logs = _all_logs(api, run_id)
        text = "\n".join(log["message"] for log in logs)
        assert "Traceback" not in text and "Engine execution" not in text, text[-3000:]
        errors = [log["message"] for log in logs if log["level"] >= 40]
        assert errors, text[-3000:]
        for message in errors:  # the failed nodes, the verdict, Prefect's final state: no more
            assert message.startswith(
                ("error model.", "fail test.", "Finished in state Failed")
            ) or message.endswith("; nothing was run"), message


def test_a_model_slowed_on_purpose_is_alerted_as_slower_than_usual_and_no_other(stack):
    """run-local builds dim_customers and what it reads with dim_customers made 4 s slower;
    the demo's runs before it are the history. A regression needs one earlier run (the
    default is 5) and 2 s (default 10), set for this run only as a deployment's env would."""
    run = local_stack.run_deployment(
        stack,
        "run-local",
        {"select": "+dim_customers", "vars": {"slow_models": ["dim_customers"], "slow_seconds": 4}},
        timeout=300,
        job_variables={"env": {"FERRY_HISTORY_MIN_RUNS": "1", "FERRY_REGRESSION_FLOOR_S": "2"}},
    )
    run_id = run["id"]
    assert run["state_type"] == "COMPLETED", run["state"]

    alert = local_stack.wait_for_alert(
        stack, run_id, timeout=60, subject_containing="slower than usual"
    )
    assert alert is not None, "no timing-regression alert within 60 s of the run"
    body = alert["body"]["text"]
    print(f"\n{alert['body']['subject']}\n{body}")
    named = re.findall(r"^- (\S+): ([\d.]+) s, usually ([\d.]+) s", body, re.MULTILINE)
    assert [node for node, _, _ in named] == ["model.shop.dim_customers"], body
    [(_, took, usual)] = named
    assert float(took) >= 4.0 > 2.0 > float(usual)
    assert "report/index.html" in body  # where the refreshed report is


def test_build_changed_local_builds_once_then_finds_nothing_changed(stack):
    """The deployment as `make demo` leaves it, narrowed to dim_customers and what it reads:
    its first run marks what it built, its second has nothing to do."""
    only = {"selector": "", "select": "+dim_customers"}
    first = local_stack.run_deployment(stack, "build-changed-local", only, timeout=300)
    assert first["state_type"] == "COMPLETED", first["state"]
    second = local_stack.run_deployment(stack, "build-changed-local", only, timeout=300)
    assert second["state_type"] == "COMPLETED", second["state"]
    message = second["state"]["message"]
    assert message.startswith("dbt build ran no nodes (nothing changed:"), message
    [summary_file] = (stack.home / "artifacts").glob(f"*/local/runs/*/{second['id']}/summary.json")
    summary = RunSummary.read(summary_file.read_bytes())
    assert summary.request.only_changed is True and summary.nodes_total == 0
    assert summary.changes is not None
    assert summary.changes.ran == {} and len(summary.changes.unchanged) > 10
    assert summary.deployment == "build-changed-local"  # the Prefect deployment that ran it


def test_applying_automations_twice_leaves_one_of_each(stack):
    env = {**stack.env(), **stack.channel_env()}
    out = subprocess.run(
        [str(FERRY), "alerts", "automations", "apply"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() and "created" not in out and "updated" not in out, out
    automations = prefect_server.api_client(stack.api_url).post("/automations/filter", json={})
    automations = automations.raise_for_status().json()
    names = [a["name"] for a in automations]
    assert len(names) == len(set(names)) and names


def test_a_second_build_waits_for_the_first(stack):
    """build-local admits one run at a time (its deployment's concurrency limit), whatever the
    run builds: here one seed, so the wait is the limit's and not the build's length."""
    api = prefect_server.api_client(stack.api_url)
    deployment = api.get("/deployments/name/dbt/build-local").raise_for_status().json()
    one_seed = {"parameters": {"selector": "", "select": "country_codes"}}
    runs = [
        api.post(f"/deployments/{deployment['id']}/create_flow_run", json=one_seed)
        .raise_for_status()
        .json()["id"]
        for _ in range(2)
    ]
    seen_waiting = False
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        states = [api.get(f"/flow_runs/{r}").json() for r in runs]
        if any(s["state_name"] == "AwaitingConcurrencySlot" for s in states):
            seen_waiting = True
        if all(s["state_type"] in {"COMPLETED", "FAILED", "CRASHED"} for s in states):
            break
        time.sleep(0.5)
    messages = [s["state"]["message"] for s in states]
    assert all(s["state_type"] == "COMPLETED" for s in states), messages
    assert seen_waiting, "the second build never waited for a concurrency slot"
    first, second = sorted(states, key=lambda s: s["start_time"])
    assert _time(second["start_time"]) >= _time(first["end_time"])  # never at once


def _wait_for_log(api, flow_run_id: str, containing: str, timeout: float = 60) -> str | None:
    """The first log line of a flow run containing `containing` (logs land asynchronously)."""
    body = {"logs": {"flow_run_id": {"any_": [flow_run_id]}}, "limit": 200}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        logs = api.post("/logs/filter", json=body).raise_for_status().json()
        for log in logs:
            if containing in log["message"]:
                return log["message"]
        time.sleep(0.5)
    return None


def _dbt_interval(stack, flow_run_id: str) -> tuple[datetime, datetime]:
    """When dbt executed in a flow run: its first node's start to its last node's end, from the
    task runs the run recorded (as many as its stored summary.json counts)."""
    [summary_file] = (stack.home / "artifacts").glob(f"*/local/runs/*/{flow_run_id}/summary.json")
    nodes_total = json.loads(summary_file.read_text())["nodes_total"]
    tasks = Api(stack.api_url).wait_for_task_runs(flow_run_id, nodes_total)
    assert len(tasks) == nodes_total, (len(tasks), nodes_total)
    starts = [_time(t["start_time"]) for t in tasks if t["start_time"]]
    ends = [_time(t["end_time"]) for t in tasks if t["end_time"]]
    return min(starts), max(ends)


def test_two_deployments_of_one_environment_never_write_at_once(stack):
    """build-local and run-local started together (DuckDB admits one process: one used to fail
    on the file's lock). The test holds `ferry-writer-local` itself until both runs wait for it,
    as a third writer would, so they are queued at the same moment whatever their timing."""
    api = prefect_server.api_client(stack.api_url)
    requests = {  # a few models each: what is proved is the order, not the build
        "build-local": {"selector": "", "select": "+dim_customers"},
        "run-local": {"command": "run", "select": "staging"},
    }
    deployments = {
        name: api.get(f"/deployments/name/dbt/{name}").raise_for_status().json()["id"]
        for name in requests
    }
    with (
        temporary_settings(updates={PREFECT_API_URL: stack.api_url}),
        holds("local", Writes(DbtCommand.BUILD, "duckdb", None), print, wait_s=600),
    ):
        runs = {  # back to back: the worker picks both up in the same poll
            api.post(
                f"/deployments/{deployments[name]}/create_flow_run", json={"parameters": params}
            )
            .raise_for_status()
            .json()["id"]: name
            for name, params in requests.items()
        }
        for run in runs:
            waiting = _wait_for_log(api, run, "waiting for ferry-writer-local, held by", 300)
            assert waiting is not None, f"{runs[run]} never waited for the environment"
    # let go: one run writes, the other waits on

    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        states = {r: api.get(f"/flow_runs/{r}").raise_for_status().json() for r in runs}
        if all(s["state_type"] in {"COMPLETED", "FAILED", "CRASHED"} for s in states.values()):
            break
        time.sleep(0.5)
    assert all(s["state_type"] == "COMPLETED" for s in states.values()), [
        (runs[r], s["state"]) for r, s in states.items()
    ]

    intervals = {r: _dbt_interval(stack, r) for r in runs}
    first, second = sorted(runs, key=lambda r: intervals[r][0])
    (first_start, first_end), (second_start, second_end) = intervals[first], intervals[second]
    print(
        f"\n{runs[first]} dbt {first_start:%H:%M:%S.%f} - {first_end:%H:%M:%S.%f}; "
        f"{runs[second]} dbt {second_start:%H:%M:%S.%f} - {second_end:%H:%M:%S.%f}"
    )
    assert first_end <= second_start, "two dbt invocations wrote at once"
    for run in runs:
        assert _wait_for_log(api, run, "got ferry-writer-local after waiting") is not None


def test_the_writer_limits_exist_once_the_stack_is_up(stack):
    api = prefect_server.api_client(stack.api_url)
    for env in ("local", "staging", "prod"):
        limit = api.get(f"/v2/concurrency_limits/ferry-writer-{env}").raise_for_status().json()
        assert (limit["limit"], limit["active"]) == (WRITERS, True)


def test_the_smoke_command_waits_for_the_deployments_verdict(stack):
    """`ferry release smoke`, as main.yml runs it on staging: exit 0 only for a Completed run."""

    def smoke(deployment: str, params: dict) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(FERRY), "release", "smoke", "--deployment", deployment, "--timeout", "300",
             "--params", json.dumps(params)],
            env={**stack.env(), "PREFECT_API_URL": stack.api_url},
            capture_output=True, text=True, timeout=400,
        )  # fmt: skip

    ok = smoke("dbt/run-local", {"command": "run", "select": "stg_shop__customers"})
    assert ok.returncode == ExitCode.OK, ok.stdout + ok.stderr
    assert "ended COMPLETED" in ok.stdout

    failing = smoke(
        "dbt/run-local",
        {"command": "run", "select": "int_orders_enriched", "vars": FAILING["vars"]},
    )
    assert failing.returncode == ExitCode.FAILED
    assert "ended FAILED" in failing.stdout and "int_orders_enriched" in failing.stdout
    assert failing.stderr.splitlines()[-1].startswith("ferry release smoke: flow run ")

    # The deployment's parameter schema refuses it: no run is made.
    refused = smoke("dbt/run-local", {"command": "run", "threads": "many"})
    assert refused.returncode == ExitCode.INVALID, refused.stdout + refused.stderr
    assert "Validation failed for field 'threads'" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_the_smoke_command_refuses_bad_input_and_fails_on_the_api(stack, tmp_path):
    """Bad input exits 2 before a run is made; a run that does not end Completed, or the API
    failing, exits 1. A deployment with no work pool: its run never starts."""
    prefect_api = stack.api_url
    api = prefect_server.api_client(prefect_api)
    flow = api.post("/flows/", json={"name": "ferry-smoke-probe"}).raise_for_status().json()
    schema = {
        "title": "Parameters",
        "type": "object",
        "properties": {"command": {"type": "string"}},
        "additionalProperties": False,
    }
    api.post(
        "/deployments/",
        json={
            "name": "idle",
            "flow_id": flow["id"],
            "parameter_openapi_schema": schema,
            "enforce_parameter_schema": True,
        },
    ).raise_for_status()

    def smoke(api_url: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(FERRY), "release", "smoke", *args],
            env={**os.environ, "PREFECT_API_URL": api_url, "PREFECT_HOME": str(tmp_path)},
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    idle = ("--deployment", "ferry-smoke-probe/idle")
    for result, message in (
        (smoke(prefect_api, *idle, "--params", "{command: run}"), "--params is not JSON"),
        (smoke(prefect_api, *idle, "--params", '["run"]'), "must be a JSON object"),
        (smoke(prefect_api, *idle, "--params", '{"command": 1}'), "Validation failed"),
        (smoke(prefect_api, "--deployment", "idle"), "'idle' is not flow/deployment"),
        (smoke(prefect_api, "--deployment", "dbt/nope-local"), "'dbt/nope-local' does not exist"),
        (smoke("", *idle), "set PREFECT_API_URL"),
    ):
        assert result.returncode == ExitCode.INVALID, result.stdout + result.stderr
        assert result.stderr.startswith("ferry release smoke: "), result.stderr
        assert message in result.stderr and "Traceback" not in result.stderr, result.stderr

    late = smoke(prefect_api, *idle, "--params", '{"command": "run"}', "--timeout", "1")
    assert late.returncode == ExitCode.FAILED, late.stdout + late.stderr
    assert "did not finish in time (still SCHEDULED)" in late.stderr
    closed = f"http://127.0.0.1:{free_port()}/api"
    unreachable = smoke(closed, *idle)
    assert unreachable.returncode == ExitCode.FAILED, unreachable.stdout + unreachable.stderr
    assert unreachable.stderr.startswith(f"ferry release smoke: the Prefect API at {closed} failed")
    assert "Traceback" not in late.stderr + unreachable.stderr


def _stack(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(FERRY), "stack", *args], cwd=REPO, env=_user_env(), capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip


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
        assert result.returncode == ExitCode.INVALID, result.stdout + result.stderr
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
    assert result.returncode == ExitCode.FAILED, result.stdout + result.stderr
    assert result.stderr.startswith(
        f"ferry stack up: Prefect server on port {port} did not start"
    ), result.stderr
    assert "Traceback" not in result.stderr.split("did not start", 1)[0]
    local_stack.down(tmp_path / "demo")


def _run_and_settle(stack, flow_deployment: str, params: dict) -> dict:
    """A run of `<flow>/<deployment>` in its final state, once its process has exited: every log
    line is in, and the DuckDB file is free for the next one (or for the test to read)."""
    api = prefect_server.api_client(stack.api_url)
    deployment = api.get(f"/deployments/name/{flow_deployment}").raise_for_status().json()
    run_id = (
        api.post(f"/deployments/{deployment['id']}/create_flow_run", json={"parameters": params})
        .raise_for_status()
        .json()["id"]
    )
    final = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
    assert _wait_until(lambda: _state_type(api, run_id) in final, 600), run_id
    assert _wait_until(lambda: not _process_of_run_alive(run_id), 120), run_id
    return api.get(f"/flow_runs/{run_id}").raise_for_status().json()


def _orders_read(stack) -> int:
    """fct_orders' rows as its consumers read them (`main.fct_orders`, a view of a version)."""
    import duckdb

    con = duckdb.connect(str(stack.home / "shop.duckdb"), read_only=True)
    try:
        [(count,)] = con.execute("select count(*) from main.fct_orders").fetchall()
        return int(count)
    finally:
        con.close()


def _alert(stack, subject_containing: str, timeout: float = 60) -> dict | None:
    """The first alert on the webhook channel whose subject holds `subject_containing`."""
    found: list[dict] = []

    def arrived() -> bool:
        if stack.alerts_file.is_file():
            for line in stack.alerts_file.read_text().splitlines():
                alert = json.loads(line)
                subject = str(alert["body"].get("subject", ""))
                if alert["path"] == "/alerts" and subject_containing in subject:
                    found.append(alert)
                    return True
        return False

    return found[0] if _wait_until(arrived, timeout) else None


_PUBLISHED = re.compile(r"published (r[0-9a-z]+): \d+ relation\(s\) switched at once$")
_ROLLED_BACK = (
    r"^rolled back local: consumers read {} again \(\d+ relation\(s\), publication \d+\)$"
)


def test_a_failed_blue_green_build_publishes_nothing_and_rollback_local_returns(stack):
    """build-local publishes (v1); new raw data and failing tests: the run fails, alerts that
    nothing was published, and consumers read v1 still; a passing build publishes v2; then
    rollback-local makes consumers read v1 again and alerts, a version not kept is refused
    without a traceback, and `ferry rollback` with the API alerts the same way. The builds are
    of the orders' models and what they read (the test that fails on purpose among their tests):
    what is proved is the publication, not the whole project's build."""
    orders = {"selector": "", "select": "+fct_orders +fct_order_items"}
    laps = [("start", time.monotonic())]
    api = prefect_server.api_client(stack.api_url)

    first = _run_and_settle(stack, "dbt/build-local", orders)
    assert first["state_type"] == "COMPLETED", first["state"]["message"]
    v1 = _PUBLISHED.search(first["state"]["message"])
    assert v1 is not None, first["state"]["message"]
    v1_orders = _orders_read(stack)
    laps.append(("build v1", time.monotonic()))

    generator = REPO / "dbt_project" / "scripts" / "generate_raw_data.py"
    duckdb_path = str(stack.home / "shop.duckdb")
    late = [sys.executable, str(generator), "--duckdb-path", duckdb_path, "--late-batch"]
    subprocess.run(late, cwd=REPO, env=stack.env(), check=True, capture_output=True, timeout=120)
    failed = _run_and_settle(stack, "dbt/build-local", {**orders, "vars": {"fail_tests": True}})
    assert failed["state_type"] == "FAILED", failed["state"]["message"]
    verdict = failed["state"]["message"]
    assert "test.shop.assert_order_subtotals_match_items" in verdict, verdict
    assert re.search(
        r"nothing published: consumers read what they read before \(r\w+ kept\)$", verdict
    )
    alert = local_stack.wait_for_alert(stack, failed["id"], 60, subject_containing="build failed")
    assert alert is not None, "no failure alert within 60 s"
    assert "nothing published: consumers read what they read before" in alert["body"]["text"]
    assert _orders_read(stack) == v1_orders  # its models built, consumers read v1 still
    laps.append(("late batch, failing build, its alert", time.monotonic()))

    second = _run_and_settle(stack, "dbt/build-local", orders)
    assert second["state_type"] == "COMPLETED", second["state"]["message"]
    v2 = _PUBLISHED.search(second["state"]["message"])
    assert v2 is not None and v2[1] != v1[1], second["state"]["message"]
    v2_orders = _orders_read(stack)
    assert v2_orders > v1_orders  # the late batch's orders
    laps.append(("build v2", time.monotonic()))

    back = _run_and_settle(stack, "rollback/rollback-local", {})
    assert back["state_type"] == "COMPLETED", back["state"]["message"]
    assert re.match(_ROLLED_BACK.format(v1[1]), back["state"]["message"]), back["state"]["message"]
    assert _orders_read(stack) == v1_orders
    alert = local_stack.wait_for_alert(stack, back["id"], 60, subject_containing="rolled back")
    assert alert is not None, "no rollback alert within 60 s"
    assert (
        alert["body"]["subject"] == f"[ferry local] data rolled back: consumers read {v1[1]} again"
    )
    text = alert["body"]["text"]
    assert f"Now read:    {v1[1]} (publication " in text and f"Read before: {v2[1]}\n" in text
    assert "Rolled back: by rollback-local\n" in text
    assert re.search(rf"^Run: +{re.escape(stack.ui_url)}/\S+/{back['id']}$", text, re.M), text
    laps.append(("rollback-local, its alert", time.monotonic()))

    not_kept = _run_and_settle(stack, "rollback/rollback-local", {"to": "r000000000000"})
    said = not_kept["state"]["message"]
    assert not_kept["state_type"] == "FAILED", said
    assert said.startswith(
        "rollback of local refused, nothing changed: no kept version is 'r000000000000'"
    ), said
    assert said.endswith(f"(kept: {min(v1[1], v2[1])}, {max(v1[1], v2[1])})"), said
    assert _orders_read(stack) == v1_orders
    laps.append(("rollback-local refused", time.monotonic()))

    for run in (first, failed, second, back, not_kept):
        text = "\n".join(log["message"] for log in _all_logs(api, run["id"]))
        assert "Traceback" not in text and "Engine execution" not in text, text[-3000:]

    # The CLI, with the stack's API: the same event and alert, naming where it ran.
    rollback = [str(FERRY), "rollback", "--env", "local", "--project-dir", "dbt_project",
                "--profiles-dir", "dbt_project"]  # fmt: skip
    cli = subprocess.run(
        rollback, cwd=REPO, env=stack.env(), capture_output=True, text=True, timeout=120
    )
    assert cli.returncode == ExitCode.OK, cli.stdout + cli.stderr
    assert re.match(_ROLLED_BACK.format(v2[1]), cli.stdout.strip()), cli.stdout
    assert cli.stderr == ""
    assert _orders_read(stack) == v2_orders
    alert = _alert(stack, f"consumers read {v2[1]} again")
    assert alert is not None, "no alert of `ferry rollback` within 60 s"
    assert f"Rolled back: by `ferry rollback` on {socket.gethostname()}\n" in alert["body"]["text"]
    laps.append(("ferry rollback, its alert", time.monotonic()))

    # An API that accepts and never answers: the rollback stands, the wait is bounded.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/api"
        env = {**stack.env(), "PREFECT_API_URL": url, "FERRY_PREFECT_API_WAIT_S": "2"}
        cli = subprocess.run(
            rollback, cwd=REPO, env=env, capture_output=True, text=True, timeout=120
        )
    assert cli.returncode == ExitCode.OK, cli.stdout + cli.stderr
    assert re.match(_ROLLED_BACK.format(v1[1]), cli.stdout.strip()), cli.stdout
    assert cli.stderr == (
        f"ferry rollback: rolled back, but the Prefect API at {url} did not get the rollback's "
        "event, so no alert was sent: the Prefect API did not take it within 2 s "
        "(FERRY_PREFECT_API_WAIT_S)\n"
    )
    assert _orders_read(stack) == v1_orders
    laps.append(("ferry rollback, a silent API", time.monotonic()))
    took = ", ".join(f"{name} {at - laps[i][1]:.0f} s" for i, (name, at) in enumerate(laps[1:]))
    print(f"\nblue-green and rollback: {laps[-1][1] - laps[0][1]:.0f} s ({took})")


# Last of the tests on the stack: the killed run's holds stay taken until their lease expires.
def test_a_run_killed_mid_build_ends_crashed_and_alerts(stack):
    api = prefect_server.api_client(stack.api_url)
    deployment = api.get("/deployments/name/dbt/build-local").raise_for_status().json()
    run_id = (
        api.post(f"/deployments/{deployment['id']}/create_flow_run", json={})
        .raise_for_status()
        .json()["id"]
    )
    body = {"flow_runs": {"id": {"any_": [run_id]}}, "limit": 1}
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # until dbt runs: its first node has a task run
        run = api.get(f"/flow_runs/{run_id}").raise_for_status().json()
        if run["infrastructure_pid"] and api.post("/task_runs/filter", json=body).json():
            break
        time.sleep(0.5)
    pid = int(str(run["infrastructure_pid"]).rsplit(":", 1)[-1])
    os.kill(pid, signal.SIGKILL)  # the out-of-memory killer, or ECS stopping the task
    while time.monotonic() < deadline:
        run = api.get(f"/flow_runs/{run_id}").raise_for_status().json()
        if run["state_type"] in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}:
            break
        time.sleep(0.5)
    assert run["state_type"] == "CRASHED", run["state"]
    alert = local_stack.wait_for_alert(stack, run_id, timeout=60)
    assert alert is not None, "no alert within 60 s of the crash"
    assert "crashed" in alert["body"]["subject"].lower(), alert["body"]["subject"]
