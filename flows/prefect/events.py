"""The events each run of the `dbt` flow ends with: what automations alert on.

One outcome event per run, never one per node, so a failed build with 40 broken nodes pages
once; then at most one event per kind of finding against the environment's history
(`ferry.dbt.timing.regressed`, `ferry.dbt.volume.anomalous`), each listing every node it is
about. The events are emitted inside the flow run, so Prefect relates them to the run, its
flow, deployment and tags; their payload carries what a notification needs without another API
call.

Source freshness problems alert once per stale period: a freshness run that finds only sources
already stale at the previous run ends with `ferry.dbt.freshness.still-stale`, which no
automation listens to.

A rollback of the data (the `rollback` flow, or `ferry rollback` with a Prefect API) emits
`ferry.data.rolled-back` about the environment (`ferry.env.<env>`), the flow run related to it
when there is one. It is sent at once and waited for a bounded time: the rollback is done
whatever the API does, and a command-line process has no flow run's end to deliver it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from prefect.events import emit_event
from prefect.runtime import flow_run

from flows.dbt.nodes import NodeResult, NodeStatus
from flows.history.signals import Regression, VolumeAnomaly
from flows.run.summary import RunSummary
from flows.run.verdict import Outcome

if TYPE_CHECKING:
    from flows.publish.environment import RolledBack

_LISTED = 20

_NAMES = {
    Outcome.SUCCESS: "ferry.dbt.run.succeeded",
    Outcome.WARNINGS: "ferry.dbt.run.warned",
    Outcome.FAILED: "ferry.dbt.run.failed",
    Outcome.INVALID: "ferry.dbt.run.invalid",
}
_FRESHNESS_NAMES = {
    Outcome.WARNINGS: "ferry.dbt.freshness.warned",
    Outcome.FAILED: "ferry.dbt.freshness.failed",
}
STILL_STALE = "ferry.dbt.freshness.still-stale"
REGRESSED = "ferry.dbt.timing.regressed"
ANOMALOUS = "ferry.dbt.volume.anomalous"
ROLLED_BACK = "ferry.data.rolled-back"


def event_name(outcome: Outcome, command: str) -> str:
    """`ferry.dbt.run.<outcome>`; source freshness problems have names of their own."""
    if command == "source freshness" and outcome in _FRESHNESS_NAMES:
        return _FRESHNESS_NAMES[outcome]
    return _NAMES[outcome]


def emit_outcome(summary: RunSummary) -> None:
    command = summary.request.command.value
    name = event_name(summary.outcome, command)
    freshness = name in _FRESHNESS_NAMES.values()
    if freshness and summary.newly_stale == [] and _only_stale_sources(summary):
        name = STILL_STALE  # every stale source was alerted by an earlier run
    _emit(
        name,
        env=summary.env,
        project=summary.project,
        command=command,
        payload={
            "verdict": summary.verdict,
            "outcome": summary.outcome.value,
            "selection": summary.request.describe(),
            "failed": [_line(n) for n in summary.failed[:_LISTED]],
            "warned": [_line(n) for n in summary.warned[:_LISTED]],
            "counts": summary.counts,
            "artifacts": summary.artifacts,
            "report": summary.report,
            **({"newly_stale": summary.newly_stale} if freshness else {}),
        },
    )


def emit_rolled_back(rolled_back: RolledBack, *, timeout_s: float) -> str | None:
    """Consumers of an environment read an earlier version again: one `ferry.data.rolled-back`
    event, sent now and waited for `timeout_s` at most (FERRY_PREFECT_API_WAIT_S); never raises.

    Returns:
        None once the Prefect API has the event; else why not, for a warning.
    """
    from prefect.events import Event, Resource
    from prefect.settings import get_current_settings
    from prefect.utilities.asyncutils import run_coro_as_sync

    if not get_current_settings().api.url:  # Prefect would start a throwaway server for it
        return "no Prefect API configured (PREFECT_API_URL)"
    env, now = rolled_back.env, rolled_back.publication
    in_a_run = flow_run.get_id() is not None
    event = Event(
        event=ROLLED_BACK,
        resource=Resource(
            {
                "prefect.resource.id": f"ferry.env.{env}",
                "prefect.resource.name": f"ferry {env}",
                "ferry.env": env,
            }
        ),
        payload={
            "message": rolled_back.describe(),
            "env": env,
            "version": now.version,
            "before": rolled_back.before,
            "relations": len(now.mapping),
            "publication": now.seq,
            "flow_run_url": flow_run.get_flow_run_ui_url() if in_a_run else None,
            # Where `ferry rollback` ran, when no flow run did it.
            "host": None if in_a_run else socket.gethostname(),
        },
    )
    try:
        with _quiet("prefect.events.clients"):  # its warning would repeat the returned reason
            run_coro_as_sync(asyncio.wait_for(_send_now(event, related=in_a_run), timeout_s))
    except TimeoutError:
        return f"the Prefect API did not take it within {timeout_s:g} s (FERRY_PREFECT_API_WAIT_S)"
    except Exception as exc:  # the API's trouble is not the rollback's
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return None


async def _send_now(event: Any, *, related: bool) -> None:
    """Sends one event on its own connection, confirmed by the server (a websocket ping after
    it), instead of queueing it for a worker that drains at the process's exit."""
    from prefect.client.orchestration import get_client
    from prefect.events.clients import get_events_client
    from prefect.events.related import related_resources_from_run_context

    if related:  # the run, its flow, deployment, work pool and tags, as emit_event adds them
        async with get_client() as client:
            found = await related_resources_from_run_context(client, exclude={event.resource.id})
        event = event.model_copy(update={"related": [*event.related, *found]})
    async with get_events_client(reconnection_attempts=0, checkpoint_every=1) as events:
        await events.emit(event)


