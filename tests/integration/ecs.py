"""The ECS tests' made-up AWS account: the infrastructure stack's outputs made in moto, and a flow
run submitted with prefect-aws's ECS worker as a worker of the stack's pool submits it.

`ECSWorker.run` is what a worker calls for each flow run. The worker's context
(`async with ECSWorker(...)`) is not entered: it needs a Prefect API, and it starts prefect-aws's
ECS observer, which polls SQS through its own aiobotocore client, built without an endpoint URL
or the job's AWS credentials: under test it would reach for the real SQS. `observer_off`
switches it off all the same; prefect-aws 0.7 declares an `enabled` setting for it but never
reads it.

The pool's template is the committed infra/prefect/ecs-base-job-template.json, what
`prefect work-pool create` gets.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from prefect.client.schemas.objects import Flow, FlowRun, WorkPool
from prefect.client.schemas.responses import DeploymentResponse
from prefect.settings import (
    PREFECT_API_DATABASE_CONNECTION_URL,
    PREFECT_API_URL,
    PREFECT_HOME,
    PREFECT_LOGGING_TO_API_ENABLED,
    PREFECT_SERVER_API_AUTH_STRING,
    PREFECT_SERVER_DATABASE_PASSWORD,
    temporary_settings,
)
from prefect_aws.workers import ecs_worker
from prefect_aws.workers.ecs_worker import ECSJobConfiguration, ECSWorker

from flows.prefect.deployments import ECS_BASE_JOB_TEMPLATE, WORKER_LOCAL_SETTINGS, load_deployments

ACCOUNT = "123456789012"  # moto's default account
REGION = "us-east-1"
IMAGE = (
    f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/ferry"
    f"@sha256:{hashlib.sha256(b'ferry image').hexdigest()}"
)
WAREHOUSE_USER = "ferry_dbt"
WAREHOUSE_PASSWORD = "warehouse-pw-never-in-plain-sight"

# The worker's own settings: what a worker started next to a self-hosted server has.
WORKER_API_URL = "http://prefect.ferry.internal:4200/api"
WORKER_DB_PASSWORD = "worker-db-pw-never-in-a-task"
WORKER_SETTINGS = {
    PREFECT_API_URL: WORKER_API_URL,
    PREFECT_API_DATABASE_CONNECTION_URL: (
        f"postgresql+asyncpg://prefect:{WORKER_DB_PASSWORD}@db.ferry.internal:5432/prefect"
    ),
    PREFECT_SERVER_DATABASE_PASSWORD: WORKER_DB_PASSWORD,
    PREFECT_SERVER_API_AUTH_STRING: "admin:worker-auth-never-in-a-task",
    PREFECT_HOME: "/var/lib/prefect-worker",
}
WORKER_SECRETS = (WORKER_DB_PASSWORD, "worker-auth-never-in-a-task", WAREHOUSE_PASSWORD)

# The PREFECT_ variables a flow run's task may get: the API it reports to, the run's identity
# (Prefect's worker adds these), and the ephemeral flag of Prefect's default profile (ignored
# when PREFECT_API_URL is set).
TASK_PREFECT_ENV = {
    "PREFECT_API_URL",
    "PREFECT__FLOW_RUN_ID",
    "PREFECT__FLOW_ID",
    "PREFECT__FLOW_NAME",
    "PREFECT__DEPLOYMENT_ID",
    "PREFECT__DEPLOYMENT_NAME",
    "PREFECT__WORKER_NAME",
    "PREFECT_SERVER_EPHEMERAL_ENABLED",
}

# Valid Fargate task sizes (cpu units: memory MiB). AWS refuses others at RunTask; moto does not.
FARGATE_MEMORY = {
    256: {512, 1024, 2048},
    512: set(range(1024, 4097, 1024)),
    1024: set(range(2048, 8193, 1024)),
    2048: set(range(4096, 16385, 1024)),
    4096: set(range(8192, 30721, 1024)),
    8192: set(range(16384, 61441, 4096)),
    16384: set(range(32768, 122881, 8192)),
}

POOL_TEMPLATE: dict[str, Any] = json.loads(ECS_BASE_JOB_TEMPLATE.read_text())
ECS_DEPLOYMENTS = [d for d in load_deployments() if d["name"].endswith(("-staging", "-prod"))]


def observer_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """prefect-aws's ECS observer is not started: it would poll the real SQS."""

    async def _off() -> None:
        return None

    monkeypatch.setattr(ecs_worker, "start_observer", _off)
    monkeypatch.setattr(ecs_worker, "stop_observer", _off)


