"""A run's holds against a real Prefect server: a writer of shared nodes waits in line and says
for whom, one of other nodes does not, a wait has its limit, a killed holder's nodes come free
with its lease, a missing limit lets the run go on, and an API that goes away neither fails a
run that holds nor keeps one waiting. Servers are stopped by their pid, as an outage would."""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.runtime import flow_run
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.dbt.commands import DbtCommand
from flows.exit_codes import ExitCode
from flows.prefect import holds
from flows.prefect import server as prefect_server
from flows.run.holds import NotStarted, Writes
from tests.conftest import REPO, load_generator, load_module
from tests.e2e.conftest import FERRY, Api, dbt_interval, domain_models, hold_lost

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
            await holds.apply_limits(envs, client)

    asyncio.run(apply())


LEASE_S = 60.0  # the shortest lease the server grants
_HOLDER = """
import sys, threading
from flows.dbt.commands import DbtCommand
from flows.prefect.holds import holds
from flows.run.holds import Writes
env, lease = sys.argv[1], float(sys.argv[2])
nodes = Writes(DbtCommand.BUILD, "postgres", ("model.p.a",))
with holds(env, nodes, print, wait_s=30, lease_s=lease):
    print("holding", flush=True)
    threading.Event().wait()
"""


@dataclass
class Killed:
    """A holder killed while it held a node, and when the next run was given that node."""

    killed_at: float
    freed_at: list[float]
    waiter: threading.Thread


@pytest.fixture(scope="module", autouse=True)
def killed_holder(prefect_api: str) -> Iterator[Killed]:
    """A process that holds a node, killed with SIGKILL while it holds (the out-of-memory
    killer, ECS stopping the task) as this module starts, and a run that waits for that node
    meanwhile: the lease runs out while the other tests run, and the last one checks when."""
    env = f"e2e-{uuid.uuid4().hex[:8]}"
    nodes = Writes(DbtCommand.BUILD, "postgres", ("model.p.a",))
    with temporary_settings(updates={PREFECT_API_URL: prefect_api}):
        apply_limits(env)
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, env, str(LEASE_S)],
        env={**os.environ, "PREFECT_API_URL": prefect_api}, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    freed_at: list[float] = []

    def wait_for_the_node() -> None:
        with (
            temporary_settings(updates={PREFECT_API_URL: prefect_api}),
            holds.holds(env, nodes, hold_lost, wait_s=LEASE_S + 60),
        ):
            freed_at.append(time.monotonic())

    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        os.kill(holder.pid, signal.SIGKILL)
        killed = Killed(time.monotonic(), freed_at, threading.Thread(target=wait_for_the_node))
        killed.waiter.start()
        yield killed
    finally:
        holder.kill()
        holder.wait()


def wait_for_taken(api_url: str, env: str, flow_run_id: str) -> None:
    """Until the server has stored the flow run's `ferry.holds.taken` event; fails after 30 s."""
    event_filter = {
        "event": {"name": ["ferry.holds.taken"]},
        "resource": {"id": [f"ferry.environment.{env}"]},
        "related": {"id": [f"prefect.flow-run.{flow_run_id}"]},
    }
    Api(api_url).stored_events(event_filter)


