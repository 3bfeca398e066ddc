"""An environment's published data, from its settings: what `ferry rollback` and the `rollback`
flow share. Opens the target's warehouse the way dbt does (flows.dbt.warehouse), reads the
ledger, and rolls back in one transaction (flows.publish.publisher)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from flows.dbt.profiles import DbtProject
from flows.dbt.warehouse import Warehouse, open_warehouse
from flows.publish import publisher
from flows.publish.versions import Publication, version_named
from flows.settings import FerrySettings


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


def roll_back(settings: FerrySettings, to: str | None = None) -> publisher.Switched:
    """Makes consumers of the environment read the previous version again (or the kept
    version `to` names: a version, or the id of the run that built it), in one transaction.

    Raises:
        NotKept: nothing to return to, or `to` is not kept; nothing changed.
        InvalidDbtInput: the project, profile or target is wrong; nothing changed.
        WarehouseUnreachable, QueryFailed, MissingRelation: the warehouse failed or refused
            the switch; nothing changed.
    """
    env, ledger = settings.run.env, settings.publish.ledger_schema
    with _warehouse(settings) as warehouse:
        version = None
        if to:
            version = version_named(to, publisher.publications(warehouse, env, ledger))
        return publisher.rollback(warehouse, env=env, to=version, ledger_schema=ledger)