@contextlib.contextmanager
def stack_in_moto() -> Iterator[dict[str, str]]:
    """What the infrastructure stack outputs, made in moto, as `prefect deploy` reads it."""
    with mock_aws():
        ec2 = boto3.client("ec2", region_name=REGION)
        vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
        # As private subnets with VPC endpoints need; moto's awsvpc tasks need it too (moto 5.2
        # fails RunTask with "'NetworkInterface' object has no attribute 'private_dns_name'").
        ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
        subnets = [
            ec2.create_subnet(VpcId=vpc, CidrBlock=cidr, AvailabilityZone=zone)["Subnet"][
                "SubnetId"
            ]
            for cidr, zone in (("10.20.1.0/24", "us-east-1a"), ("10.20.2.0/24", "us-east-1b"))
        ]
        security_group = ec2.create_security_group(
            GroupName="ferry-dbt-task", Description="ferry dbt tasks", VpcId=vpc
        )["GroupId"]

        iam = boto3.client("iam", region_name=REGION)
        trust = json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "ecs-tasks.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        )
        roles = {
            name: iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust)["Role"]["Arn"]
            for name in ("ferry-execution", "ferry-task")
        }

        logs = boto3.client("logs", region_name=REGION)
        logs.create_log_group(logGroupName="/ferry/dbt")

        secret_arn = boto3.client("secretsmanager", region_name=REGION).create_secret(
            Name="ferry/warehouse",
            SecretString=json.dumps({"username": WAREHOUSE_USER, "password": WAREHOUSE_PASSWORD}),
        )["ARN"]

        cluster = boto3.client("ecs", region_name=REGION).create_cluster(clusterName="ferry")[
            "cluster"
        ]["clusterName"]

        yield {
            "AWS_REGION": REGION,
            "FERRY_IMAGE": IMAGE,
            "FERRY_ECS_CLUSTER": cluster,
            "FERRY_EXECUTION_ROLE_ARN": roles["ferry-execution"],
            "FERRY_TASK_ROLE_ARN": roles["ferry-task"],
            "FERRY_VPC_ID": vpc,
            "FERRY_PRIVATE_SUBNET_A": subnets[0],
            "FERRY_PRIVATE_SUBNET_B": subnets[1],
            "FERRY_SECURITY_GROUP": security_group,
            "FERRY_LOG_GROUP": "/ferry/dbt",
            "FERRY_WAREHOUSE_SECRET_ARN": secret_arn,
            "FERRY_ARTIFACT_BUCKET": "ferry-artifacts",
            "FERRY_REDSHIFT_HOST": "warehouse.ferry.internal",
            "FERRY_REDSHIFT_DATABASE": "analytics",
            "GITHUB_SHA": hashlib.sha1(b"ferry commit").hexdigest(),
        }


async def submit(
    worker: ECSWorker,
    pool: WorkPool,
    deployment: DeploymentResponse,
    flow: Flow,
    flow_run: FlowRun,
    values: dict[str, Any],
) -> tuple[ECSJobConfiguration, str]:
    """Renders `values` through the pool's template, prepares the job for `flow_run` and submits
    it, as a worker with WORKER_SETTINGS of its own does; the job and the task's identifier."""
    with temporary_settings(updates=WORKER_SETTINGS):
        configuration = await ECSJobConfiguration.from_template_and_values(
            base_job_template=pool.base_job_template, values=values
        )
        configuration.prepare_for_flow_run(
            flow_run=flow_run,
            deployment=deployment,
            flow=flow,
            work_pool=pool,
            worker_name=worker.name,
        )
    # The worker's log lines about the submission stay here instead of going to an API.
    with temporary_settings(updates={PREFECT_LOGGING_TO_API_ENABLED: False}):
        result = await worker.run(flow_run, configuration)
    return configuration, result.identifier


def assert_in_private_subnets(task: Any, cluster: str, infra: dict[str, str]) -> None:
    """A Fargate task on `cluster`, in the stack's private subnets, with no public IP."""
    assert task.cluster_name == cluster
    assert task.launch_type == "FARGATE"
    assert task.network_configuration == {
        "awsvpcConfiguration": {
            "subnets": [infra["FERRY_PRIVATE_SUBNET_A"], infra["FERRY_PRIVATE_SUBNET_B"]],
            "securityGroups": [infra["FERRY_SECURITY_GROUP"]],
            "assignPublicIp": "DISABLED",
        }
    }


def task_environment(task: Any) -> dict[str, str]:
    """The one container's environment, as the RunTask request overrides it."""
    (override,) = task.overrides["containerOverrides"]
    environment = {item["name"]: item["value"] for item in override["environment"]}
    assert len(environment) == len(override["environment"]), "no variable twice"
    return environment


def assert_nothing_secret(environment: dict[str, str], plain: str, *never: str) -> None:
    """Nothing secret or worker-local in a task's environment, nor in `plain` (its definition,
    overrides and tags as text), nor any of `never`."""
    assert not set(environment) & set(WORKER_LOCAL_SETTINGS)
    assert not [name for name in environment if name.endswith("_PASSWORD")]
    assert {name for name in environment if name.startswith("PREFECT")} <= TASK_PREFECT_ENV
    assert not [name for name in environment if not name.startswith(("PREFECT", "FERRY_"))]
    for value in (*WORKER_SECRETS, *never):
        assert value not in plain