def test_a_writer_of_shared_nodes_waits_and_names_who_holds_them(on_api):
    env = f"e2e-{uuid.uuid4().hex[:8]}"
    apply_limits(env)
    mine = Writes(DbtCommand.BUILD, "postgres", ("model.p.a", "model.p.b", "model.p.c"))
    shared = Writes(DbtCommand.RUN, "postgres", ("model.p.c", "model.p.d"))
    other = Writes(DbtCommand.RUN, "postgres", ("model.p.e",))
    order: list[str] = []
    holder_id: list[str] = []
    writing, done = threading.Event(), threading.Event()

    @flow(name="e2e-first-writer")
    def first() -> None:
        with holds.holds(env, mine, hold_lost, wait_s=60):
            holder_id.append(str(flow_run.get_id()))
            writing.set()
            assert done.wait(60)
            order.append("first writes")

    def second() -> None:
        with holds.holds(env, shared, hold_lost, wait_s=60):
            order.append("second writes")

    with Heard("flows.prefect.holds") as heard, ThreadPoolExecutor(1) as pool:
        first_run = pool.submit(contextvars.copy_context().run, first)
        assert writing.wait(60) and holder_id, heard.lines
        holder = prefect_server.api_client(on_api).get(f"/flow_runs/{holder_id[0]}").json()
        wait_for_taken(on_api, env, holder["id"])
        # Nodes no one holds: taken at once, while the first run writes.
        with holds.holds(env, other, hold_lost, wait_s=5):
            order.append("other nodes written")
        waiter = threading.Thread(target=contextvars.copy_context().run, args=(second,))
        waiter.start()
        waiting = heard.wait_for("waiting for 2 node(s)", 30)
        assert waiting == (
            f"waiting for 2 node(s) of ferry-writer-{env}, held by flow run "
            f"{holder['name']!r} (model.p.c)"
        ), heard.lines
        assert order == ["other nodes written"]
        done.set()
        first_run.result(timeout=60)
        waiter.join(timeout=60)
        assert not waiter.is_alive(), heard.lines
        assert heard.wait_for(f"got 2 node(s) of ferry-writer-{env} after waiting", 5)
    assert order == ["other nodes written", "first writes", "second writes"]


def test_a_run_waits_no_longer_than_its_limit_and_says_for_what(on_api):
    env = f"e2e-{uuid.uuid4().hex[:8]}"
    apply_limits(env)
    nodes = Writes(DbtCommand.BUILD, "postgres", ("model.p.a", "model.p.b"))
    with holds.holds(env, nodes, hold_lost, wait_s=5):
        started = time.monotonic()
        with pytest.raises(NotStarted) as refused, holds.holds(env, nodes, hold_lost, wait_s=2):
            raise AssertionError("given nodes another run holds")
        waited = time.monotonic() - started
    assert 2 <= waited < 2 + holds.POLL_S + 2, waited
    assert str(refused.value).startswith(
        f"waited 2 s (FERRY_WAIT_S) for 2 node(s) of ferry-writer-{env}"
    )
    assert str(refused.value).endswith("; nothing was run")


def test_a_missing_limit_lets_the_run_go_on_and_is_not_created(on_api):
    env = f"e2e-{uuid.uuid4().hex[:8]}"
    nodes = Writes(DbtCommand.BUILD, "postgres", ("model.p.a",))
    with Heard("flows.prefect.holds") as heard, holds.holds(env, nodes, hold_lost, wait_s=5):
        ran = True
    assert ran
    assert heard.wait_for(f"no global concurrency limit 'ferry-writer-{env}'", 1), heard.lines
    api = prefect_server.api_client(on_api)
    assert api.get(f"/v2/concurrency_limits/ferry-writer-{env}").status_code == 404
    assert api.get(f"/v2/concurrency_limits/ferry-writer-{env}:model.p.a").status_code == 404


