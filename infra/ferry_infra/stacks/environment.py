"""ferry-<env>: one environment's cluster, network, log group, secrets and roles, its platform
alarms and dashboard, and the outputs `prefect deploy` reads (docs/infrastructure.md maps them
onto prefect.yaml)."""

from __future__ import annotations

from aws_cdk import Environment, Stack
from constructs import Construct

from ferry_infra.config import EnvironmentConfig, FerryConfig
from ferry_infra.constructs.dbt_cluster import DbtCluster
from ferry_infra.constructs.dbt_log_group import DbtLogGroup
from ferry_infra.constructs.dbt_task_roles import DbtTaskRole, TaskExecutionRole
from ferry_infra.constructs.deploy_role import GitHubDeployRole
from ferry_infra.constructs.encryption_key import EncryptionKey
from ferry_infra.constructs.environment_secrets import EnvironmentSecrets
from ferry_infra.constructs.github_oidc import github_oidc_provider_arn
from ferry_infra.constructs.platform_alarms import PlatformAlarms
from ferry_infra.constructs.platform_dashboard import PlatformDashboard
from ferry_infra.constructs.push_pool_role import PushPoolRole
from ferry_infra.constructs.task_network import TaskNetwork
from ferry_infra.outputs import add_output
from ferry_infra.stacks.shared import SharedResources, SharedStack


class EnvironmentStack(Stack):
    def __init__(
        self,
        scope: Construct,
        *,
        config: FerryConfig,
        environment: EnvironmentConfig,
        shared: SharedStack,
        aws_env: Environment,
    ) -> None:
        env = environment
        super().__init__(
            scope,
            env.stack_name,
            description=f"ferry {env.name}: cluster, roles, network, secrets, logs, alarms of dbt",
            env=aws_env,
            analytics_reporting=False,
        )
        # Deployed after ferry-shared, whose resources it names and whose key it imports.
        self.add_stack_dependency(shared)
        imported = SharedResources.imported_into(self, config)
        key = EncryptionKey(
            self,
            "EnvironmentKey",
            alias=f"alias/ferry/{env.name}",
            description=f"ferry {env.name}: secrets, task logs and the platform alarm topic",
            log_group_names=(env.log_group_name,),
        ).key
        network = TaskNetwork(self, "Network", env=env)
        log_group = DbtLogGroup(self, "DbtLogs", env=env, key=key)
        secrets = EnvironmentSecrets(self, "Secrets", env=env, key=key)
        cluster = DbtCluster(self, "Cluster", env=env, vpc=network.vpc).cluster
        execution = TaskExecutionRole(
            self,
            "TaskExecution",
            env=env,
            repository=imported.repository,
            log_group=log_group,
            secret_arns=[secrets.warehouse_arn, secrets.prefect_api_arn],
            secrets_key=key,
        ).role
        task = DbtTaskRole(
            self,
            "Task",
            config=config,
            env=env,
            bucket=imported.artifact_bucket,
            bucket_key=imported.artifact_key,
        ).role
        push_pool = PushPoolRole(
            self,
            "PushPool",
            env=env,
            cluster_arn=cluster.cluster_arn,
            passed_roles=[execution, task],
            log_group=log_group,
        ).role
        deploy = GitHubDeployRole(
            self,
            "GitHubDeploy",
            config=config,
            env=env,
            provider_arn=github_oidc_provider_arn(self, config),
            repository=imported.repository,
        ).role
        alarms = PlatformAlarms(self, "PlatformAlarms", env=env, key=key, cluster=cluster)
        PlatformDashboard(
            self,
            "PlatformDashboard",
            env=env,
            task_stopped_rule=alarms.task_stopped_rule,
            alarms=alarms.alarms,
        )

        for key_name, value, description in (
            ("FerryEcsCluster", cluster.cluster_name, "ECS cluster name"),
            ("FerryExecutionRoleArn", execution.role_arn, "Task execution role"),
            ("FerryTaskRoleArn", task.role_arn, "Task role of the dbt flow"),
            ("FerryPushPoolRoleArn", push_pool.role_arn, "Role Prefect runs ECS tasks with"),
            ("FerryVpcId", env.network.vpc_id, "VPC of the tasks"),
            ("FerryPrivateSubnetA", network.subnet_ids[0], "Private subnet A"),
            ("FerryPrivateSubnetB", network.subnet_ids[1], "Private subnet B"),
            ("FerrySecurityGroup", network.security_group.security_group_id, "Task SG id"),
            ("FerryLogGroup", log_group.log_group_name, "Log group of the dbt tasks"),
            ("FerryWarehouseSecretArn", secrets.warehouse_arn, "username/password"),
            ("FerryPrefectApiSecretArn", secrets.prefect_api_arn, "Prefect API key"),
            ("FerryArtifactBucket", imported.artifact_bucket.bucket_name, "dbt artifact bucket"),
            ("FerryImageRepository", imported.repository.repository_uri, "ECR repository URI"),
            ("FerryDeployRoleArn", deploy.role_arn, "Role of this environment's deploy job"),
        ):
            add_output(self, key_name, value, description)
