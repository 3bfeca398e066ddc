"""`ferry release deploy --env staging` against a real Prefect server, as main.yml runs it:
every staging deployment lands on the ECS pool pinned to the digest CI built, with the
infrastructure's values; a missing value or an unpinned image is bad input (exit 2) and deploys
nothing; `prefect deploy` or the API failing is a failure (exit 1)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from flows.exit_codes import ExitCode
from flows.prefect import server as prefect_server
from flows.prefect.holds import WRITERS
from flows.prefect.server import free_port
from tests.conftest import REPO
from tests.e2e.conftest import run_ferry

pytestmark = pytest.mark.e2e

DIGEST = "sha256:" + "ab" * 32
INFRA = {
    "FERRY_IMAGE_REPOSITORY": "123456789012.dkr.ecr.eu-north-1.amazonaws.com/ferry",
    "FERRY_ECS_CLUSTER": "ferry-staging",
    "FERRY_EXECUTION_ROLE_ARN": "arn:aws:iam::123456789012:role/ferry-staging-execution",
    "FERRY_TASK_ROLE_ARN": "arn:aws:iam::123456789012:role/ferry-staging-task",
    "FERRY_VPC_ID": "vpc-0123",
    "FERRY_PRIVATE_SUBNET_A": "subnet-a",
    "FERRY_PRIVATE_SUBNET_B": "subnet-b",
    "FERRY_SECURITY_GROUP": "sg-0123",
    "FERRY_LOG_GROUP": "/ferry/staging/dbt",
    "FERRY_WAREHOUSE_SECRET_ARN": "arn:aws:secretsmanager:eu-north-1:123456789012:secret:wh",
    "FERRY_ARTIFACT_BUCKET": "ferry-artifacts",
    "FERRY_REDSHIFT_HOST": "redshift.example",
    "FERRY_REDSHIFT_DATABASE": "analytics",
    "AWS_REGION": "eu-north-1",
    "GITHUB_SHA": "0123456789abcdef0123456789abcdef01234567",
}


@pytest.fixture(scope="module")
def ecs_pool(prefect_api):
    prefect = str(Path(sys.executable).with_name("prefect"))
    subprocess.run(
        [
            prefect,
            "work-pool",
            "create",
            "ferry-staging-ecs",
            "--type",
            "ecs",
            "--overwrite",
            "--base-job-template",
            str(REPO / "infra/prefect/ecs-base-job-template.json"),
        ],
        env={**os.environ, "PREFECT_API_URL": prefect_api},
        check=True,
        capture_output=True,
        timeout=120,
    )
    return prefect_api


def deployment(api: str, name: str) -> dict | None:
    response = prefect_server.api_client(api).get(f"/deployments/name/dbt/{name}")
    return None if response.status_code == 404 else response.raise_for_status().json()


def writer_limits(api: str) -> dict[str, int]:
    found = prefect_server.api_client(api).post("/v2/concurrency_limits/filter", json={})
    return {
        limit["name"]: limit["limit"]
        for limit in found.raise_for_status().json()
        if limit["name"].startswith("ferry-writer-")
    }


def test_staging_deploys_pinned_to_the_digest_or_not_at_all(ecs_pool):
    api = ecs_pool
    for name in writer_limits(api):  # made by other tests of the session
        prefect_server.api_client(api).delete(f"/v2/concurrency_limits/{name}")
    unpinned = run_ferry(
        api,
        "release",
        "deploy",
        "--env",
        "staging",
        cwd=REPO,
        env={**INFRA, "FERRY_IMAGE": INFRA["FERRY_IMAGE_REPOSITORY"] + ":latest"},
    )
    refused(unpinned, "not pinned by digest")
    missing = run_ferry(
        api,
        "release",
        "deploy",
        "--env",
        "staging",
        cwd=REPO,
        env={k: v for k, v in INFRA.items() if k != "FERRY_SECURITY_GROUP"}
        | {"FERRY_IMAGE": INFRA["FERRY_IMAGE_REPOSITORY"] + "@" + DIGEST},
    )
    refused(missing, "FERRY_SECURITY_GROUP")
    assert deployment(api, "run-staging") is None
    assert writer_limits(api) == {}  # refused before anything changed

    image = f"{INFRA['FERRY_IMAGE_REPOSITORY']}@{DIGEST}"
    result = run_ferry(
        api, "release", "deploy", "--env", "staging", cwd=REPO, env={**INFRA, "FERRY_IMAGE": image}
    )
    assert result.returncode == ExitCode.OK, result.stdout[-2000:] + result.stderr[-2000:]
    # staging's writers queue on their environment's limit, there before the first run
    assert "created: concurrency limit ferry-writer-staging" in result.stdout
    assert writer_limits(api) == {"ferry-writer-staging": WRITERS}
    for name in ("run-staging", "build-staging", "freshness-staging", "retry-staging"):
        found = deployment(api, name)
        assert found is not None, name
        variables = found["job_variables"]
        assert variables["image"] == image
        assert variables["cluster"] == "ferry-staging"
        assert variables["network_configuration"]["securityGroups"] == ["sg-0123"]
        assert variables["env"]["FERRY_IMAGE_DIGEST"] == image
        assert variables["env"]["FERRY_ENV"] == "staging"
        assert "{{" not in str(variables)
    assert deployment(api, "run-prod") is None  # one environment at a time
    again = run_ferry(
        api, "release", "deploy", "--env", "staging", cwd=REPO, env={**INFRA, "FERRY_IMAGE": image}
    )
    assert again.returncode == ExitCode.OK, again.stdout[-2000:] + again.stderr[-2000:]
    assert "unchanged: concurrency limit ferry-writer-staging" in again.stdout
    assert writer_limits(api) == {"ferry-writer-staging": WRITERS}


def test_a_failing_prefect_deploy_ends_with_exit_1_and_no_traceback(prefect_api):
    """prod's work pool does not exist on this server: `prefect deploy` refuses it."""
    image = f"{INFRA['FERRY_IMAGE_REPOSITORY']}@{DIGEST}"
    result = run_ferry(
        prefect_api,
        "release",
        "deploy",
        "--env",
        "prod",
        cwd=REPO,
        env={**INFRA, "FERRY_IMAGE": image},
    )
    assert result.returncode == ExitCode.FAILED, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert "ferry release deploy: " in result.stderr and "failed with exit code" in result.stderr
    assert deployment(prefect_api, "run-prod") is None