def test_an_api_gone_ends_a_wait_and_a_release_in_bounded_time(on_api):
    """The run's API moves from the session's server to one nobody answers at, then to one
    that takes the connection and never answers, while it holds its node."""
    env = f"e2e-{uuid.uuid4().hex[:8]}"
    apply_limits(env)
    nodes = Writes(DbtCommand.BUILD, "postgres", ("model.p.a",))
    with Heard("flows") as heard, socket.create_server(("127.0.0.1", 0)) as silent:
        held = holds.holds(env, nodes, hold_lost, wait_s=30)
        held.__enter__()
        assert heard.wait_for(f"holding 1 node(s) of ferry-writer-{env}", 5), heard.lines

        gone = f"http://127.0.0.1:{prefect_server.free_port()}/api"  # nobody listens there
        with temporary_settings(updates={PREFECT_API_URL: gone}):
            started = time.monotonic()
            waiting = holds.holds(env, nodes, hold_lost, wait_s=4)
            with pytest.raises(NotStarted) as refused, waiting:
                raise AssertionError("given nodes while the API is gone")
            assert time.monotonic() - started < 4 + holds.POLL_S + 12
        assert "the Prefect API did not answer for" in str(refused.value)

        # An API that takes the connection and never answers: the release gives up in time.
        never = f"http://127.0.0.1:{silent.getsockname()[1]}/api"
        with temporary_settings(updates={PREFECT_API_URL: never}):
            started = time.monotonic()
            held.__exit__(None, None, None)  # never raises
            left_after = time.monotonic() - started
    assert left_after < holds.RELEASE_WAIT_S + 3, left_after
    assert heard.wait_for(f"could not give 1 node(s) of ferry-writer-{env} back", 1)


