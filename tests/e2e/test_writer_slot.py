"""The writer slot against a real Prefect server: a second writer waits in line, a missing limit
lets the run go on, and an API that goes away while the slot is held neither fails the run nor
holds it up. Servers are stopped by their pid, as an outage would stop them."""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import os
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.runtime import flow_run
from prefect.settings import PREFECT_API_URL, PREFECT_CLIENT_MAX_RETRIES, temporary_settings

from flows.dbt.commands import DbtCommand
from flows.exit_codes import ExitCode
from flows.prefect import server as prefect_server
from flows.prefect import writer_slot
from tests.conftest import load_generator
from tests.e2e.conftest import FERRY

pytestmark = pytest.mark.e2e


class Heard(logging.Handler):
    """Log lines of the loggers it is attached to, with a way to wait for one."""

    def __init__(self, *loggers: str) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self._new = threading.Condition()
        self._loggers = [logging.getLogger(name) for name in loggers]

    def emit(self, record: logging.LogRecord) -> None:
        with self._new:
            self.lines.append(record.getMessage())
            self._new.notify_all()

    def wait_for(self, text: str, timeout: float) -> str | None:
        with self._new:
            self._new.wait_for(lambda: any(text in line for line in self.lines), timeout)
            return next((line for line in self.lines if text in line), None)

    def __enter__(self) -> Heard:
        for logger in self._loggers:
            logger.addHandler(self)
            logger.setLevel(logging.DEBUG)
        return self

    def __exit__(self, *exc: object) -> None:
        for logger in self._loggers:
            logger.removeHandler(self)


@pytest.fixture
def on_api(prefect_api: str) -> Iterator[str]:
    """This process talks to the session's server (threads: started in a copy of the context)."""
    with temporary_settings(updates={PREFECT_API_URL: prefect_api}):
        yield prefect_api


def apply_limits(*envs: str) -> None:
    async def apply() -> None:
        async with get_client() as client:
            await writer_slot.apply_limits(envs, client)

    asyncio.run(apply())


