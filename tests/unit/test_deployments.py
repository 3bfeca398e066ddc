"""prefect.yaml's deployments and the ECS work pool's base job template, without AWS."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.client.schemas.schedules import CronSchedule
from prefect.utilities.schema_tools import validate

from flows.prefect.deployments import (
    ECS_BASE_JOB_TEMPLATE,
    WORKER_LOCAL_SETTINGS,
    ImageNotPinnedError,
    MissingDeployVariablesError,
    check_deployable,
    ecs_base_job_template,
    job_variables,
    load_deployments,
    render_ecs_base_job_template,
    require_pinned_image,
    resolve_env_placeholders,
)

DBT_KINDS = ("run", "build", "build-changed", "freshness", "retry", "docs")
KINDS = (*DBT_KINDS, "rollback", "part")
ENVS = ("local", "staging", "prod")
ENTRYPOINTS = {
    "flows/dbt_flow.py:dbt_flow": ("dbt", DBT_KINDS),
    "flows/rollback_flow.py:rollback_flow": ("rollback", ("rollback",)),
    "flows/dbt_flow.py:dbt_part_flow": ("dbt-part", ("part",)),
}
ECS_POOLS = {"staging": "ferry-staging-ecs", "prod": "ferry-prod-ecs"}
DIGEST = hashlib.sha256(b"ferry image").hexdigest()
IMAGE = f"123456789012.dkr.ecr.us-east-1.amazonaws.com/ferry@sha256:{DIGEST}"

# What CI exports from the infrastructure stack's outputs before `prefect deploy`.
INFRA: dict[str, str] = {
    "AWS_REGION": "us-east-1",
    "FERRY_IMAGE": IMAGE,
    "FERRY_ECS_CLUSTER": "ferry",
    "FERRY_EXECUTION_ROLE_ARN": "arn:aws:iam::123456789012:role/ferry-execution",
    "FERRY_TASK_ROLE_ARN": "arn:aws:iam::123456789012:role/ferry-task",
    "FERRY_VPC_ID": "vpc-0123456789abcdef0",
    "FERRY_PRIVATE_SUBNET_A": "subnet-0aaaaaaaaaaaaaaaa",
    "FERRY_PRIVATE_SUBNET_B": "subnet-0bbbbbbbbbbbbbbbb",
    "FERRY_SECURITY_GROUP": "sg-0123456789abcdef0",
    "FERRY_LOG_GROUP": "/ferry/dbt",
    "FERRY_WAREHOUSE_SECRET_ARN": (
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:ferry/warehouse-AbCdEf"
    ),
    "FERRY_ARTIFACT_BUCKET": "ferry-artifacts",
    "FERRY_REDSHIFT_HOST": "warehouse.ferry.internal",
    "FERRY_REDSHIFT_DATABASE": "analytics",
    "GITHUB_SHA": hashlib.sha1(b"ferry commit").hexdigest(),
}


@pytest.fixture(scope="module")
def deployments() -> dict[str, dict[str, Any]]:
    return {d["name"]: d for d in load_deployments()}


def _env(name: str) -> str:
    return name.rsplit("-", 1)[1]


def test_twenty_four_deployments_kind_by_env(deployments: dict[str, dict[str, Any]]) -> None:
    assert sorted(deployments) == sorted(f"{kind}-{env}" for kind in KINDS for env in ENVS)
    assert len(load_deployments()) == 24, "no deployment name twice"


def test_each_kind_runs_its_flow(deployments: dict[str, dict[str, Any]]) -> None:
    """The `dbt` flow for the dbt kinds, the `rollback` flow for rollback-<env>: each
    entrypoint imports, and names the flow its kinds expect."""
    import importlib

    for entrypoint, (flow_name, kinds) in ENTRYPOINTS.items():
        path, attribute = entrypoint.split(":")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        assert getattr(module, attribute).name == flow_name, entrypoint
        for kind in kinds:
            for env in ENVS:
                assert deployments[f"{kind}-{env}"]["entrypoint"] == entrypoint, (kind, env)


def test_local_runs_on_the_process_pool_and_the_rest_on_ecs(
    deployments: dict[str, dict[str, Any]],
) -> None:
    for name, deployment in deployments.items():
        pool = deployment["work_pool"]
        env = _env(name)
        if env == "local":
            assert pool["name"] == "ferry-local", name
            assert "image" not in pool.get("job_variables", {}), name
        else:
            assert pool["name"] == ECS_POOLS[env], name
            assert pool["job_variables"]["launch_type"] == "FARGATE", name
            assert pool["job_variables"]["env"]["FERRY_ENV"] == env, name


def test_local_deployments_need_nothing_from_the_infrastructure(
    deployments: dict[str, dict[str, Any]],
) -> None:
    for kind in KINDS:
        variables = job_variables(deployments[f"{kind}-local"], {})
        assert variables["env"]["FERRY_ENV"] == "local"


def test_only_the_prod_builds_freshness_and_docs_are_scheduled_with_a_timezone(
    deployments: dict[str, dict[str, Any]],
) -> None:
    scheduled = {name for name, d in deployments.items() if d.get("schedules")}
    assert scheduled == {"build-prod", "build-changed-prod", "freshness-prod", "docs-prod"}
    for name in scheduled:
        for schedule in deployments[name]["schedules"]:
            assert schedule.get("timezone"), f"{name}: a cron without a timezone runs in UTC"
            CronSchedule(cron=schedule["cron"], timezone=schedule["timezone"])  # Prefect's check


def _daily_minute(schedule: dict[str, Any]) -> int:
    """The minute of the day a daily `M H * * *` cron fires at."""
    minute, hour, *every_day = schedule["cron"].split()
    assert every_day == ["*", "*", "*"], schedule
    return int(hour) * 60 + int(minute)


def test_docs_deployments_publish_the_docs_site_prod_after_the_nightly_build(
    deployments: dict[str, dict[str, Any]],
) -> None:
    for env in ENVS:
        assert deployments[f"docs-{env}"]["parameters"] == {"command": "docs generate"}, env
    (build,) = deployments["build-prod"]["schedules"]
    (docs,) = deployments["docs-prod"]["schedules"]
    assert docs["timezone"] == build["timezone"]
    # An hour at least: the catalog should describe the tables the build left.
    assert _daily_minute(docs) - _daily_minute(build) >= 60, (build, docs)


def test_every_deployment_has_a_concurrency_limit_with_a_collision_strategy(
    deployments: dict[str, dict[str, Any]],
) -> None:
    # Across deployments, the models a run writes are held by the flow (flows/prefect/holds.py);
    # these queue a deployment's own runs before infrastructure starts. The parts of a
    # fanned-out run start at once: their deployment has no limit.
    for env in ENVS:
        assert "concurrency_limit" not in deployments[f"part-{env}"], env
    for name in (f"{kind}-{env}" for kind in KINDS if kind != "part" for env in ENVS):
        raw = deployments[name].get("concurrency_limit")
        assert isinstance(raw, dict) and "collision_strategy" in raw, name
        limit = ConcurrencyLimitConfig.model_validate(raw)
        assert limit.limit == 1
        # A newer freshness check, only-changed build or docs site makes a waiting one
        # redundant (the running one does its work); builds wait in line.
        expected = (
            ConcurrencyLimitStrategy.CANCEL_NEW
            if name.startswith(("freshness-", "build-changed-", "docs-"))
            else ConcurrencyLimitStrategy.ENQUEUE
        )
        assert limit.collision_strategy == expected, name


def test_ecs_job_variables_resolve_from_the_infrastructure(
    deployments: dict[str, dict[str, Any]],
) -> None:
    variables = {name: job_variables(d, INFRA) for name, d in deployments.items()}
    prod = variables["build-prod"]
    assert prod["image"] == IMAGE
    assert prod["cluster"] == "ferry"
    assert prod["network_configuration"]["subnets"] == [
        INFRA["FERRY_PRIVATE_SUBNET_A"],
        INFRA["FERRY_PRIVATE_SUBNET_B"],
    ]
    assert prod["env"]["FERRY_ARTIFACTS"] == "s3://ferry-artifacts/dbt"
    assert prod["container_secrets"][0]["valueFrom"].startswith(INFRA["FERRY_WAREHOUSE_SECRET_ARN"])
    assert prod["cpu"] == 2048, "values written as numbers stay numbers"
    assert "{{" not in repr(variables)


def test_every_ecs_job_variable_is_one_the_pool_declares_and_validates(
    deployments: dict[str, dict[str, Any]],
) -> None:
    """Prefect ignores a job variable its pool's template does not declare, silently."""
    template = ecs_base_job_template()
    declared = set(template["variables"]["properties"])
    for name, deployment in deployments.items():
        variables = job_variables(deployment, INFRA)
        if _env(name) == "local":
            continue
        assert set(variables) <= declared, f"{name}: {sorted(set(variables) - declared)}"
        # What the server checks when `prefect deploy` creates the deployment.
        validate(
            variables,
            template["variables"],
            raise_on_error=True,
            preprocess=True,
            ignore_required=True,
            allow_none_with_default=True,
        )


