"""A run's metrics for CloudWatch, as Embedded Metric Format (EMF) lines on stdout.

In ECS the task's awslogs driver delivers stdout to the environment's log group, and CloudWatch
extracts the metrics from the lines itself: no agent, no API call, nothing to fail at the run's
end. The platform's alarm ("no successful build-prod in 26 h") and dashboard read them.

The contract is infra/ferry_infra/metrics.py's (infra/ is not in the image, so it is mirrored
here; tests/unit/test_run_metrics.py holds the two equal): one line per run with the metrics
under the namespace `ferry` and the dimension sets [Environment] and [Environment, Deployment],
then one plain JSON line (no `_aws` block: no metric, no cost) per slowest model, for the
dashboard's Logs Insights query.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from datetime import datetime
from typing import IO, Any

from flows.dbt.nodes import NodeResult, NodeStatus
from flows.run.summary import RunSummary
from flows.run.verdict import Outcome

NAMESPACE = "ferry"
DIMENSION_SETS = (("Environment",), ("Environment", "Deployment"))
#: Name and unit of each metric of the run's line, as the contract lists them.
RUN_METRICS = (
    ("RunSucceeded", "Count"),
    ("RunFailed", "Count"),
    ("RunDurationSeconds", "Seconds"),
    ("NodesFailed", "Count"),
    ("NodesWarned", "Count"),
    ("TimingRegressions", "Count"),
    ("VolumeAnomalies", "Count"),
)
SLOWEST_MODELS_PER_RUN = 20


def emf_lines(summary: RunSummary, nodes: Iterable[NodeResult]) -> list[str]:
    """The run's EMF line, then a line per slowest model (at most SLOWEST_MODELS_PER_RUN)."""
    succeeded = summary.outcome in {Outcome.SUCCESS, Outcome.WARNINGS}
    context = {
        "Environment": summary.env,
        "Deployment": summary.deployment,
        "Project": summary.project,
        "FlowRunId": summary.flow_run_id or "",
        "RunId": summary.run_id,
    }
    values = {
        "RunSucceeded": int(succeeded),
        "RunFailed": int(not succeeded),
        "RunDurationSeconds": round(summary.duration_s, 3),
        "NodesFailed": len(summary.failed),
        "NodesWarned": len(summary.warned),
        "TimingRegressions": len(summary.regressions),
        "VolumeAnomalies": len(summary.anomalies),
    }
    run_line: dict[str, Any] = {
        "_aws": {
            "Timestamp": _epoch_ms(summary.finished_at),
            "CloudWatchMetrics": [
                {
                    "Namespace": NAMESPACE,
                    "Dimensions": [list(dims) for dims in DIMENSION_SETS],
                    "Metrics": [{"Name": name, "Unit": unit} for name, unit in RUN_METRICS],
                }
            ],
        },
        **context,
        **values,
    }
    models = [n for n in nodes if n.resource_type == "model" and n.status is not NodeStatus.SKIPPED]
    slowest = sorted(models, key=lambda n: n.execution_time, reverse=True)
    lines = [json.dumps(run_line, separators=(",", ":"))]
    for node in slowest[:SLOWEST_MODELS_PER_RUN]:
        line = {
            **context,
            "Model": node.unique_id,
            "ModelDurationSeconds": round(node.execution_time, 3),
        }
        lines.append(json.dumps(line, separators=(",", ":")))
    return lines


def write(lines: Iterable[str], stream: IO[str] | None = None) -> None:
    """Each line whole, then flushed: the log driver reads stdout line by line."""
    out = stream or sys.stdout
    for line in lines:
        out.write(line + "\n")
    out.flush()


def _epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)