def acquired_by(api_url: str, flow_run_id: str, timeout: float = 30) -> bool:
    """Whether the server has the flow run's `acquired` event yet (events land asynchronously)."""
    body = {
        "filter": {
            "event": {"name": ["prefect.concurrency-limit.acquired"]},
            "related": {"id": [f"prefect.flow-run.{flow_run_id}"]},
        },
        "limit": 5,
    }
    client = prefect_server.api_client(api_url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.post("/events/filter", json=body).raise_for_status().json()["events"]:
            return True
        time.sleep(0.5)
    return False


def test_a_second_writer_of_the_environment_waits_for_the_first(on_api):
    env = f"e2e-{uuid.uuid4().hex[:8]}"
    apply_limits(env)
    name = writer_slot.limit_name(env)
    order: list[str] = []
    holder_id: list[str] = []
    writing, done = threading.Event(), threading.Event()

    @flow(name="e2e-first-writer")
    def first() -> None:
        with writer_slot.writer_slot(env, DbtCommand.BUILD, "postgres"):
            holder_id.append(str(flow_run.get_id()))
            writing.set()
            assert done.wait(60)
            order.append("first writes")

    def second() -> None:
        with writer_slot.writer_slot(env, DbtCommand.RUN, "postgres"):
            order.append("second writes")

    with Heard("flows.prefect.writer_slot") as heard, ThreadPoolExecutor(1) as pool:
        first_run = pool.submit(contextvars.copy_context().run, first)
        assert writing.wait(60) and holder_id, heard.lines
        holder = prefect_server.api_client(on_api).get(f"/flow_runs/{holder_id[0]}").json()
        assert acquired_by(on_api, holder["id"])
        waiter = threading.Thread(target=contextvars.copy_context().run, args=(second,))
        waiter.start()
        waiting = heard.wait_for(f"waiting for {name}, held by", 30)
        assert waiting == f"waiting for {name}, held by flow run {holder['name']!r}", heard.lines
        assert order == []
        done.set()
        first_run.result(timeout=60)
        waiter.join(timeout=120)
        assert not waiter.is_alive(), heard.lines
        assert heard.wait_for(f"got {name} after waiting", 5), heard.lines
    assert order == ["first writes", "second writes"]


def test_a_missing_limit_lets_the_run_go_on_and_is_not_created(on_api):
    env = f"e2e-{uuid.uuid4().hex[:8]}"
    with (
        Heard("flows.prefect.writer_slot") as heard,
        writer_slot.writer_slot(env, DbtCommand.BUILD, "x"),
    ):
        ran = True
    assert ran
    assert heard.wait_for(f"no global concurrency limit 'ferry-writer-{env}'", 1), heard.lines
    found = prefect_server.api_client(on_api).get(f"/v2/concurrency_limits/ferry-writer-{env}")
    assert found.status_code == 404


def test_the_slot_is_left_cleanly_when_the_api_went_away_while_it_was_held(tmp_path, monkeypatch):
    server = prefect_server.start(tmp_path / "server")
    # The shortest lease the server grants (renewed after 45 s), and no client retries, so
    # the renewal fails in a minute rather than in Prefect's several.
    monkeypatch.setattr(writer_slot, "LEASE_S", 60.0)
    silent: socket.socket | None = None
    try:
        settings = {PREFECT_API_URL: server.api_url, PREFECT_CLIENT_MAX_RETRIES: 0}
        with temporary_settings(updates=settings), Heard("flows", "prefect.concurrency") as heard:
            apply_limits("local")
            slot = writer_slot.writer_slot("local", DbtCommand.BUILD, "duckdb")
            slot.__enter__()
            assert heard.wait_for("holding ferry-writer-local", 5), heard.lines

            prefect_server.stop(server.pid)  # the API goes away while dbt would be writing
            renewal = heard.wait_for("Concurrency lease renewal failed", 150)
            assert renewal and "Execution will continue" in renewal, heard.lines

            # An API that takes the connection and never answers: the release gives up in time.
            silent = socket.create_server(("127.0.0.1", server.port))
            started = time.monotonic()
            slot.__exit__(None, None, None)  # never raises
            left_after = time.monotonic() - started
        assert left_after < writer_slot.RELEASE_WAIT_S + 3, left_after
        assert heard.wait_for("could not give ferry-writer-local back to the Prefect API", 1)
    finally:
        if silent is not None:
            silent.close()
        prefect_server.stop(server.pid)


def test_a_run_holding_the_slot_ends_with_its_verdict_when_the_api_goes_away(
    shop_project, tmp_path
):
    """`ferry run` as a user runs it, the API stopped as soon as dbt's first node starts."""
    db = tmp_path / "shop.duckdb"
    load_generator(shop_project).main(["--target", "duckdb", "--duckdb-path", str(db)])
    server = prefect_server.start(tmp_path / "server")
    try:
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            apply_limits("local")
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env |= {
            "PREFECT_HOME": str(tmp_path / "prefect-home"),
            "PREFECT_API_URL": server.api_url,
            "FERRY_PREFECT_API_WAIT_S": "5",
            "FERRY_DUCKDB_PATH": str(db),
            "FERRY_WORK_DIR": str(tmp_path / "runs"),
            "FERRY_PROJECT_DIR": str(shop_project),
            "FERRY_PROFILES_DIR": str(shop_project),
            "FERRY_ARTIFACTS": str(tmp_path / "artifacts"),
        }
        proc = subprocess.Popen(
            [str(FERRY), "run", "--json", "--command", "run", "--select", "staging"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        stderr: list[str] = []
        killed, killed_at = threading.Event(), []

        def read_stderr() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                stderr.append(line)
                if not killed.is_set() and " START " in line:
                    prefect_server.stop(server.pid)  # dbt writes, holding the slot
                    killed_at.append(time.monotonic())
                    killed.set()

        reader = threading.Thread(target=read_stderr, daemon=True)
        reader.start()
        assert proc.stdout is not None
        stdout = proc.stdout.read()  # until the process closes it (stderr is the reader's)
        proc.wait(timeout=60)
        ended_at = time.monotonic()
        reader.join(timeout=10)
    finally:
        prefect_server.stop(server.pid)
    err = "".join(stderr)
    assert killed.is_set(), err[-3000:]
    assert "holding ferry-writer-local" in err, err[-3000:]
    assert proc.returncode == ExitCode.OK, err[-3000:]
    # Neither giving the slot back nor the rest waits out Prefect's minute of retries: at most
    # RELEASE_WAIT_S, then FERRY_PREFECT_API_WAIT_S (5 s), and the run's own few seconds.
    assert ended_at - killed_at[0] < writer_slot.RELEASE_WAIT_S + 5 + 20, err[-3000:]
    summary = json.loads(stdout)
    assert summary["outcome"] == "success", summary["verdict"]
    assert Path(summary["artifacts"], "run_results.json").is_file()
    assert "Traceback" not in err