@pytest.mark.parametrize(
    "image",
    [
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/ferry:latest",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/ferry",
        f"123456789012.dkr.ecr.us-east-1.amazonaws.com/ferry@sha256:{DIGEST[:12]}",
        f"123456789012.dkr.ecr.us-east-1.amazonaws.com/ferry@sha256:{DIGEST.upper()}",
        f"ferry@sha256:{DIGEST} ",
        "",
    ],
)
def test_an_image_without_a_digest_is_refused(
    image: str, deployments: dict[str, dict[str, Any]]
) -> None:
    with pytest.raises(ImageNotPinnedError, match=r"build-prod: .* not pinned by digest"):
        job_variables(deployments["build-prod"], {**INFRA, "FERRY_IMAGE": image})


def test_a_pinned_image_with_a_tag_is_accepted() -> None:
    image = f"123456789012.dkr.ecr.us-east-1.amazonaws.com/ferry:v1@sha256:{DIGEST}"
    assert require_pinned_image(image) == image


def test_a_missing_variable_is_named(deployments: dict[str, dict[str, Any]]) -> None:
    infra = {k: v for k, v in INFRA.items() if k not in ("FERRY_VPC_ID", "GITHUB_SHA")}
    with pytest.raises(MissingDeployVariablesError, match="FERRY_VPC_ID, GITHUB_SHA") as caught:
        job_variables(deployments["run-staging"], infra)
    assert caught.value.names == ["FERRY_VPC_ID", "GITHUB_SHA"]


