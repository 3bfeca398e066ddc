"""`ferry ci stack-env`: the infrastructure's outputs become exactly the variables prefect.yaml
asks for (moto's CloudFormation holds stacks shaped like infra/'s). A stack that is not there or
not ferry's is bad input (exit 2); CloudFormation failing is a failure (exit 1)."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from flows.ci.stack_outputs import (
    StackOutputError,
    UnknownStack,
    env_name,
    github_env_lines,
    stack_env,
)
from flows.cli import main
from flows.exit_codes import ExitCode
from flows.prefect.deployments import load_deployments, missing_env_placeholders
from flows.prefect.server import free_port

pytestmark = pytest.mark.integration

SHARED = {"FerryArtifactBucket": "ferry-artifacts-123", "FerryImageRepository": "1.dkr/ferry"}
STAGING = {
    "FerryEcsCluster": "ferry-staging",
    "FerryExecutionRoleArn": "arn:aws:iam::1:role/exec",
    "FerryTaskRoleArn": "arn:aws:iam::1:role/task",
    "FerryPushPoolRoleArn": "arn:aws:iam::1:role/pool",
    "FerryVpcId": "vpc-1",
    "FerryPrivateSubnetA": "subnet-a",
    "FerryPrivateSubnetB": "subnet-b",
    "FerrySecurityGroup": "sg-1",
    "FerryLogGroup": "/ferry/staging/dbt",
    "FerryWarehouseSecretArn": "arn:aws:secretsmanager:us-east-1:1:secret:ferry/staging/wh",
    "FerryArtifactBucket": "ferry-artifacts-123",
    "FerryImageRepository": "1.dkr/ferry",
    "FerryDeployRoleArn": "arn:aws:iam::1:role/deploy",
}


def make_stack(cfn, name: str, outputs: dict[str, str]) -> None:
    template = {
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {key: {"Value": value} for key, value in {**outputs, "Other": "x"}.items()},
    }
    cfn.create_stack(StackName=name, TemplateBody=json.dumps(template))


def test_output_keys_map_onto_placeholders():
    assert env_name("FerryEcsCluster") == "FERRY_ECS_CLUSTER"
    assert env_name("FerryPrivateSubnetA") == "FERRY_PRIVATE_SUBNET_A"
    assert env_name("FerryVpcId") == "FERRY_VPC_ID"
    assert env_name("FerryWarehouseSecretArn") == "FERRY_WAREHOUSE_SECRET_ARN"


@mock_aws
def test_the_outputs_fill_every_infrastructure_placeholder_of_the_deployments(tmp_path):
    cfn = boto3.client("cloudformation", region_name="us-east-1")
    make_stack(cfn, "ferry-shared", SHARED)
    make_stack(cfn, "ferry-staging", STAGING)
    env = stack_env(cfn, ["ferry-shared", "ferry-staging"])
    assert "OTHER" not in env and env["FERRY_ECS_CLUSTER"] == "ferry-staging"

    # What CI adds itself: the image by digest, the commit, the region, the warehouse address.
    ci = {
        "FERRY_IMAGE": env["FERRY_IMAGE_REPOSITORY"] + "@sha256:" + "0" * 64,
        "GITHUB_SHA": "abc",
        "AWS_REGION": "us-east-1",
        "FERRY_REDSHIFT_HOST": "h",
        "FERRY_REDSHIFT_DATABASE": "d",
    }
    staging = [d for d in load_deployments() if d["name"].endswith("-staging")]
    assert staging
    for deployment in staging:
        assert missing_env_placeholders(deployment, {**env, **ci}) == set()

    github_env = tmp_path / "github_env"
    assert (
        main(
            [
                "ci",
                "stack-env",
                "--stack",
                "ferry-shared",
                "--stack",
                "ferry-staging",
                "--github-env",
                str(github_env),
            ]
        )
        == 0
    )
    lines = github_env.read_text().splitlines()
    assert "FERRY_SECURITY_GROUP=sg-1" in lines and len(lines) == len(env)


@mock_aws
def test_a_missing_or_foreign_stack_is_refused():
    cfn = boto3.client("cloudformation", region_name="us-east-1")
    make_stack(cfn, "not-ferry", {})
    with pytest.raises(UnknownStack, match="no Ferry\\* outputs"):
        stack_env(cfn, ["not-ferry"])
    with pytest.raises(UnknownStack, match="'ferry-nope' does not exist"):
        stack_env(cfn, ["ferry-nope"])
    with pytest.raises(StackOutputError, match="spans lines"):
        github_env_lines({"FERRY_X": "a\nb"})


def stack_env_cli(capsys, *stacks: str) -> tuple[int, str]:
    code = main(["ci", "stack-env", *(arg for name in stacks for arg in ("--stack", name))])
    return code, capsys.readouterr().err


@mock_aws
def test_the_command_refuses_a_stack_that_is_not_there_or_not_ferrys(capsys):
    cfn = boto3.client("cloudformation", region_name="us-east-1")
    make_stack(cfn, "not-ferry", {})
    make_stack(cfn, "ferry-shared", SHARED)
    for stacks, message in (
        (("ferry-shared", "ferry-nope"), "stack 'ferry-nope' does not exist"),
        (("not-ferry",), "stack 'not-ferry' has no Ferry* outputs"),
    ):
        code, err = stack_env_cli(capsys, *stacks)
        assert (
            code == ExitCode.INVALID and err.startswith("ferry ci stack-env: ") and message in err
        ), err


def test_the_command_needs_an_aws_region(capsys, monkeypatch):
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    code, err = stack_env_cli(capsys, "ferry-shared")
    assert (
        code == ExitCode.INVALID
        and err == "ferry ci stack-env: no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION)\n"
    )


def test_an_unreachable_cloudformation_is_a_failure(capsys, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    code, err = stack_env_cli(capsys, "ferry-shared")
    assert code == ExitCode.FAILED and err.startswith("ferry ci stack-env: Could not connect"), err