@contextlib.contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    """Drops a logger's records below ERROR for the duration."""

    def below_error(record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR

    logger = logging.getLogger(logger_name)
    logger.addFilter(below_error)
    try:
        yield
    finally:
        logger.removeFilter(below_error)


def _only_stale_sources(summary: RunSummary) -> bool:
    """The run failed or warned for stale sources alone: not for a freshness query that broke,
    an error of dbt's or the time limit, which are news every time."""
    return (
        bool(summary.failed or summary.warned)
        and not summary.error
        and not summary.timed_out
        and all(
            n.resource_type == "source" and n.status is NodeStatus.ERROR for n in summary.failed
        )
    )


def emit_findings(summary: RunSummary) -> None:
    """One event for the run's timing regressions, one for its volume anomalies, if any."""
    command = summary.request.command.value
    findings: list[tuple[str, Sequence[Regression | VolumeAnomaly], str]] = [
        (REGRESSED, summary.regressions, "slower than usual"),
        (ANOMALOUS, summary.anomalies, "with unusual row counts"),
    ]
    for name, found, what in findings:
        if not found:
            continue
        _emit(
            name,
            env=summary.env,
            project=summary.project,
            command=command,
            payload={
                "verdict": f"{len(found)} node(s) {what} in dbt {summary.request.describe()}",
                "selection": summary.request.describe(),
                "nodes": [{**f.model_dump(mode="json"), "text": f.describe()} for f in found],
                "artifacts": summary.artifacts,
                "report": summary.report,
            },
        )


def emit_invalid(env: str, command: str, verdict: str) -> None:
    """A refused run: `env` as the deployment set it, even when that value was the refusal."""
    _emit(
        event_name(Outcome.INVALID, command),
        env=env,
        project=None,
        command=command,
        payload={"verdict": verdict, "outcome": "invalid", "failed": []},
    )


def emit_crash(env: str, command: str, exc: BaseException) -> None:
    """An unexpected error in ferry itself still produces the run's one alert."""
    verdict = f"ferry failed before a verdict: {type(exc).__name__}: {exc}"
    _emit(
        event_name(Outcome.FAILED, command),
        env=env,
        project=None,
        command=command,
        payload={"verdict": verdict, "outcome": "failed", "failed": []},
    )


def _emit(name: str, *, env: str, project: str | None, command: str, payload: dict[str, Any]):
    run_id = flow_run.get_id()
    if not run_id:
        return
    resource = {
        "prefect.resource.id": f"prefect.flow-run.{run_id}",
        "prefect.resource.name": flow_run.get_name() or "",
        "ferry.env": env,
        "ferry.command": command,
    }
    if project:
        resource["ferry.project"] = project
    payload = {
        **payload,
        "env": env,
        "project": project,
        "command": command,
        "flow_run_url": flow_run.get_flow_run_ui_url(),
    }
    emit_event(event=name, resource=resource, payload=payload)


def _line(node: NodeResult) -> dict[str, Any]:
    return {
        "unique_id": node.unique_id,
        "status": node.status.value,
        "message": node.first_error_line,
    }
