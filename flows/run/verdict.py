"""Judging a run: its outcome and the one sentence that says what happened.

This module is the only place that writes a verdict. The verdict becomes the flow run's final
state message, the CLI's last line and the first line of every alert, so it names the failing
nodes and their first error line, not just a count.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from flows.dbt.commands import DbtCommand
from flows.dbt.docs import Documented
from flows.dbt.nodes import NodeResult, NodeStatus, in_report_order
from flows.exit_codes import ExitCode
from flows.run.blue_green import PublishReport
from flows.run.request import RunRequest

_LISTED = 5  # nodes named in a verdict before "and N more"


class Outcome(StrEnum):
    SUCCESS = "success"
    WARNINGS = "warnings"
    FAILED = "failed"
    INVALID = "invalid"

    @property
    def exit_code(self) -> ExitCode:
        if self is Outcome.INVALID:
            return ExitCode.INVALID
        return ExitCode.FAILED if self is Outcome.FAILED else ExitCode.OK


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    sentence: str
    timed_out: bool = False

    def summary_fields(self) -> dict[str, Any]:
        """The summary's fields this verdict sets (flows.run.summary)."""
        return {"outcome": self.outcome, "verdict": self.sentence, "timed_out": self.timed_out}


@dataclass(frozen=True)
class TimeLimit:
    """Where the run's time limit fired (flows.dbt.deadline), for the verdict."""

    limit_s: float
    fired_in: str | None


class RefusalKind(StrEnum):
    """What was refused: the run's input (parameters, flags, project files) or its settings."""

    INPUT = "input"
    SETTING = "setting"


@dataclass(frozen=True)
class Refusal:
    """A request refused before anything ran (exit code 2); `message` is its verdict."""

    reason: str
    kind: RefusalKind = RefusalKind.INPUT
    flow_run_id: str | None = None

    @classmethod
    def of_input(cls, reason: str, flow_run_id: str | None = None) -> Refusal:
        return cls(reason, RefusalKind.INPUT, flow_run_id)

    @classmethod
    def of_settings(cls, reason: str, flow_run_id: str | None = None) -> Refusal:
        return cls(reason, RefusalKind.SETTING, flow_run_id)

    @property
    def message(self) -> str:
        return f"Invalid {self.kind.value}: {self.reason}"

    @property
    def outcome(self) -> Outcome:
        return Outcome.INVALID

    @property
    def verdict(self) -> str:
        return self.message

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.INVALID

    def record(self) -> RefusedRun:
        """What `ferry run --json` prints for it."""
        return RefusedRun(outcome="invalid", verdict=self.message, flow_run_id=self.flow_run_id)


class RefusedRun(BaseModel):
    """A refusal as `ferry run --json` prints it (no summary, no artifacts, only the reason),
    and as Slim CI's comment reads it back."""

    model_config = ConfigDict(frozen=True)

    outcome: Literal["invalid"]
    verdict: str
    flow_run_id: str | None = None


def judge(
    request: RunRequest,
    nodes: list[NodeResult],
    *,
    dbt_ok: bool,
    error: str | None,
    attempts: int = 1,
    time_limit: TimeLimit | None = None,
    unchanged: int | None = None,
    documented: Documented | None = None,
) -> Verdict:
    """The outcome and the verdict of a finished run.

    Args:
        dbt_ok: dbt's own success flag (False with no failed node means dbt itself failed).
        error: dbt's or ferry's error, when the run ended without a node to blame.
        attempts: dbt invocations the run took (transient failures are retried).
        time_limit: set when the run's time limit fired; the verdict says where.
        unchanged: an only-changed run's nodes skipped as unchanged (never "passed").
        documented: `docs generate`: what it documented, which is what its verdict says.
    """
    outcome, sentence = _judge_nodes(request, nodes, dbt_ok, error, unchanged, documented)
    if attempts > 1:
        sentence += f" (after {attempts} attempts: transient failures were retried)"
    if time_limit is None:
        return Verdict(outcome, sentence)
    said = sentence if nodes or error else None
    return Verdict(Outcome.FAILED, timed_out(time_limit, nodes, said), timed_out=True)