def refused(result: subprocess.CompletedProcess[str], message: str) -> None:
    """Exit code 2, one `ferry release deploy: ` line naming the problem, no traceback."""
    assert result.returncode == ExitCode.INVALID, result.stdout[-2000:] + result.stderr[-2000:]
    assert result.stderr.startswith("ferry release deploy: "), result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def test_deploying_without_an_api_or_a_prefect_yaml_is_refused(tmp_path):
    image = f"{INFRA['FERRY_IMAGE_REPOSITORY']}@{DIGEST}"
    env = {**INFRA, "FERRY_IMAGE": image, "PREFECT_HOME": str(tmp_path)}
    deploy = ("release", "deploy", "--env", "staging")
    refused(run_ferry("", *deploy, cwd=REPO, env=env), "set PREFECT_API_URL")
    missing = tmp_path / "prefect.yaml"
    refused(run_ferry("", *deploy, "--prefect-file", str(missing), cwd=REPO, env=env), str(missing))
    refused(run_ferry("", "release", "deploy", "--env", "nope", cwd=REPO, env=env), "*-nope")


def test_an_unreachable_prefect_api_is_a_failure():
    image = f"{INFRA['FERRY_IMAGE_REPOSITORY']}@{DIGEST}"
    closed = f"http://127.0.0.1:{free_port()}/api"
    result = run_ferry(
        closed,
        "release",
        "deploy",
        "--env",
        "staging",
        cwd=REPO,
        env={**INFRA, "FERRY_IMAGE": image},
    )
    assert result.returncode == ExitCode.FAILED, result.stdout[-2000:] + result.stderr[-2000:]
    assert result.stderr.startswith(f"ferry release deploy: the Prefect API at {closed} failed")
    assert "Traceback" not in result.stderr
