"""Platform health without Prefect: the alarm topic, the "no successful build" alarm, the rule for
dbt tasks that exit non-zero, who may publish, the dashboard, and the metric contract they read."""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

import pytest
from aws_cdk.assertions import Match
from ferry_infra import metrics
from ferry_infra.config import ConfigError
from ferry_infra.constructs.platform_dashboard import SLOWEST_MODELS_SHOWN, slowest_models_query
from ferry_infra.environments import FERRY

from tests.infra.conftest import REPO, Synthesized

pytestmark = pytest.mark.infra

ACCOUNT = "111111111111"
REGION = "eu-north-1"
ENVS = ["staging", "prod"]


def _logical_id(synthesized: Synthesized, stack: str, kind: str, **properties: Any) -> str:
    """The one resource of `kind` with these properties (never a hashed ID written down)."""
    found = [
        logical_id
        for logical_id, r in synthesized.json(stack)["Resources"].items()
        if r["Type"] == kind and all(r["Properties"].get(k) == v for k, v in properties.items())
    ]
    assert len(found) == 1, f"{stack}: {len(found)} {kind} with {properties}"
    return found[0]


def _topic(synthesized: Synthesized, env: str) -> str:
    return _logical_id(
        synthesized,
        f"ferry-{env}",
        "AWS::SNS::Topic",
        TopicName=f"ferry-{env}-platform-alarms",
    )


def _rule(synthesized: Synthesized, env: str) -> str:
    return _logical_id(
        synthesized, f"ferry-{env}", "AWS::Events::Rule", Name=f"ferry-{env}-dbt-task-failed"
    )


def _topic_policy(synthesized: Synthesized, env: str) -> list[dict[str, Any]]:
    topic = _topic(synthesized, env)
    (policy,) = [
        p
        for p in synthesized.resources(f"ferry-{env}", "AWS::SNS::TopicPolicy")
        if p["Properties"]["Topics"] == [{"Ref": topic}]
    ]
    statements: list[dict[str, Any]] = policy["Properties"]["PolicyDocument"]["Statement"]
    return statements


@pytest.mark.parametrize("env", ENVS)
def test_alarm_topic_is_encrypted_with_the_environment_key_and_refuses_plain_http(
    synthesized: Synthesized, env: str
) -> None:
    stack = f"ferry-{env}"
    (key,) = [
        k for k, r in synthesized.json(stack)["Resources"].items() if r["Type"] == "AWS::KMS::Key"
    ]
    synthesized.template(stack).has_resource_properties(
        "AWS::SNS::Topic",
        {
            "TopicName": f"ferry-{env}-platform-alarms",
            "KmsMasterKeyId": {"Fn::GetAtt": [key, "Arn"]},
        },
    )
    (deny,) = [s for s in _topic_policy(synthesized, env) if s["Effect"] == "Deny"]
    assert deny["Action"] == "sns:Publish"
    assert deny["Principal"] == "*"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


@pytest.mark.parametrize("env", ENVS)
def test_the_key_lets_the_two_publishers_encrypt_for_the_alarm_topic_only(
    synthesized: Synthesized, env: str
) -> None:
    synthesized.template(f"ferry-{env}").has_resource_properties(
        "AWS::KMS::Key",
        {
            "KeyPolicy": {
                "Statement": Match.array_with(
                    [
                        {
                            "Sid": "AlarmPublishersEncryptForThePlatformAlarmTopicOnly",
                            "Effect": "Allow",
                            "Principal": {
                                "Service": ["cloudwatch.amazonaws.com", "events.amazonaws.com"]
                            },
                            "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
                            "Resource": "*",
                            "Condition": {
                                "StringEquals": {
                                    "kms:EncryptionContext:aws:sns:topicArn": (
                                        f"arn:aws:sns:{REGION}:{ACCOUNT}:ferry-{env}-platform-alarms"
                                    )
                                }
                            },
                        }
                    ]
                )
            }
        },
    )


