"""FERRY_FLOW_TIMEOUT_S wherever it fires: parse, back-off, dbt, storing the artifacts.

Each time the run ends TimedOut with its verdict, its artifacts stored and exit 1 - never a
`KeyboardInterrupt` traceback. PostgreSQL plays the warehouse (its queries can be cancelled);
a port nobody listens on plays a warehouse that refuses connections; moto behind a proxy that
holds every connection for a while plays a slow S3.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from flows.exit_codes import ExitCode
from flows.prefect.server import free_port
from flows.run.holds import Writes
from flows.run.owner import run
from flows.run.request import RunRequest
from flows.run.verdict import Outcome
from tests.conftest import drop_pg_schemas, make_settings, new_pg_schema
from tests.integration.faults import TcpProxy, lighthouse_on

pytestmark = pytest.mark.integration

FERRY = Path(sys.executable).with_name("ferry")


def lighthouse(tmp_path: Path, *, port: int = 5432, slow: bool = False) -> Path:
    return lighthouse_on(port, tmp_path, slow=slow)


class FerryRun:
    """`ferry run --no-prefect --json` on PostgreSQL under FERRY_FLOW_TIMEOUT_S, started now;
    a thread waits for it, so its time is its own, whenever a test asks for its end."""

    def __init__(self, project: Path, tmp_path: Path, timeout_s: float, *args: str, **env: str):
        command = [str(FERRY), "run", "--no-prefect", "--json", "--target", "pg", *args]
        environment = {
            **os.environ,
            "FERRY_PROJECT_DIR": str(project),
            "FERRY_PROFILES_DIR": str(project),
            "FERRY_ARTIFACTS": str(tmp_path / "artifacts"),
            "FERRY_WORK_DIR": str(tmp_path / "runs"),
            "FERRY_FLOW_TIMEOUT_S": str(timeout_s),
            **env,
        }
        began = time.monotonic()
        self.proc = subprocess.Popen(
            command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self._result: tuple[subprocess.CompletedProcess[str], float] | None = None

        def wait() -> None:
            stdout, stderr = self.proc.communicate(timeout=300)
            done = subprocess.CompletedProcess(command, self.proc.returncode, stdout, stderr)
            self._result = done, time.monotonic() - began

        self._waiter = threading.Thread(target=wait, daemon=True)
        self._waiter.start()

    def ended(self) -> tuple[subprocess.CompletedProcess[str], float]:
        """The run's exit and output, and the seconds from its start to its end."""
        self._waiter.join(timeout=310)
        assert self._result is not None, "the run did not end within 300 s"
        return self._result

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self._waiter.join(timeout=30)


def ferry_run(project: Path, tmp_path: Path, timeout_s: float, *args: str, **env: str):
    return FerryRun(project, tmp_path, timeout_s, *args, **env).ended()


@pytest.fixture(scope="module", autouse=True)
def waiting_runs(tmp_path_factory) -> Iterator[dict[str, FerryRun]]:
    """The two runs that wait out a 30 s limit start together as the module starts, so they wait
    side by side (and beside the module's other tests), not one after the other."""
    with socket.socket() as sock:  # a port nobody listens on: the warehouse refuses
        sock.bind(("127.0.0.1", 0))
        refusing = sock.getsockname()[1]
    schemas: list[str] = []

    def start(name: str, timeout_s: float, *args: str, port: int = 5432, slow: bool = False, **env):
        tmp = tmp_path_factory.mktemp(name)
        schemas.append(new_pg_schema())
        project = lighthouse(tmp, port=port, slow=slow)
        return FerryRun(project, tmp, timeout_s, *args, FERRY_PG_SCHEMA=schemas[-1], **env)

    runs = {
        # 30 s: room for a parse from scratch on a loaded machine before the first attempt fails
        "back-off": start("back_off", 30, port=refusing, FERRY_TRANSIENT_RETRY_DELAY_S="600"),
        "dbt": start("dbt", 30, "--command", "run", "--select", "slow_beam", slow=True),
    }
    yield runs
    for waiting in runs.values():
        waiting.stop()
    for schema in schemas:
        drop_pg_schemas(schema)


def assert_timed_out_cleanly(
    proc: subprocess.CompletedProcess[str], where: str, stored: set[str] | None = None
) -> dict:
    assert proc.returncode == ExitCode.FAILED, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "KeyboardInterrupt" not in proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["timed_out"] and summary["outcome"] == "failed"
    assert f"(FERRY_FLOW_TIMEOUT_S) during {where}" in summary["verdict"], summary["verdict"]
    expected = stored or {"summary.json", "dbt.log", "manifest.json"}
    present = {p.name for p in Path(summary["artifacts"]).iterdir()}
    assert expected <= present, present
    return summary


