"""Platform health that does not depend on Prefect: one SNS topic per environment, the alarm "no
successful production build", and an EventBridge rule for dbt tasks that exit non-zero.

Both publishers are AWS services, so the topic's policy and the key's policy name each one, and
each is held to what this construct created: EventBridge to this rule (`aws:SourceArn`),
CloudWatch to these alarms, and both to this topic's encryption context in the key. L1 rule on
purpose: the L2 SNS target grants `events.amazonaws.com` publish on any source and
`kms:GenerateDataKey*` on the key.
"""

from __future__ import annotations

import json

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from constructs import Construct

from ferry_infra import metrics
from ferry_infra.config import EnvironmentConfig

# The values EventBridge reads out of an "ECS Task State Change" event for the message.
_TASK_FIELDS = {
    "cluster": "$.detail.clusterArn",
    "task": "$.detail.taskArn",
    "reason": "$.detail.stoppedReason",
    "exitCode": "$.detail.containers[0].exitCode",
}


def task_stopped_pattern(cluster_arn: str) -> dict[str, object]:
    """A task of this cluster stopped and one of its containers exited with anything but 0.

    A task that never started its container (image pull, secrets) has no exit code and does not
    match; its flow run crashes, which Prefect's own alerts report.
    """
    return {
        "source": ["aws.ecs"],
        "detail-type": ["ECS Task State Change"],
        "detail": {
            "clusterArn": [cluster_arn],
            "lastStatus": ["STOPPED"],
            "containers": {"exitCode": [{"anything-but": 0}]},
        },
    }


def _task_message(env: EnvironmentConfig) -> str:
    """The input template: Chatbot's custom-notification shape, which reads as plain JSON in an
    e-mail. EventBridge fills each `<name>` from `_TASK_FIELDS`."""
    message = {
        "version": "1.0",
        "source": "custom",
        "content": {
            "textType": "client-markdown",
            "title": f"ferry {env.name}: a dbt task stopped with exit code <exitCode>",
            "description": "Cluster: <cluster>\nTask: <task>\nStopped reason: <reason>",
        },
    }
    return json.dumps(message)


class PlatformAlarms(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        env: EnvironmentConfig,
        key: kms.Key,
        cluster: ecs.ICluster,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        # Built from the configured name, not the topic's Ref: the key's policy needs it and
        # the topic needs the key, which a reference would make a cycle.
        topic_arn = stack.format_arn(service="sns", resource=env.alarm_topic_name)
        self.topic = sns.Topic(
            self,
            "Topic",
            topic_name=env.alarm_topic_name,
            display_name=f"ferry {env.name} platform alarms",
            master_key=key,
            enforce_ssl=True,
        )
        key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AlarmPublishersEncryptForThePlatformAlarmTopicOnly",
                principals=[
                    iam.ServicePrincipal("cloudwatch.amazonaws.com"),
                    iam.ServicePrincipal("events.amazonaws.com"),
                ],
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=["*"],  # in a key policy, "*" is this key
                conditions={"StringEquals": {"kms:EncryptionContext:aws:sns:topicArn": topic_arn}},
            )
        )

        self.alarms: list[cloudwatch.Alarm] = []
        if env.no_successful_build_alarm_hours is not None:
            self.alarms.append(self._no_successful_build(env, env.no_successful_build_alarm_hours))
        if self.alarms:
            self.topic.add_to_resource_policy(
                iam.PolicyStatement(
                    sid="CloudWatchPublishesTheseAlarms",
                    principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                    actions=["sns:Publish"],
                    resources=[self.topic.topic_arn],
                    conditions={
                        "ArnEquals": {"aws:SourceArn": [a.alarm_arn for a in self.alarms]},
                        "StringEquals": {"aws:SourceAccount": stack.account},
                    },
                )
            )

        self.task_stopped_rule = events.CfnRule(
            self,
            "DbtTaskStoppedNonZero",
            name=f"ferry-{env.name}-dbt-task-failed",
            description=f"ferry {env.name}: a dbt task stopped with a non-zero exit code",
            event_pattern=task_stopped_pattern(cluster.cluster_arn),
            state="ENABLED",
            targets=[
                events.CfnRule.TargetProperty(
                    id="PlatformAlarmTopic",
                    arn=self.topic.topic_arn,
                    input_transformer=events.CfnRule.InputTransformerProperty(
                        input_paths_map=_TASK_FIELDS, input_template=_task_message(env)
                    ),
                )
            ],
        )
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="EventBridgePublishesThisRuleOnly",
                principals=[iam.ServicePrincipal("events.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions={"ArnEquals": {"aws:SourceArn": self.task_stopped_rule.attr_arn}},
            )
        )

    def _no_successful_build(self, env: EnvironmentConfig, hours: int) -> cloudwatch.Alarm:
        """Alarms when build-<env> has reported no successful run for `hours` 1-hour periods in
        a row; no data at all counts too (a build that never started writes nothing)."""
        build = metrics.deployment("build", env.name)
        metric = cloudwatch.Metric(
            namespace=metrics.NAMESPACE,
            metric_name=metrics.RUN_SUCCEEDED.name,
            dimensions_map={metrics.ENVIRONMENT: env.name, metrics.DEPLOYMENT: build},
            statistic="Sum",
            period=Duration.hours(1),
        )
        alarm = cloudwatch.Alarm(
            self,
            "NoSuccessfulBuild",
            alarm_name=f"ferry-{env.name}-no-successful-build",
            alarm_description=(
                f"No {build} run has succeeded in {hours} h ({metrics.NAMESPACE}/"
                f"{metrics.RUN_SUCCEEDED.name}). Check the deployment's schedule and last runs "
                f"in Prefect, the ECS cluster {env.cluster_name} and the log group "
                f"{env.log_group_name}."
            ),
            metric=metric,
            threshold=1,
            comparison_operator=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
            evaluation_periods=hours,
            datapoints_to_alarm=hours,
            treat_missing_data=cloudwatch.TreatMissingData.BREACHING,
        )
        action = cloudwatch_actions.SnsAction(self.topic)
        alarm.add_alarm_action(action)
        alarm.add_ok_action(action)
        return alarm
