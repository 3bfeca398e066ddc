"""The role Prefect starts dbt tasks with: the push pool's AwsCredentials block (Prefect Cloud)
or the ECS worker service (self-hosted) assumes it.

It may register task definitions (Fargate only, never privileged), run and stop tasks on this
environment's cluster only, pass exactly the execution and task roles to ECS, read the dbt log
group, and describe the VPC and subnets (prefect-aws checks that the configured subnets belong to
`vpc_id` before each run). It cannot read secrets, artifacts or images.
"""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_iam as iam
from constructs import Construct

from ferry_infra.compliance import acknowledge_resource_wildcards
from ferry_infra.config import EnvironmentConfig
from ferry_infra.constructs.dbt_log_group import DbtLogGroup


class PushPoolRole(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        env: EnvironmentConfig,
        cluster_arn: str,
        passed_roles: list[iam.IRole],
        log_group: DbtLogGroup,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        ecs_arn = f"arn:{stack.partition}:ecs:{stack.region}:{stack.account}"
        tasks_of_cluster = f"{ecs_arn}:task/{env.cluster_name}/*"
        task_definitions = f"{ecs_arn}:task-definition/*"
        on_this_cluster = {"ArnEquals": {"ecs:cluster": cluster_arn}}
        principals = [iam.ArnPrincipal(arn) for arn in env.push_pool_principals]
        self.role = iam.Role(
            self,
            "Role",
            role_name=f"ferry-{env.name}-push-pool",
            description=f"Prefect runs ferry's {env.name} dbt tasks on ECS with it",
            assumed_by=iam.CompositePrincipal(*principals),
            external_ids=[env.push_pool_external_id] if env.push_pool_external_id else None,
            max_session_duration=Duration.hours(1),
            inline_policies={
                "run-dbt-tasks": iam.PolicyDocument(
                    statements=[
                        iam.PolicyStatement(
                            sid="RegisterFargateTaskDefinitions",
                            actions=["ecs:RegisterTaskDefinition"],
                            resources=["*"],
                            conditions={
                                "ForAllValues:StringEquals": {
                                    "ecs:compute-compatibility": ["FARGATE"]
                                },
                                "BoolIfExists": {"ecs:privileged": "false"},
                            },
                        ),
                        iam.PolicyStatement(
                            sid="ReadAndRetireTaskDefinitions",
                            actions=[
                                "ecs:DescribeTaskDefinition",
                                "ecs:DeregisterTaskDefinition",
                            ],
                            resources=["*"],
                        ),
                        iam.PolicyStatement(
                            sid="RunTasksOnThisCluster",
                            actions=["ecs:RunTask"],
                            resources=[task_definitions],
                            conditions=on_this_cluster,
                        ),
                        iam.PolicyStatement(
                            sid="WatchAndStopTasksOfThisCluster",
                            actions=["ecs:DescribeTasks", "ecs:StopTask"],
                            resources=[tasks_of_cluster],
                            conditions=on_this_cluster,
                        ),
                        iam.PolicyStatement(
                            sid="TagTasksItStarts",
                            actions=["ecs:TagResource"],
                            resources=[tasks_of_cluster],
                            conditions={"StringEquals": {"ecs:CreateAction": "RunTask"}},
                        ),
                        iam.PolicyStatement(
                            sid="PassTheTwoTaskRoles",
                            actions=["iam:PassRole"],
                            resources=[role.role_arn for role in passed_roles],
                            conditions={
                                "StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}
                            },
                        ),
                        iam.PolicyStatement(
                            sid="ReadTaskLogs",
                            actions=[
                                "logs:DescribeLogStreams",
                                "logs:FilterLogEvents",
                                "logs:GetLogEvents",
                            ],
                            resources=[log_group.arn_with_streams],
                        ),
                        iam.PolicyStatement(
                            sid="CheckTaskNetwork",
                            actions=["ec2:DescribeSubnets", "ec2:DescribeVpcs"],
                            resources=["*"],
                        ),
                    ]
                )
            },
        )
        acknowledge_resource_wildcards(
            self.role,
            ["*"],
            "ecs:RegisterTaskDefinition (conditioned to Fargate, unprivileged), "
            "ecs:DescribeTaskDefinition, ecs:DeregisterTaskDefinition and ec2:Describe* have no "
            "resource type. What a registered task definition can do is bounded by iam:PassRole, "
            "which names exactly two roles.",
        )
        acknowledge_resource_wildcards(
            self.role,
            [task_definitions],
            "Prefect registers a task definition family per deployment with a generated name; "
            "RunTask is held to this cluster by the ecs:cluster condition.",
        )
        acknowledge_resource_wildcards(
            self.role,
            [tasks_of_cluster],
            "Task ids are generated per run; the pattern is held to this cluster's tasks.",
        )
        acknowledge_resource_wildcards(
            self.role,
            [log_group.arn_with_streams],
            "The streams of this one log group; ECS names a stream per task.",
        )
