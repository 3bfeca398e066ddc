"""The `dbt` flow: any dbt command on any selection, every node visible in Prefect.

Thin by design: it builds the run's request from its parameters, hands it to the run's owner
(`flows.run.owner.run`), publishes a markdown report, emits one outcome event for automations,
and ends in a state whose message is the run's verdict.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from prefect import Flow, flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import deployment, flow_run
from prefect.states import Completed, Failed, State

from flows.dbt.commands import DbtCommand
from flows.prefect.events import emit_crash, emit_findings, emit_invalid, emit_outcome
from flows.prefect.holds import holds
from flows.prefect.node_runs import PrefectNodeReporter
from flows.prefect.parts import PART_FLOW, run_parts
from flows.prefect.process_end import ProcessEnd
from flows.run import metrics
from flows.run.owner import RunReport, run
from flows.run.request import IndirectSelection, InvalidRunRequest, PublishMode, RunRequest
from flows.run.session import RunSession
from flows.run.summary import AD_HOC, markdown_report
from flows.run.verdict import Outcome, Refusal
from flows.settings import FerrySettings, InvalidSettings

F = TypeVar("F", bound=Callable[..., Any])


class DbtRunFailed(Exception):
    """A run that failed, was refused or timed out, as Prefect expects a Failed state's data: an
    exception whose message is the verdict. The run's record stays its summary.json and its
    markdown artifact; the CLI reads the outcome from the run's session, never from the state."""


class _VerdictAlreadySaid(logging.Filter):
    """Drops Prefect's engine's last word on a run ferry failed.

    At the end of a deployment run, Prefect's engine re-raises a Failed state's exception and
    logs it in the run's own log as "Engine execution exited with unexpected exception", with a
    traceback. For a ferry verdict nothing is unexpected: the verdict and the failed nodes were
    logged already, and the run page must end with them. Any other exception keeps its record.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exception = record.exc_info[1] if record.exc_info else None
        return not isinstance(exception, DbtRunFailed)


# Prefect's flow-run logger (prefect.flow_runs), in every process that loads this flow.
logging.getLogger("prefect.flow_runs").addFilter(_VerdictAlreadySaid())


def _parameters_of_a_run_request(fn: F) -> F:
    """The flow's parameters are RunRequest's fields: their help comes from there (the Prefect
    UI shows it), and a parameter without a field (or the reverse) fails at import."""
    names = list(inspect.signature(fn).parameters)
    if names != list(RunRequest.model_fields):
        raise TypeError(f"dbt flow parameters {names} differ from RunRequest's fields")
    fn.__doc__ = f"{fn.__doc__}\n\n{RunRequest.parameter_docs()}\n"
    return fn


def _dbt_flow(given: RunSession | None, name: str = "dbt") -> Flow[..., State[Any]]:
    """The `dbt` flow, finishing the session its caller made, or one of its own; `dbt-part`
    is the same flow, for the parts of a fanned-out run (flows/prefect/parts.py)."""

    # The run's time limit is FERRY_FLOW_TIMEOUT_S, enforced by ferry itself (see
    # flows.dbt.deadline): Prefect's flow timeout cannot interrupt dbt. Text parameters are
    # plain strings, empty meaning "not given", so the UI's run form takes typing straight away.
    @flow(name=name, log_prints=False, validate_parameters=True)
    @_parameters_of_a_run_request
    def dbt_flow(
        command: DbtCommand = DbtCommand.BUILD,
        select: str = "",
        exclude: str = "",
        selector: str = "",
        vars: dict[str, Any] | str | None = None,
        indirect_selection: IndirectSelection | None = None,
        full_refresh: bool = False,
        target: str = "",
        threads: int | None = None,
        fail_fast: bool = False,
        retry_of: str = "",
        defer: bool = False,
        only_changed: bool = False,
        publish: PublishMode = PublishMode.DIRECT,
        fan_out: int | None = None,
        part_of: str = "",
    ) -> State[Any]:
        """Runs one dbt command and stores its artifacts; the final state names what failed."""
        parameters = {k: v for k, v in locals().items() if k in RunRequest.model_fields}
        return _run(given, parameters)

    return dbt_flow


dbt_flow = _dbt_flow(None)
"""The deployments' entrypoint (prefect.yaml): each run makes its session from the environment."""