def test_a_run_holding_the_environment_ends_with_its_verdict_when_the_api_goes_away(
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
                    prefect_server.stop(server.pid)  # dbt writes, holding the environment
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
    assert "holding ferry-writer-local" in err, err[-3000:]  # DuckDB: the whole environment
    assert proc.returncode == ExitCode.OK, err[-3000:]
    # Neither giving the holds back nor the rest waits out Prefect's minute of retries: at most
    # RELEASE_WAIT_S, then FERRY_PREFECT_API_WAIT_S (5 s), and the run's own few seconds.
    assert ended_at - killed_at[0] < holds.RELEASE_WAIT_S + 5 + 20, err[-3000:]
    summary = json.loads(stdout)
    assert summary["outcome"] == "success", summary["verdict"]
    assert Path(summary["artifacts"], "run_results.json").is_file()
    assert "Traceback" not in err


# --- runs of one environment on PostgreSQL, as `ferry run` runs them --------------------------

domains_project = load_module(REPO / "bench" / "domains_project.py", "bench_domains_project")
SLEEP_MS = 2000  # each model's time in the warehouse: a domain's build takes about 6 s


@pytest.fixture
def domains(tmp_path: Path) -> Iterator[Path]:
    """Two domains of 6 models each (2 chains of 3), in a schema of their own."""
    project = domains_project.generate(
        tmp_path / "domains", domains=2, models_per_domain=6, sleep_ms=SLEEP_MS
    )
    schema = f"holds_{uuid.uuid4().hex[:8]}"
    (project / ".schema").write_text(schema)
    try:
        yield project
    finally:
        with psycopg2.connect(host="127.0.0.1", user="postgres", dbname="test") as conn:
            conn.autocommit = True
            conn.cursor().execute(f"drop schema if exists {schema} cascade")
            conn.cursor().execute(f"drop schema if exists {schema}_dbt_test__audit cascade")


def _ferry_run(
    api_url: str, project: Path, env_name: str, select: str, tmp: Path, **more: str
) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env |= {
        "PREFECT_HOME": str(tmp / "prefect-home"),
        "PREFECT_API_URL": api_url,
        "FERRY_ENV": env_name,
        "FERRY_WORK_DIR": str(tmp / "runs"),
        "FERRY_PROJECT_DIR": str(project),
        "FERRY_PROFILES_DIR": str(project),
        "FERRY_ARTIFACTS": str(tmp / "artifacts"),
        "DOMAINS_PG_SCHEMA": (project / ".schema").read_text(),
        **more,
    }
    return subprocess.Popen(
        [str(FERRY), "run", "--json", "--command", "build", "--select", select],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_runs_of_disjoint_domains_write_at_once_and_runs_of_shared_ones_in_turn(
    on_api, domains, tmp_path
):
    """Three `ferry run` processes of one environment: two build domain 0, one domain 1. The
    test holds both domains until all three wait, so they ask at the same moment whatever their
    start-up: domain 1's run writes alongside the first of domain 0's, the other waits for it."""
    env = f"e2e-{uuid.uuid4().hex[:8]}"
    apply_limits(env)
    everything = Writes(DbtCommand.BUILD, "postgres", domain_models(domains))
    selects = {"first": "tag:domain_0", "other": "tag:domain_1", "again": "tag:domain_0"}
    with holds.holds(env, everything, hold_lost, wait_s=60):
        procs = {
            name: _ferry_run(on_api, domains, env, select, tmp_path)
            for name, select in selects.items()
        }
        errs: dict[str, list[str]] = {name: [] for name in procs}
        waiting = {name: threading.Event() for name in procs}

        def read(name: str) -> None:
            stream = procs[name].stderr
            assert stream is not None
            for line in stream:
                errs[name].append(line)
                if "waiting for" in line:
                    waiting[name].set()

        readers = [threading.Thread(target=read, args=(n,), daemon=True) for n in procs]
        for reader in readers:
            reader.start()
        for name, event in waiting.items():
            assert event.wait(180), f"{name} never waited: {''.join(errs[name])[-3000:]}"
    # let go: domain 1's run and one of domain 0's write at once, the other waits its turn
    summaries = {}
    for name, proc in procs.items():
        assert proc.stdout is not None
        stdout = proc.stdout.read()
        proc.wait(timeout=300)
        summaries[name] = json.loads(stdout)
    for reader in readers:
        reader.join(timeout=10)
    for name, proc in procs.items():
        err = "".join(errs[name])
        assert proc.returncode == ExitCode.OK, (name, summaries[name]["verdict"], err[-3000:])
        assert "Traceback" not in err, err[-3000:]
        assert re.search(r"got \d+ node\(s\) of ferry-writer-\S+ after waiting", err), err[-3000:]
    spans = {name: dbt_interval(summary["artifacts"]) for name, summary in summaries.items()}
    winner, loser = sorted(("first", "again"), key=lambda n: spans[n][0])
    print(
        "\n"
        + "\n".join(f"{n}: dbt {s:%H:%M:%S.%f} - {e:%H:%M:%S.%f}" for n, (s, e) in spans.items())
    )
    assert spans["other"][0] < spans[winner][1] and spans[winner][0] < spans["other"][1], (
        "runs of disjoint domains did not write at once"
    )
    assert spans[winner][1] <= spans[loser][0], "two runs wrote the same models at once"


def test_a_run_past_its_wait_limit_ends_failed_naming_what_it_waited_for(on_api, domains, tmp_path):
    env = f"e2e-{uuid.uuid4().hex[:8]}"
    apply_limits(env)
    models = domain_models(domains, "models/domain_0")
    with holds.holds(env, Writes(DbtCommand.BUILD, "postgres", models), hold_lost, wait_s=60):
        proc = _ferry_run(on_api, domains, env, "tag:domain_0", tmp_path, FERRY_WAIT_S="3")
        stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == ExitCode.FAILED, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    summary = json.loads(stdout)
    assert summary["verdict"].startswith(
        f"dbt build failed: waited 3 s (FERRY_WAIT_S) for 12 node(s) of ferry-writer-{env}"
    ), summary["verdict"]
    assert summary["verdict"].endswith("; nothing was run"), summary["verdict"]
    assert summary["nodes_total"] == 0


# Last of the module: the holder killed as it started has had its lease run out meanwhile.
def test_a_killed_holder_frees_its_nodes_within_the_lease(killed_holder):
    killed_holder.waiter.join(timeout=LEASE_S + 90)
    assert killed_holder.freed_at, "the killed holder's node was never given to the next run"
    freed_after = killed_holder.freed_at[0] - killed_holder.killed_at
    # Not before its lease (it was renewed just before the kill at most), and not long after:
    # the lease, and the server's next sweep of expired leases.
    assert LEASE_S * 0.75 <= freed_after <= LEASE_S + 15, freed_after
