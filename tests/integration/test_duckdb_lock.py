"""Two runs on one DuckDB file wait for each other instead of failing on DuckDB's lock: a run
holds the file (flows/run/file_hold.py) from before dbt opens it until dbt-duckdb, which keeps
the database open until the process exits, has closed it."""

from __future__ import annotations

import logging
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

import pytest

from flows.dbt.connections import close_local_databases, local_database
from flows.dbt.invoke import DbtInvocation
from flows.dbt.profiles import DbtProject
from flows.run.file_hold import file_hold, sidecar
from flows.run.owner import run
from flows.run.request import RunRequest
from flows.run.verdict import Outcome
from tests.conftest import REPO, make_settings

pytestmark = pytest.mark.integration

LINE_S = 120.0  # the longest a test waits for a ferry run in another process to say something


def opened_by_another_process(path: Path) -> str:
    probe = f"import duckdb; duckdb.connect({str(path)!r}).close(); print('opened')"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    return proc.stdout.strip() or proc.stderr.strip().splitlines()[-1]


def parse(project: Path, work: Path, target: str | None = None) -> None:
    """dbt's parse of `project` in this process, as a run starts (its own target path)."""
    loaded = DbtProject.load(project)
    args = RunRequest.build(target=target).dbt_args()
    DbtInvocation(loaded, args, loaded.profiles_dir, work / "target", work / "logs").parse()


def test_the_file_is_free_once_a_run_has_ended(shop_duckdb, tmp_path):
    db = tmp_path / "shop.duckdb"
    settings = make_settings(shop_duckdb, tmp_path)

    report = run(RunRequest.build(command="seed"), settings, run_id="seed")
    assert report.summary.outcome is Outcome.SUCCESS, report.summary.verdict
    assert sidecar(db).read_text() == ""  # the run held it, and has let go
    # dbt-duckdb keeps its database open until the process exits; the hold closed it first.
    assert opened_by_another_process(db) == "opened"
    assert close_local_databases() is False  # nothing left to close


def test_local_database_is_the_file_of_the_current_dbt_invocation(shop_duckdb, tmp_path):
    settings = make_settings(shop_duckdb, tmp_path)
    report = run(RunRequest.build(command="seed"), settings, run_id="seed")
    assert report.summary.outcome is Outcome.SUCCESS, report.summary.verdict
    assert local_database() == (tmp_path / "shop.duckdb").resolve()

    parse(shop_duckdb, tmp_path / "postgres", target="postgres")  # no connection: no server
    assert local_database() is None  # the current invocation's warehouse is no DuckDB file


# A process of its own, as a run's: what local_database says before dbt ran, after `dbt deps`
# (which registers no adapter), and after the parse.
_FRESH = """
import sys
from pathlib import Path
from flows.dbt.connections import local_database
from flows.dbt.invoke import DbtInvocation
from flows.dbt.packages import ensure
from flows.dbt.profiles import DbtProject
from flows.run.request import RunRequest
project, work = DbtProject.load(Path(sys.argv[1])), Path(sys.argv[2])
print(local_database())
ensure(project.project_dir, log_path=work / "deps")
print(local_database())
args = RunRequest.build().dbt_args()
DbtInvocation(project, args, project.profiles_dir, work / "target", work / "logs").parse()
print(local_database())
"""


def test_local_database_is_none_before_dbt_ran_and_relative_to_the_working_directory(
    shop_project, tmp_path, monkeypatch
):
    """A relative `path:` in profiles.yml is DuckDB's: relative to the process's working
    directory, not to the project."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.setenv("FERRY_DUCKDB_PATH", "relative/shop.duckdb")
    proc = subprocess.run(
        [sys.executable, "-c", _FRESH, str(shop_project), str(tmp_path / "work")],
        capture_output=True,
        text=True,
        cwd=elsewhere,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=LINE_S,
    )
    assert proc.returncode == 0, proc.stderr
    before, after_deps, after_parse = proc.stdout.splitlines()[-3:]
    assert (before, after_deps) == ("None", "None")
    assert after_parse == str(elsewhere.resolve() / "relative" / "shop.duckdb")


_SEED = """
import logging, sys
from pathlib import Path
from flows.run.owner import run
from flows.run.request import RunRequest
from tests.conftest import make_settings
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
settings = make_settings(Path(sys.argv[1]), Path(sys.argv[2]))
report = run(RunRequest.build(command="seed"), settings, run_id="seed-in-line")
print("outcome", report.summary.outcome.value, flush=True)
"""


def test_a_run_waits_for_the_run_that_holds_the_file_then_runs(shop_duckdb, tmp_path):
    db = tmp_path / "shop.duckdb"
    proc = None
    lines: queue.Queue[str] = queue.Queue()

    def next_line(wanted: str) -> str:
        """The first line of the other run's that starts with `wanted`."""
        while True:
            try:
                line = lines.get(timeout=LINE_S)
            except queue.Empty:
                pytest.fail(f"the other run said nothing starting with {wanted!r}")
            if line.startswith(wanted):
                return line

    try:
        with file_hold(db, wait_s=0, log=logging.getLogger("test")):
            proc = subprocess.Popen(
                [sys.executable, "-c", _SEED, str(shop_duckdb), str(tmp_path)],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                cwd=REPO,
            )
            out = proc.stdout
            assert out is not None
            threading.Thread(target=_read_into, args=(out, lines), daemon=True).start()
            waiting = next_line("waiting for shop.duckdb")
            assert waiting == f"waiting for shop.duckdb: another run writes it (pid {os.getpid()})"
            assert opened_by_another_process(db) == "opened"  # it waits before opening the file
        assert next_line("got shop.duckdb after waiting ").endswith(" s")
        assert next_line("outcome ") == "outcome success"
        assert proc.wait(timeout=LINE_S) == 0
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()


def _read_into(out: IO[str], lines: queue.Queue[str]) -> None:
    for line in out:
        lines.put(line.rstrip("\n"))
