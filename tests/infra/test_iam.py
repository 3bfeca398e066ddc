"""Least privilege, asserted on the synthesized templates: who may assume each role, and the only
things it may do. Roles are found by their configured names, statements matched with matchers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Match

from tests.infra.conftest import Synthesized
from tests.infra.policies import actions_of, statement, statements

pytestmark = pytest.mark.infra

ACCOUNT = "111111111111"
REGION = "eu-north-1"
BUCKET_ARN = f"arn:aws:s3:::ferry-artifacts-{ACCOUNT}-{REGION}"
REPOSITORY_ARN = f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/ferry"
OIDC = "token.actions.githubusercontent.com"
PROVIDER_ARN = f"arn:aws:iam::{ACCOUNT}:oidc-provider/{OIDC}"
STACKS = ("ferry-shared", "ferry-staging", "ferry-prod")


def _allow_statements(node: Any) -> list[dict[str, Any]]:
    found = []
    if isinstance(node, dict):
        if "Effect" in node and "Action" in node:
            found.append(node)
        for value in node.values():
            found += _allow_statements(value)
    elif isinstance(node, list):
        for value in node:
            found += _allow_statements(value)
    return found


@pytest.mark.parametrize("stack", STACKS)
def test_no_statement_allows_a_wildcard_action(synthesized: Synthesized, stack: str) -> None:
    """IAM, key, bucket and topic policies alike. The only `*` actions are the buckets' TLS
    denials; the only other denial is the alarm topic's, of publishing without TLS."""
    for found in _allow_statements(synthesized.json(stack)):
        action = found["Action"]
        for name in [action] if isinstance(action, str) else action:
            if found["Effect"] == "Deny" and name == "sns:Publish":
                assert found["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
            elif found["Effect"] == "Deny":
                assert name == "s3:*" and (
                    "aws:SecureTransport" in json.dumps(found)
                    or "s3:TlsVersion" in json.dumps(found)
                )
            else:
                assert "*" not in name, f"{stack}: {found}"


@pytest.mark.parametrize("stack", STACKS)
def test_no_managed_policies_and_no_users(synthesized: Synthesized, stack: str) -> None:
    for role in synthesized.resources(stack, "AWS::IAM::Role"):
        assert "ManagedPolicyArns" not in role["Properties"]
    assert synthesized.resources(stack, "AWS::IAM::User") == []
    assert synthesized.resources(stack, "AWS::IAM::AccessKey") == []


def _github_trust(subject: str, provider: object) -> dict[str, Any]:
    return {
        "AssumeRolePolicyDocument": {
            "Statement": [
                {
                    "Action": "sts:AssumeRoleWithWebIdentity",
                    "Effect": "Allow",
                    "Principal": {"Federated": provider},
                    "Condition": {
                        "StringEquals": {
                            f"{OIDC}:aud": "sts.amazonaws.com",
                            f"{OIDC}:sub": subject,
                        }
                    },
                }
            ],
            "Version": "2012-10-17",
        }
    }


def test_github_oidc_provider(synthesized: Synthesized) -> None:
    synthesized.template("ferry-shared").has_resource_properties(
        "AWS::IAM::OIDCProvider",
        {"Url": f"https://{OIDC}", "ClientIdList": ["sts.amazonaws.com"]},
    )
    synthesized.template("ferry-staging").resource_count_is("AWS::IAM::OIDCProvider", 0)


def test_ci_role_trusts_pull_requests_and_only_reads_production_state(
    synthesized: Synthesized,
) -> None:
    template = synthesized.template("ferry-shared")
    template.has_resource_properties(
        "AWS::IAM::Role",
        {
            "RoleName": "ferry-github-ci",
            **_github_trust("repo:example-org/ferry:pull_request", {"Ref": Match.any_value()}),
        },
    )
    role = synthesized.role("ferry-shared", "ferry-github-ci")
    assert actions_of(role) == {"s3:GetObject", "s3:ListBucket", "kms:Decrypt"}
    assert statement(role, "ReadProductionState")["Resource"] == f"{BUCKET_ARN}/dbt/*/prod/state/*"
    listing = statement(role, "ListProductionState")
    assert listing["Resource"] == BUCKET_ARN
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["dbt/*/prod/state/*"]}}
    decrypt = statement(role, "DecryptArtifactsThroughS3")
    assert decrypt["Condition"] == {
        "StringEquals": {"kms:ViaService": f"s3.{REGION}.amazonaws.com"}
    }
    key = synthesized.json("ferry-shared")["Resources"][decrypt["Resource"]["Fn::GetAtt"][0]]
    assert key["Type"] == "AWS::KMS::Key"


