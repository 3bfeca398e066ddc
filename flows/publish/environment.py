"""An environment's published data, from its settings: what `ferry rollback` and the `rollback`
flow share. Opens the target's warehouse the way dbt does (flows.dbt.warehouse), reads the
ledger, and rolls back in one transaction (flows.publish.publisher); both say the result with
`RolledBack.describe` and sort its exceptions with `refusals()` and `failures()`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from flows.dbt.profiles import DbtProject
from flows.dbt.warehouse import Warehouse, open_warehouse
from flows.publish import publisher
from flows.publish.versions import Publication, version_named
from flows.settings import FerrySettings


@dataclass(frozen=True)
class RolledBack:
    """One rollback: what consumers of `env` read now, and which version they read before."""

    env: str
    publication: Publication
    """The ledger's new publication: what consumers read from now on."""
    before: str | None
    """The version consumers read until the rollback (None: nothing was published before)."""

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

    return (
        QueryFailed,
        WarehouseUnreachable,
        publisher.MissingRelation,
        DbtBaseException,
        OSError,
    )


@contextlib.contextmanager
def _warehouse(settings: FerrySettings) -> Iterator[Warehouse]:
    project = DbtProject.load(settings.run.project_dir, settings.run.profiles_dir)
    work_dir = settings.run.work_dir.resolve() / "publish"
    work_dir.mkdir(parents=True, exist_ok=True)
    with open_warehouse(project, settings.run.target, work_dir, check=True) as warehouse:
        yield warehouse


def kept_publications(settings: FerrySettings) -> list[Publication]:
    """The environment's kept publications, oldest first (the last is what consumers read).

    Raises:
        InvalidDbtInput: the project, profile or target is wrong.
        WarehouseUnreachable, QueryFailed: the warehouse failed.
    """
    with _warehouse(settings) as warehouse:
        return publisher.publications(warehouse, settings.run.env, settings.publish.ledger_schema)


def roll_back(settings: FerrySettings, to: str | None = None) -> RolledBack:
    """Makes consumers of the environment read the previous version again (or the kept
    version `to` names: a version, or the id of the run that built it), in one transaction.

    Raises:
        What `refusals()` and `failures()` name; nothing changed then.
    """
    env, ledger = settings.run.env, settings.publish.ledger_schema
    with _warehouse(settings) as warehouse:
        version = None
        if to:
            version = version_named(to, publisher.publications(warehouse, env, ledger))
        switched = publisher.rollback(warehouse, env=env, to=version, ledger_schema=ledger)
    before = switched.replaced.version if switched.replaced is not None else None
    return RolledBack(env, switched.publication, before)
