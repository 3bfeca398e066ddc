"""The stack outputs the workflows read: each key becomes an environment variable for
`prefect deploy` (CamelCase to UPPER_SNAKE: FerryEcsCluster -> FERRY_ECS_CLUSTER)."""

from __future__ import annotations

from aws_cdk import CfnOutput, Stack

# On each environment stack (ferry-staging, ferry-prod).
ENVIRONMENT_OUTPUTS = (
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
    "FerryPrefectApiSecretArn",
    "FerryArtifactBucket",
    "FerryImageRepository",
    "FerryDeployRoleArn",
)
# On the shared stack (ferry-shared).
SHARED_OUTPUTS = ("FerryCiRoleArn", "FerryArtifactBucket", "FerryImageRepository")


def add_output(stack: Stack, key: str, value: str, description: str) -> CfnOutput:
    """An output whose key is exactly `key`, wherever it is declared."""
    output = CfnOutput(stack, key, value=value, description=description)
    output.override_logical_id(key)
    return output
