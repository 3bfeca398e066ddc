"""A hold on a DuckDB database file, so that two runs on one file wait for each other.

- DuckDB's own lock does not wait: a second process opening the file fails at once with
  "IO Error: Could not set lock on file". The hold is taken before dbt opens the file, and waits.
- An `fcntl.flock` on a sidecar file (`<database>.ferry-hold`), not a pid file: the kernel lets
  go when the holder's process ends, however it ends (SIGKILL, out of memory), so a dead run
  never blocks the next one. The sidecar and not the database itself, whose locks are DuckDB's.
- The holder writes its pid and command line into the sidecar, so a waiting run can say for
  whom it waits; the lock, not the text, decides who holds.
- Leaving closes the database dbt-duckdb keeps open in this process (flows.dbt.connections)
  before it lets go: the next holder must be able to open the file, not only to hold it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path

from flows.dbt.connections import close_local_databases
from flows.run.holds import NotStarted

logger = logging.getLogger(__name__)

HOLD_SUFFIX = ".ferry-hold"
"""The sidecar's name is the database file's name with this added."""

_FIRST_PAUSE_S, _LONGEST_PAUSE_S = 0.2, 1.0  # between attempts while another run holds it
_HOLDER_TEXT_MAX = 500  # what is read back of the holder's description


def sidecar(database: Path) -> Path:
    """The file whose lock stands for `database`'s."""
    return database.with_name(database.name + HOLD_SUFFIX)


def file_hold(
    database: Path, *, wait_s: float, log: logging.Logger | logging.LoggerAdapter
) -> AbstractContextManager[None]:
    """Held while this process may open `database`: no other run holds it meanwhile.

    Entering takes the hold at once when it is free; otherwise it logs for whom it waits and
    tries again until it gets it or `wait_s` has passed. Leaving closes dbt-duckdb's database
    in this process, then lets go; it never raises. One process holding it and asking again
    waits for itself: ask once per run.

    Args:
        database: The DuckDB file (`flows.dbt.connections.local_database`).
        wait_s: The longest to wait for another run to let go of it (FERRY_WAIT_S).
        log: Where waiting and getting it are told (the run's logger).

    Raises:
        NotStarted: on entering, past `wait_s`, or when the sidecar cannot be opened.
    """
    return _held(database, wait_s, log)


@contextlib.contextmanager
def _held(
    database: Path, wait_s: float, log: logging.Logger | logging.LoggerAdapter
) -> Iterator[None]:
    fd = _take(database, wait_s, log)
    try:
        yield
    finally:
        close_local_databases()  # never raises; dbt opens it again at its next invocation
        _let_go(fd)


def _take(database: Path, wait_s: float, log: logging.Logger | logging.LoggerAdapter) -> int:
    """The sidecar's descriptor, locked by this process (and described as its holder)."""
    path = sidecar(database)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by child processes
    except OSError as exc:
        raise NotStarted(f"could not take the hold on {database} ({path}): {exc}") from exc
    started = time.monotonic()
    pause = _FIRST_PAUSE_S
    waited = False
    try:
        while not _try_lock(fd, path):
            elapsed = time.monotonic() - started
            if elapsed >= wait_s:
                raise NotStarted(
                    f"waited {wait_s:g} s (FERRY_WAIT_S) for {database}, which another run "
                    f"writes ({_holder(fd)}); nothing was run"
                )
            if not waited:
                waited = True
                log.info("waiting for %s: another run writes it (%s)", database.name, _holder(fd))
            time.sleep(min(pause, wait_s - elapsed))
            pause = min(pause * 2, _LONGEST_PAUSE_S)
    except BaseException:
        os.close(fd)
        raise
    if waited:
        log.info("got %s after waiting %.1f s", database.name, time.monotonic() - started)
    _describe_holder(fd)
    return fd


def _try_lock(fd: int, path: Path) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:  # another open file holds it
        return False
    except OSError as exc:  # e.g. a file system without locks: no hold is possible
        raise NotStarted(f"could not lock {path}: {exc}") from exc
    return True


def _describe_holder(fd: int) -> None:
    """Tells waiting runs who holds it; a hold without the text is still a hold."""
    since = datetime.now(UTC).isoformat(timespec="seconds")
    text = f"pid {os.getpid()} since {since}: {' '.join(sys.argv)}"[:_HOLDER_TEXT_MAX]
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, (text + "\n").encode(), 0)
    except OSError as exc:
        logger.debug("could not describe the holder: %s", exc)


def _holder(fd: int) -> str:
    """`pid N` of the run holding it, as it wrote it; unknown if it has not (yet) or cannot."""
    try:
        text = os.pread(fd, _HOLDER_TEXT_MAX, 0).decode(errors="replace")
    except OSError:
        text = ""
    found = re.match(r"pid (\d+)", text)
    return f"pid {found.group(1)}" if found else "pid unknown"


def _let_go(fd: int) -> None:
    # The sidecar stays: deleting it would let a run that opened it before the deletion and one
    # that creates it anew each hold a lock of their own. Emptied, it names no holder.
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
    with contextlib.suppress(OSError):
        os.close(fd)  # closing the last descriptor releases the lock
