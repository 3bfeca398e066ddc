"""The two roles of a dbt task.

- Execution role: ECS uses it to start the task: pull the image, write the log stream, read the
  task's secrets into its environment (ECS `secrets`).
- Task role: the running flow uses it: write its own environment's artifacts, read production's
  dbt state. It cannot read the secrets; the warehouse is reached with the credentials ECS
  injected, so it needs no warehouse permission either.
"""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from ferry_infra import artifact_access
from ferry_infra.compliance import acknowledge_resource_wildcards
from ferry_infra.config import EnvironmentConfig, FerryConfig
from ferry_infra.constructs.dbt_log_group import DbtLogGroup

ECS_TASKS = "ecs-tasks.amazonaws.com"
ECR_PULL = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]


class TaskExecutionRole(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        env: EnvironmentConfig,
        repository: ecr.IRepository,
        log_group: DbtLogGroup,
        secret_arns: list[str],
        secrets_key: kms.IKey,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.role = iam.Role(
            self,
            "Role",
            role_name=f"ferry-{env.name}-task-execution",
            description=f"ECS starts ferry's {env.name} dbt tasks with it",
            assumed_by=iam.ServicePrincipal(ECS_TASKS),
            inline_policies={
                "start-dbt-task": iam.PolicyDocument(
                    statements=[
                        iam.PolicyStatement(
                            sid="EcrLogin",
                            actions=["ecr:GetAuthorizationToken"],
                            resources=["*"],
                        ),
                        iam.PolicyStatement(
                            sid="PullFerryImage",
                            actions=ECR_PULL,
                            resources=[repository.repository_arn],
                        ),
                        iam.PolicyStatement(
                            sid="WriteTaskLogs",
                            actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                            resources=[log_group.arn_with_streams],
                        ),
                        iam.PolicyStatement(
                            sid="ReadTaskSecrets",
                            actions=["secretsmanager:GetSecretValue"],
                            resources=secret_arns,
                        ),
                        iam.PolicyStatement(
                            sid="DecryptSecretsThroughSecretsManager",
                            actions=["kms:Decrypt"],
                            resources=[secrets_key.key_arn],
                            conditions={
                                "StringEquals": {
                                    "kms:ViaService": f"secretsmanager.{stack.region}.amazonaws.com"
                                }
                            },
                        ),
                    ]
                )
            },
        )
        acknowledge_resource_wildcards(
            self.role,
            ["*"],
            "ecr:GetAuthorizationToken has no resource type; the token alone pulls nothing "
            "(pulls are limited to the ferry repository above).",
        )
        acknowledge_resource_wildcards(
            self.role,
            [log_group.arn_with_streams],
            "The streams of this one log group; ECS names a stream per task.",
        )


class DbtTaskRole(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: FerryConfig,
        env: EnvironmentConfig,
        bucket: s3.IBucket,
        bucket_key: kms.IKey,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        base = config.artifact_prefix
        own = artifact_access.env_prefix(base, env.name)
        statements = [
            artifact_access.object_statement(
                "ReadWriteOwnEnvironment", bucket, artifact_access.READ_WRITE, own
            )
        ]
        listable = [own]
        if env.name != "prod":
            prod_state = artifact_access.state_prefix(base, "prod")
            statements.append(
                artifact_access.object_statement(
                    "ReadProductionState", bucket, artifact_access.READ, prod_state
                )
            )
            listable.append(prod_state)
        statements += [
            artifact_access.list_statement("ListOwnKeys", bucket, listable),
            artifact_access.key_statement(
                "UseArtifactKeyThroughS3",
                bucket_key,
                ["kms:Decrypt", "kms:GenerateDataKey"],
                stack,
            ),
        ]
        self.role = iam.Role(
            self,
            "Role",
            role_name=f"ferry-{env.name}-task",
            description=f"ferry's {env.name} dbt flow runs with it",
            assumed_by=iam.ServicePrincipal(
                ECS_TASKS,
                conditions={
                    "StringEquals": {"aws:SourceAccount": stack.account},
                    "ArnLike": {
                        "aws:SourceArn": f"arn:{stack.partition}:ecs:{stack.region}:"
                        f"{stack.account}:*"
                    },
                },
            ),
            inline_policies={"dbt-artifacts": iam.PolicyDocument(statements=statements)},
        )
        acknowledge_resource_wildcards(
            self.role,
            [bucket.arn_for_objects(pattern) for pattern in listable],
            f"Key patterns of the artifact layout: `*` is the dbt project name and the keys "
            f"below it; {env.name} writes only its own environment and reads production state.",
        )
