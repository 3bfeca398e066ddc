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
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prefect.events import emit_event
from prefect.runtime import flow_run

from flows.dbt.nodes import NodeResult, NodeStatus
from flows.history.signals import Regression, VolumeAnomaly
from flows.run.summary import RunSummary
from flows.run.verdict import Outcome

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