def test_every_missing_variable_is_named_at_once() -> None:
    needed = set()
    for env in ("staging", "prod"):
        with pytest.raises(MissingDeployVariablesError) as caught:
            check_deployable(env, {})
        needed |= set(caught.value.names)
    assert sorted(needed) == sorted(INFRA)


def test_placeholders_resolve_as_prefect_deploy_does() -> None:
    template = {
        "whole": "{{ $A }}",
        "inside": ["s3://{{ $A }}/dbt", "{{$B}}-{{ $A }}"],
        "left_for_prefect": "{{ prefect.variables.x }} {{ image }}",
        "number": 3,
    }
    assert resolve_env_placeholders(template, {"A": "a", "B": "b"}) == {
        "whole": "a",
        "inside": ["s3://a/dbt", "b-a"],
        "left_for_prefect": "{{ prefect.variables.x }} {{ image }}",
        "number": 3,
    }


def test_the_committed_ecs_template_is_the_generated_one() -> None:
    assert ECS_BASE_JOB_TEMPLATE.read_text() == render_ecs_base_job_template(), (
        "regenerate it: .venv/bin/ferry release ecs-template"
    )


def test_the_ecs_template_adds_secrets_sizes_and_drops_worker_settings() -> None:
    template = ecs_base_job_template()
    variables = template["variables"]["properties"]
    assert variables["container_secrets"]["default"] == []
    assert variables["env"]["default"] == dict.fromkeys(WORKER_LOCAL_SETTINGS)
    task_definition = template["job_configuration"]["task_definition"]
    assert task_definition["taskRoleArn"] == "{{ task_role_arn }}"
    (container,) = task_definition["containerDefinitions"]
    assert container == {
        "image": "{{ image }}",
        "name": "{{ container_name }}",
        "cpu": "{{ cpu }}",
        "memory": "{{ memory }}",
        "secrets": "{{ container_secrets }}",
    }


def test_ferry_writes_the_ecs_template_or_fails_saying_why(tmp_path: Path, capsys) -> None:
    from flows.cli import main
    from flows.exit_codes import ExitCode

    target = tmp_path / "pool" / "ecs.json"
    assert main(["release", "ecs-template", str(target)]) == ExitCode.OK
    assert target.read_text() == render_ecs_base_job_template()
    assert capsys.readouterr().out == f"wrote {target}\n"
    (tmp_path / "a-file").write_text("")
    assert main(["release", "ecs-template", str(tmp_path / "a-file" / "x.json")]) == ExitCode.FAILED
    assert capsys.readouterr().err.startswith("ferry release ecs-template: ")


def test_builds_publish_blue_green_and_every_dbt_deployment_is_a_valid_run_request(
    deployments: dict[str, dict[str, Any]],
) -> None:
    from flows.run.request import PublishMode, RunRequest

    for env in ENVS:
        for kind in ("build", "build-changed"):
            request = RunRequest.build(**deployments[f"{kind}-{env}"]["parameters"])
            assert request.publish is PublishMode.BLUE_GREEN, (kind, env)
    dbt_deployments = [f"{kind}-{env}" for kind in DBT_KINDS for env in ENVS]
    for name in dbt_deployments:
        parameters = deployments[name]["parameters"]
        RunRequest.build(**parameters)  # refused here, refused in every run
        if not name.startswith("build"):
            assert "publish" not in parameters, name


def test_rollbacks_are_run_by_hand_one_at_a_time_with_the_flows_parameters(
    deployments: dict[str, dict[str, Any]],
) -> None:
    """`to` is chosen per run; a default in the deployment would roll every run back to it."""
    from flows.rollback_flow import rollback_flow

    for env in ENVS:
        deployment = deployments[f"rollback-{env}"]
        assert not deployment.get("schedules"), env
        assert deployment["parameters"] == {}, env
        rollback_flow.validate_parameters(deployment["parameters"])  # as a run's would be
        limit = ConcurrencyLimitConfig.model_validate(deployment["concurrency_limit"])
        assert (limit.limit, limit.collision_strategy) == (1, ConcurrencyLimitStrategy.ENQUEUE)
        assert deployment["tags"] == deployments[f"build-{env}"]["tags"], env
        assert deployment["work_pool"]["name"] == deployments[f"build-{env}"]["work_pool"]["name"]
    assert list(rollback_flow.parameters.properties) == ["to"]