def test_a_limit_during_the_parse_ends_timed_out(tmp_path, pg_schema):
    proc, _ = ferry_run(lighthouse(tmp_path), tmp_path, 0.5)
    assert_timed_out_cleanly(proc, "dbt parse", stored={"summary.json"})  # dbt had no log yet


def test_a_limit_while_the_artifacts_are_stored_still_stores_them(tmp_path, pg_schema):
    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    # S3 answers nothing for the first 55 s: the run's 40 s limit passes while it stores (a
    # limit well above the seed's time, even on a busy machine, so it never fires in dbt).
    proxy = TcpProxy(("127.0.0.1", port), hold_until=time.monotonic() + 55)
    try:
        s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}")
        s3.create_bucket(Bucket="ferry-artifacts")
        settings = make_settings(
            lighthouse(tmp_path),
            tmp_path,
            artifacts="s3://ferry-artifacts/dbt",
            s3_endpoint_url=f"http://127.0.0.1:{proxy.port}",
            flow_timeout_s=40,
        )
        summary = run(
            RunRequest.build(command="seed", target="pg", select="keepers"), settings, run_id="r1"
        ).summary
    finally:
        proxy.close()
        moto.stop()
    assert summary.timed_out and summary.outcome is Outcome.FAILED
    assert "during storing the artifacts" in summary.verdict, summary.verdict
    assert "1 of 1 nodes passed" in summary.verdict  # what dbt did is still said
    assert not summary.artifact_errors, summary.artifact_errors
    stored = json.loads((tmp_path / "runs" / "r1" / "artifacts" / "summary.json").read_text())
    assert stored["timed_out"] and stored["verdict"] == summary.verdict


def test_a_limit_off_the_main_thread_says_it_cannot_interrupt_dbt(tmp_path, pg_schema, caplog):
    # A limit far shorter than dbt's parse, however fast the machine: it passes during a step.
    settings = make_settings(lighthouse(tmp_path), tmp_path, flow_timeout_s=0.05)
    reports = []
    with caplog.at_level(logging.WARNING):
        worker = threading.Thread(
            target=lambda: reports.append(
                run(RunRequest.build(command="run", target="pg"), settings).summary
            )
        )
        worker.start()
        worker.join(timeout=120)
    assert "cannot interrupt dbt" in caplog.text and "main thread" in caplog.text
    [summary] = reports
    # checked between steps: the step it passed in finishes, then nothing more starts
    assert summary.timed_out and summary.nodes_total == 0, summary.verdict


# The module's waiting runs have been running since it started: by now they have ended.
def test_a_limit_during_the_back_off_between_retries_ends_timed_out(waiting_runs):
    proc, elapsed = waiting_runs["back-off"].ended()
    summary = assert_timed_out_cleanly(proc, "the back-off between transient retries")
    assert "onnection refused" in summary["verdict"]  # what dbt saw before the limit
    assert elapsed < 120, elapsed  # the limit, not the 600 s back-off


def test_a_limit_while_dbt_runs_cancels_the_query(waiting_runs):
    proc, elapsed = waiting_runs["dbt"].ended()
    summary = assert_timed_out_cleanly(
        proc, "dbt run", stored={"summary.json", "dbt.log", "manifest.json", "run_results.json"}
    )
    assert "dbt cancelled its queries" in summary["verdict"]
    assert elapsed < 90, elapsed  # the query was cancelled, not waited for (120 s)


def test_holds_that_lapse_stop_dbt_with_a_verdict_that_says_why(tmp_path, pg_schema):
    """The run's holds call `on_lost` (as flows/prefect/holds.py does when it cannot renew its
    lease in time) while a 120 s query runs: dbt cancels it, the run fails saying why."""
    why = "its hold on 1 node(s) of ferry-writer-test could not be renewed for 48 s (test)"
    given: list[Writes] = []

    @contextlib.contextmanager
    def lapsing(writes: Writes, on_lost: Callable[[str], None]) -> Iterator[None]:
        given.append(writes)
        timer = threading.Timer(3.0, on_lost, args=(why,))
        timer.start()
        try:
            yield
        finally:
            timer.cancel()

    project = lighthouse(tmp_path, slow=True)
    started = time.monotonic()
    report = run(
        RunRequest.build(command="run", target="pg", select="slow_beam"),
        make_settings(project, tmp_path),
        holds=lapsing,
    )
    summary = report.summary
    assert time.monotonic() - started < 60  # the query was cancelled, not waited for (120 s)
    assert [w.nodes for w in given] == [("model.lighthouse.slow_beam",)]
    assert summary.outcome is Outcome.FAILED and not summary.timed_out
    assert summary.verdict.endswith(why), summary.verdict
    assert Path(summary.artifacts, "run_results.json").is_file()
