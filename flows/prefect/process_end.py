"""A run's process ends within a fixed time of its verdict, whatever the Prefect API does.

Prefect's client retries an unreachable API for about a minute per call, and its events and logs
workers drain their queues at interpreter exit without a limit (~7 s an event once the API is
gone). For a dbt run that is a Fargate task billed for nothing and a verdict withheld. So once
dbt has ended and the artifacts are stored, the Prefect API gets FERRY_PREFECT_API_WAIT_S for the
rest - the report, the outcome event, the final state, the queued task-run events and logs. When
that time is up, the process tells the run's outcome (if its maker has not yet) and ends with
the run's exit code, saying what was dropped. `run_results.json` in the store stays the record.

Only where ferry owns the process: `ferry run`, or a worker's flow-run process - never a test's
or a user's Python process that happens to call the flow.

When the `ferry` command is done, `end_process` ends it as Python's exit would - Prefect's queued
events and logs delivered, the log files flushed and closed - but without the interpreter's
teardown, which frees dbt's manifest, macros and adapters one object at a time: ~0.5 s of a
60-node run and more with more nodes, after the verdict is told (bench/README.md).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing.util
import os
import sys
import threading
from typing import Any, NoReturn

from flows.run.session import RunSession
from flows.run.summary import RunSummary


class ProcessEnd:
    """The end of a process a run owns (flows.run.session.Ending)."""

    def __init__(self) -> None:
        self._timer: threading.Timer | None = None

    def arm(self, session: RunSession) -> None:
        if self._timer is not None:
            self._timer.cancel()
        from prefect.settings import get_current_settings

        seconds = session.settings.prefect.api_wait_s
        api_url = get_current_settings().api.url
        self._timer = threading.Timer(seconds, _give_up, args=(session, seconds, api_url))
        self._timer.daemon = True  # a process that ends in time is never held up by it
        self._timer.start()


def _give_up(session: RunSession, seconds: float, api_url: str | None) -> None:
    events, logs = pending_deliveries()
    outcome = session.outcome
    artifacts = outcome.artifacts if isinstance(outcome, RunSummary) else None
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
    try:
        session.tell()
    except Exception as exc:  # the exit code below still tells the verdict
        _say(f"ferry: could not print the summary: {exc}")
    _exit(session.exit_code)


def end_process(code: int) -> NoReturn:
    """Ends the `ferry` command's process with `code` once what Python's exit would deliver is
    delivered: Prefect's queued events and logs (within FERRY_PREFECT_API_WAIT_S of a run's
    verdict, ProcessEnd's timer sees to that), then every log handler flushed and closed. The
    interpreter's teardown of the objects left is skipped: it changes nothing on disk."""
    if "prefect" in sys.modules:  # a command that reported nothing imported no Prefect
        from prefect.events.worker import EventsWorker
        from prefect.logging.handlers import APILogWorker

        for service in (EventsWorker, APILogWorker):  # logs last: draining events may log
            with contextlib.suppress(Exception):  # undelivered: the run's record is its store
                service.drain_all()
    logging.shutdown()
    _exit(code)


def _exit(code: int) -> NoReturn:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed pipe: nothing more can be said
            stream.flush()
    with contextlib.suppress(Exception):
        # What a normal exit does for multiprocessing: dbt's named semaphores are released,
        # so the resource tracker has nothing to warn about once this process is gone.
        multiprocessing.util._exit_function()  # type: ignore[attr-defined]
    os._exit(code)


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
