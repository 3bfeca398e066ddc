"""A run's time limit (FERRY_FLOW_TIMEOUT_S), and the run stopped early when its holds lapse
(`stop`): dbt is stopped as Ctrl-C stops it; ferry never is.

dbt answers SIGINT by cancelling its open warehouse queries and returning its partial results,
so a timed-out run leaves nothing running in the warehouse and still stores its artifacts.
(Prefect's own flow timeout cannot stop dbt: dbt swallows the cancellation.) The signal is sent
only while dbt itself runs: when the limit passes during ferry's own steps (the back-off between
transient retries, storing the artifacts) those steps see it and end the run themselves, so no
`KeyboardInterrupt` ever surfaces in ferry's code and nothing is lost.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from types import FrameType
from typing import Any

# dbt's console logger (dbt_common's stdout_log) and what it prints for an interrupt.
_DBT_CONSOLE = "stdout_log"
_INTERRUPT_MARKERS = ("Traceback (most recent call last)", "Encountered an error:")


class TimeUp(Exception):
    """The run's time ran out before (or while) a step started; the run ends TimedOut."""


class Deadline:
    """The run's time limit, armed from `__enter__` for `seconds` (None: no limit).

    Steps tell it where the run is: `dbt(step)` around each dbt invocation (interrupted when
    the time is up), `wait(seconds)` for back-off (cut short), `shielded(step)` around what must
    complete (storing artifacts; the limit is only noted). `step` says where the limit fired.
    """

    def __init__(self, seconds: float | None, log: logging.Logger | logging.LoggerAdapter[Any]):
        self.seconds = seconds
        self._log = log
        self._lock = threading.Lock()
        self._expired = threading.Event()
        self._timer: threading.Timer | None = None
        self._ends_at = 0.0
        self._previous_handler: Any = None
        self._in_dbt = False
        self._step = "preparing the run"
        self.fired_in: str | None = None
        """The step the limit fired in, e.g. 'dbt parse' or 'the back-off between retries'."""
        self.can_interrupt = False
        self.stopped_for: str | None = None
        """Why the run was stopped before its time (`stop`); None when it was not."""

    @property
    def expired(self) -> bool:
        """The run must end: its time is up, or it was stopped."""
        return self._expired.is_set()

    @property
    def timed_out(self) -> bool:
        """The run's time limit, not a stop, ended it."""
        return self.expired and self.stopped_for is None

    def __enter__(self) -> Deadline:
        logging.getLogger(_DBT_CONSOLE).addFilter(self._quiet_interrupt)
        if threading.current_thread() is threading.main_thread():
            self._previous_handler = signal.signal(signal.SIGINT, self._on_sigint)
            self.can_interrupt = True
        if self.seconds is None:
            return self
        if not self.can_interrupt:
            self._log.warning(
                "FERRY_FLOW_TIMEOUT_S=%g cannot interrupt dbt: this run is not on its process's "
                "main thread, and only the main thread receives signals; the limit is checked "
                "between steps only (a running dbt command finishes first)",
                self.seconds,
            )
        self._arm(self.seconds)
        return self

    def _arm(self, seconds: float) -> None:
        self._ends_at = time.monotonic() + seconds
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def __exit__(self, *exc: object) -> None:
        if self._timer is not None:
            self._timer.cancel()
        logging.getLogger(_DBT_CONSOLE).removeFilter(self._quiet_interrupt)
        if self.can_interrupt:
            signal.signal(signal.SIGINT, self._previous_handler)
            self.can_interrupt = False

    def _quiet_interrupt(self, record: logging.LogRecord) -> bool:
        """dbt prints the stack of the interrupt it was sent, as for any error: once the limit
        has fired, that is the limit, not a crash, so the console leaves it out (dbt.log keeps
        it)."""
        if not self.expired:
            return True
        text = record.getMessage()
        return not any(marker in text for marker in _INTERRUPT_MARKERS)

    def stop(self, why: str) -> None:
        """Ends the run now, as its time limit would, for `why` (its holds lapsed): dbt cancels
        its queries; the verdict gives `why`. From any thread."""
        with self._lock:
            if self.expired:
                return
            self.stopped_for = why
        self._expire()

    def _expire(self) -> None:
        with self._lock:
            self.fired_in = self._step
            self._expired.set()
            interrupt = self._in_dbt and self.can_interrupt
        if interrupt:
            os.kill(os.getpid(), signal.SIGINT)

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        if self.expired:
            if self._in_dbt:
                raise KeyboardInterrupt  # dbt cancels its queries and returns what it has
            return  # the limit's signal arrived after dbt returned: the step sees `expired`
        handler = self._previous_handler
        if callable(handler):
            handler(signum, frame)
        elif handler != signal.SIG_IGN:
            raise KeyboardInterrupt  # a person pressed Ctrl-C

    @contextlib.contextmanager
    def dbt(self, step: str) -> Iterator[None]:
        """A dbt invocation: interrupted when the time is up.

        Raises:
            TimeUp: the time was up before the step began, or it ran out during the step and
                the step failed because of it (a parse or `ls` cut short).
        """
        with self._lock:
            if self.expired:
                raise TimeUp(self.fired_in or step)
            self._in_dbt = True
            self._step = step
        try:
            yield
        except (Exception, KeyboardInterrupt) as exc:  # an interrupt outside dbt's own handling
            if self.expired:
                raise TimeUp(step) from exc
            raise
        finally:
            with self._lock:
                self._in_dbt = False
                self._step = "ferry's own steps"

    @contextlib.contextmanager
    def shielded(self, step: str) -> Iterator[None]:
        """A step that must complete whatever the time: the limit is noted, not enforced."""
        with self._lock:
            self._step = step
        try:
            yield
        finally:
            with self._lock:
                self._step = "ferry's own steps"

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Time that is not the run's own (waiting in line for the warehouse): not counted."""
        if self._timer is None or self.expired:
            yield
            return
        self._timer.cancel()
        left = max(self._ends_at - time.monotonic(), 0.01)
        try:
            yield
        finally:
            if not self.expired:
                self._arm(left)

    def wait(self, seconds: float, step: str = "the back-off between transient retries") -> bool:
        """Sleeps up to `seconds`; False (at once) when the time is up."""
        with self._lock:
            if self.expired:
                return False
            self._step = step
        try:
            if self.seconds is None:
                time.sleep(seconds)
                return True
            return not self._expired.wait(seconds)
        finally:
            with self._lock:
                self._step = "ferry's own steps"
