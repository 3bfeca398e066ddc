"""The `rollback` flow: consumers of an environment read an earlier kept version again.

In AWS the warehouse's credentials live only in the ECS task, so an operator rolls back by
running the `rollback-<env>` deployment (prefect.yaml) rather than `ferry rollback` on a laptop.
Both do it through `roll_back_environment`, end with the same line (`RolledBack.describe`) and
emit the same `ferry.data.rolled-back` event (flows/prefect/events.py), which the automation
"ferry - data rolled back" sends to the failure alert's channels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prefect import flow, get_run_logger
from prefect.states import Completed, Failed, State

from flows.dbt_flow import DbtRunFailed
from flows.prefect.events import emit_rolled_back
from flows.publish.versions import Publication
from flows.settings import FerrySettings


@dataclass(frozen=True)
class RolledBack:
    """One rollback: what consumers of `env` read now, and which version they read before."""

    env: str
    publication: Publication
    """The ledger's new publication: what consumers read from now on."""
    before: str | None
    """The version consumers read until the rollback; None if it could not be read back."""

    def describe(self) -> str:
        now = self.publication
        return (
            f"rolled back {self.env}: consumers read {now.version} again "
            f"({len(now.mapping)} relation(s), publication {now.seq})"
        )


def refusals() -> tuple[type[BaseException], ...]:
    """What makes a rollback bad input, nothing changed: settings, project, profile or target
    wrong, or no such version kept (exit 2 in the CLI)."""
    from dbt.exceptions import DbtConfigError, EnvVarMissingError

    from flows.dbt.errors import InvalidDbtInput
    from flows.publish.versions import NotKept
    from flows.settings import InvalidSettings

    return (InvalidSettings, InvalidDbtInput, DbtConfigError, EnvVarMissingError, NotKept)


def failures() -> tuple[type[BaseException], ...]:
    """What makes a rollback fail, nothing changed: the warehouse unreachable, or refusing the
    switch (exit 1 in the CLI)."""
    from dbt_common.exceptions import DbtBaseException

    from flows.dbt.warehouse import QueryFailed, WarehouseUnreachable
    from flows.publish.publisher import MissingRelation

    return (QueryFailed, WarehouseUnreachable, MissingRelation, DbtBaseException, OSError)


def roll_back_environment(
    settings: FerrySettings, to: str | None, warn: Callable[[str], None]
) -> RolledBack:
    """Rolls the environment back (flows.publish.environment.roll_back), then reads back the
    publication it replaced, for the alert to say what consumers read before.

    Args:
        to: A kept version or the id of the run that built it; None: the previous version.
        warn: Told, in a line, what went wrong after the rollback itself succeeded.

    Raises:
        What `refusals()` and `failures()` name; nothing changed then.
    """
    from flows.publish.environment import kept_publications, roll_back

    now = roll_back(settings, to).publication
    try:
        # The switch inserted `seq + 1` over the publication current until then, in one
        # transaction; nothing but a publish after it forgets ledger rows.
        found = kept_publications(settings)
        before = next((p.version for p in found if p.seq == now.seq - 1), None)
    except (*refusals(), *failures()) as exc:  # rolled back all the same
        warn(f"rolled back, but could not read which version consumers read before: {exc}")
        before = None
    return RolledBack(settings.run.env, now, before)


def announce(rolled_back: RolledBack, settings: FerrySettings) -> str | None:
    """Emits the rollback's `ferry.data.rolled-back` event, waiting FERRY_PREFECT_API_WAIT_S at
    most; returns why it was not sent, or None."""
    now = rolled_back.publication
    return emit_rolled_back(
        rolled_back.env,
        version=now.version,
        before=rolled_back.before,
        relations=len(now.mapping),
        publication=now.seq,
        message=rolled_back.describe(),
        timeout_s=settings.prefect.api_wait_s,
    )


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
        rolled_back = roll_back_environment(settings, to.strip() or None, logger.warning)
    except refusals() as exc:
        return _failed(f"rollback of {env} refused, nothing changed: {exc}")
    except failures() as exc:
        return _failed(
            f"rollback of {env} failed, nothing changed (consumers read what they read "
            f"before): {exc}; run it again once the warehouse answers"
        )
    message = rolled_back.describe()
    logger.info("%s; before, they read %s", message, rolled_back.before or "an unknown version")
    if (not_sent := announce(rolled_back, settings)) is not None:
        logger.warning("the rollback's alert event was not sent: %s", not_sent)
    return Completed(message=message, data=message)


def _failed(message: str) -> State[Any]:
    """A Failed state whose message is the reason: logged once, no traceback (dbt_flow's
    filter drops the engine's re-raise of a DbtRunFailed)."""
    get_run_logger().error(message)
    return Failed(message=message, data=DbtRunFailed(message))
