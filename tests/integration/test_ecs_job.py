"""Each staging and prod deployment's ECS job, as prefect-aws's ECS worker submits it, against moto.

For every ECS deployment in prefect.yaml: its job variables (with the infrastructure's values
made up in moto) are rendered through the pool's base job template the way a worker does,
prepared for a flow run by a worker whose own settings include a database URL and password,
and submitted with `ECSWorker.run`. The registered task definition and the RunTask request
moto received must be the task ferry means to run, and carry no secret in plain sight.

`ECSWorker.run` is what a worker calls for each flow run. The worker's context
(`async with ECSWorker(...)`) is not entered: it needs a Prefect API, and it starts prefect-aws's
ECS observer, which polls SQS through its own aiobotocore client, built without an endpoint URL
or the job's AWS credentials: under test it would reach for the real SQS. The `_no_ecs_observer`
fixture switches it off all the same; prefect-aws 0.7 declares an `enabled` setting for it but
never reads it.

The pool's template is the committed infra/prefect/ecs-base-job-template.json, what
`prefect work-pool create` gets.

A fanned-out run's parts go the same way: the parent's own code (`run_parts`, through Prefect's
`run_deployment`) creates one flow run of `part-<env>` per part, against a stand-in for the
Prefect API that submits each flow run it creates with the same worker, as the pool would; moto
must then hold one task per part, each the deployment's and carrying its own part's flow run id.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import json
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.backends import get_backend
from prefect.client import orchestration
from prefect.client.schemas.objects import Flow, FlowRun, StateType, WorkPool
from prefect.client.schemas.responses import DeploymentResponse
from prefect.deployments import flow_runs
from prefect.exceptions import ObjectNotFound
from prefect.settings import (
    PREFECT_API_DATABASE_CONNECTION_URL,
    PREFECT_API_URL,
    PREFECT_HOME,
    PREFECT_LOGGING_TO_API_ENABLED,
    PREFECT_SERVER_API_AUTH_STRING,
    PREFECT_SERVER_DATABASE_PASSWORD,
    temporary_settings,
)
from prefect.states import Pending, State
from prefect.utilities.schema_tools import validate
from prefect_aws.workers import ecs_worker
from prefect_aws.workers.ecs_worker import ECSJobConfiguration, ECSWorker

from flows.prefect.deployments import (
    ECS_BASE_JOB_TEMPLATE,
    WORKER_LOCAL_SETTINGS,
    job_variables,
    load_deployments,
)
from flows.prefect.parts import run_parts
from flows.run.parts import Part
from flows.run.request import RunRequest

pytestmark = pytest.mark.integration

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


def test_every_staging_and_prod_deployment_is_covered() -> None:
    assert len(ECS_DEPLOYMENTS) == 16


@pytest.fixture(autouse=True)
def _no_ecs_observer(monkeypatch: pytest.MonkeyPatch) -> None:
    async def _off() -> None:
        return None

    monkeypatch.setattr(ecs_worker, "start_observer", _off)
    monkeypatch.setattr(ecs_worker, "stop_observer", _off)


@pytest.fixture
def infra() -> Iterator[dict[str, str]]:
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


async def _submit(
    deployment: dict[str, Any], variables: dict[str, Any]
) -> tuple[ECSJobConfiguration, FlowRun, str]:
    """Render, prepare and submit one flow run of `deployment` as an ECS worker would."""
    template = POOL_TEMPLATE
    pool = WorkPool(
        id=uuid.uuid4(),
        name=deployment["work_pool"]["name"],
        type="ecs",
        base_job_template=template,
    )
    flow = Flow(id=uuid.uuid4(), name="dbt")
    api_deployment = DeploymentResponse(
        id=uuid.uuid4(), name=deployment["name"], flow_id=flow.id, job_variables=variables
    )
    flow_run = FlowRun(
        id=uuid.uuid4(), name="tidy-otter", flow_id=flow.id, deployment_id=api_deployment.id
    )
    with temporary_settings(updates=WORKER_SETTINGS):
        configuration = await ECSJobConfiguration.from_template_and_values(
            base_job_template=template, values=variables
        )
        configuration.prepare_for_flow_run(
            flow_run=flow_run,
            deployment=api_deployment,
            flow=flow,
            work_pool=pool,
            worker_name="ferry-ecs-worker",
        )
    worker = ECSWorker(work_pool_name=pool.name, name="ferry-ecs-worker")
    # The worker's log lines about the submission stay here instead of going to an API.
    with temporary_settings(updates={PREFECT_LOGGING_TO_API_ENABLED: False}):
        result = await worker.run(flow_run, configuration)
    return configuration, flow_run, result.identifier


def _assert_in_private_subnets(task: Any, cluster: str, infra: dict[str, str]) -> None:
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


@pytest.mark.parametrize("deployment", ECS_DEPLOYMENTS, ids=lambda d: d["name"])
def test_ecs_job(deployment: dict[str, Any], infra: dict[str, str]) -> None:
    env_name = deployment["name"].rsplit("-", 1)[1]
    variables = job_variables(deployment, infra)
    # What the server checks when `prefect deploy` creates the deployment.
    validate(
        variables,
        POOL_TEMPLATE["variables"],
        raise_on_error=True,
        preprocess=True,
        ignore_required=True,
        allow_none_with_default=True,
    )

    configuration, flow_run, identifier = asyncio.run(_submit(deployment, variables))

    ecs = get_backend("ecs")[ACCOUNT][REGION]
    (task,) = ecs.tasks[infra["FERRY_ECS_CLUSTER"]].values()
    assert identifier == f"{infra['FERRY_ECS_CLUSTER']}::{task.task_arn}"
    task_definition = boto3.client("ecs", region_name=REGION).describe_task_definition(
        taskDefinition=task.task_definition_arn
    )["taskDefinition"]
    cpu, memory = variables["cpu"], variables["memory"]
    assert memory in FARGATE_MEMORY[cpu], f"{cpu} CPU units with {memory} MiB is no Fargate size"

    # The registered task definition
    assert task_definition["family"] == (
        f"prefect_{deployment['work_pool']['name']}_{flow_run.deployment_id}"
    )
    assert task_definition["requiresCompatibilities"] == ["FARGATE"]
    assert task_definition["networkMode"] == "awsvpc"
    assert (task_definition["cpu"], task_definition["memory"]) == (str(cpu), str(memory))
    assert task_definition["executionRoleArn"] == infra["FERRY_EXECUTION_ROLE_ARN"]
    assert task_definition["taskRoleArn"] == infra["FERRY_TASK_ROLE_ARN"]
    (container,) = task_definition["containerDefinitions"]
    assert container["name"] == "prefect"
    assert container["image"] == IMAGE
    assert (container["cpu"], container["memory"]) == (cpu, memory)
    assert container["logConfiguration"] == {
        "logDriver": "awslogs",
        "options": {
            "awslogs-create-group": "false",  # infra owns the log group and its retention
            "awslogs-group": "/ferry/dbt",
            "awslogs-region": REGION,
            "awslogs-stream-prefix": "dbt",
        },
    }
    secret = infra["FERRY_WAREHOUSE_SECRET_ARN"]
    assert sorted(container["secrets"], key=lambda s: s["name"]) == [
        {"name": "FERRY_REDSHIFT_PASSWORD", "valueFrom": f"{secret}:password::"},
        {"name": "FERRY_REDSHIFT_USER", "valueFrom": f"{secret}:username::"},
    ]
    assert not container.get("environment"), "the task definition carries no environment"

    # The RunTask request
    _assert_in_private_subnets(task, infra["FERRY_ECS_CLUSTER"], infra)
    overrides = task.overrides
    assert overrides["taskRoleArn"] == infra["FERRY_TASK_ROLE_ARN"]
    assert (overrides["cpu"], overrides["memory"]) == (str(cpu), str(memory))
    (override,) = overrides["containerOverrides"]
    assert override["name"] == "prefect"
    assert override["command"] == ["prefect", "flow-run", "execute"]
    assert configuration.command == "prefect flow-run execute"  # Prefect's flow-run command
    assert (override["cpu"], override["memory"]) == (cpu, memory)
    environment = {item["name"]: item["value"] for item in override["environment"]}
    assert len(environment) == len(override["environment"]), "no variable twice"
    assert environment["PREFECT_API_URL"] == WORKER_API_URL
    assert environment["PREFECT__FLOW_RUN_ID"] == str(flow_run.id)
    assert environment["FERRY_ENV"] == env_name
    assert environment["FERRY_IMAGE_DIGEST"] == IMAGE
    assert environment["FERRY_TARGET"] == "redshift"
    assert environment["FERRY_REDSHIFT_HOST"] == infra["FERRY_REDSHIFT_HOST"]
    assert environment["FERRY_ARTIFACTS"] == f"s3://{infra['FERRY_ARTIFACT_BUCKET']}/dbt"

    # Nothing secret or worker-local in the task's environment, nor anywhere in plain text
    assert not set(environment) & set(WORKER_LOCAL_SETTINGS)
    assert not [name for name in environment if name.endswith("_PASSWORD")]
    assert {name for name in environment if name.startswith("PREFECT")} <= TASK_PREFECT_ENV
    assert not [name for name in environment if not name.startswith(("PREFECT", "FERRY_"))]
    plain = json.dumps([task_definition, overrides, task.tags], default=str)
    for value in WORKER_SECRETS:
        assert value not in plain
    tags = {tag["key"]: tag["value"] for tag in task.tags}
    assert tags["prefect.io/flow-run-id"] == str(flow_run.id)
    assert tags["prefect.io/deployment-name"] == deployment["name"]


# --- The parts of a fanned-out run: one ECS task each ----------------------------------------

PART_DEPLOYMENTS = [d for d in ECS_DEPLOYMENTS if d["name"].startswith("part-")]
# What `split` makes of a selection of three independent chains, and each node's fqn selector.
SELECTORS = {
    "model.shop.stg_orders": "fqn:shop.staging.stg_orders",
    "model.shop.fct_orders": "fqn:shop.marts.fct_orders",
    "model.shop.stg_customers": "fqn:shop.staging.stg_customers",
    "model.shop.dim_customers": "fqn:shop.marts.dim_customers",
    "model.shop.stg_payments": "fqn:shop.staging.stg_payments",
}
PARTS = (
    Part(1, ("model.shop.stg_orders", "model.shop.fct_orders"), 40.0),
    Part(2, ("model.shop.stg_customers", "model.shop.dim_customers"), 30.0),
    Part(3, ("model.shop.stg_payments",), 10.0),
)
PARENT_VAR = "a-parent-var-never-in-a-task"


def _flow_name(entrypoint: str) -> str:
    """The name of the flow an entrypoint names: what `prefect deploy` registers it under."""
    path, attribute = entrypoint.split(":")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    return str(getattr(module, attribute).name)


class _PartsApi:
    """The Prefect API with one deployment on an ECS pool, as a fanned-out parent reaches it:
    through Prefect's sync client, in `run_deployment` and in `run_parts`' polling.

    Creating a flow run of the deployment does what the server does (the deployment's
    parameters and tags merged in; one flow run per idempotency key), then what the pool does
    with a scheduled flow run: propose Pending, and submit it with prefect-aws's ECS worker as
    `_submit` does, at once (a push pool submits on its own; a polling worker does the same a
    moment later). The flow run then stays Pending: nothing in moto runs the container.
    """

    def __init__(self, deployment: dict[str, Any], variables: dict[str, Any]) -> None:
        self.pool = WorkPool(
            id=uuid.uuid4(),
            name=deployment["work_pool"]["name"],
            type="ecs",
            base_job_template=POOL_TEMPLATE,
        )
        self.flow = Flow(id=uuid.uuid4(), name=_flow_name(deployment["entrypoint"]))
        self.deployment = DeploymentResponse(
            id=uuid.uuid4(),
            name=deployment["name"],
            flow_id=self.flow.id,
            job_variables=variables,
            parameters=deployment.get("parameters") or {},
            tags=deployment.get("tags") or [],
            work_pool_name=self.pool.name,
            work_queue_name=deployment["work_pool"]["work_queue_name"],
        )
        # One worker submits every part, as one pool does: what it caches, the parts share.
        self.worker = ECSWorker(work_pool_name=self.pool.name, name="ferry-ecs-worker")
        self.runs: dict[uuid.UUID, FlowRun] = {}
        self.asked: list[str] = []

    def __enter__(self) -> _PartsApi:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def read_deployment_by_name(self, name: str) -> DeploymentResponse:
        self.asked.append(name)
        if name != f"{self.flow.name}/{self.deployment.name}":
            raise ObjectNotFound(http_exc=LookupError(name))
        return self.deployment

    def create_flow_run_from_deployment(
        self,
        deployment_id: uuid.UUID,
        *,
        parameters: dict[str, Any] | None = None,
        context: dict[str, Any] | None = None,
        state: State[Any] | None = None,
        name: str | None = None,
        tags: list[str] | None = None,
        idempotency_key: str | None = None,
        parent_task_run_id: uuid.UUID | None = None,
        work_queue_name: str | None = None,
        job_variables: dict[str, Any] | None = None,
        labels: dict[str, Any] | None = None,
    ) -> FlowRun:
        assert deployment_id == self.deployment.id
        for run in self.runs.values():
            if idempotency_key and run.idempotency_key == idempotency_key:
                return run
        flow_run = FlowRun(
            id=uuid.uuid4(),
            name=name or f"part-otter-{len(self.runs) + 1}",
            flow_id=self.flow.id,
            deployment_id=deployment_id,
            parameters={**self.deployment.parameters, **(parameters or {})},
            tags=sorted(set(self.deployment.tags).union(tags or ())),
            idempotency_key=idempotency_key,
            parent_task_run_id=parent_task_run_id,
            work_queue_name=work_queue_name or self.deployment.work_queue_name,
            work_pool_name=self.pool.name,
            job_variables=job_variables or {},
            labels=labels or {},
            state=Pending(),
        )
        self.runs[flow_run.id] = flow_run
        asyncio.run(self._submit(flow_run))
        return flow_run

    def read_flow_run(self, flow_run_id: uuid.UUID) -> FlowRun:
        return self.runs[flow_run_id]

    def set_flow_run_state(
        self, flow_run_id: uuid.UUID, state: State[Any], force: bool = False
    ) -> None:
        self.runs[flow_run_id].state = state

    async def _submit(self, flow_run: FlowRun) -> None:
        with temporary_settings(updates=WORKER_SETTINGS):
            configuration = await ECSJobConfiguration.from_template_and_values(
                base_job_template=self.pool.base_job_template,
                values={**self.deployment.job_variables, **(flow_run.job_variables or {})},
            )
            configuration.prepare_for_flow_run(
                flow_run=flow_run,
                deployment=self.deployment,
                flow=self.flow,
                work_pool=self.pool,
                worker_name=self.worker.name,
            )
        with temporary_settings(updates={PREFECT_LOGGING_TO_API_ENABLED: False}):
            await self.worker.run(flow_run, configuration)


def _environment(task: Any) -> dict[str, str]:
    (override,) = task.overrides["containerOverrides"]
    environment = {item["name"]: item["value"] for item in override["environment"]}
    assert len(environment) == len(override["environment"]), "no variable twice"
    return environment


def test_both_ecs_environments_have_a_part_deployment() -> None:
    assert [d["name"] for d in PART_DEPLOYMENTS] == ["part-staging", "part-prod"]


@pytest.mark.parametrize("deployment", PART_DEPLOYMENTS, ids=lambda d: d["name"])
def test_a_fanned_out_run_starts_one_ecs_task_per_part(
    deployment: dict[str, Any], infra: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    env_name = deployment["name"].rsplit("-", 1)[1]
    cluster = infra["FERRY_ECS_CLUSTER"]
    variables = job_variables(deployment, infra)
    api = _PartsApi(deployment, variables)
    real_get_client = orchestration.get_client

    def get_client(*args: Any, sync_client: bool = False, **kwargs: Any) -> Any:
        # The parent's sync client is the stand-in; the worker's own (async) is Prefect's.
        return api if sync_client else real_get_client(*args, **kwargs)

    for module in (flow_runs, orchestration):  # run_deployment's client, and run_parts' own
        monkeypatch.setattr(module, "get_client", get_client)
    ecs = get_backend("ecs")[ACCOUNT][REGION]

    # The parent, as flows/run/execute.py makes its parts' requests.
    parent_run_id = str(uuid.uuid4())
    parent = RunRequest(fan_out=len(PARTS), vars={"note": PARENT_VAR})

    def request_of(part: Part) -> RunRequest:
        return parent.model_copy(
            update={
                "select": tuple(SELECTORS[node] for node in part.nodes),
                "fan_out": 0,
                "part_of": parent_run_id,
            }
        )

    tasks_at_first_wait: list[int] = []

    def wait(seconds: float) -> bool:
        # The parent's first pause between polls; then its time is up: the test needs the
        # parts started, not run.
        tasks_at_first_wait.append(len(ecs.tasks[cluster]))
        return False

    def start_parts() -> list[Any]:
        return run_parts(
            list(PARTS),
            request_of,
            wait,
            env=env_name,
            parent_run_id=parent_run_id,
            log=logging.getLogger(__name__),
        )

    ran = start_parts()

    # One flow run per part, of the part deployment, as the parent asked for it
    assert api.asked == [f"dbt-part/{deployment['name']}"] * len(PARTS)
    runs = list(api.runs.values())
    assert len(runs) == len(PARTS)
    for part, run in zip(PARTS, runs, strict=True):
        assert run.deployment_id == api.deployment.id
        assert run.parameters["command"] == "build"
        assert run.parameters["select"] == " ".join(SELECTORS[node] for node in part.nodes)
        assert (run.parameters["part_of"], run.parameters["fan_out"]) == (parent_run_id, 0)
        assert set(run.tags) == {*deployment["tags"], "ferry-part"}
        assert run.idempotency_key == f"{parent_run_id}-part-{part.index}-of-{len(PARTS)}"
    # Every part's task was started before the parent first waited: the parts start at once.
    assert tasks_at_first_wait == [len(PARTS)]

    # One task per part: N tasks carrying N different flow run ids came from N RunTask calls
    tasks = list(ecs.tasks[cluster].values())
    by_run = {_environment(task)["PREFECT__FLOW_RUN_ID"]: task for task in tasks}
    assert len(tasks) == len(PARTS)
    assert sorted(by_run) == sorted(str(run.id) for run in runs)

    # ... all of the one task definition of the deployment, registered once
    client = boto3.client("ecs", region_name=REGION)
    (task_definition_arn,) = client.list_task_definitions()["taskDefinitionArns"]
    assert {task.task_definition_arn for task in tasks} == {task_definition_arn}
    task_definition = client.describe_task_definition(taskDefinition=task_definition_arn)[
        "taskDefinition"
    ]
    assert task_definition["family"] == (
        f"prefect_{deployment['work_pool']['name']}_{api.deployment.id}"
    )
    assert task_definition["executionRoleArn"] == infra["FERRY_EXECUTION_ROLE_ARN"]
    assert task_definition["taskRoleArn"] == infra["FERRY_TASK_ROLE_ARN"]
    (container,) = task_definition["containerDefinitions"]
    assert container["image"] == IMAGE
    cpu, memory = variables["cpu"], variables["memory"]
    assert (container["cpu"], container["memory"]) == (cpu, memory)
    secret = infra["FERRY_WAREHOUSE_SECRET_ARN"]
    assert {s["valueFrom"] for s in container["secrets"]} == {
        f"{secret}:password::",
        f"{secret}:username::",
    }
    assert not container.get("environment"), "the task definition carries no environment"

    # ... each on the deployment's cluster and subnets, knowing its own part's flow run
    for run in runs:
        task = by_run[str(run.id)]
        _assert_in_private_subnets(task, cluster, infra)
        (override,) = task.overrides["containerOverrides"]
        assert override["command"] == ["prefect", "flow-run", "execute"]
        environment = _environment(task)
        assert environment["PREFECT_API_URL"] == WORKER_API_URL
        assert environment["PREFECT__DEPLOYMENT_ID"] == str(api.deployment.id)
        assert environment["FERRY_ENV"] == env_name
        assert environment["FERRY_IMAGE_DIGEST"] == IMAGE
        tags = {tag["key"]: tag["value"] for tag in task.tags}
        assert tags["prefect.io/flow-run-id"] == str(run.id)
        assert tags["prefect.io/deployment-name"] == deployment["name"]

        # Nothing secret or worker-local; the part's parameters stay in Prefect (the task
        # reads them from the API), so no selection is bounded by ECS's size of overrides.
        assert not set(environment) & set(WORKER_LOCAL_SETTINGS)
        assert not [name for name in environment if name.endswith("_PASSWORD")]
        assert {name for name in environment if name.startswith("PREFECT")} <= TASK_PREFECT_ENV
        assert not [name for name in environment if not name.startswith(("PREFECT", "FERRY_"))]
        plain = json.dumps([task_definition, task.overrides, task.tags], default=str)
        for value in (*WORKER_SECRETS, PARENT_VAR, parent_run_id, *SELECTORS.values()):
            assert value not in plain

    # The parent's time was up at its first wait: it cancelled every part it started.
    assert [getattr(r.state, "type", None) for r in runs] == [StateType.CANCELLING] * len(PARTS)
    assert [(r.part, r.run_id, r.state_type) for r in ran] == [
        (part, str(run.id), "CANCELLED") for part, run in zip(PARTS, runs, strict=True)
    ]

    # A parent that Prefect retries asks again with the same keys: no part gets a second task.
    again = start_parts()
    assert [r.run_id for r in again] == [str(run.id) for run in runs]
    assert len(ecs.tasks[cluster]) == len(PARTS)
