"""The `rollback` flow: consumers of an environment read an earlier kept version again.

In AWS the warehouse's credentials live only in the ECS task, so an operator rolls back by
running the `rollback-<env>` deployment (prefect.yaml) rather than `ferry rollback` on a laptop.
Both do it through `flows.publish.environment.roll_back`, end with the same line
(`RolledBack.describe`) and emit the same `ferry.data.rolled-back` event
(flows/prefect/events.py), which the automation "ferry - data rolled back" sends to the failure
alert's channels.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.states import Completed, Failed, State

from flows.dbt_flow import DbtRunFailed
from flows.prefect.events import emit_rolled_back
from flows.publish.environment import failures, refusals, roll_back
from flows.settings import FerrySettings


@flow(name="rollback", log_prints=False, validate_parameters=True)
def rollback_flow(to: str = "") -> State[Any]:
    """Makes consumers of the deployment's environment (FERRY_ENV) read an earlier kept version
    again, every relation in one transaction, rebuilding nothing.

    Args:
        to: A kept version (`ferry rollback --list` shows them) or the id of the flow run that
            built it; empty: the version published before the current one.
    """
    logger = get_run_logger()
    env = "unknown"
    try:
        settings = FerrySettings.from_env()
        env = settings.run.env
        rolled_back = roll_back(settings, to.strip() or None)
    except refusals() as exc:
        return _failed(f"rollback of {env} refused, nothing changed: {exc}")
    except failures() as exc:
        return _failed(
            f"rollback of {env} failed, nothing changed (consumers read what they read "
            f"before): {exc}; run it again once the warehouse answers"
        )
    message = rolled_back.describe()
    logger.info("%s; before, they read %s", message, rolled_back.before or "nothing published")
    if (
        not_sent := emit_rolled_back(rolled_back, timeout_s=settings.prefect.api_wait_s)
    ) is not None:
        logger.warning("the rollback's alert event was not sent: %s", not_sent)
    return Completed(message=message, data=message)


def _failed(message: str) -> State[Any]:
    """A Failed state whose message is the reason: logged once, no traceback (dbt_flow's
    filter drops the engine's re-raise of a DbtRunFailed)."""
    get_run_logger().error(message)
    return Failed(message=message, data=DbtRunFailed(message))
