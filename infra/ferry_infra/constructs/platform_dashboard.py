"""One CloudWatch dashboard per environment, from the runs' metrics (`ferry_infra.metrics`), the
task-failure rule's matches, and a Logs Insights query for the slowest models.

The slowest models come from log lines, not metrics: a custom metric per model would be billed
per model per month, while a query costs only the bytes it scans when the dashboard is open.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_events as events
from constructs import Construct

from ferry_infra import metrics
from ferry_infra.config import EnvironmentConfig

_HOUR = Duration.hours(1)
_WIDTH = 8  # three widgets to a row of 24
SLOWEST_MODELS_SHOWN = 20


def slowest_models_query() -> str:
    """Logs Insights over the per-model lines: each model's slowest and average time."""
    model, seconds = metrics.MODEL, metrics.MODEL_DURATION_SECONDS
    return "\n".join(
        [
            f"fields @timestamp, {model}, {seconds}, {metrics.RUN_ID}",
            f"| filter ispresent({model}) and ispresent({seconds})",
            f"| stats max({seconds}) as max_seconds, avg({seconds}) as avg_seconds,"
            f" count(*) as runs by {model}",
            "| sort max_seconds desc",
            f"| limit {SLOWEST_MODELS_SHOWN}",
        ]
    )


class PlatformDashboard(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        env: EnvironmentConfig,
        task_stopped_rule: events.CfnRule,
        alarms: list[cloudwatch.Alarm],
    ) -> None:
        super().__init__(scope, construct_id)

        def run_metric(
            metric: metrics.RunMetric, statistic: str = "Sum", label: str | None = None
        ) -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace=metrics.NAMESPACE,
                metric_name=metric.name,
                dimensions_map={metrics.ENVIRONMENT: env.name},
                statistic=statistic,
                period=_HOUR,
                label=label or metric.name,
            )

        # Failed runs per deployment, whatever deployments exist: a SEARCH, not a list.
        failed_by_deployment = cloudwatch.MathExpression(
            expression=(
                f"SEARCH('{{{metrics.NAMESPACE},{metrics.ENVIRONMENT},{metrics.DEPLOYMENT}}} "
                f'MetricName="{metrics.RUN_FAILED.name}" {metrics.ENVIRONMENT}="{env.name}"\', '
                f"'Sum', 3600)"
            ),
            label="",
            period=_HOUR,
        )
        tasks_stopped = cloudwatch.Metric(
            namespace="AWS/Events",
            metric_name="MatchedEvents",
            dimensions_map={"RuleName": task_stopped_rule.ref},
            statistic="Sum",
            period=_HOUR,
            label="dbt tasks stopped non-zero",
        )
        widgets: list[cloudwatch.IWidget] = [
            cloudwatch.GraphWidget(
                title="Runs: succeeded vs failed (per hour)",
                left=[
                    run_metric(metrics.RUN_SUCCEEDED, label="succeeded"),
                    run_metric(metrics.RUN_FAILED, label="failed"),
                ],
                stacked=True,
                width=_WIDTH,
            ),
            cloudwatch.GraphWidget(
                title="Failures: failed runs by deployment, tasks stopped non-zero",
                left=[failed_by_deployment],
                right=[tasks_stopped],
                width=_WIDTH,
            ),
            cloudwatch.GraphWidget(
                title="Run duration (seconds)",
                left=[
                    run_metric(metrics.RUN_DURATION_SECONDS, "p50", "p50"),
                    run_metric(metrics.RUN_DURATION_SECONDS, "Maximum", "max"),
                ],
                width=_WIDTH,
            ),
            cloudwatch.GraphWidget(
                title="dbt nodes failed / warned",
                left=[run_metric(metrics.NODES_FAILED), run_metric(metrics.NODES_WARNED)],
                width=_WIDTH,
            ),
            cloudwatch.GraphWidget(
                title="Timing regressions and volume anomalies",
                left=[
                    run_metric(metrics.TIMING_REGRESSIONS),
                    run_metric(metrics.VOLUME_ANOMALIES),
                ],
                width=_WIDTH,
            ),
        ]
        if alarms:
            widgets.append(
                cloudwatch.AlarmStatusWidget(title="Alarms", alarms=list(alarms), width=_WIDTH)
            )
        slowest_models = cloudwatch.LogQueryWidget(
            title=f"Slowest models ({env.log_group_name})",
            log_group_names=[env.log_group_name],
            query_string=slowest_models_query(),
            view=cloudwatch.LogQueryVisualizationType.TABLE,
            width=24,
            height=8,
        )
        rows = [widgets[i : i + 3] for i in range(0, len(widgets), 3)]
        self.dashboard = cloudwatch.Dashboard(
            self,
            "Dashboard",
            dashboard_name=env.dashboard_name,
            default_interval=Duration.days(7),
            widgets=[*rows, [slowest_models]],
        )
