"""Two runs on one DuckDB file wait for each other: a hold on the file, across real processes."""

from __future__ import annotations

import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flows.run.file_hold import file_hold, sidecar
from flows.run.holds import NotStarted

LINE_S = 20.0  # the longest a test waits for the other process to say something

# Another run: takes the hold (waiting up to argv[2] s), says so, holds it until told to go.
_RUN = """
import logging, sys
from pathlib import Path
from flows.run.file_hold import file_hold
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
with file_hold(Path(sys.argv[1]), wait_s=float(sys.argv[2]), log=logging.getLogger("run")):
    print("held", flush=True)
    sys.stdin.readline()
print("let go", flush=True)
"""


class OtherRun:
    """A ferry run in a process of its own; its lines are read as they come."""

    def __init__(self, database: Path, wait_s: float) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _RUN, str(database), str(wait_s)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.pid = self.proc.pid
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))

    def next_line(self) -> str:
        try:
            return self._lines.get(timeout=LINE_S)
        except queue.Empty:
            pytest.fail(f"the other run (pid {self.pid}) said nothing for {LINE_S:g} s")

    def let_go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=LINE_S)


@pytest.fixture
def other_runs() -> Iterator[list[OtherRun]]:
    started: list[OtherRun] = []
    yield started
    for run in started:
        run.stop()


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "warehouse" / "shop.duckdb"  # its folder does not exist yet


def start(other_runs: list[OtherRun], database: Path, wait_s: float) -> OtherRun:
    run = OtherRun(database, wait_s)
    other_runs.append(run)
    return run


def test_a_second_run_waits_while_one_holds_the_file_and_gets_it_once_let_go(database, other_runs):
    log = logging.getLogger("test")
    with file_hold(database, wait_s=0, log=log):
        assert sidecar(database).read_text().startswith(f"pid {os.getpid()} ")
        waiting = start(other_runs, database, wait_s=60)
        assert waiting.next_line() == (
            f"waiting for shop.duckdb: another run writes it (pid {os.getpid()})"
        )
    got = waiting.next_line()
    assert got.startswith("got shop.duckdb after waiting ") and got.endswith(" s"), got
    assert waiting.next_line() == "held"
    assert sidecar(database).read_text().startswith(f"pid {waiting.pid} ")
    waiting.let_go()
    assert waiting.next_line() == "let go"
    assert waiting.proc.wait(timeout=LINE_S) == 0
    assert sidecar(database).read_text() == ""  # let go: it names no holder

    with file_hold(database, wait_s=0, log=log):  # free: taken at once, without waiting
        pass


def test_a_holder_killed_with_sigkill_frees_the_file_at_once(database, other_runs, caplog):
    holder = start(other_runs, database, wait_s=0)
    assert holder.next_line() == "held"
    log = logging.getLogger("test")
    with (
        caplog.at_level(logging.INFO, logger="test"),
        pytest.raises(NotStarted, match=rf"\(pid {holder.pid}\); nothing was run$"),
        file_hold(database, wait_s=0, log=log),
    ):
        pytest.fail("taken while another process holds it")
    assert caplog.messages == []  # wait_s=0: refused without waiting

    holder.proc.send_signal(signal.SIGKILL)
    assert holder.proc.wait(timeout=LINE_S) == -signal.SIGKILL
    with caplog.at_level(logging.INFO, logger="test"), file_hold(database, wait_s=0, log=log):
        pass  # wait_s=0: one attempt, which the dead holder's lock no longer stops
    assert caplog.messages == []  # nor did it wait


def test_past_wait_s_nothing_is_run_and_the_verdict_names_the_file_and_its_holder(
    database, other_runs, caplog
):
    holder = start(other_runs, database, wait_s=0)
    assert holder.next_line() == "held"
    wait_s = 1.5
    started = time.monotonic()
    log = logging.getLogger("test")
    with (
        caplog.at_level(logging.INFO, logger="test"),
        pytest.raises(NotStarted) as refused,
        file_hold(database, wait_s=wait_s, log=log),
    ):
        pytest.fail("taken while another process holds it")
    elapsed = time.monotonic() - started
    assert wait_s <= elapsed < wait_s + 1, elapsed
    assert str(refused.value) == (
        f"waited 1.5 s (FERRY_WAIT_S) for {database}, which another run writes "
        f"(pid {holder.pid}); nothing was run"
    )
    assert caplog.messages == [f"waiting for shop.duckdb: another run writes it (pid {holder.pid})"]
    assert holder.proc.poll() is None  # the holder was left alone ...
    assert sidecar(database).read_text().startswith(f"pid {holder.pid} ")  # ... and its text
