"""One build fanned out over several flow runs, on PostgreSQL, against a real Prefect server and a
process worker: the parts run as child flow runs of their parent, at once, and the parent gives
one verdict with the parts' artifacts merged; a part that crashes is named, and `retry` of the
parent runs again exactly what it left undone, in parts."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.dbt.commands import DbtCommand
from flows.exit_codes import ExitCode
from flows.prefect import holds
from flows.prefect import server as prefect_server
from flows.prefect.parts import PART_FLOW
from flows.run.holds import Writes
from tests.conftest import REPO, load_module
from tests.e2e.conftest import FERRY, Api, dbt_interval, domain_models, hold_lost

pytestmark = pytest.mark.e2e

domains_project = load_module(REPO / "bench" / "domains_project.py", "bench_domains_project")
SLEEP_MS = 2000  # each model's time in the warehouse: a domain's 6 models take about 6 s


class Parts:
    """An environment whose `part-<env>` deployment runs on a process pool of its own, with a
    worker, for a two-domain project in a PostgreSQL schema of its own."""

    def __init__(self, api_url: str, tmp: Path) -> None:
        self.api_url, self.tmp = api_url, tmp
        self.env_name = f"fan-{uuid.uuid4().hex[:8]}"
        self.pool = f"e2e-{self.env_name}"
        self.project = domains_project.generate(
            tmp / "domains", domains=2, models_per_domain=6, sleep_ms=SLEEP_MS
        )
        self.schema = f"fan_{uuid.uuid4().hex[:8]}"
        self.worker: subprocess.Popen[bytes] | None = None
        self.deployment_id: uuid.UUID | None = None

    def env(self) -> dict[str, str]:
        """What the parent and the parts run with."""
        return {
            "FERRY_ENV": self.env_name,
            "FERRY_WORK_DIR": str(self.tmp / "runs"),
            "FERRY_PROJECT_DIR": str(self.project),
            "FERRY_PROFILES_DIR": str(self.project),
            "FERRY_ARTIFACTS": str(self.tmp / "artifacts"),
            "FERRY_NODE_REPORTING": "final",
            # A part killed once it holds its nodes keeps them this long (the server's least):
            # the retry then waits for them, as it must.
            "FERRY_HOLD_LEASE_S": "60",
            "DOMAINS_PG_SCHEMA": self.schema,
        }

    def up(self) -> None:
        async def create() -> None:
            from prefect.client.schemas.actions import WorkPoolCreate

            async with get_client() as client:
                await client.create_work_pool(WorkPoolCreate(name=self.pool, type="process"))
                flow_id = await client.create_flow_from_name(PART_FLOW)
                self.deployment_id = await client.create_deployment(
                    flow_id=flow_id,
                    name=f"part-{self.env_name}",
                    entrypoint="flows/dbt_flow.py:dbt_part_flow",
                    work_pool_name=self.pool,
                    pull_steps=[
                        {
                            "prefect.deployments.steps.set_working_directory": {
                                "directory": str(REPO)
                            }
                        }
                    ],
                    job_variables={"env": self.env()},
                )
                await holds.apply_limits([self.env_name], client)

        with temporary_settings(updates={PREFECT_API_URL: self.api_url}):
            asyncio.run(create())
        log = (self.tmp / "worker.log").open("ab")
        self.worker = subprocess.Popen(
            [str(Path(sys.executable).with_name("prefect")), "worker", "start", "--pool",
             self.pool, "--prefetch-seconds", "5"],
            cwd=REPO, env={**_clean_env(), "PREFECT_API_URL": self.api_url,
                           "PREFECT_WORKER_QUERY_SECONDS": "1"},
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

    def down(self) -> None:
        if self.worker is not None and self.worker.poll() is None:
            os.killpg(self.worker.pid, signal.SIGTERM)
            try:
                self.worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.worker.pid, signal.SIGKILL)
        with psycopg2.connect(host="127.0.0.1", user="postgres", dbname="test") as conn:
            conn.autocommit = True
            conn.cursor().execute(f"drop schema if exists {self.schema} cascade")
            conn.cursor().execute(f"drop schema if exists {self.schema}_dbt_test__audit cascade")

    def ferry_run(self, *args: str) -> subprocess.Popen[str]:
        """`ferry run --json ...` as the parent, a process of its own."""
        env = {
            **_clean_env(),
            "PREFECT_HOME": str(self.tmp / "prefect-home"),
            "PREFECT_API_URL": self.api_url,
            **self.env(),
        }
        return subprocess.Popen(
            [str(FERRY), "run", "--json", *args],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "FERRY_"))}


@pytest.fixture
def parts(prefect_api: str, tmp_path: Path) -> Iterator[Parts]:
    stack = Parts(prefect_api, tmp_path)
    stack.up()
    try:
        yield stack
    finally:
        stack.down()


def _ended(proc: subprocess.Popen[str]) -> tuple[dict[str, Any], str]:
    stdout, stderr = proc.communicate(timeout=300)
    assert "Traceback" not in stderr, stderr[-3000:]
    return json.loads(stdout), stderr


def _parts_waiting(parts: Parts, count: int, timeout: float) -> list[str]:
    """The flow runs of the parts that said, through the API, that they wait for a hold."""
    api = prefect_server.api_client(parts.api_url)
    runs = {"deployments": {"id": {"any_": [str(parts.deployment_id)]}}, "limit": 10}
    deadline = time.monotonic() + timeout
    while True:
        ids = [r["id"] for r in api.post("/flow_runs/filter", json=runs).raise_for_status().json()]
        logs = {"logs": {"flow_run_id": {"any_": ids}}, "limit": 200}
        said = api.post("/logs/filter", json=logs).raise_for_status().json() if ids else []
        waiting = sorted(
            {log["flow_run_id"] for log in said if log["message"].startswith("waiting for ")}
        )
        if len(waiting) >= count or time.monotonic() > deadline:
            return waiting
        time.sleep(0.5)


def test_a_fanned_out_build_runs_its_parts_at_once_with_one_verdict(parts):
    """The test holds every model until both parts wait for them, so the parts ask at the same
    moment whatever their processes' start-up took, as two ECS tasks would once both are up."""
    api = prefect_server.api_client(parts.api_url)
    everything = Writes(DbtCommand.BUILD, "postgres", domain_models(parts.project))
    with (
        temporary_settings(updates={PREFECT_API_URL: parts.api_url}),
        holds.holds(parts.env_name, everything, hold_lost, wait_s=60),
    ):
        proc = parts.ferry_run("--fan-out", "2", "--select", "tag:domain_0 tag:domain_1")
        waiting = _parts_waiting(parts, 2, timeout=240)
        assert len(waiting) == 2, f"the parts never both waited: {waiting}"
    summary, stderr = _ended(proc)
    assert proc.returncode == ExitCode.OK, (summary["verdict"], stderr[-3000:])
    assert summary["verdict"] == "24 of 24 nodes passed", summary["verdict"]
    assert "fan_out 2: 24 node(s) in 2 parts that build independently" in stderr
    # One artifact set: the parts' results merged; each part's own artifacts linked.
    merged = json.loads(Path(summary["artifacts"], "run_results.json").read_text())
    assert len(merged["results"]) == 24
    assert [p["state"] for p in summary["parts"]] == ["Completed", "Completed"]
    own = [dbt_interval(p["artifacts"]) for p in summary["parts"]]
    domains = [
        {r["unique_id"].split(".")[-1][:2] for r in json.loads(
            Path(p["artifacts"], "run_results.json").read_text())["results"]
         if r["unique_id"].startswith("model.")}
        for p in summary["parts"]
    ]  # fmt: skip
    assert sorted(map(sorted, domains)) == [["d0"], ["d1"]]  # a domain each
    (a_start, a_end), (b_start, b_end) = own
    print(f"\nparts: {a_start:%H:%M:%S}-{a_end:%H:%M:%S}, {b_start:%H:%M:%S}-{b_end:%H:%M:%S}")
    assert a_start < b_end and b_start < a_end, "the parts did not build at once"
    # Children of the parent in Prefect, of the dbt-part flow; one outcome event, the parent's.
    selects = []
    for part in summary["parts"]:
        child = api.get(f"/flow_runs/{part['flow_run_id']}").raise_for_status().json()
        selects.append(child["parameters"]["select"])
        parent_task = api.get(f"/task_runs/{child['parent_task_run_id']}").raise_for_status()
        assert parent_task.json()["flow_run_id"] == summary["flow_run_id"]
    # Each domain lies alone in its folder: a part names it once, not node by node.
    assert sorted(selects) == ["path:models/domain_0", "path:models/domain_1"], selects
    runs = [summary["flow_run_id"], *(p["flow_run_id"] for p in summary["parts"])]
    events = Api(parts.api_url).stored_events(  # the parent's, and the parts' if they sent any
        {
            "event": {"prefix": ["ferry.dbt.run."]},
            "resource": {"id": [f"prefect.flow-run.{r}" for r in runs]},
        }
    )
    assert [e["resource"]["prefect.resource.id"] for e in events] == [
        f"prefect.flow-run.{summary['flow_run_id']}"
    ]


