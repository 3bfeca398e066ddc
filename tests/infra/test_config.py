"""The typed configuration: the example is valid and matches the repository; bad values fail
early with a message that says what to change."""

from __future__ import annotations

import dataclasses
import re

import pytest
import yaml
from ferry_infra.config import (
    ConfigError,
    EnvironmentConfig,
    FerryConfig,
    Network,
    PrivateSubnet,
    RunArtifactRetention,
    Warehouse,
)
from ferry_infra.environments import FERRY

from tests.infra.conftest import REPO

pytestmark = pytest.mark.infra


def test_the_example_names_the_example_dbt_project() -> None:
    project = yaml.safe_load((REPO / "dbt_project" / "dbt_project.yml").read_text())["name"]
    assert project in FERRY.dbt_projects


def test_environments_and_their_github_environments() -> None:
    assert {env.name: env.github_environment for env in FERRY.environments} == {
        "staging": "staging",
        "prod": "production",
    }
    staging = FERRY.environment("staging")
    assert staging.stack_name == "ferry-staging"
    assert staging.cluster_name == "ferry-staging"
    assert staging.log_group_name == "/ferry/staging/dbt"
    assert staging.warehouse_secret_name == "ferry/staging/warehouse"


def test_the_artifact_prefix_is_the_one_prefect_yaml_writes_to() -> None:
    prefect = (REPO / "prefect.yaml").read_text()
    roots = set(
        re.findall(r'FERRY_ARTIFACTS: "s3://\{\{ \$FERRY_ARTIFACT_BUCKET \}\}/(\w+)"', prefect)
    )
    assert roots == {FERRY.artifact_prefix}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"account": "1234"}, "12-digit AWS account id"),
        ({"region": "Europe"}, "not an AWS region"),
        ({"dbt_projects": ()}, "dbt_projects is empty"),
        ({"dbt_projects": ("shop/x",)}, "not a dbt project name"),
        ({"environments": FERRY.environments[:1]}, "exactly staging and prod"),
        ({"existing_github_oidc_provider_arn": "arn:aws:iam::1:role/x"}, "GitHub's OIDC"),
    ],
)
def test_a_bad_ferry_config_says_what_to_change(change: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        dataclasses.replace(FERRY, **change)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"log_retention_days": 31}, "not a value CloudWatch Logs accepts"),
        ({"push_pool_principals": ()}, "push_pool_principals is empty"),
        ({"push_pool_principals": ("ferry-user",)}, "not an IAM user or role ARN"),
        ({"github_environment": "prod env"}, "GitHub environment name"),
    ],
)
def test_a_bad_environment_says_what_to_change(change: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        dataclasses.replace(FERRY.environment("staging"), **change)  # type: ignore[arg-type]


def test_bad_network_warehouse_and_retention_values_are_refused() -> None:
    with pytest.raises(ConfigError, match="pick two availability zones"):
        Network(
            "vpc-1",
            PrivateSubnet("subnet-a", "eu-north-1a"),
            PrivateSubnet("subnet-b", "eu-north-1a"),
        )
    with pytest.raises(ConfigError, match="not a subnet id"):
        PrivateSubnet("sn-1", "eu-north-1a")
    with pytest.raises(ConfigError, match="whole internet"):
        Warehouse(cidr="0.0.0.0/0")
    with pytest.raises(ConfigError, match="not a CIDR block"):
        Warehouse(cidr="warehouse.internal")
    with pytest.raises(ConfigError, match="no sooner than 30 days"):
        RunArtifactRetention(infrequent_access_after_days=7, expire_after_days=90)
    with pytest.raises(ConfigError, match="must come after"):
        RunArtifactRetention(infrequent_access_after_days=30, expire_after_days=30)


def test_an_unknown_environment_name_is_refused() -> None:
    with pytest.raises(ConfigError, match="ferry knows staging and prod"):
        dataclasses.replace(FERRY.environment("prod"), name="qa")  # type: ignore[arg-type]


def test_config_values_are_frozen() -> None:
    assert isinstance(FERRY, FerryConfig)
    with pytest.raises(dataclasses.FrozenInstanceError):
        FERRY.environment("prod").log_retention_days = 1  # type: ignore[misc]
    assert all(isinstance(env, EnvironmentConfig) for env in FERRY.environments)
