"""Each staging and prod deployment's ECS job, as prefect-aws's ECS worker submits it, against moto.

For every ECS deployment in prefect.yaml: its job variables (with the infrastructure's values
made up in moto: tests/integration/ecs.py) are rendered through the pool's base job template the
way a worker does, prepared for a flow run by a worker whose own settings include a database URL
and password, and submitted with `ECSWorker.run`. The registered task definition and the RunTask
request moto received must be the task ferry means to run, and carry no secret in plain sight.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import boto3
import pytest
from moto.backends import get_backend
from prefect.client.schemas.objects import Flow, FlowRun, WorkPool
from prefect.client.schemas.responses import DeploymentResponse
from prefect.utilities.schema_tools import validate
from prefect_aws.workers.ecs_worker import ECSJobConfiguration, ECSWorker

from flows.prefect.deployments import job_variables
from tests.integration import ecs

pytestmark = pytest.mark.integration


def test_every_staging_and_prod_deployment_is_covered() -> None:
    assert len(ecs.ECS_DEPLOYMENTS) == 16


async def _submit(
    deployment: dict[str, Any], variables: dict[str, Any]
) -> tuple[ECSJobConfiguration, FlowRun, str]:
    """Render, prepare and submit one flow run of `deployment` as an ECS worker would."""
    pool = WorkPool(
        id=uuid.uuid4(),
        name=deployment["work_pool"]["name"],
        type="ecs",
        base_job_template=ecs.POOL_TEMPLATE,
    )
    flow = Flow(id=uuid.uuid4(), name="dbt")
    api_deployment = DeploymentResponse(
        id=uuid.uuid4(), name=deployment["name"], flow_id=flow.id, job_variables=variables
    )
    flow_run = FlowRun(
        id=uuid.uuid4(), name="tidy-otter", flow_id=flow.id, deployment_id=api_deployment.id
    )
    worker = ECSWorker(work_pool_name=pool.name, name="ferry-ecs-worker")
    configuration, identifier = await ecs.submit(
        worker, pool, api_deployment, flow, flow_run, variables
    )
    return configuration, flow_run, identifier


@pytest.mark.parametrize("deployment", ecs.ECS_DEPLOYMENTS, ids=lambda d: d["name"])
def test_ecs_job(deployment: dict[str, Any], ecs_stack: dict[str, str]) -> None:
    env_name = deployment["name"].rsplit("-", 1)[1]
    variables = job_variables(deployment, ecs_stack)
    # What the server checks when `prefect deploy` creates the deployment.
    validate(
        variables,
        ecs.POOL_TEMPLATE["variables"],
        raise_on_error=True,
        preprocess=True,
        ignore_required=True,
        allow_none_with_default=True,
    )

    configuration, flow_run, identifier = asyncio.run(_submit(deployment, variables))

    backend = get_backend("ecs")[ecs.ACCOUNT][ecs.REGION]
    (task,) = backend.tasks[ecs_stack["FERRY_ECS_CLUSTER"]].values()
    assert identifier == f"{ecs_stack['FERRY_ECS_CLUSTER']}::{task.task_arn}"
    task_definition = boto3.client("ecs", region_name=ecs.REGION).describe_task_definition(
        taskDefinition=task.task_definition_arn
    )["taskDefinition"]
    cpu, memory = variables["cpu"], variables["memory"]
    assert memory in ecs.FARGATE_MEMORY[cpu], (
        f"{cpu} CPU units with {memory} MiB is no Fargate size"
    )

    # The registered task definition
    assert task_definition["family"] == (
        f"prefect_{deployment['work_pool']['name']}_{flow_run.deployment_id}"
    )
    assert task_definition["requiresCompatibilities"] == ["FARGATE"]
    assert task_definition["networkMode"] == "awsvpc"
    assert (task_definition["cpu"], task_definition["memory"]) == (str(cpu), str(memory))
    assert task_definition["executionRoleArn"] == ecs_stack["FERRY_EXECUTION_ROLE_ARN"]
    assert task_definition["taskRoleArn"] == ecs_stack["FERRY_TASK_ROLE_ARN"]
    (container,) = task_definition["containerDefinitions"]
    assert container["name"] == "prefect"
    assert container["image"] == ecs.IMAGE
    assert (container["cpu"], container["memory"]) == (cpu, memory)
    assert container["logConfiguration"] == {
        "logDriver": "awslogs",
        "options": {
            "awslogs-create-group": "false",  # ecs_stack owns the log group and its retention
            "awslogs-group": "/ferry/dbt",
            "awslogs-region": ecs.REGION,
            "awslogs-stream-prefix": "dbt",
        },
    }
    secret = ecs_stack["FERRY_WAREHOUSE_SECRET_ARN"]
    assert sorted(container["secrets"], key=lambda s: s["name"]) == [
        {"name": "FERRY_REDSHIFT_PASSWORD", "valueFrom": f"{secret}:password::"},
        {"name": "FERRY_REDSHIFT_USER", "valueFrom": f"{secret}:username::"},
    ]
    assert not container.get("environment"), "the task definition carries no environment"

    # The RunTask request
    ecs.assert_in_private_subnets(task, ecs_stack["FERRY_ECS_CLUSTER"], ecs_stack)
    overrides = task.overrides
    assert overrides["taskRoleArn"] == ecs_stack["FERRY_TASK_ROLE_ARN"]
    assert (overrides["cpu"], overrides["memory"]) == (str(cpu), str(memory))
    (override,) = overrides["containerOverrides"]
    assert override["name"] == "prefect"
    assert override["command"] == ["prefect", "flow-run", "execute"]
    assert configuration.command == "prefect flow-run execute"  # Prefect's flow-run command
    assert (override["cpu"], override["memory"]) == (cpu, memory)
    environment = ecs.task_environment(task)
    assert environment["PREFECT_API_URL"] == ecs.WORKER_API_URL
    assert environment["PREFECT__FLOW_RUN_ID"] == str(flow_run.id)
    assert environment["FERRY_ENV"] == env_name
    assert environment["FERRY_IMAGE_DIGEST"] == ecs.IMAGE
    assert environment["FERRY_TARGET"] == "redshift"
    assert environment["FERRY_REDSHIFT_HOST"] == ecs_stack["FERRY_REDSHIFT_HOST"]
    assert environment["FERRY_ARTIFACTS"] == f"s3://{ecs_stack['FERRY_ARTIFACT_BUCKET']}/dbt"

    # Nothing secret or worker-local in the task's environment, nor anywhere in plain text
    ecs.assert_nothing_secret(
        environment, json.dumps([task_definition, overrides, task.tags], default=str)
    )
    tags = {tag["key"]: tag["value"] for tag in task.tags}
    assert tags["prefect.io/flow-run-id"] == str(flow_run.id)
    assert tags["prefect.io/deployment-name"] == deployment["name"]