def test_a_part_that_crashes_is_named_and_retry_runs_what_it_left_in_parts(parts):
    api = prefect_server.api_client(parts.api_url)
    proc = parts.ferry_run("--fan-out", "2", "--select", "tag:domain_0 tag:domain_1")
    killed: list[str] = []

    def kill_a_part() -> None:
        """SIGKILL the first part's process as soon as it runs (ECS stopping the task)."""
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not killed:
            running = {"type": {"any_": ["RUNNING"]}}
            body = {"flow_runs": {"tags": {"all_": ["ferry-part"]}, "state": running}, "limit": 5}
            for run in api.post("/flow_runs/filter", json=body).json():
                if run["parameters"].get("part_of") and run["infrastructure_pid"]:
                    pid = int(str(run["infrastructure_pid"]).rsplit(":", 1)[-1])
                    os.kill(pid, signal.SIGKILL)
                    killed.append(run["name"])
                    return
            time.sleep(0.5)

    killer = threading.Thread(target=kill_a_part, daemon=True)
    killer.start()
    summary, stderr = _ended(proc)
    killer.join(timeout=10)
    assert killed, stderr[-3000:]
    assert proc.returncode == ExitCode.FAILED, stderr[-3000:]
    assert summary["verdict"].startswith("part "), summary["verdict"]
    assert f"(flow run {killed[0]!r}) crashed" in summary["verdict"], summary["verdict"]
    states = sorted(p["state"] for p in summary["parts"])
    assert states == ["Completed", "Crashed"], summary["parts"]
    merged = json.loads(Path(summary["artifacts"], "run_results.json").read_text())["results"]
    undone = {r["unique_id"] for r in merged if r["status"] != "success" and r["status"] != "pass"}
    assert undone and all(r.startswith(("model.domains.d", "test.domains.")) for r in undone)

    again = parts.ferry_run("--command", "retry", "--fan-out", "2")
    retried, stderr = _ended(again)
    assert again.returncode == ExitCode.OK, (retried["verdict"], stderr[-3000:])
    assert retried["retry_of"] == summary["run_id"]
    rerun = json.loads(Path(retried["artifacts"], "run_results.json").read_text())["results"]
    assert {r["unique_id"] for r in rerun} == undone  # exactly what the crash left undone
    assert len(retried["parts"]) == 1  # one domain left: one part


def test_a_fan_out_with_no_deployment_for_its_parts_is_refused_before_anything_runs(
    prefect_api, tmp_path
):
    lonely = Parts(prefect_api, tmp_path)  # never up: its server has no part-<env> deployment
    proc = lonely.ferry_run("--fan-out", "2", "--select", "tag:domain_0 tag:domain_1")
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == ExitCode.INVALID, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    verdict = json.loads(stdout)["verdict"]
    assert f"the deployment 'dbt-part/part-{lonely.env_name}'" in verdict, verdict
    assert "deploy it (`ferry release deploy --env" in verdict, verdict