dbt_part_flow = _dbt_flow(None, name=PART_FLOW)
"""The `part-<env>` deployments' entrypoint: a part of a fanned-out run."""


def dbt_flow_for(session: RunSession) -> Flow[..., State[Any]]:
    """The `dbt` flow for a run whose maker made its session (`ferry run`, a test): the run
    takes its settings from it and leaves its outcome in it."""
    return _dbt_flow(session)


def _run(given: RunSession | None, parameters: dict[str, Any]) -> State[Any]:
    logger = get_run_logger()
    flow_run_id = flow_run.get_id()
    assert flow_run_id, "the dbt flow runs as a Prefect flow run"
    command = parameters["command"]
    session = given
    if session is None:
        try:
            session = _session_of_a_deployment(FerrySettings.from_env())
        except InvalidSettings as exc:  # the deployment's settings, refused like any bad input
            session = _session_of_a_deployment(FerrySettings.model_construct())
            return _refuse(session, Refusal.of_settings(str(exc), flow_run_id), command, "unknown")
    settings = session.settings
    reporter = PrefectNodeReporter(
        flow_run_id,
        settings.prefect.node_reporting,
        run_count=flow_run.run_count or 1,
        running_after_s=settings.prefect.node_running_after_s,
    )
    try:
        request = RunRequest.build(**parameters)
        with reporter:
            report = run(
                request,
                settings,
                flow_run_id=flow_run_id,
                listener=reporter,
                log=logger,
                holds=functools.partial(
                    holds,
                    settings.run.env,
                    wait_s=settings.run.wait_s,
                    lease_s=settings.run.hold_lease_s,
                ),
                parts_runner=functools.partial(
                    run_parts, env=settings.run.env, parent_run_id=flow_run_id, log=logger
                ),
                deployment=session.deployment,
            )
    except InvalidRunRequest as exc:
        return _refuse(session, Refusal.of_input(str(exc), flow_run_id), command, settings.run.env)
    except Exception as exc:
        emit_crash(settings.run.env, str(command), exc)
        raise

    summary = report.summary
    session.finish(summary)
    _publish_report(report)
    part = summary.request.part_of is not None  # its parent alerts, and counts its nodes
    if settings.run.metrics and not part:
        metrics.write(metrics.emf_lines(summary, report.nodes))
    for line in summary.failed:
        logger.error("%s %s: %s", line.status.value, line.unique_id, line.first_error_line)
    for line in summary.warned:
        logger.warning("warn %s: %s", line.unique_id, line.first_error_line)
    logger.info("%s; artifacts: %s", summary.verdict, summary.artifacts)
    if summary.timed_out:
        # Named as Prefect names its own timeouts: Prefect's TimedOut event is this run's one
        # alert (no ferry event too), so the message carries where the artifacts went.
        message = f"{summary.verdict}; artifacts: {summary.artifacts}"
        return Failed(name="TimedOut", message=message, data=DbtRunFailed(message))
    if not part:
        emit_outcome(summary)
        emit_findings(summary)
    if summary.outcome is Outcome.FAILED:
        return Failed(message=summary.verdict, data=DbtRunFailed(summary.verdict))
    return Completed(message=summary.verdict, data=summary)


def _session_of_a_deployment(settings: FerrySettings) -> RunSession:
    """A deployment's run: in a worker's flow-run process it owns the process's end."""
    return RunSession(
        settings,
        deployment=deployment.name or AD_HOC,
        ending=ProcessEnd() if settings.prefect.worker_flow_run_id else None,
    )


def _refuse(session: RunSession, refusal: Refusal, command: Any, env: str) -> State[Any]:
    get_run_logger().error("%s; nothing was run", refusal.message)
    session.finish(refusal)
    emit_invalid(env, str(command), refusal.message)
    # A new exception carrying the message, never the refusal's own: its traceback would keep
    # dbt's objects alive until interpreter exit (and the CLI reads the outcome from the session).
    return Failed(message=refusal.message, data=DbtRunFailed(refusal.message))


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
