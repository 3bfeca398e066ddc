"""A run against a Prefect API that may not be there: found fast, and never waited on for long.

Prefect's client retries an unreachable API for about a minute per call, and its events and logs
workers drain their queues at interpreter exit without a limit (~7 s an event once the API is
gone). For a dbt run that is a Fargate task billed for nothing and a verdict withheld. So:

- `ferry run` checks the API before anything starts (`unreachable`), in seconds;
- once dbt has ended and the artifacts are stored, `bound_the_wait` gives the Prefect API a
  fixed time (FERRY_PREFECT_API_WAIT_S) for the rest - the report, the outcome event, the final
  state, the queued task-run events and logs. When that time is up, the process ends with the
  run's exit code, saying what was dropped. `run_results.json` in the store stays the record.
"""

from __future__ import annotations

import contextlib
import multiprocessing.util
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

_process_end: _ProcessEnd | None = None


def configured_url(environ: dict[str, str] | os._Environ[str] = os.environ) -> str | None:
    """The Prefect API a flow run would report to: PREFECT_API_URL or the active profile's.

    None when there is none: Prefect would start a throwaway temporary server instead.
    """
    if environ.get("PREFECT_API_URL"):
        return environ["PREFECT_API_URL"]
    home = Path(environ.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()
    if not (Path(environ.get("PREFECT_PROFILES_PATH") or home / "profiles.toml")).is_file():
        return None  # no profile can name an API: skip importing Prefect to find out
    from prefect.settings import get_current_settings

    return get_current_settings().api.url or None


def unreachable(api_url: str, timeout_s: float = 5.0) -> str | None:
    """Why the API cannot be reached, or None when it answers (with any HTTP status)."""
    try:
        httpx.get(f"{api_url.rstrip('/')}/health", timeout=timeout_s)
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return None


def own_process_end(farewell: Callable[[Any], object]) -> None:
    """Called by the `ferry` CLI, which runs the flow in its own process.

    Args:
        farewell: prints a run summary; called with the run's summary if the process must end
            before the CLI printed it.
    """
    global _process_end
    _process_end = _ProcessEnd(farewell)


def said_farewell() -> None:
    """The CLI printed the run's summary itself."""
    if _process_end is not None:
        _process_end.farewell = None


def bound_the_wait(seconds: float, api_url: str | None, *, exit_code: int, outcome: Any) -> None:
    """From now on, the process ends within `seconds` whatever the Prefect API does.

    Only where ferry owns the process: the CLI, or a worker's flow-run process (never a test's
    or a user's Python process that happens to call the flow).

    Args:
        exit_code: the process's exit code if it must end early.
        outcome: the run's summary (or refusal), handed to the CLI's farewell.
    """
    if _process_end is not None:
        _process_end.arm(seconds, api_url, exit_code, outcome)


def owned_by_a_worker() -> None:
    """In a flow-run process started by a Prefect worker, the flow owns the process's end."""
    global _process_end
    if _process_end is None:
        _process_end = _ProcessEnd(None)


class _ProcessEnd:
    def __init__(self, farewell: Callable[[Any], object] | None):
        self.farewell = farewell
        self._timer: threading.Timer | None = None

    def arm(self, seconds: float, api_url: str | None, exit_code: int, outcome: Any) -> None:
        if self._timer is not None:
            self._timer.cancel()
        args = (seconds, api_url, exit_code, outcome)
        self._timer = threading.Timer(seconds, self._give_up, args=args)
        self._timer.daemon = True  # a process that ends in time is never held up by it
        self._timer.start()

    def _give_up(self, seconds: float, api_url: str | None, exit_code: int, outcome: Any) -> None:
        events, logs = pending_deliveries()
        artifacts = getattr(outcome, "artifacts", None)
        _say(
            f"ferry: the Prefect API{f' at {api_url}' if api_url else ''} did not take the "
            f"run's last updates within {seconds:g} s (FERRY_PREFECT_API_WAIT_S); dropped "
            f"{events} event(s) and {logs} log line(s) not yet delivered"
            + (
                f"; run_results.json and summary.json in {artifacts} are the record"
                if artifacts
                else ""
            )
        )
        farewell, self.farewell = self.farewell, None
        if farewell is not None:
            try:
                farewell(outcome)
            except Exception as exc:  # the exit code below still tells the verdict
                _say(f"ferry: could not print the summary: {exc}")
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):  # a closed pipe: nothing more can be said
                stream.flush()
        with contextlib.suppress(Exception):
            # What a normal exit does for multiprocessing: dbt's named semaphores are released,
            # so the resource tracker has nothing to warn about once this process is gone.
            multiprocessing.util._exit_function()  # type: ignore[attr-defined]
        os._exit(exit_code)


def pending_deliveries() -> tuple[int, int]:
    """Events and log lines still queued for the Prefect API in this process."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    def queued(service: Any) -> int:
        # Prefect keeps one instance per API and client settings; `_queue` is a queue.Queue.
        instances = tuple(getattr(service, "_instances", {}).values())
        return sum(sum(1 for item in list(i._queue.queue) if item is not None) for i in instances)

    return queued(EventsWorker), queued(APILogWorker)


def _say(line: str) -> None:
    # Straight to the file descriptor: the logging lock may be held by a thread stuck on the API.
    with contextlib.suppress(OSError):
        os.write(2, (line + "\n").encode())
