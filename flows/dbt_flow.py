"""The `dbt` flow: any dbt command on any selection, every node visible in Prefect.

Thin by design: it reads its parameters, hands them to `flows.dbt_run.execute`, publishes a
markdown report, emits one outcome event for automations, and ends in a state whose message is
the run's verdict.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Literal

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run
from prefect.settings import get_current_settings
from prefect.states import Completed, Failed, State

from flows import prefect_api
from flows.dbt.request import InvalidRunRequest
from flows.dbt_run import RunReport, execute
from flows.node_runs import PrefectNodeReporter
from flows.outcome_events import emit_crash, emit_invalid, emit_outcome
from flows.settings import FerrySettings, InvalidSettings
from flows.summary import Outcome, RunSummary, markdown_report
from flows.writer_slot import writer_slot

# The values of flows.dbt.request.DbtCommand, spelled out so the Prefect UI offers a dropdown
# (tests/unit/test_request.py keeps the two equal).
DbtCommandName = Literal[
    "build",
    "run",
    "test",
    "seed",
    "snapshot",
    "source freshness",
    "retry",
    "compile",
    "docs generate",
]


# The run's time limit is FERRY_FLOW_TIMEOUT_S, enforced by ferry itself (see
# flows.dbt.deadline): Prefect's flow timeout cannot interrupt dbt.
@flow(name="dbt", log_prints=False, validate_parameters=True)
def dbt_flow(
    command: DbtCommandName = "build",
    select: str | None = None,
    exclude: str | None = None,
    selector: str | None = None,
    vars: dict[str, Any] | str | None = None,
    full_refresh: bool = False,
    target: str | None = None,
    threads: int | None = None,
    fail_fast: bool = False,
    retry_of: str | None = None,
    defer: bool = False,
) -> State[Any]:
    """Runs one dbt command and stores its artifacts; the final state names what failed.

    Args:
        command: The dbt command. `retry` re-runs only what failed in an earlier run (the
            latest failed run of this project and environment, or `retry_of`).
        select: dbt node selection, space-separated, e.g. `tag:daily fct_orders+`.
        exclude: Nodes to leave out, same syntax as `select`.
        selector: A named selector from selectors.yml (instead of select/exclude).
        vars: dbt variables as a mapping (or a JSON/YAML document),
            e.g. {"start_date": "2024-01-01"}.
        full_refresh: Rebuild incremental models and seeds from scratch (build, run, seed).
        target: The profiles.yml target; empty for the deployment's (FERRY_TARGET) or the
            profile's default.
        threads: dbt threads; empty for the profile's setting.
        fail_fast: Stop at the first failure.
        retry_of: With `retry`: the flow run id of the failed run to retry.
        defer: Read refs to unselected models from production (`--defer` to the state of
            FERRY_STATE_ENV); `state:modified+` selections compare with that state too.
    """
    logger = get_run_logger()
    flow_run_id = flow_run.get_id()
    assert flow_run_id, "the dbt flow runs as a Prefect flow run"
    try:
        settings = FerrySettings.from_env()
    except InvalidSettings as exc:  # the deployment's settings, refused like any bad input
        return _refuse(f"Invalid setting: {exc}", "unknown", command, flow_run_id, None)
    params = {
        "command": command,
        "select": select,
        "exclude": exclude,
        "selector": selector,
        "vars": vars,
        "full_refresh": full_refresh,
        "target": target,
        "threads": threads,
        "fail_fast": fail_fast,
        "retry_of": retry_of,
        "defer": defer,
    }
    reporter = PrefectNodeReporter(
        flow_run_id,
        settings.node_reporting,
        run_count=flow_run.run_count or 1,
        running_after_s=settings.node_running_after_s,
    )
    try:
        with reporter:
            report = execute(
                params,
                settings,
                flow_run_id=flow_run_id,
                listener=reporter,
                log=logger,
                writer_slot=functools.partial(writer_slot, settings.env),
            )
    except InvalidRunRequest as exc:
        return _refuse(f"Invalid input: {exc}", settings.env, command, flow_run_id, settings)
    except Exception as exc:
        emit_crash(settings, command, exc)
        raise

    summary = report.summary
    _finish(summary, settings)
    _publish_report(report)
    for line in summary.failed:
        logger.error("%s %s: %s", line.status, line.unique_id, line.message)
    for line in summary.warned:
        logger.warning("warn %s: %s", line.unique_id, line.message)
    logger.info("%s; artifacts: %s", summary.verdict, summary.artifacts)
    if summary.timed_out:
        # Named as Prefect names its own timeouts: Prefect's TimedOut event is this run's one
        # alert (no ferry event too), so the message carries where the artifacts went.
        message = f"{summary.verdict}; artifacts: {summary.artifacts}"
        return Failed(name="TimedOut", message=message, data=summary)
    emit_outcome(summary)
    if summary.outcome is Outcome.FAILED:
        return Failed(message=summary.verdict, data=summary)
    return Completed(message=summary.verdict, data=summary)


def _refuse(
    message: str, env: str, command: str, flow_run_id: str, settings: FerrySettings | None
) -> State[Any]:
    get_run_logger().error("%s; nothing was run", message)
    refusal = Refusal(message=message, flow_run_id=str(flow_run_id))
    _finish(refusal, settings)
    emit_invalid(env, command, message.split(": ", 1)[1])
    # The state carries the message, never the exception: its traceback would keep dbt's
    # objects alive until interpreter exit (and the CLI decides on the verdict, not on it).
    return Failed(message=refusal.message, data=refusal)


@dataclass(frozen=True)
class Refusal:
    """A request the flow refused before anything ran (exit code 2)."""

    message: str
    flow_run_id: str | None = None
    exit_code: int = 2


_finished: list[RunSummary | Refusal] = []


def finished_in_this_process() -> RunSummary | Refusal | None:
    """What the latest `dbt` flow run of this process ended with, even if Prefect could not
    record its final state (the `ferry` CLI runs the flow in its own process and reads it)."""
    return _finished[-1] if _finished else None


def _finish(outcome: RunSummary | Refusal, settings: FerrySettings | None) -> None:
    """The verdict is known and the artifacts stored: from here the Prefect API gets a bounded
    time (FERRY_PREFECT_API_WAIT_S) for the rest."""
    _finished[:] = [outcome]  # the latest only: a long-lived process keeps no history
    if settings is None:  # unreadable settings: the default wait
        settings = FerrySettings.model_construct()
    if settings.worker_flow_run_id:
        prefect_api.owned_by_a_worker()
    prefect_api.bound_the_wait(
        settings.prefect_api_wait_s,
        get_current_settings().api.url,
        exit_code=outcome.exit_code,
        outcome=outcome,
    )


def _publish_report(report: RunReport) -> None:
    summary = report.summary
    try:
        create_markdown_artifact(
            key=f"dbt-{summary.project}-{summary.env}".lower().replace("_", "-"),
            markdown=markdown_report(summary, report.nodes),
            description=summary.verdict[:500],
        )
    except Exception as exc:  # the report is a convenience; the verdict stands without it
        get_run_logger().warning("could not publish the run report artifact: %s", exc)