@pytest.mark.parametrize(
    ("env", "github_environment"), [("staging", "staging"), ("prod", "production")]
)
def test_deploy_role_trusts_only_its_github_environment(
    synthesized: Synthesized, env: str, github_environment: str
) -> None:
    synthesized.template(f"ferry-{env}").has_resource_properties(
        "AWS::IAM::Role",
        {
            "RoleName": f"ferry-{env}-github-deploy",
            **_github_trust(
                f"repo:example-org/ferry:environment:{github_environment}", PROVIDER_ARN
            ),
        },
    )


def test_staging_deploy_role_pushes_the_image_and_reads_its_stacks(
    synthesized: Synthesized,
) -> None:
    role = synthesized.role("ferry-staging", "ferry-staging-github-deploy")
    assert statement(role, "EcrLogin") == {
        "Sid": "EcrLogin",
        "Action": "ecr:GetAuthorizationToken",
        "Effect": "Allow",
        "Resource": "*",
    }
    push = statement(role, "PushFerryImage")
    assert push["Resource"] == REPOSITORY_ARN
    assert set(push["Action"]) == {
        "ecr:BatchCheckLayerAvailability",
        "ecr:BatchGetImage",
        "ecr:CompleteLayerUpload",
        "ecr:DescribeImageScanFindings",
        "ecr:DescribeImages",
        "ecr:InitiateLayerUpload",
        "ecr:PutImage",
        "ecr:UploadLayerPart",
    }
    assert statement(role, "ReadStackOutputs") == {
        "Sid": "ReadStackOutputs",
        "Action": "cloudformation:DescribeStacks",
        "Effect": "Allow",
        "Resource": [
            f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/ferry-shared/*",
            f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/ferry-staging/*",
        ],
    }
    assert len(statements(role)) == 3


def test_prod_deploy_role_promotes_by_retag_only(synthesized: Synthesized) -> None:
    role = synthesized.role("ferry-prod", "ferry-prod-github-deploy")
    assert actions_of(role) == {
        "ecr:BatchGetImage",
        "ecr:DescribeImages",
        "ecr:PutImage",
        "cloudformation:DescribeStacks",
    }
    assert statement(role, "PromoteImageByRetag")["Resource"] == REPOSITORY_ARN
    assert statement(role, "ReadStackOutputs")["Resource"] == [
        f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/ferry-shared/*",
        f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/ferry-prod/*",
    ]


def test_staging_task_role_writes_staging_and_reads_production_state(
    synthesized: Synthesized,
) -> None:
    synthesized.template("ferry-staging").has_resource_properties(
        "AWS::IAM::Role",
        {
            "RoleName": "ferry-staging-task",
            "AssumeRolePolicyDocument": {
                "Statement": [
                    Match.object_like(
                        {
                            "Principal": {"Service": "ecs-tasks.amazonaws.com"},
                            "Condition": {
                                "StringEquals": {"aws:SourceAccount": ACCOUNT},
                                "ArnLike": {"aws:SourceArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:*"},
                            },
                        }
                    )
                ],
                "Version": "2012-10-17",
            },
            "Policies": [
                {
                    "PolicyName": "dbt-artifacts",
                    "PolicyDocument": {
                        "Statement": Match.array_with(
                            [
                                Match.object_like(
                                    {
                                        "Action": [
                                            "s3:GetObject",
                                            "s3:PutObject",
                                            "s3:AbortMultipartUpload",
                                        ],
                                        "Resource": f"{BUCKET_ARN}/dbt/*/staging/*",
                                    }
                                ),
                                Match.object_like(
                                    {
                                        "Action": "s3:GetObject",
                                        "Resource": f"{BUCKET_ARN}/dbt/*/prod/state/*",
                                    }
                                ),
                                Match.object_like(
                                    {
                                        "Action": "s3:ListBucket",
                                        "Resource": BUCKET_ARN,
                                        "Condition": {
                                            "StringLike": {
                                                "s3:prefix": [
                                                    "dbt/*/staging/*",
                                                    "dbt/*/prod/state/*",
                                                ]
                                            }
                                        },
                                    }
                                ),
                                Match.object_like(
                                    {
                                        "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
                                        "Resource": {
                                            "Fn::ImportValue": "ferry-shared-artifact-key-arn"
                                        },
                                        "Condition": {
                                            "StringEquals": {
                                                "kms:ViaService": f"s3.{REGION}.amazonaws.com"
                                            }
                                        },
                                    }
                                ),
                            ]
                        ),
                    },
                }
            ],
        },
    )
    role = synthesized.role("ferry-staging", "ferry-staging-task")
    writable = [s["Resource"] for s in statements(role) if "s3:PutObject" in s["Action"]]
    assert writable == [f"{BUCKET_ARN}/dbt/*/staging/*"]
    assert not any(
        a.startswith(("secretsmanager:", "ecr:", "ecs:", "iam:")) for a in actions_of(role)
    )


def test_prod_task_role_reads_and_writes_prod_only(synthesized: Synthesized) -> None:
    role = synthesized.role("ferry-prod", "ferry-prod-task")
    resources = {
        json.dumps(s["Resource"]) for s in statements(role) if s["Action"] != "s3:ListBucket"
    }
    assert json.dumps(f"{BUCKET_ARN}/dbt/*/prod/*") in resources
    assert not any("staging" in r for r in resources)
    assert statement(role, "ListOwnKeys")["Condition"] == {
        "StringLike": {"s3:prefix": ["dbt/*/prod/*"]}
    }
    assert actions_of(role) == {
        "s3:GetObject",
        "s3:PutObject",
        "s3:AbortMultipartUpload",
        "s3:ListBucket",
        "kms:Decrypt",
        "kms:GenerateDataKey",
    }


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_execution_role_pulls_writes_logs_and_reads_the_task_secrets(
    synthesized: Synthesized, env: str
) -> None:
    role = synthesized.role(f"ferry-{env}", f"ferry-{env}-task-execution")
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "ecs-tasks.amazonaws.com"
    }
    assert statement(role, "PullFerryImage")["Resource"] == REPOSITORY_ARN
    assert statement(role, "WriteTaskLogs") == {
        "Sid": "WriteTaskLogs",
        "Effect": "Allow",
        "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
        "Resource": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/ferry/{env}/dbt:*",
    }
    secrets = statement(role, "ReadTaskSecrets")
    assert secrets["Action"] == "secretsmanager:GetSecretValue"
    resources = synthesized.json(f"ferry-{env}")["Resources"]
    assert sorted(resources[ref["Ref"]]["Properties"]["Name"] for ref in secrets["Resource"]) == [
        f"ferry/{env}/prefect-api",
        f"ferry/{env}/warehouse",
    ]
    assert statement(role, "DecryptSecretsThroughSecretsManager")["Condition"] == {
        "StringEquals": {"kms:ViaService": f"secretsmanager.{REGION}.amazonaws.com"}
    }
    assert not any(a.startswith("s3:") for a in actions_of(role))


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_push_pool_role_runs_tasks_on_its_cluster_and_passes_exactly_two_roles(
    synthesized: Synthesized, env: str
) -> None:
    stack = f"ferry-{env}"
    template = synthesized.template(stack)
    cluster_arn = {"Fn::GetAtt": [Match.any_value(), "Arn"]}
    ecs_arn = f"arn:aws:ecs:{REGION}:{ACCOUNT}"
    template.has_resource_properties(
        "AWS::IAM::Role",
        {
            "RoleName": f"ferry-{env}-push-pool",
            "AssumeRolePolicyDocument": {
                "Statement": [
                    {
                        "Action": "sts:AssumeRole",
                        "Effect": "Allow",
                        "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/ferry-prefect-{env}"},
                    }
                ],
                "Version": "2012-10-17",
            },
            "Policies": [
                {
                    "PolicyName": "run-dbt-tasks",
                    "PolicyDocument": {
                        "Statement": Match.array_with(
                            [
                                Match.object_like(
                                    {
                                        "Action": "ecs:RegisterTaskDefinition",
                                        "Resource": "*",
                                        "Condition": {
                                            "ForAllValues:StringEquals": {
                                                "ecs:compute-compatibility": ["FARGATE"]
                                            },
                                            "BoolIfExists": {"ecs:privileged": "false"},
                                        },
                                    }
                                ),
                                Match.object_like(
                                    {
                                        "Action": "ecs:RunTask",
                                        "Resource": f"{ecs_arn}:task-definition/*",
                                        "Condition": {"ArnEquals": {"ecs:cluster": cluster_arn}},
                                    }
                                ),
                                Match.object_like(
                                    {
                                        "Action": ["ecs:DescribeTasks", "ecs:StopTask"],
                                        "Resource": f"{ecs_arn}:task/ferry-{env}/*",
                                        "Condition": {"ArnEquals": {"ecs:cluster": cluster_arn}},
                                    }
                                ),
                            ]
                        )
                    },
                }
            ],
        },
    )
    role = synthesized.role(stack, f"ferry-{env}-push-pool")
    cluster_condition = statement(role, "RunTasksOnThisCluster")["Condition"]["ArnEquals"]
    cluster = synthesized.json(stack)["Resources"][
        cluster_condition["ecs:cluster"]["Fn::GetAtt"][0]
    ]
    assert cluster["Properties"]["ClusterName"] == f"ferry-{env}"

    passing = statement(role, "PassTheTwoTaskRoles")
    assert passing["Action"] == "iam:PassRole"
    assert passing["Condition"] == {
        "StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}
    }
    resources = synthesized.json(stack)["Resources"]
    passed = sorted(
        resources[ref["Fn::GetAtt"][0]]["Properties"]["RoleName"] for ref in passing["Resource"]
    )
    assert passed == [f"ferry-{env}-task", f"ferry-{env}-task-execution"]

    assert statement(role, "ReadTaskLogs")["Resource"] == (
        f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/ferry/{env}/dbt:*"
    )
    assert statement(role, "TagTasksItStarts")["Condition"] == {
        "StringEquals": {"ecs:CreateAction": "RunTask"}
    }
    assert actions_of(role) == {
        "ecs:RegisterTaskDefinition",
        "ecs:DescribeTaskDefinition",
        "ecs:DeregisterTaskDefinition",
        "ecs:RunTask",
        "ecs:DescribeTasks",
        "ecs:StopTask",
        "ecs:TagResource",
        "iam:PassRole",
        "logs:DescribeLogStreams",
        "logs:FilterLogEvents",
        "logs:GetLogEvents",
        "ec2:DescribeSubnets",
        "ec2:DescribeVpcs",
    }


def test_prefect_aws_calls_only_what_the_push_pool_role_allows() -> None:
    """The ECS worker's AWS calls, read from the installed prefect-aws: each one is allowed."""
    import prefect_aws.workers.ecs_worker as worker

    source = Path(worker.__file__).read_text()
    calls = {
        name
        for name in (
            "register_task_definition",
            "describe_task_definition",
            "deregister_task_definition",
            "run_task",
            "stop_task",
            "describe_vpcs",
            "describe_subnets",
            "describe_security_groups",
        )
        if f".{name}(" in source
    }
    assert calls <= {
        "register_task_definition",
        "describe_task_definition",
        "deregister_task_definition",
        "run_task",
        "stop_task",
        "describe_vpcs",
        "describe_subnets",
    }, "prefect-aws calls something the push-pool role does not allow"
