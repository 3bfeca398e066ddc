"""The ECS cluster of one environment's dbt tasks: Fargate (and Fargate Spot, which a deployment
may choose with `launch_type: FARGATE_SPOT`), Container Insights on. No services, no instances:
each flow run is a task Prefect starts and ECS stops."""

from __future__ import annotations

from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from constructs import Construct

from ferry_infra.config import EnvironmentConfig


class DbtCluster(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, env: EnvironmentConfig, vpc: ec2.IVpc
    ) -> None:
        super().__init__(scope, construct_id)
        self.cluster = ecs.Cluster(
            self,
            "Cluster",
            cluster_name=env.cluster_name,
            vpc=vpc,  # imported: the cluster creates no network
            container_insights_v2=ecs.ContainerInsights.ENABLED,
            enable_fargate_capacity_providers=True,
        )
