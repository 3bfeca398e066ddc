"""Where dbt tasks run: an existing VPC and two private subnets (imported from configuration,
no lookup), and a security group that lets tasks out to HTTPS and the warehouse, and nothing in."""

from __future__ import annotations

from aws_cdk import aws_ec2 as ec2
from constructs import Construct

from ferry_infra.config import EnvironmentConfig


class TaskNetwork(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, env: EnvironmentConfig) -> None:
        super().__init__(scope, construct_id)
        network = env.network
        subnets = (network.subnet_a, network.subnet_b)
        self.vpc = ec2.Vpc.from_vpc_attributes(
            self,
            "Vpc",
            vpc_id=network.vpc_id,
            availability_zones=[s.availability_zone for s in subnets],
            private_subnet_ids=[s.subnet_id for s in subnets],
        )
        self.subnet_ids = [s.subnet_id for s in subnets]
        self.security_group = ec2.SecurityGroup(
            self,
            "TaskSecurityGroup",
            vpc=self.vpc,
            security_group_name=f"ferry-{env.name}-dbt-tasks",
            description=f"ferry {env.name} dbt tasks: egress to HTTPS and the warehouse only",
            allow_all_outbound=False,
        )
        self.security_group.add_egress_rule(
            ec2.Peer.any_ipv4(),
            ec2.Port.tcp(443),
            "AWS APIs (ECR, S3, Secrets Manager, Logs) and the Prefect API",
        )
        self.security_group.add_egress_rule(
            ec2.Peer.ipv4(env.warehouse.cidr),
            ec2.Port.tcp(env.warehouse.port),
            "The warehouse",
        )
