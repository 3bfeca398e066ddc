"""A run's summary: what one run did, written as summary.json beside dbt's artifacts.

It embeds the request as it ran and the verdict the judge wrote (flows.run.verdict); once
written it is frozen: a later change (the store failed, the limit passed while storing) is a new
summary written over the old one.

summary.json is the run's stored record, and `RunSummary.read` the one way back from it: the
history, the report and Slim CI's comment read every run, of any schema version, as this model.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from flows.artifacts import console_url
from flows.dbt.docs import Documented
from flows.dbt.invoke import ParseReport
from flows.dbt.nodes import NodeResult, in_report_order
from flows.exit_codes import ExitCode
from flows.history.signals import Regression, VolumeAnomaly
from flows.run.blue_green import PublishReport
from flows.run.changes import ChangeReport
from flows.run.parts import PartRecord
from flows.run.request import RunRequest
from flows.run.verdict import Outcome, Verdict

_SLOWEST = 10

SCHEMA_VERSION = 2
"""The shape of summary.json: 1 had no `schema_version` and no `deployment`; 2 has both."""
AD_HOC = "ad-hoc"
"""The `deployment` of a run no Prefect deployment started (`ferry run`, with Prefect or not)."""
NOT_RECORDED = "-"
"""The `deployment` of a run stored before summaries recorded it (schema 1)."""


class RunSummary(BaseModel):
    """What one run of the `dbt` flow did: written as summary.json beside dbt's artifacts.

    Read one back with `read`, never `model_validate`: it upgrades older schema versions.
    """

    model_config = ConfigDict(frozen=True)

    schema_version: int = SCHEMA_VERSION
    run_id: str
    flow_run_id: str | None
    project: str
    env: str
    deployment: str = AD_HOC
    """The Prefect deployment that started the run, AD_HOC without one, NOT_RECORDED before
    schema 2."""
    request: RunRequest
    target: str | None
    outcome: Outcome
    verdict: str
    started_at: datetime
    finished_at: datetime
    duration_s: float
    dbt_elapsed_s: float | None = None
    dbt_version: str | None = None
    git_sha: str | None = None
    image_digest: str | None = None
    counts: dict[str, int] = Field(default_factory=dict)
    nodes_total: int = 0
    failed: list[NodeResult] = Field(default_factory=list)
    warned: list[NodeResult] = Field(default_factory=list)
    slowest: list[NodeResult] = Field(default_factory=list)
    error: str | None = None
    timed_out: bool = False
    attempts: int = 1
    parse: ParseReport | None = None
    retry_of: str | None = None
    artifacts: str | None = None
    artifact_errors: list[str] = Field(default_factory=list)
    # Against the environment's history (flows/run/history.py):
    regressions: list[Regression] = Field(default_factory=list)
    anomalies: list[VolumeAnomaly] = Field(default_factory=list)
    newly_stale: list[str] | None = None
    """source freshness: the sources that turned stale since the previous freshness run
    (None: not known, so every stale source is news)."""
    report: str | None = None
    """Where the environment's report across runs is refreshed."""
    changes: ChangeReport | None = None
    """An only-changed run: what ran and why, what was skipped as unchanged."""
    docs: str | None = None
    """Where the environment's docs site is published (by its latest `docs generate`)."""
    documented: Documented | None = None
    """`docs generate`: the nodes it documented and the relations its catalog found."""
    published: PublishReport | None = None
    """A blue-green run: the version it built, and whether consumers read it now."""
    parts: list[PartRecord] | None = None
    """A fanned-out run: its parts, each a flow run with artifacts of its own."""

    @property
    def exit_code(self) -> ExitCode:
        return self.outcome.exit_code

    @classmethod
    def read(cls, stored: bytes | str | Mapping[str, Any]) -> RunSummary:
        """A stored summary.json (or `ferry run --json`'s output), of this schema version or
        an older one, as this model.

        Raises:
            ValueError: not JSON, not a run's summary, or one a newer ferry wrote.
        """
        document = json.loads(stored) if isinstance(stored, bytes | str) else stored
        if not isinstance(document, Mapping):
            raise ValueError(f"a run summary is a JSON object, not {type(document).__name__}")
        data = dict(document)
        version = data.setdefault("schema_version", 1)
        if not isinstance(version, int) or not 1 <= version <= SCHEMA_VERSION:
            raise ValueError(
                f"summary schema version {version!r} is not one this ferry reads (1 to "
                f"{SCHEMA_VERSION}): read it with the ferry that wrote it, or a newer one"
            )
        for upgrade in _UPGRADES[version - 1 :]:
            data = upgrade(data)
        return cls.model_validate(data)


def _from_v1(data: dict[str, Any]) -> dict[str, Any]:
    """Schema 1 did not record the deployment: unknown, not ad hoc."""
    return {**data, "schema_version": 2, "deployment": NOT_RECORDED}


