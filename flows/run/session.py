"""One run's session: its settings, the slot its outcome lands in, and who ends its process.

Whoever starts a run makes its session and hands it down: `ferry run` (with its flags' settings,
its output format and the process's end), the `dbt` flow of a deployment (the environment's
settings; a worker's process ends with the run), a test (settings only). The run's steps take
plain values from it (`flows.run.owner.run(request, session.settings, ...)`), and the caller
reads the outcome back from it - also when Prefect could not record the run's final state.
Nothing is found through a global: two sessions in one process never see each other.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass, field
from typing import Protocol, TextIO

from flows.exit_codes import ExitCode
from flows.run.summary import AD_HOC, RunSummary
from flows.run.verdict import Refusal
from flows.settings import FerrySettings

RunOutcome = RunSummary | Refusal
"""What a run ended with: its summary, or the refusal of its input."""


class Ending(Protocol):
    """Who ends the process once the verdict is known (flows.prefect.process_end)."""

    def arm(self, session: RunSession) -> None: ...


@dataclass(frozen=True)
class Output:
    """Where and how a run's outcome is told to the person who started it (the CLI's stdout)."""

    as_json: bool = False
    stream: TextIO = field(default_factory=lambda: sys.stdout)
    errors: TextIO = field(default_factory=lambda: sys.stderr)

    def tell(self, outcome: RunOutcome) -> ExitCode:
        """The verdict and where the artifacts are (or the summary as JSON); its exit code."""
        if isinstance(outcome, Refusal):
            self.errors.write(f"ferry: {outcome.message}\n")
            if self.as_json:
                self._write(outcome.record().model_dump_json(exclude_none=True))
        elif self.as_json:
            self._write(outcome.model_dump_json())
        else:
            self._write(f"ferry: {outcome.outcome.value}: {outcome.verdict}")
            self._write(f"ferry: artifacts: {outcome.artifacts}")
        return outcome.exit_code

    def _write(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()


@dataclass
class RunSession:
    """Made by whoever starts a run, passed to it, read back by its maker.

    Attributes:
        settings: the run's settings, as its maker read them (flags, environment).
        deployment: the Prefect deployment that started the run, or `ad-hoc`.
        output: set when someone waits for the outcome on a terminal (`ferry run`).
        ending: set when the run owns its process (the CLI, a worker's flow-run process): from
            the verdict on, the process ends within FERRY_PREFECT_API_WAIT_S.
        outcome: the run's summary or refusal, once it is known.
    """

    settings: FerrySettings
    deployment: str = AD_HOC
    output: Output | None = None
    ending: Ending | None = None
    outcome: RunOutcome | None = field(default=None, init=False)
    _told: bool = field(default=False, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def finish(self, outcome: RunOutcome) -> None:
        """The verdict is known and the artifacts stored: the outcome is kept for the maker,
        and from here the Prefect API gets a bounded time for the rest."""
        self.outcome = outcome
        if self.ending is not None:
            self.ending.arm(self)

    @property
    def exit_code(self) -> ExitCode:
        return self.outcome.exit_code if self.outcome is not None else ExitCode.FAILED

    def tell(self) -> ExitCode:
        """Tells the outcome through `output`, once: the maker at the end, or the process's
        ending first if the Prefect API holds the process past its time."""
        assert self.outcome is not None, "tell() follows finish()"
        with self._lock:
            if self._told or self.output is None:
                return self.outcome.exit_code
            self._told = True
        return self.output.tell(self.outcome)