def with_publication(verdict: Verdict, published: PublishReport) -> Verdict:
    """The verdict of a blue-green run, saying what consumers read now: a run that passed but
    could not be published has failed (consumers did not get what it built)."""
    sentence = f"{verdict.sentence}; {published.describe()}"
    if published.error:
        return Verdict(Outcome.FAILED, sentence, timed_out=verdict.timed_out)
    return Verdict(verdict.outcome, sentence, timed_out=verdict.timed_out)


def with_lost_parts(verdict: Verdict, lost: list[str]) -> Verdict:
    """The verdict of a fanned-out run some of whose parts ended without one (crashed,
    cancelled): failed, naming them first; their nodes were not run."""
    if not lost:
        return verdict
    return Verdict(Outcome.FAILED, f"{'; '.join(lost)}; {verdict.sentence}", verdict.timed_out)


def judge_late(verdict: Verdict, time_limit: TimeLimit, nodes: list[NodeResult]) -> Verdict:
    """The verdict of a run whose time limit passed while its artifacts were being stored:
    failed, timed out, with what the run had said before."""
    return Verdict(Outcome.FAILED, timed_out(time_limit, nodes, verdict.sentence), timed_out=True)


def timed_out(time_limit: TimeLimit, nodes: list[NodeResult], verdict: str | None) -> str:
    """The verdict of a run past its limit: where the limit fired, then what dbt did."""
    where = time_limit.fired_in or "the run"
    said = f"timed out after {time_limit.limit_s:g} s (FERRY_FLOW_TIMEOUT_S) during {where}"
    if where.startswith("dbt ") and where != "dbt parse":
        done = sum(1 for n in nodes if n.status is not NodeStatus.SKIPPED)
        said += f"; dbt cancelled its queries after {done} node(s) finished"
    return f"{said}; {verdict}" if verdict else said


def _judge_nodes(
    request: RunRequest,
    nodes: list[NodeResult],
    dbt_ok: bool,
    error: str | None,
    unchanged: int | None = None,
    documented: Documented | None = None,
) -> tuple[Outcome, str]:
    outcome, sentence = _judge_ran(request, nodes, dbt_ok, error, unchanged, documented)
    if unchanged and nodes:
        sentence += f"; {unchanged} unchanged since they were last built, not run"
    return outcome, sentence


def _judge_ran(
    request: RunRequest,
    nodes: list[NodeResult],
    dbt_ok: bool,
    error: str | None,
    unchanged: int | None,
    documented: Documented | None = None,
) -> tuple[Outcome, str]:
    ordered = in_report_order(nodes)  # root causes first: a broken model before its tests
    failed = [n for n in ordered if n.failed]
    warned = [n for n in ordered if n.status.warned]
    skipped = sum(1 for n in nodes if n.status is NodeStatus.SKIPPED)
    total = len(nodes)
    command = request.command.value
    if failed:
        verdict = f"{len(failed)} of {total} nodes failed: {_name_nodes(failed)}"
        if skipped:
            verdict += f"; {skipped} skipped"
        if warned:
            verdict += f"; {len(warned)} warned"
        return Outcome.FAILED, verdict
    if error or not dbt_ok:
        reason = error or "dbt reported a failure without a failed node (see dbt.log)"
        return Outcome.FAILED, f"dbt {command} failed: {reason}"
    if documented is not None and total == 0:  # docs generate runs no node: it documents them
        return Outcome.SUCCESS, f"dbt {command} {documented.describe()}"
    if total == 0:
        what = "nothing failed in that run" if request.command is DbtCommand.RETRY else "no nodes"
        if request.compares_state:
            what = f"nothing selected by {' '.join(request.selection_args())} differs from state"
        if unchanged is not None:
            what = f"nothing changed: {unchanged} node(s) unchanged since they were last built"
        return Outcome.SUCCESS, f"dbt {command} ran no nodes ({what})"
    if warned:
        return (
            Outcome.WARNINGS,
            f"{total} of {total} nodes passed, {len(warned)} with warnings: {_name_nodes(warned)}",
        )
    return Outcome.SUCCESS, f"{total} of {total} nodes passed"


def _name_nodes(nodes: list[NodeResult]) -> str:
    named = "; ".join(n.describe() for n in nodes[:_LISTED])
    if len(nodes) > _LISTED:
        named += f"; and {len(nodes) - _LISTED} more"
    return named
