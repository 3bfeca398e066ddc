"""dbt nodes as ferry values: what ran, how it ended, and why.

These are plain values with no dbt or Prefect types inside, so the reporting, summary and
artifact code never needs to import either.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class NodeStatus(StrEnum):
    """dbt's result statuses (values as dbt writes them to run_results.json)."""

    SUCCESS = "success"
    PASS = "pass"
    WARN = "warn"
    ERROR = "error"
    FAIL = "fail"
    SKIPPED = "skipped"
    RUNTIME_ERROR = "runtime error"
    PARTIAL_SUCCESS = "partial success"
    NO_OP = "no-op"

    @property
    def failed(self) -> bool:
        return self in _FAILED

    @property
    def warned(self) -> bool:
        return self is NodeStatus.WARN

    @property
    def rank(self) -> int:
        """Where a node of this status goes in every report: failures, warnings, skips, the
        rest."""
        if self.failed:
            return 0
        return {NodeStatus.WARN: 1, NodeStatus.SKIPPED: 2}.get(self, 3)

    @classmethod
    def parse(cls, value: str) -> NodeStatus:
        try:
            return cls(str(value).lower())
        except ValueError:
            # An unknown status from a newer dbt is treated as a failure: never report green
            # on something we do not understand.
            return cls.ERROR


_FAILED = {
    NodeStatus.ERROR,
    NodeStatus.FAIL,
    NodeStatus.RUNTIME_ERROR,
    NodeStatus.PARTIAL_SUCCESS,
}


@dataclass(frozen=True, slots=True)
class NodeStarted:
    """A node dbt has begun executing."""

    unique_id: str
    resource_type: str
    name: str
    started_at: datetime


@dataclass(frozen=True, slots=True)
class NodeResult:
    """A node dbt has finished with (or skipped)."""

    unique_id: str
    resource_type: str
    name: str
    status: NodeStatus
    message: str | None
    started_at: datetime | None
    finished_at: datetime | None
    execution_time: float
    failures: int | None = None
    relation: str | None = None
    rows: int | None = None
    """Rows the adapter says the node affected (PostgreSQL, Redshift); None when it does not."""

    @property
    def failed(self) -> bool:
        return self.status.failed

    @property
    def is_test(self) -> bool:
        return self.resource_type in {"test", "unit_test"}

    @property
    def first_error_line(self) -> str:
        """The line of dbt's message worth putting in a notification."""
        if not self.message:
            return self.status.value
        lines = [ln.strip() for ln in self.message.strip().splitlines() if ln.strip()]
        # dbt database errors read "Database Error in model x (path)\n  <the error>\n  compiled...".
        if len(lines) > 1 and lines[0].lower().startswith(("database error", "runtime error")):
            kind = lines[0].split(" in ")[0]
            return f"{kind}: {lines[1]}"
        return lines[0] if lines else self.status.value

    def describe(self) -> str:
        """`model.shop.fct_orders (Database Error: ...)`, for verdicts and alerts."""
        if self.is_test and self.failures:
            noun = "failure" if self.failures == 1 else "failures"
            return f"{self.unique_id} ({self.failures} {noun})"
        return f"{self.unique_id} ({_clip(self.first_error_line, 200)})"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def in_report_order(nodes: list[NodeResult]) -> list[NodeResult]:
    """The order of every report: failures first (broken models before the tests that failed
    around them), then warnings, skips and the rest, slowest first within each."""
    return sorted(nodes, key=lambda n: (n.status.rank, n.is_test, -n.execution_time))


def results_of_json(
    document: dict[str, Any], names: dict[str, str] | None = None
) -> list[NodeResult]:
    """The nodes of a run_results.json read back (a part of a fanned-out run, stored).

    Args:
        names: Each node's name, from the manifest; else the last part of its unique id.
    """
    found: list[NodeResult] = []
    for r in document.get("results") or []:
        unique_id = str(r.get("unique_id"))
        timing = r.get("timing") or []
        starts = [w for t in timing if (w := dbt_time(t.get("started_at")))]
        ends = [w for t in timing if (w := dbt_time(t.get("completed_at")))]
        found.append(
            NodeResult(
                unique_id=unique_id,
                resource_type=unique_id.split(".", 1)[0],
                name=(names or {}).get(unique_id) or unique_id.rsplit(".", 1)[-1],
                status=NodeStatus.parse(r.get("status") or "error"),
                message=r.get("message"),
                started_at=min(starts, default=None),
                finished_at=max(ends, default=None),
                execution_time=float(r.get("execution_time") or 0.0),
                failures=r.get("failures") or None,
                relation=r.get("relation_name"),
                rows=rows_affected(r.get("adapter_response")),
            )
        )
    return found


def rows_affected(response: Any) -> int | None:
    """The rows a node's adapter response reports; None where it reports none (dbt's -1)."""
    rows = response.get("rows_affected") if isinstance(response, dict) else None
    return rows if isinstance(rows, int) and not isinstance(rows, bool) and rows >= 0 else None


def dbt_time(value: str | None) -> datetime | None:
    """A time dbt wrote (ISO 8601, `Z` or an offset, or none: UTC); None when unreadable."""
    if not value:
        return None
    try:
        return aware(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except (ValueError, AttributeError):
        return None


def aware(value: datetime | None) -> datetime | None:
    """A time of dbt's in UTC when it carries no zone (dbt's own are UTC)."""
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)
