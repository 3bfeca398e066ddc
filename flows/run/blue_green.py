"""A blue-green run (`publish: blue-green`): built into a version, published only if it passed.

    execute ─ prepare: the executed nodes pointed at `<schema>__<version>` in dbt's manifest,
              │        incremental models and snapshots copied there to continue from
              └ dbt builds and tests the version; consumers still read the previous one
    owner ─── judge ─ publish_version: every model the run built switches at once, then the
              │                     versions beyond FERRY_KEEP_VERSIONS are dropped
              └ verdict.with_publication says what consumers read now

The mechanism (views repointed in one transaction, the ledger of publications) is
flows/publish/; docs/architecture.md says why and what a reader can see.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from flows.dbt.nodes import NodeResult, NodeStatus
from flows.dbt.warehouse import QueryFailed, WarehouseUnreachable, open_warehouse
from flows.publish import publisher
from flows.publish.build import VersionedNode, build_into_version
from flows.publish.versions import InvalidVersion, version_for_run
from flows.run.plan import Log, RunPlan


class PrepareFailed(RuntimeError):
    """The version could not be prepared (a copy failed); dbt did not run, nothing changed."""


@dataclass(frozen=True)
class BlueGreen:
    """A run's version, as prepared before dbt executes it."""

    version: str
    nodes: tuple[VersionedNode, ...]
    continued: tuple[str, ...] = ()
    """The consumers (`schema.name`) copied for an incremental model or a snapshot."""


class PublishReport(BaseModel):
    """What a blue-green run did to what consumers read: part of its summary."""

    model_config = ConfigDict(frozen=True)

    version: str
    """The version the run built (`<schema>__<version>` schemas)."""
    published: bool = False
    relations: list[str] = Field(default_factory=list)
    """The consumer relations (`schema.name`) switched to this version."""
    continued: list[str] = Field(default_factory=list)
    """Incremental models and snapshots that continued from a copy of what consumers read."""
    dropped: list[str] = Field(default_factory=list)
    """Versioned schemas dropped after the publish (beyond FERRY_KEEP_VERSIONS)."""
    error: str | None = None
    """Why a run that passed was not published (the warehouse refused the switch)."""

    def describe(self) -> str:
        if self.published:
            return f"published {self.version}: {len(self.relations)} relation(s) switched at once"
        if self.error:
            return (
                f"built and tested {self.version} but not published ({self.error}): consumers "
                "read what they read before"
            )
        return f"nothing published: consumers read what they read before ({self.version} kept)"


def prepare(plan: RunPlan, manifest: Any, executing: Iterable[str], log: Log) -> BlueGreen:
    """Points the nodes the run executes at its version (in `manifest`) and copies what the
    incremental models and snapshots among them continue from.

    Raises:
        PrepareFailed: the version's name is not possible, or the copy failed; dbt must not run.
    """
    try:
        version = version_for_run(plan.run_id)
        nodes = build_into_version(
            manifest, executing, version, full_refresh=plan.request.full_refresh
        )
    except InvalidVersion as exc:
        raise PrepareFailed(str(exc)) from None
    log.info("blue-green: building %d relation(s) into version %s", len(nodes), version)
    continuing = [(n.consumer, n.built) for n in nodes if n.continues]
    if not continuing:
        return BlueGreen(version, tuple(nodes))
    try:
        with open_warehouse(plan.project, plan.target, plan.run_dir / "publish") as warehouse:
            copied = publisher.continue_from(
                warehouse,
                env=plan.settings.run.env,
                continuing=continuing,
                ledger_schema=plan.settings.publish.ledger_schema,
            )
    except (QueryFailed, WarehouseUnreachable) as exc:
        raise PrepareFailed(
            f"could not copy what incremental models continue from: {exc}"
        ) from None
    return BlueGreen(version, tuple(nodes), tuple(_name(c) for c in copied))


def publish_version(
    plan: RunPlan, prepared: BlueGreen, nodes: list[NodeResult], *, passed: bool, log: Log
) -> PublishReport:
    """Publishes the version when the run passed; never raises (a failure is in the report)."""
    report = PublishReport(version=prepared.version, continued=list(prepared.continued))
    if not passed:
        log.info("blue-green: the run did not pass, %s is not published", prepared.version)
        return report
    succeeded = {n.unique_id for n in nodes if n.status is NodeStatus.SUCCESS}
    built = [n.consumer for n in prepared.nodes if n.unique_id in succeeded]
    if not built:
        return report
    settings = plan.settings
    try:
        with open_warehouse(plan.project, plan.target, plan.run_dir / "publish") as warehouse:
            publisher.publish(
                warehouse,
                env=settings.run.env,
                version=prepared.version,
                built=built,
                ledger_schema=settings.publish.ledger_schema,
            )
            report = report.model_copy(
                update={"published": True, "relations": sorted(_name(r) for r in built)}
            )
            try:
                dropped = publisher.drop_unkept(
                    warehouse,
                    env=settings.run.env,
                    keep=settings.publish.keep_versions,
                    ledger_schema=settings.publish.ledger_schema,
                )
                report = report.model_copy(update={"dropped": dropped})
            except (QueryFailed, WarehouseUnreachable) as exc:  # the next publish drops them
                log.warning("blue-green: published, but older versions were not dropped: %s", exc)
    except (QueryFailed, WarehouseUnreachable, publisher.MissingRelation) as exc:
        log.error("blue-green: %s was not published: %s", prepared.version, exc)
        return report.model_copy(update={"error": str(exc)})
    log.info("blue-green: %s", report.describe())
    return report


def _name(relation: Any) -> str:
    return f"{relation.schema}.{relation.name}"
