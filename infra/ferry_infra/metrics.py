"""The metric contract between a dbt run and the platform's alarms and dashboard.

A run writes one CloudWatch Embedded Metric Format (EMF) line to stdout when it ends; the task's
awslogs driver delivers it to the environment's log group (`/ferry/<env>/dbt`) and CloudWatch
turns it into the metrics below. The alarms and the dashboard read only what this module names.
infra/ is not part of the runtime image, so the writer in flows/ mirrors these constants;
docs/infrastructure.md ("Platform health") shows both line shapes.

The run's line (one JSON object on one line; `_aws.Timestamp` is epoch milliseconds):

    {"_aws": {"Timestamp": 1767225600000, "CloudWatchMetrics": [{"Namespace": "ferry",
       "Dimensions": [["Environment"], ["Environment", "Deployment"]],
       "Metrics": [{"Name": "RunSucceeded", "Unit": "Count"}, ...]}]},
     "Environment": "prod", "Deployment": "build-prod", "Project": "shop",
     "FlowRunId": "...", "RunId": "...", "RunSucceeded": 1, "RunFailed": 0, ...}

The slowest models are not metrics: a metric per model would cost per model per month. The run
writes one plain JSON line per model, for at most `SLOWEST_MODELS_PER_RUN` of its slowest
models, with no `_aws` block (so CloudWatch extracts nothing from it), and the dashboard's Logs
Insights query reads them:

    {"Environment": "prod", "Deployment": "build-prod", "Project": "shop", "FlowRunId": "...",
     "RunId": "...", "Model": "model.shop.fct_orders", "ModelDurationSeconds": 42.7}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

NAMESPACE = "ferry"

# Dimension names, and the sets every metric of the run's line is aggregated under.
ENVIRONMENT = "Environment"  # staging | prod
DEPLOYMENT = "Deployment"  # the Prefect deployment's name: build-prod, run-staging, ...
DIMENSION_SETS: tuple[tuple[str, ...], ...] = ((ENVIRONMENT,), (ENVIRONMENT, DEPLOYMENT))


@dataclass(frozen=True)
class RunMetric:
    """One metric of the run's EMF line."""

    name: str
    unit: Literal["Count", "Seconds"]
    meaning: str


RUN_SUCCEEDED = RunMetric(
    "RunSucceeded", "Count", "1 when the run's outcome is success or warnings, else 0"
)
RUN_FAILED = RunMetric("RunFailed", "Count", "1 when the run's outcome is anything else, else 0")
RUN_DURATION_SECONDS = RunMetric(
    "RunDurationSeconds", "Seconds", "wall-clock seconds from the run's start to its verdict"
)
NODES_FAILED = RunMetric("NodesFailed", "Count", "dbt nodes that errored or failed")
NODES_WARNED = RunMetric("NodesWarned", "Count", "dbt nodes that ended with a warning")
TIMING_REGRESSIONS = RunMetric(
    "TimingRegressions", "Count", "models markedly slower than their recent runs"
)
VOLUME_ANOMALIES = RunMetric(
    "VolumeAnomalies", "Count", "models whose row count left its recent range"
)
RUN_METRICS = (
    RUN_SUCCEEDED,
    RUN_FAILED,
    RUN_DURATION_SECONDS,
    NODES_FAILED,
    NODES_WARNED,
    TIMING_REGRESSIONS,
    VOLUME_ANOMALIES,
)

# Properties (not dimensions, not metrics) of every line, to find the run behind a data point.
PROJECT = "Project"  # the dbt project's `name:`
FLOW_RUN_ID = "FlowRunId"  # the Prefect flow run's id (empty without Prefect)
RUN_ID = "RunId"  # ferry's run id: the artifacts' folder
RUN_PROPERTIES = (PROJECT, FLOW_RUN_ID, RUN_ID)

# The per-model lines of the slowest-models query.
MODEL = "Model"  # the dbt node's unique_id
MODEL_DURATION_SECONDS = "ModelDurationSeconds"
SLOWEST_MODELS_PER_RUN = 20


def deployment(kind: str, environment: str) -> str:
    """The `Deployment` dimension's value for one of prefect.yaml's deployments (build-prod)."""
    return f"{kind}-{environment}"
