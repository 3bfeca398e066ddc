"""Run a deployment once and wait for its verdict: the staging smoke test before promotion.

It goes through the real path - Prefect API, work pool, an ECS task from the image's digest -
so a green smoke run means the image, the deployment and the infrastructure work together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID


class InvalidSmokeRequest(ValueError):
    """Nothing to run as asked: a deployment that is not `flow/deployment` or does not exist,
    parameters the deployment refuses, a negative wait. Bad input (exit code 2); a run that
    ends other than Completed is the smoke test failing (exit code 1)."""


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
        InvalidSmokeRequest: the deployment is malformed or does not exist, or refuses the
            parameters (the message names them); nothing was run.
        httpx.HTTPError: the Prefect API failed.
    """
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError

    if not _is_deployment_name(deployment):
        raise InvalidSmokeRequest(
            f"deployment {deployment!r} is not flow/deployment (e.g. dbt/run-staging) or an id"
        )
    if timeout_s < 0:
        raise InvalidSmokeRequest(f"the timeout must be 0 s or more, got {timeout_s}")
    try:
        flow_run: FlowRun = run_deployment(  # type: ignore[assignment]  # sync_compatible
            deployment, parameters=parameters, timeout=timeout_s, poll_interval=3
        )
    except ObjectNotFound:
        raise InvalidSmokeRequest(
            f"deployment {deployment!r} does not exist; was it deployed?"
        ) from None
    except PrefectHTTPStatusError as exc:
        if exc.response.status_code != 409:  # 409: the deployment's parameter schema refused
            raise
        detail = exc.response.json().get("detail") if exc.response.content else None
        raise InvalidSmokeRequest(f"deployment {deployment!r}: {detail or exc}") from None
    state = flow_run.state
    return SmokeResult(
        flow_run_id=str(flow_run.id),
        state=state.type.value if state else "UNKNOWN",
        message=(state.message or "") if state else "",
        finished=bool(state and state.is_final()),
    )


def _is_deployment_name(name: str) -> bool:
    flow, slash, deployment = name.partition("/")
    if slash:
        return bool(flow and deployment and "/" not in deployment)
    try:
        UUID(name)
    except ValueError:
        return False
    return True
