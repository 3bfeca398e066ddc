"""The stack outputs CI turns into `prefect deploy`'s environment: exact keys, and every
`{{ $FERRY_* }}` placeholder of prefect.yaml that the infrastructure knows has an output."""

from __future__ import annotations

import re

import pytest
from aws_cdk.assertions import Match
from ferry_infra.outputs import ENVIRONMENT_OUTPUTS, SHARED_OUTPUTS

from flows.ci.stack_outputs import env_name
from tests.infra.conftest import REPO, Synthesized

pytestmark = pytest.mark.infra

# The keys the workflows rely on (the contract); ferry adds FerryPrefectApiSecretArn.
CONTRACT_KEYS = {
    "FerryEcsCluster",
    "FerryExecutionRoleArn",
    "FerryTaskRoleArn",
    "FerryPushPoolRoleArn",
    "FerryVpcId",
    "FerryPrivateSubnetA",
    "FerryPrivateSubnetB",
    "FerrySecurityGroup",
    "FerryLogGroup",
    "FerryWarehouseSecretArn",
    "FerryArtifactBucket",
    "FerryImageRepository",
    "FerryDeployRoleArn",
}
# Placeholders of prefect.yaml that come from elsewhere than a stack output.
NOT_FROM_OUTPUTS = {"FERRY_IMAGE", "FERRY_REDSHIFT_HOST", "FERRY_REDSHIFT_DATABASE"}


def env_var(output_key: str) -> str:
    """The workflows' own mapping (`ferry ci stack-env`): FerryEcsCluster -> FERRY_ECS_CLUSTER."""
    return env_name(output_key)


@pytest.mark.parametrize("stack", ["ferry-staging", "ferry-prod"])
def test_environment_stacks_output_exactly_the_contract(
    synthesized: Synthesized, stack: str
) -> None:
    outputs = set(synthesized.json(stack)["Outputs"])
    assert outputs == set(ENVIRONMENT_OUTPUTS)
    assert outputs == CONTRACT_KEYS | {"FerryPrefectApiSecretArn"}


def test_shared_stack_outputs(synthesized: Synthesized) -> None:
    outputs = synthesized.json("ferry-shared")["Outputs"]
    assert set(SHARED_OUTPUTS) <= set(outputs)
    assert "FerryCiRoleArn" in outputs
    # the one export the environment stacks import
    assert outputs["FerryArtifactKeyArn"]["Export"] == {"Name": "ferry-shared-artifact-key-arn"}


def test_every_infrastructure_placeholder_of_prefect_yaml_has_an_output() -> None:
    placeholders = set(
        re.findall(r"\{\{ \$(FERRY_[A-Z_]+) \}\}", (REPO / "prefect.yaml").read_text())
    )
    from_outputs = {env_var(key) for key in ENVIRONMENT_OUTPUTS}
    assert placeholders - NOT_FROM_OUTPUTS <= from_outputs
    assert env_var("FerryEcsCluster") == "FERRY_ECS_CLUSTER"
    assert env_var("FerryPrivateSubnetA") == "FERRY_PRIVATE_SUBNET_A"


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_output_values(synthesized: Synthesized, env: str) -> None:
    stack = f"ferry-{env}"
    template = synthesized.template(stack)
    config = synthesized.config
    network = config.environment(env).network  # type: ignore[arg-type]
    template.has_output("FerryLogGroup", {"Value": f"/ferry/{env}/dbt"})
    template.has_output("FerryVpcId", {"Value": network.vpc_id})
    template.has_output("FerryPrivateSubnetA", {"Value": network.subnet_a.subnet_id})
    template.has_output("FerryPrivateSubnetB", {"Value": network.subnet_b.subnet_id})
    template.has_output("FerryArtifactBucket", {"Value": config.artifact_bucket_name})
    template.has_output(
        "FerryImageRepository",
        {
            "Value": {
                "Fn::Join": [
                    "",
                    [
                        f"{config.account}.dkr.ecr.{config.region}.",
                        {"Ref": "AWS::URLSuffix"},
                        "/ferry",
                    ],
                ]
            }
        },
    )
    # Values that are references: each points at the resource of the configured name.
    outputs = synthesized.json(stack)["Outputs"]
    resources = synthesized.json(stack)["Resources"]

    def target(key: str) -> dict[str, object]:
        value = outputs[key]["Value"]
        logical_id = value["Ref"] if "Ref" in value else value["Fn::GetAtt"][0]
        return resources[logical_id]  # type: ignore[no-any-return]

    assert target("FerryEcsCluster")["Properties"]["ClusterName"] == f"ferry-{env}"  # type: ignore[index]
    assert outputs["FerryEcsCluster"]["Value"].keys() == {"Ref"}  # the cluster's name
    assert target("FerrySecurityGroup")["Type"] == "AWS::EC2::SecurityGroup"
    assert outputs["FerrySecurityGroup"]["Value"]["Fn::GetAtt"][1] == "GroupId"
    for key, role_name in (
        ("FerryExecutionRoleArn", f"ferry-{env}-task-execution"),
        ("FerryTaskRoleArn", f"ferry-{env}-task"),
        ("FerryPushPoolRoleArn", f"ferry-{env}-push-pool"),
        ("FerryDeployRoleArn", f"ferry-{env}-github-deploy"),
    ):
        assert target(key)["Properties"]["RoleName"] == role_name  # type: ignore[index]
        assert outputs[key]["Value"]["Fn::GetAtt"][1] == "Arn"
    assert target("FerryWarehouseSecretArn")["Properties"]["Name"] == f"ferry/{env}/warehouse"  # type: ignore[index]
    template.has_output("FerryEcsCluster", {"Value": Match.object_like({"Ref": Match.any_value()})})
