"""Run a deployment once and wait for its verdict: the staging smoke test before promotion.

It goes through the real path - Prefect API, work pool, an ECS task from the image's digest -
so a green smoke run means the image, the deployment and the infrastructure work together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SmokeResult:
    flow_run_id: str
    state: str
    message: str
    finished: bool

    @property
    def passed(self) -> bool:
        return self.finished and self.state == "COMPLETED"

    def describe(self) -> str:
        if not self.finished:
            return f"flow run {self.flow_run_id} did not finish in time (still {self.state})"
        return f"flow run {self.flow_run_id} ended {self.state}: {self.message}"


def smoke(deployment: str, parameters: dict[str, Any], timeout_s: float) -> SmokeResult:
    """Starts a run of `deployment` (`flow/deployment`) and waits up to `timeout_s`.

    Raises:
        ValueError: the deployment does not exist (the message names it).
    """
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    try:
        flow_run: FlowRun = run_deployment(  # type: ignore[assignment]  # sync_compatible
            deployment, parameters=parameters, timeout=timeout_s, poll_interval=3
        )
    except ObjectNotFound:
        raise ValueError(f"deployment {deployment!r} does not exist; was it deployed?") from None
    state = flow_run.state
    return SmokeResult(
        flow_run_id=str(flow_run.id),
        state=state.type.value if state else "UNKNOWN",
        message=(state.message or "") if state else "",
        finished=bool(state and state.is_final()),
    )