def test_prod_alarms_when_no_build_succeeded_for_26_hours(synthesized: Synthesized) -> None:
    topic = _topic(synthesized, "prod")
    template = synthesized.template("ferry-prod")
    template.resource_count_is("AWS::CloudWatch::Alarm", 1)
    template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "AlarmName": "ferry-prod-no-successful-build",
            "Namespace": "ferry",
            "MetricName": "RunSucceeded",
            "Dimensions": Match.array_equals(
                [
                    {"Name": "Deployment", "Value": "build-prod"},
                    {"Name": "Environment", "Value": "prod"},
                ]
            ),
            "Statistic": "Sum",
            "Period": 3600,
            "EvaluationPeriods": 26,
            "DatapointsToAlarm": 26,
            "Threshold": 1,
            "ComparisonOperator": "LessThanThreshold",
            "TreatMissingData": "breaching",
            "AlarmActions": [{"Ref": topic}],
            "OKActions": [{"Ref": topic}],
        },
    )


def test_staging_has_no_build_alarm_because_its_build_is_not_scheduled(
    synthesized: Synthesized,
) -> None:
    assert FERRY.environment("staging").no_successful_build_alarm_hours is None
    synthesized.template("ferry-staging").resource_count_is("AWS::CloudWatch::Alarm", 0)
    # and no publish grant for alarms that do not exist
    principals = [s.get("Principal") for s in _topic_policy(synthesized, "staging")]
    assert {"Service": "cloudwatch.amazonaws.com"} not in principals


@pytest.mark.parametrize("hours", [0, 169])
def test_a_build_alarm_window_cloudwatch_refuses_is_a_config_error(hours: int) -> None:
    with pytest.raises(ConfigError, match="no_successful_build_alarm_hours"):
        dataclasses.replace(FERRY.environment("prod"), no_successful_build_alarm_hours=hours)


@pytest.mark.parametrize("env", ENVS)
def test_rule_matches_dbt_tasks_of_this_cluster_that_stopped_non_zero(
    synthesized: Synthesized, env: str
) -> None:
    stack = f"ferry-{env}"
    cluster = _logical_id(synthesized, stack, "AWS::ECS::Cluster", ClusterName=f"ferry-{env}")
    rule = synthesized.json(stack)["Resources"][_rule(synthesized, env)]["Properties"]
    assert rule["State"] == "ENABLED"
    assert rule["EventPattern"] == {
        "source": ["aws.ecs"],
        "detail-type": ["ECS Task State Change"],
        "detail": {
            "clusterArn": [{"Fn::GetAtt": [cluster, "Arn"]}],
            "lastStatus": ["STOPPED"],
            "containers": {"exitCode": [{"anything-but": 0}]},
        },
    }
    (target,) = rule["Targets"]
    assert target["Arn"] == {"Ref": _topic(synthesized, env)}
    transformer = target["InputTransformer"]
    assert transformer["InputPathsMap"] == {
        "cluster": "$.detail.clusterArn",
        "task": "$.detail.taskArn",
        "reason": "$.detail.stoppedReason",
        "exitCode": "$.detail.containers[0].exitCode",
    }
    # Every placeholder is mapped, and the message is JSON once EventBridge fills them in.
    template = transformer["InputTemplate"]
    assert set(re.findall(r"<(\w+)>", template)) == set(transformer["InputPathsMap"])
    message = json.loads(re.sub(r"<(\w+)>", "x", template))
    assert message["content"]["title"] == f"ferry {env}: a dbt task stopped with exit code x"
    for name in ("Cluster", "Task", "Stopped reason"):
        assert f"{name}: x" in message["content"]["description"]


@pytest.mark.parametrize("env", ENVS)
def test_topic_policy_lets_eventbridge_publish_for_this_rule_only(
    synthesized: Synthesized, env: str
) -> None:
    allowed = [
        s
        for s in _topic_policy(synthesized, env)
        if s["Effect"] == "Allow" and s["Principal"] == {"Service": "events.amazonaws.com"}
    ]
    assert allowed == [
        {
            "Sid": "EventBridgePublishesThisRuleOnly",
            "Effect": "Allow",
            "Principal": {"Service": "events.amazonaws.com"},
            "Action": "sns:Publish",
            "Resource": {"Ref": _topic(synthesized, env)},
            "Condition": {
                "ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": [_rule(synthesized, env), "Arn"]}}
            },
        }
    ]


