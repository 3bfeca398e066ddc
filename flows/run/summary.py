"""A run's summary and its verdict: the sentence that says what happened.

The verdict becomes the flow run's final state message, the CLI's last line and the first line
of every alert, so it names the failing nodes and their first error line, not just a count.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from flows.dbt.invoke import ParseReport
from flows.dbt.nodes import NodeResult, NodeStatus
from flows.dbt.request import RunRequest

_LISTED = 5  # nodes named in a verdict before "and N more"
_TEST_TYPES = frozenset({"test", "unit_test"})


class Outcome(StrEnum):
    SUCCESS = "success"
    WARNINGS = "warnings"
    FAILED = "failed"
    INVALID = "invalid"

    @property
    def exit_code(self) -> int:
        return {"success": 0, "warnings": 0, "failed": 1, "invalid": 2}[self.value]


class NodeLine(BaseModel):
    """One node in a summary (summary.json and alerts read these)."""

    unique_id: str
    resource_type: str
    status: str
    execution_time: float
    message: str | None = None
    failures: int | None = None

    @classmethod
    def of(cls, node: NodeResult) -> NodeLine:
        return cls(
            unique_id=node.unique_id,
            resource_type=node.resource_type,
            status=node.status.value,
            execution_time=round(node.execution_time, 3),
            message=node.first_error_line if (node.failed or node.status.warned) else None,
            failures=node.failures,
        )


class ParseLine(BaseModel):
    """How this run's parse went: from saved state (the image's baked one) or from scratch."""

    baked: str | None = None
    """The baked parse state the run started from (`<env>/<target>`), if any."""
    partial: bool
    """dbt re-used saved state and parsed only the files that changed."""
    reason: str | None = None
    """Why dbt parsed in full, in dbt's words."""
    changed_files: int = 0
    elapsed_s: float = 0.0

    @classmethod
    def of(cls, report: ParseReport, baked: str | None) -> ParseLine:
        return cls(
            baked=baked,
            partial=report.partial,
            reason=None if report.partial else report.reason,
            changed_files=report.changed_files,
            elapsed_s=report.elapsed_s,
        )

    def describe(self) -> str:
        if self.partial:
            source = f"baked state {self.baked}" if self.baked else "saved state"
            return f"from {source} in {self.elapsed_s:.1f} s ({self.changed_files} files re-parsed)"
        refused = f", not from the baked parse state {self.baked}" if self.baked else ""
        return f"in full in {self.elapsed_s:.1f} s{refused}: {self.reason}"


class RunSummary(BaseModel):
    """What one run of the `dbt` flow did: written as summary.json beside dbt's artifacts."""

    run_id: str
    flow_run_id: str | None
    project: str
    env: str
    request: dict[str, Any]
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
    failed: list[NodeLine] = Field(default_factory=list)
    warned: list[NodeLine] = Field(default_factory=list)
    slowest: list[NodeLine] = Field(default_factory=list)
    error: str | None = None
    timed_out: bool = False
    attempts: int = 1
    parse: ParseLine | None = None
    retry_of: str | None = None
    artifacts: str | None = None
    artifact_errors: list[str] = Field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return self.outcome.exit_code


def judge(
    request: RunRequest, nodes: list[NodeResult], dbt_success: bool, error: str | None
) -> tuple[Outcome, str]:
    """The outcome and the verdict sentence for a finished dbt invocation."""
    # Root causes first: a broken model before the tests that failed around it.
    failed = sorted((n for n in nodes if n.failed), key=lambda n: n.resource_type in _TEST_TYPES)
    warned = [n for n in nodes if n.status.warned]
    skipped = sum(1 for n in nodes if n.status is NodeStatus.SKIPPED)
    total = len(nodes)
    if failed:
        verdict = f"{len(failed)} of {total} nodes failed: {_name_nodes(failed)}"
        if skipped:
            verdict += f"; {skipped} skipped"
        if warned:
            verdict += f"; {len(warned)} warned"
        return Outcome.FAILED, verdict
    if error or not dbt_success:
        reason = error or "dbt reported a failure without a failed node (see dbt.log)"
        return Outcome.FAILED, f"dbt {request.command.value} failed: {reason}"
    if total == 0:
        what = "nothing failed in that run" if request.command.value == "retry" else "no nodes"
        if request.compares_state:
            what = f"nothing selected by {' '.join(request.selection_args())} differs from state"
        return Outcome.SUCCESS, f"dbt {request.command.value} ran no nodes ({what})"
    if warned:
        return (
            Outcome.WARNINGS,
            f"{total} of {total} nodes passed, {len(warned)} with warnings: {_name_nodes(warned)}",
        )
    return Outcome.SUCCESS, f"{total} of {total} nodes passed"


def _name_nodes(nodes: list[NodeResult]) -> str:
    named = "; ".join(n.describe() for n in nodes[:_LISTED])
    if len(nodes) > _LISTED:
        named += f"; and {len(nodes) - _LISTED} more"
    return named


def summarize(
    *,
    run_id: str,
    flow_run_id: str | None,
    project: str,
    env: str,
    request: RunRequest,
    target: str | None,
    nodes: list[NodeResult],
    outcome: Outcome,
    verdict: str,
    started_at: datetime,
    finished_at: datetime,
    **extra: Any,
) -> RunSummary:
    counts = Counter(n.status.value for n in nodes)
    slowest = sorted(nodes, key=lambda n: n.execution_time, reverse=True)[:10]
    return RunSummary(
        run_id=run_id,
        flow_run_id=flow_run_id,
        project=project,
        env=env,
        request=request.model_dump(mode="json"),
        target=target,
        outcome=outcome,
        verdict=verdict,
        started_at=started_at,
        finished_at=finished_at,
        duration_s=round((finished_at - started_at).total_seconds(), 3),
        counts=dict(sorted(counts.items())),
        nodes_total=len(nodes),
        failed=[NodeLine.of(n) for n in nodes if n.failed],
        warned=[NodeLine.of(n) for n in nodes if n.status.warned],
        slowest=[NodeLine.of(n) for n in slowest],
        retry_of=request.retry_of,
        **extra,
    )


def markdown_report(summary: RunSummary, nodes: list[NodeResult]) -> str:
    """The Prefect markdown artifact: verdict, where the artifacts are, one row per node."""
    order = {True: 0, False: 1}
    rows = sorted(
        nodes,
        key=lambda n: (order[n.failed], order[n.status.warned], -n.execution_time),
    )
    lines = [
        f"## dbt {summary.request.get('command', '')}: {summary.outcome.value}",
        "",
        f"**{summary.verdict}**",
        "",
        f"- project `{summary.project}`, environment `{summary.env}`, target "
        f"`{summary.target or 'default'}`, dbt {summary.dbt_version or '?'}",
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
    lines += ["", "| node | type | status | seconds | message |", "|---|---|---|---:|---|"]
    for n in rows:
        msg = n.first_error_line if (n.failed or n.status.warned) else ""
        msg = msg.replace("|", "\\|").replace("\n", " ")[:300]
        lines.append(
            f"| `{n.unique_id}` | {n.resource_type} | {n.status.value} | "
            f"{n.execution_time:.2f} | {msg} |"
        )
    return "\n".join(lines)
