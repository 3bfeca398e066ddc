"""The CloudWatch log group of one environment's dbt tasks. infra owns it and its retention; the
tasks only write streams into it (`awslogs-create-group: false` in prefect.yaml)."""

from __future__ import annotations

from aws_cdk import ArnFormat, RemovalPolicy, Stack
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

from ferry_infra.config import EnvironmentConfig


class DbtLogGroup(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, env: EnvironmentConfig, key: kms.IKey
    ) -> None:
        super().__init__(scope, construct_id)
        self.log_group_name = env.log_group_name
        self.resource = logs.CfnLogGroup(
            self,
            "LogGroup",
            log_group_name=env.log_group_name,
            retention_in_days=env.log_retention_days,
            kms_key_id=key.key_arn,
        )
        self.resource.apply_removal_policy(RemovalPolicy.RETAIN)
        stack = Stack.of(self)
        # `log-group:<name>:*` covers the group and its streams, as IAM's logs resources expect.
        self.arn_with_streams = stack.format_arn(
            service="logs",
            resource="log-group",
            resource_name=f"{env.log_group_name}:*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