def test_topic_policy_lets_cloudwatch_publish_for_its_alarm_only(
    synthesized: Synthesized,
) -> None:
    alarm = _logical_id(
        synthesized,
        "ferry-prod",
        "AWS::CloudWatch::Alarm",
        AlarmName="ferry-prod-no-successful-build",
    )
    (allowed,) = [
        s
        for s in _topic_policy(synthesized, "prod")
        if s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    ]
    assert allowed["Action"] == "sns:Publish"
    assert allowed["Condition"] == {
        "ArnEquals": {"aws:SourceArn": [{"Fn::GetAtt": [alarm, "Arn"]}]},
        "StringEquals": {"aws:SourceAccount": ACCOUNT},
    }


def _dashboard_body(synthesized: Synthesized, env: str) -> str:
    (dashboard,) = synthesized.resources(f"ferry-{env}", "AWS::CloudWatch::Dashboard")
    assert dashboard["Properties"]["DashboardName"] == f"ferry-{env}"
    body = dashboard["Properties"]["DashboardBody"]
    # The body is JSON joined with tokens (region, the rule's name); the literal parts suffice.
    parts = body["Fn::Join"][1] if isinstance(body, dict) else [body]
    return "".join(p if isinstance(p, str) else "TOKEN" for p in parts)


@pytest.mark.parametrize("env", ENVS)
def test_dashboard_shows_every_run_metric_and_the_slowest_models(
    synthesized: Synthesized, env: str
) -> None:
    widgets = json.loads(_dashboard_body(synthesized, env))["widgets"]
    shown = {
        (line[0], line[1])
        for w in widgets
        if w["type"] == "metric"
        for line in w["properties"]["metrics"]
        if isinstance(line[0], str)
    }
    for metric in metrics.RUN_METRICS:
        if metric is not metrics.RUN_FAILED:  # by deployment, through a SEARCH
            assert ("ferry", metric.name) in shown
    assert ("AWS/Events", "MatchedEvents") in shown
    searches = [
        line[0]["expression"]
        for w in widgets
        if w["type"] == "metric"
        for line in w["properties"]["metrics"]
        if isinstance(line[0], dict)
    ]
    assert any('MetricName="RunFailed"' in s and f'Environment="{env}"' in s for s in searches)
    stats = {
        line[-1]["stat"]
        for w in widgets
        if w["type"] == "metric"
        for line in w["properties"]["metrics"]
        if isinstance(line[0], str) and line[1] == "RunDurationSeconds"
    }
    assert stats == {"p50", "Maximum"}
    (logs,) = [w for w in widgets if w["type"] == "log"]
    query = logs["properties"]["query"]
    assert query.startswith(f"SOURCE '/ferry/{env}/dbt' | ")
    assert query.endswith(slowest_models_query())
    for field in ("Model", "ModelDurationSeconds"):
        assert f"ispresent({field})" in query


def test_slowest_models_query_reads_the_contracts_per_model_lines() -> None:
    query = slowest_models_query()
    assert "stats max(ModelDurationSeconds) as max_seconds" in query
    assert "by Model" in query
    assert "| sort max_seconds desc" in query
    assert f"| limit {SLOWEST_MODELS_SHOWN}" in query


def test_metric_contract() -> None:
    assert metrics.NAMESPACE == "ferry"
    assert metrics.DIMENSION_SETS == (("Environment",), ("Environment", "Deployment"))
    assert [(m.name, m.unit) for m in metrics.RUN_METRICS] == [
        ("RunSucceeded", "Count"),
        ("RunFailed", "Count"),
        ("RunDurationSeconds", "Seconds"),
        ("NodesFailed", "Count"),
        ("NodesWarned", "Count"),
        ("TimingRegressions", "Count"),
        ("VolumeAnomalies", "Count"),
    ]
    assert metrics.RUN_PROPERTIES == ("Project", "FlowRunId", "RunId")
    assert (metrics.MODEL, metrics.MODEL_DURATION_SECONDS) == ("Model", "ModelDurationSeconds")
    assert metrics.deployment("build", "prod") == "build-prod"


def test_every_name_of_the_contract_is_in_the_infrastructure_docs() -> None:
    docs = (REPO / "docs" / "infrastructure.md").read_text()
    names = [
        metrics.NAMESPACE,
        *(m.name for m in metrics.RUN_METRICS),
        *metrics.RUN_PROPERTIES,
        metrics.ENVIRONMENT,
        metrics.DEPLOYMENT,
        metrics.MODEL,
        metrics.MODEL_DURATION_SECONDS,
    ]
    assert [name for name in names if f"`{name}`" not in docs] == []
