"""The typed configuration of ferry's AWS infrastructure.

Every value a team edits lives in `environments.py` as one `FerryConfig`; the stacks read only
this object, never the environment or an AWS lookup, so `python app.py` synthesizes offline and
the same configuration always gives the same templates. A value that cannot work fails here,
before synthesis, with a message that says what to change.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Literal

EnvName = Literal["staging", "prod"]

# The values CloudWatch Logs accepts for a log group's retention.
LOG_RETENTION_DAYS = frozenset(
    {1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557}
    | {2922, 3288, 3653}
)
# An alarm's periods times their length may reach 7 days when a period is an hour or more.
MAX_ALARM_HOURS = 7 * 24
# GitHub's OIDC issuer, and the audience aws-actions/configure-aws-credentials asks for.
GITHUB_OIDC_HOST = "token.actions.githubusercontent.com"
GITHUB_OIDC_AUDIENCE = "sts.amazonaws.com"

_ACCOUNT = re.compile(r"^\d{12}$")
_REGION = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
_GITHUB_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_DBT_PROJECT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_IAM_PRINCIPAL = re.compile(r"^arn:aws[a-z-]*:(iam|sts)::\d{12}:[A-Za-z0-9+=,.@_/:-]+$")


class ConfigError(ValueError):
    """The infrastructure configuration cannot work; the message says what to change."""


@dataclass(frozen=True)
class GitHubRepository:
    """The repository whose workflows may assume the CI and deploy roles."""

    owner: str
    name: str

    def __post_init__(self) -> None:
        for part in (self.owner, self.name):
            if not _GITHUB_NAME.match(part):
                raise ConfigError(
                    f"GitHub repository part {part!r} is not a valid owner or name; "
                    "set github=GitHubRepository(owner=..., name=...) of github.com/<owner>/<name>"
                )

    @property
    def slug(self) -> str:
        return f"{self.owner}/{self.name}"


@dataclass(frozen=True)
class PrivateSubnet:
    """A private subnet the dbt tasks run in (it reaches AWS APIs and Prefect through NAT or
    VPC endpoints; tasks get no public IP)."""

    subnet_id: str
    availability_zone: str

    def __post_init__(self) -> None:
        if not self.subnet_id.startswith("subnet-"):
            raise ConfigError(f"{self.subnet_id!r} is not a subnet id (subnet-...)")


@dataclass(frozen=True)
class Network:
    """An existing VPC and two private subnets in different availability zones: imported, never
    created or looked up, so synthesis needs no AWS credentials."""

    vpc_id: str
    subnet_a: PrivateSubnet
    subnet_b: PrivateSubnet

    def __post_init__(self) -> None:
        if not self.vpc_id.startswith("vpc-"):
            raise ConfigError(f"{self.vpc_id!r} is not a VPC id (vpc-...)")
        if self.subnet_a.availability_zone == self.subnet_b.availability_zone:
            raise ConfigError(
                f"subnets {self.subnet_a.subnet_id} and {self.subnet_b.subnet_id} are both in "
                f"{self.subnet_a.availability_zone}; pick two availability zones"
            )


@dataclass(frozen=True)
class Warehouse:
    """Where the warehouse listens: the security group lets tasks reach only this."""

    cidr: str
    port: int = 5439

    def __post_init__(self) -> None:
        try:
            network = ipaddress.ip_network(self.cidr)
        except ValueError as exc:
            raise ConfigError(f"warehouse cidr {self.cidr!r} is not a CIDR block: {exc}") from exc
        if network.prefixlen == 0:
            raise ConfigError(
                f"warehouse cidr {self.cidr!r} is the whole internet; give the warehouse's subnet"
            )
        if not 0 < self.port < 65536:
            raise ConfigError(f"warehouse port {self.port} is not a TCP port")


@dataclass(frozen=True)
class RunArtifactRetention:
    """How long one environment keeps its runs' artifacts (`runs/`, `index/`). `state/` is never
    expired: retry and Slim CI read it."""

    infrequent_access_after_days: int
    expire_after_days: int

    def __post_init__(self) -> None:
        if self.infrequent_access_after_days < 30:
            raise ConfigError(
                "S3 moves objects to STANDARD_IA no sooner than 30 days after creation; "
                f"infrequent_access_after_days={self.infrequent_access_after_days} is too early"
            )
        if self.expire_after_days <= self.infrequent_access_after_days:
            raise ConfigError(
                f"expire_after_days={self.expire_after_days} must come after "
                f"infrequent_access_after_days={self.infrequent_access_after_days}"
            )


@dataclass(frozen=True)
class EnvironmentConfig:
    """One environment: its network, warehouse, retention and who may run its tasks.

    `push_pool_principals` are the AWS principals allowed to assume the push-pool role: the IAM
    user or role whose credentials the Prefect Cloud `AwsCredentials` block holds (with
    `assume_role_arn` set to the push-pool role), or, self-hosted, the ECS worker service's task
    role. IAM checks that they exist when the stack is deployed.
    """

    name: EnvName
    github_environment: str
    network: Network
    warehouse: Warehouse
    log_retention_days: int
    run_artifacts: RunArtifactRetention
    push_pool_principals: tuple[str, ...]
    push_pool_external_id: str | None = None
    # Alarm when `build-<env>` has reported no successful run for this many hours (None: no
    # alarm, for an environment whose build runs only when CI deploys).
    no_successful_build_alarm_hours: int | None = None

    def __post_init__(self) -> None:
        if self.name not in ("staging", "prod"):
            raise ConfigError(f"environment {self.name!r}: ferry knows staging and prod")
        if not _GITHUB_NAME.match(self.github_environment):
            raise ConfigError(f"GitHub environment name {self.github_environment!r} is invalid")
        if self.log_retention_days not in LOG_RETENTION_DAYS:
            raise ConfigError(
                f"log_retention_days={self.log_retention_days} is not a value CloudWatch Logs "
                f"accepts; pick one of {sorted(LOG_RETENTION_DAYS)}"
            )
        if not self.push_pool_principals:
            raise ConfigError(
                f"environment {self.name}: push_pool_principals is empty; name the IAM principal "
                "of the Prefect AwsCredentials block (Cloud) or of the ECS worker (self-hosted)"
            )
        for arn in self.push_pool_principals:
            if not _IAM_PRINCIPAL.match(arn):
                raise ConfigError(f"push pool principal {arn!r} is not an IAM user or role ARN")
        hours = self.no_successful_build_alarm_hours
        if hours is not None and not 1 <= hours <= MAX_ALARM_HOURS:
            raise ConfigError(
                f"no_successful_build_alarm_hours={hours}: CloudWatch evaluates an alarm of "
                f"1-hour periods over at most {MAX_ALARM_HOURS} hours; pick 1 to "
                f"{MAX_ALARM_HOURS}, or None for no alarm"
            )

    @property
    def stack_name(self) -> str:
        return f"ferry-{self.name}"

    @property
    def cluster_name(self) -> str:
        return f"ferry-{self.name}"

    @property
    def log_group_name(self) -> str:
        return f"/ferry/{self.name}/dbt"

    @property
    def alarm_topic_name(self) -> str:
        return f"ferry-{self.name}-platform-alarms"

    @property
    def dashboard_name(self) -> str:
        return f"ferry-{self.name}"

    @property
    def warehouse_secret_name(self) -> str:
        return f"ferry/{self.name}/warehouse"

    @property
    def prefect_api_secret_name(self) -> str:
        return f"ferry/{self.name}/prefect-api"


@dataclass(frozen=True)
class ImageRetention:
    """What the ECR lifecycle policy keeps. `prod-` images are matched first, so the `sha-` rule
    can never expire an image that production runs or ran."""

    prod_images_kept: int = 50
    sha_images_kept: int = 100
    untagged_expire_after_days: int = 7


@dataclass(frozen=True)
class FerryConfig:
    """Everything the stacks are built from."""

    account: str
    region: str
    github: GitHubRepository
    dbt_projects: tuple[str, ...]
    environments: tuple[EnvironmentConfig, ...]
    repository_name: str = "ferry"
    # FERRY_ARTIFACTS is s3://<bucket>/<artifact_prefix> in prefect.yaml.
    artifact_prefix: str = "dbt"
    noncurrent_versions_expire_after_days: int = 30
    access_logs_expire_after_days: int = 365
    images: ImageRetention = field(default_factory=ImageRetention)
    # An account holds one OIDC provider per issuer: set this when it already has GitHub's.
    existing_github_oidc_provider_arn: str | None = None

    def __post_init__(self) -> None:
        if not _ACCOUNT.match(self.account):
            raise ConfigError(f"account {self.account!r} is not a 12-digit AWS account id")
        if not _REGION.match(self.region):
            raise ConfigError(f"region {self.region!r} is not an AWS region name")
        if not self.dbt_projects:
            raise ConfigError(
                "dbt_projects is empty; list the `name:` of each dbt_project.yml whose run "
                "artifacts the bucket's lifecycle rules should expire"
            )
        for project in self.dbt_projects:
            if not _DBT_PROJECT.match(project):
                raise ConfigError(f"{project!r} is not a dbt project name")
        names = [env.name for env in self.environments]
        if sorted(names) != ["prod", "staging"]:
            raise ConfigError(f"environments are {names}; ferry needs exactly staging and prod")
        if not re.match(r"^[a-z0-9][a-z0-9_-]*$", self.artifact_prefix):
            raise ConfigError(f"artifact_prefix {self.artifact_prefix!r}: use one path segment")
        arn = self.existing_github_oidc_provider_arn
        if arn is not None and not arn.endswith(f":oidc-provider/{GITHUB_OIDC_HOST}"):
            raise ConfigError(f"{arn!r} is not the ARN of GitHub's OIDC provider")

    def environment(self, name: EnvName) -> EnvironmentConfig:
        return next(env for env in self.environments if env.name == name)

    @property
    def shared_stack_name(self) -> str:
        return "ferry-shared"

    @property
    def artifact_bucket_name(self) -> str:
        return f"ferry-artifacts-{self.account}-{self.region}"

    @property
    def access_log_bucket_name(self) -> str:
        return f"ferry-access-logs-{self.account}-{self.region}"
