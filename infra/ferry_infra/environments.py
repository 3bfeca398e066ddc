"""The values of ferry's AWS infrastructure: the one file a team edits before deploying.

The account, VPC, subnet and principal below are placeholders (the 111111111111 account does not
exist): replace them with your own. See docs/infrastructure.md for what each value does.
"""

from __future__ import annotations

from ferry_infra.config import (
    EnvironmentConfig,
    FerryConfig,
    GitHubRepository,
    Network,
    PrivateSubnet,
    RunArtifactRetention,
    Warehouse,
)

_ACCOUNT = "111111111111"
_REGION = "eu-north-1"

FERRY = FerryConfig(
    account=_ACCOUNT,
    region=_REGION,
    github=GitHubRepository(owner="example-org", name="ferry"),
    # `name:` of each dbt project the image runs (dbt_project/dbt_project.yml): one lifecycle
    # rule per project and environment expires its run artifacts.
    dbt_projects=("shop",),
    environments=(
        EnvironmentConfig(
            name="staging",
            github_environment="staging",
            network=Network(
                vpc_id="vpc-0a1b2c3d4e5f60001",
                subnet_a=PrivateSubnet("subnet-0a1b2c3d4e5f60011", f"{_REGION}a"),
                subnet_b=PrivateSubnet("subnet-0a1b2c3d4e5f60012", f"{_REGION}b"),
            ),
            warehouse=Warehouse(cidr="10.20.0.0/24", port=5439),
            # dbt.log of every run is also kept in S3 with the run's artifacts.
            log_retention_days=30,
            run_artifacts=RunArtifactRetention(
                infrequent_access_after_days=30, expire_after_days=90
            ),
            push_pool_principals=(f"arn:aws:iam::{_ACCOUNT}:user/ferry-prefect-staging",),
            # build-staging runs when CI deploys, not on a schedule: a quiet day is no fault.
            no_successful_build_alarm_hours=None,
        ),
        EnvironmentConfig(
            name="prod",
            github_environment="production",
            network=Network(
                vpc_id="vpc-0a1b2c3d4e5f60002",
                subnet_a=PrivateSubnet("subnet-0a1b2c3d4e5f60021", f"{_REGION}a"),
                subnet_b=PrivateSubnet("subnet-0a1b2c3d4e5f60022", f"{_REGION}b"),
            ),
            warehouse=Warehouse(cidr="10.30.0.0/24", port=5439),
            log_retention_days=365,
            run_artifacts=RunArtifactRetention(
                infrequent_access_after_days=30, expire_after_days=400
            ),
            push_pool_principals=(f"arn:aws:iam::{_ACCOUNT}:user/ferry-prefect-prod",),
            # build-prod runs daily (prefect.yaml): 26 h allows one late or slow run.
            no_successful_build_alarm_hours=26,
        ),
    ),
)
