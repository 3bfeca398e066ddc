"""Retrying what the network broke, never what the model broke.

A connection refused, a dropped connection or a throttled API call says nothing about the
model: running again is right. A SQL error, a failing test or a compile error says everything:
running again is a blind re-run that only delays the alert. So a run is retried only when every
failure it has is transient, and then only the failed and skipped nodes (`dbt retry`) - or the
whole command when nothing ran at all.
"""

from __future__ import annotations

import logging
import re
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from flows.dbt.commands import DbtCommand
from flows.dbt.deadline import Deadline, TimeUp
from flows.dbt.invoke import DbtInvocation, DbtOutcome, NodeListener

logger = logging.getLogger(__name__)

# Messages of drivers and AWS SDKs for failures of the path to the warehouse, not of the SQL;
# and two runs creating one schema at once (PostgreSQL's `create schema if not exists` is not
# safe against a concurrent one: the second fails on the catalog's key, and finds it next time).
TRANSIENT = re.compile(
    r"connection refused|could not connect|connection (?:reset|timed out)"
    r"|server closed the connection|timeout expired|too many (?:connections|clients)"
    r"|throttl|rate exceeded|slow ?down|temporarily unavailable|could not translate host name"
    r"|ssl syscall error|connection already closed|broken pipe"
    r"|duplicate key value violates unique constraint \"pg_namespace_nspname_index\"",
    re.IGNORECASE,
)


def attempt_dir(log_path: Path, attempt: int) -> Path:
    """Where attempt `attempt` (1, 2...) keeps the results the next attempt retries from."""
    return log_path / f"attempt-{attempt}"


def earlier_attempts(log_path: Path) -> dict[str, Path]:
    """The run_results.json of every attempt before the last, named as the artifacts keep
    them: `run_results.attempt-1.json`..."""
    found = sorted(
        log_path.glob("attempt-*/run_results.json"),
        key=lambda p: int(p.parent.name.rsplit("-", 1)[1]),
    )
    return {f"run_results.{path.parent.name}.json": path for path in found}


def transient_reason(outcome: DbtOutcome) -> str | None:
    """The first transient error line when every failure of the run is transient, else None."""
    failed = [n for n in outcome.nodes if n.failed]
    messages = [n.message or "" for n in failed] if failed else [outcome.error or ""]
    if outcome.success or not any(messages):
        return None
    if not all(TRANSIENT.search(m) for m in messages):
        return None
    return " ".join(messages[0].split())[:200]


def execute_with_retries(
    invocation: DbtInvocation,
    manifest: Any,
    listener: NodeListener,
    *,
    retries: int,
    delay_s: float,
    deadline: Deadline,
    log: logging.Logger | logging.LoggerAdapter[Any] = logger,
) -> tuple[DbtOutcome, int]:
    """Runs the invocation, retrying transient failures up to `retries` times.

    The back-off between attempts ends early when the run's time is up; the outcome so far is
    then the run's outcome.

    Returns:
        The merged outcome (a node's latest result wins) and the number of attempts.
    """
    with deadline.dbt(f"dbt {invocation.args.command.value}"):
        outcome = invocation.execute(manifest, listener)
    attempts = 1
    while attempts <= retries and (reason := transient_reason(outcome)):
        wait = delay_s * attempts
        log.warning(
            "transient failure (%s); attempt %d of %d in %.1f s",
            reason,
            attempts + 1,
            retries + 1,
            wait,
        )
        if not deadline.wait(wait):
            break
        try:
            outcome = _attempt_again(invocation, manifest, listener, outcome, attempts, deadline)
        except TimeUp:  # the time ran out as the attempt was about to start
            break
        attempts += 1
    return outcome, attempts


def _attempt_again(
    invocation: DbtInvocation,
    manifest: Any,
    listener: NodeListener,
    outcome: DbtOutcome,
    attempts: int,
    deadline: Deadline,
) -> DbtOutcome:
    """One more attempt: `dbt retry` of what failed or was skipped, or the command again."""
    if not outcome.nodes:  # nothing ran: the same command again is no re-run of anything
        with deadline.dbt(f"dbt {invocation.args.command.value}"):
            again = invocation.execute(manifest, listener)
        return replace(again, elapsed=outcome.elapsed + again.elapsed)
    state = attempt_dir(invocation.log_path, attempts)
    state.mkdir(parents=True, exist_ok=True)
    for name in ("run_results.json", "manifest.json"):
        if (invocation.target_path / name).is_file():
            shutil.copyfile(invocation.target_path / name, state / name)
    retry = retry_invocation(invocation, state)
    with deadline.dbt("dbt retry"):
        again = retry.execute(None, listener)
    merged = {n.unique_id: n for n in outcome.nodes}
    merged.update({n.unique_id: n for n in again.nodes})
    return replace(again, nodes=list(merged.values()), elapsed=outcome.elapsed + again.elapsed)


def retry_invocation(invocation: DbtInvocation, state: Path) -> DbtInvocation:
    """`dbt retry` of what `invocation` left failed or skipped, from its results in `state`.

    dbt retry re-selects from those results and takes no selection of its own (`--select` is
    refused), so the selection is dropped; flags it shares with the command stay.
    """
    args = replace(invocation.args, command=DbtCommand.RETRY, select=(), exclude=(), selector=None)
    return replace(invocation, args=args, state_path=state)
