"""A fanned-out run's parts, each a flow run of its environment's `part-<env>` deployment: its
own ECS task in AWS, its own process on the local pool.

The parts' deployment runs the `dbt-part` flow: the `dbt` flow under another name, so that a
part that crashes is named by its parent's one alert, not alerted on its own (the crash
automation matches the `dbt` flow), and with no per-deployment concurrency limit: the parts of
one build start at once, and their holds (flows/run/holds.py) keep them off each other's models
and off other runs'. Each part is started as a subflow of its parent (the Prefect UI shows them
under it), with an idempotency key, so a parent that Prefect retries does not start them twice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from uuid import UUID

from flows.run.parts import Part, PartRun
from flows.run.request import RunRequest

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun

PART_FLOW = "dbt-part"
POLL_S = 2.0
"""How often the parent asks for its parts' states."""
_FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def part_deployment(env: str) -> str:
    """The deployment a fanned-out run of `env` starts its parts on: `dbt-part/part-<env>`."""
    return f"{PART_FLOW}/part-{env}"


def run_parts(
    parts: list[Part],
    request_of: Callable[[Part], RunRequest],
    wait: Callable[[float], bool],
    *,
    env: str,
    parent_run_id: str,
    log: Any,
) -> list[PartRun]:
    """Starts every part, then waits for all of them to end.

    Args:
        request_of: The request a part runs (its nodes, the parent's flags).
        parent_run_id: The parent's run id: the parts' `part_of`, and their idempotency keys.
        wait: Sleeps between polls; False when the parent must stop waiting (its time is up):
            the parts still running are cancelled.

    Raises:
        LookupError: the server has no `part-<env>` deployment; no part was started.
    """
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    deployment = part_deployment(env)
    started: dict[UUID, tuple[Part, str]] = {}
    for part in parts:
        parameters = _parameters(request_of(part))
        try:
            flow_run: FlowRun = run_deployment(  # type: ignore[assignment]  # sync here
                name=deployment,
                parameters=parameters,
                timeout=0,
                as_subflow=True,
                idempotency_key=f"{parent_run_id}-part-{part.index}-of-{len(parts)}",
                tags=["ferry-part"],
            )
        except ObjectNotFound:
            raise LookupError(
                f"fan_out starts its parts as runs of the deployment {deployment!r}, which this "
                "Prefect server does not have: deploy it (`ferry release deploy --env "
                f"{env}`), or drop fan_out"
            ) from None
        started[flow_run.id] = (part, flow_run.name)
        log.info(
            "part %d of %d: flow run %r, %d node(s), about %.0f s",
            part.index,
            len(parts),
            flow_run.name,
            len(part.nodes),
            part.expected_s,
        )
    ended: dict[UUID, PartRun] = {}
    with get_client(sync_client=True) as client:
        while True:
            for run_id, (part, name) in started.items():
                if run_id in ended:
                    continue
                try:
                    state = client.read_flow_run(run_id).state
                except Exception as exc:  # asked again at the next poll
                    log.warning("could not read part %d's state: %s", part.index, exc)
                    continue
                if state is not None and state.type.value in _FINAL:
                    ended[run_id] = PartRun(
                        part, str(run_id), name, state.name or "", state.type.value, state.message
                    )
                    log.info("part %d of %d ended %s", part.index, len(parts), state.name)
            if len(ended) == len(started):
                break
            if not wait(POLL_S):
                _cancel(client, [r for r in started if r not in ended], log)
                for run_id, (part, name) in started.items():
                    ended.setdefault(
                        run_id,
                        PartRun(part, str(run_id), name, "Cancelled", "CANCELLED", "still running "
                                "when its parent's time was up"),
                    )  # fmt: skip
                break
    return [ended[run_id] for run_id in started]


def _parameters(request: RunRequest) -> dict[str, Any]:
    """The request as the flow's parameters (a selection as one string); what is not given is
    left to the flow's defaults."""
    values = request.model_dump(mode="json")
    return {
        name: " ".join(value) if isinstance(value, list) else value
        for name, value in values.items()
        if value is not None
    }


def _cancel(client: Any, runs: list[UUID], log: Any) -> None:
    from prefect.states import Cancelling

    for run_id in runs:
        try:
            client.set_flow_run_state(run_id, Cancelling(), force=True)
        except Exception as exc:  # it ends with its own time limit anyway
            log.warning("could not cancel part flow run %s: %s", run_id, exc)