# _UPGRADES[n - 1] turns schema n into n + 1.
_UPGRADES: list[Callable[[dict[str, Any]], dict[str, Any]]] = [_from_v1]


def summarize(
    *,
    run_id: str,
    flow_run_id: str | None,
    project: str,
    env: str,
    request: RunRequest,
    target: str | None,
    nodes: list[NodeResult],
    verdict: Verdict,
    started_at: datetime,
    finished_at: datetime,
    deployment: str = AD_HOC,
    **extra: Any,
) -> RunSummary:
    """The summary of a finished run.

    Args:
        deployment: the Prefect deployment that started the run; AD_HOC without one.
        extra: the other fields of RunSummary the run knows (dbt's version, its changes...).
    """
    counts = Counter(n.status.value for n in nodes)
    if extra.get("changes") is not None:  # its own status: skipped as unchanged, not passed
        counts["unchanged"] = len(extra["changes"].unchanged)
    slowest = sorted(nodes, key=lambda n: n.execution_time, reverse=True)[:_SLOWEST]
    ordered = in_report_order(nodes)
    return RunSummary(
        run_id=run_id,
        flow_run_id=flow_run_id,
        project=project,
        env=env,
        deployment=deployment,
        request=request,
        target=target,
        outcome=verdict.outcome,
        verdict=verdict.sentence,
        timed_out=verdict.timed_out,
        started_at=started_at,
        finished_at=finished_at,
        duration_s=round((finished_at - started_at).total_seconds(), 3),
        counts=dict(sorted(counts.items())),
        nodes_total=len(nodes),
        failed=[n for n in ordered if n.failed],
        warned=[n for n in ordered if n.status.warned],
        slowest=slowest,
        retry_of=request.retry_of,
        **extra,
    )


def markdown_report(summary: RunSummary, nodes: list[NodeResult]) -> str:
    """The Prefect markdown artifact: verdict, where the artifacts are, one row per node."""
    lines = [
        f"## dbt {summary.request.describe()}: {summary.outcome.value}",
        "",
        f"**{summary.verdict}**",
        "",
        f"- project `{summary.project}`, environment `{summary.env}`, deployment "
        f"`{summary.deployment}`, target `{summary.target or 'default'}`, dbt "
        f"{summary.dbt_version or '?'}",
        f"- duration {summary.duration_s:.1f} s; counts: "
        + (", ".join(f"{k} {v}" for k, v in summary.counts.items()) or "none"),
        f"- artifacts: `{summary.artifacts or 'not stored'}`",
    ]
    if summary.parse is not None:
        lines.append(f"- dbt parsed {summary.parse.describe()}")
    if summary.artifact_errors:
        lines.append(f"- artifact store errors: {'; '.join(summary.artifact_errors)}")
    if summary.error:
        lines.append(f"- dbt error: {summary.error}")
    if summary.report:
        lines.append(f"- report across runs: {_link(summary.report)}")
    if summary.docs:
        lines.append(f"- docs site: {_link(summary.docs)}")
    if summary.changes is not None:
        lines.append(f"- only changed: {summary.changes.describe()}")
    if (published := summary.published) is not None:
        lines.append(f"- blue-green: {published.describe()}")
        if published.continued:
            lines.append(f"- continued from a copy: {', '.join(published.continued)}")
        if published.dropped:
            lines.append(f"- versions dropped (beyond those kept): {', '.join(published.dropped)}")
        if published.published:
            lines.append(
                f"- to return to the previous version: `ferry rollback --env {summary.env}`"
            )
    for title, found in (
        ("Timing regressions", summary.regressions),
        ("Volume anomalies", summary.anomalies),
    ):
        if found:
            lines += ["", f"**{title}** (against this environment's earlier runs):", ""]
            lines += [f"- {item.describe()}" for item in found]
    if summary.changes is not None and summary.changes.ran:
        lines += ["", "**Why each node ran** (only changed):", ""]
        lines += [f"- `{n}`: {why}" for n, why in list(summary.changes.ran.items())[:100]]
        if len(summary.changes.ran) > 100:
            lines.append(f"- and {len(summary.changes.ran) - 100} more (summary.json has all)")
    lines += ["", "| node | type | status | seconds | message |", "|---|---|---|---:|---|"]
    for n in in_report_order(nodes):
        msg = n.first_error_line if (n.failed or n.status.warned) else ""
        msg = msg.replace("|", "\\|").replace("\n", " ")[:300]
        lines.append(
            f"| `{n.unique_id}` | {n.resource_type} | {n.status.value} | "
            f"{n.execution_time:.2f} | {msg} |"
        )
    return "\n".join(lines)


def _link(url: str) -> str:
    """A link a browser opens: S3 objects through the AWS console, anything else as written."""
    console = console_url(url)
    return f"[{url}]({console})" if console else f"`{url}`"
