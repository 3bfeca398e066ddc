"""A fanned-out run's parts on the ECS push pool: one task each, against moto.

The parent's own code (`run_parts`, through Prefect's `run_deployment`) creates one flow run of
`part-<env>` per part, against a stand-in for the Prefect API that submits each flow run it
creates with prefect-aws's ECS worker, as the pool would (tests/integration/ecs.py); moto must
then hold one task per part, each the deployment's and carrying its own part's flow run id.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import uuid
from typing import Any

import boto3
import pytest
from moto.backends import get_backend
from prefect.client import orchestration
from prefect.client.schemas.objects import Flow, FlowRun, StateType, WorkPool
from prefect.client.schemas.responses import DeploymentResponse
from prefect.deployments import flow_runs
from prefect.exceptions import ObjectNotFound
from prefect.states import Pending, State
from prefect_aws.workers.ecs_worker import ECSWorker

from flows.prefect.deployments import job_variables
from flows.prefect.parts import run_parts
from flows.run.parts import Part
from flows.run.request import RunRequest
from tests.integration import ecs

pytestmark = pytest.mark.integration

PART_DEPLOYMENTS = [d for d in ecs.ECS_DEPLOYMENTS if d["name"].startswith("part-")]
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
    with a scheduled flow run: propose Pending, and ecs.submit it with prefect-aws's ECS worker as
    `ecs.submit` does, at once (a push pool submits on its own; a polling worker does the same a
    moment later). The flow run then stays Pending: nothing in moto runs the container.
    """

    def __init__(self, deployment: dict[str, Any], variables: dict[str, Any]) -> None:
        self.pool = WorkPool(
            id=uuid.uuid4(),
            name=deployment["work_pool"]["name"],
            type="ecs",
            base_job_template=ecs.POOL_TEMPLATE,
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
        values = {**self.deployment.job_variables, **(flow_run.job_variables or {})}
        await ecs.submit(self.worker, self.pool, self.deployment, self.flow, flow_run, values)


def test_both_ecs_environments_have_a_part_deployment() -> None:
    assert [d["name"] for d in PART_DEPLOYMENTS] == ["part-staging", "part-prod"]


@pytest.mark.parametrize("deployment", PART_DEPLOYMENTS, ids=lambda d: d["name"])
def test_a_fanned_out_run_starts_one_ecs_task_per_part(
    deployment: dict[str, Any], ecs_stack: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    env_name = deployment["name"].rsplit("-", 1)[1]
    cluster = ecs_stack["FERRY_ECS_CLUSTER"]
    variables = job_variables(deployment, ecs_stack)
    api = _PartsApi(deployment, variables)
    real_get_client = orchestration.get_client

    def get_client(*args: Any, sync_client: bool = False, **kwargs: Any) -> Any:
        # The parent's sync client is the stand-in; the worker's own (async) is Prefect's.
        return api if sync_client else real_get_client(*args, **kwargs)

    for module in (flow_runs, orchestration):  # run_deployment's client, and run_parts' own
        monkeypatch.setattr(module, "get_client", get_client)
    backend = get_backend("ecs")[ecs.ACCOUNT][ecs.REGION]

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
        tasks_at_first_wait.append(len(backend.tasks[cluster]))
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
    tasks = list(backend.tasks[cluster].values())
    by_run = {ecs.task_environment(task)["PREFECT__FLOW_RUN_ID"]: task for task in tasks}
    assert len(tasks) == len(PARTS)
    assert sorted(by_run) == sorted(str(run.id) for run in runs)

    # ... all of the one task definition of the deployment, registered once
    client = boto3.client("ecs", region_name=ecs.REGION)
    (task_definition_arn,) = client.list_task_definitions()["taskDefinitionArns"]
    assert {task.task_definition_arn for task in tasks} == {task_definition_arn}
    task_definition = client.describe_task_definition(taskDefinition=task_definition_arn)[
        "taskDefinition"
    ]
    assert task_definition["family"] == (
        f"prefect_{deployment['work_pool']['name']}_{api.deployment.id}"
    )
    assert task_definition["executionRoleArn"] == ecs_stack["FERRY_EXECUTION_ROLE_ARN"]
    assert task_definition["taskRoleArn"] == ecs_stack["FERRY_TASK_ROLE_ARN"]
    (container,) = task_definition["containerDefinitions"]
    assert container["image"] == ecs.IMAGE
    cpu, memory = variables["cpu"], variables["memory"]
    assert (container["cpu"], container["memory"]) == (cpu, memory)
    secret = ecs_stack["FERRY_WAREHOUSE_SECRET_ARN"]
    assert {s["valueFrom"] for s in container["secrets"]} == {
        f"{secret}:password::",
        f"{secret}:username::",
    }
    assert not container.get("environment"), "the task definition carries no environment"

    # ... each on the deployment's cluster and subnets, knowing its own part's flow run
    for run in runs:
        task = by_run[str(run.id)]
        ecs.assert_in_private_subnets(task, cluster, ecs_stack)
        (override,) = task.overrides["containerOverrides"]
        assert override["command"] == ["prefect", "flow-run", "execute"]
        environment = ecs.task_environment(task)
        assert environment["PREFECT_API_URL"] == ecs.WORKER_API_URL
        assert environment["PREFECT__DEPLOYMENT_ID"] == str(api.deployment.id)
        assert environment["FERRY_ENV"] == env_name
        assert environment["FERRY_IMAGE_DIGEST"] == ecs.IMAGE
        tags = {tag["key"]: tag["value"] for tag in task.tags}
        assert tags["prefect.io/flow-run-id"] == str(run.id)
        assert tags["prefect.io/deployment-name"] == deployment["name"]

        # Nothing secret or worker-local; the part's parameters stay in Prefect (the task
        # reads them from the API), so no selection is bounded by ECS's size of overrides.
        plain = json.dumps([task_definition, task.overrides, task.tags], default=str)
        ecs.assert_nothing_secret(
            environment, plain, PARENT_VAR, parent_run_id, *SELECTORS.values()
        )

    # The parent's time was up at its first wait: it cancelled every part it started.
    assert [getattr(r.state, "type", None) for r in runs] == [StateType.CANCELLING] * len(PARTS)
    assert [(r.part, r.run_id, r.state_type) for r in ran] == [
        (part, str(run.id), "CANCELLED") for part, run in zip(PARTS, runs, strict=True)
    ]

    # A parent that Prefect retries asks again with the same keys: no part gets a second task.
    again = start_parts()
    assert [r.run_id for r in again] == [str(run.id) for run in runs]
    assert len(backend.tasks[cluster]) == len(PARTS)
