"""ferry-shared: what both environments use. The image repository (one image, promoted by
retag), the artifact bucket with its key and access-log bucket, GitHub's OIDC provider and the
pull-request CI role.

Environment stacks refer to the bucket and the repository by their fixed names, and to the key by
one named export: their templates stay readable, and nothing in ferry-shared but the key is
locked by an import.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import CfnOutput, Environment, Fn, Stack
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from ferry_infra.config import FerryConfig
from ferry_infra.constructs.artifact_bucket import ArtifactBucket
from ferry_infra.constructs.encryption_key import EncryptionKey
from ferry_infra.constructs.github_oidc import GitHubOidcProvider
from ferry_infra.constructs.image_repository import ImageRepository
from ferry_infra.constructs.pull_request_role import PullRequestCiRole
from ferry_infra.outputs import add_output

ARTIFACT_KEY_EXPORT = "ferry-shared-artifact-key-arn"


@dataclass(frozen=True)
class SharedResources:
    """The shared resources as another stack of the same account and region sees them."""

    artifact_bucket: s3.IBucket
    artifact_key: kms.IKey
    repository: ecr.IRepository

    @classmethod
    def imported_into(cls, scope: Construct, config: FerryConfig) -> SharedResources:
        stack = Stack.of(scope)
        repository_arn = stack.format_arn(
            service="ecr", resource="repository", resource_name=config.repository_name
        )
        return cls(
            artifact_bucket=s3.Bucket.from_bucket_name(
                scope, "ArtifactBucket", config.artifact_bucket_name
            ),
            artifact_key=kms.Key.from_key_arn(
                scope, "ArtifactKey", Fn.import_value(ARTIFACT_KEY_EXPORT)
            ),
            repository=ecr.Repository.from_repository_attributes(
                scope,
                "ImageRepository",
                repository_name=config.repository_name,
                repository_arn=repository_arn,
            ),
        )


class SharedStack(Stack):
    def __init__(self, scope: Construct, *, config: FerryConfig, aws_env: Environment) -> None:
        super().__init__(
            scope,
            config.shared_stack_name,
            description="ferry: image repository, dbt artifact bucket, GitHub OIDC and CI role",
            env=aws_env,
            analytics_reporting=False,
        )
        self.artifact_key = EncryptionKey(
            self,
            "ArtifactKey",
            alias="alias/ferry/artifacts",
            description="ferry: dbt run artifacts in S3",
        ).key
        artifacts = ArtifactBucket(self, "Artifacts", config=config, key=self.artifact_key)
        self.artifact_bucket = artifacts.bucket
        self.repository = ImageRepository(self, "Images", config=config).repository
        self.github_oidc = GitHubOidcProvider(self, "GitHubOidc", config=config)
        ci = PullRequestCiRole(
            self,
            "PullRequestCi",
            config=config,
            provider_arn=self.github_oidc.provider_arn,
            # by its fixed name, as the environment stacks see it: policies read as literals
            bucket=s3.Bucket.from_bucket_name(
                self, "ArtifactBucketByName", config.artifact_bucket_name
            ),
            key=self.artifact_key,
        )

        add_output(self, "FerryCiRoleArn", ci.role.role_arn, "Role of pull-request workflows")
        add_output(
            self, "FerryArtifactBucket", self.artifact_bucket.bucket_name, "dbt artifact bucket"
        )
        add_output(
            self,
            "FerryImageRepository",
            self.repository.repository_uri,
            "ECR repository URI (no tag); deployments pin an image by digest",
        )
        key_output = CfnOutput(
            self,
            "FerryArtifactKeyArn",
            value=self.artifact_key.key_arn,
            description="KMS key of the artifact bucket (imported by the environment stacks)",
            export_name=ARTIFACT_KEY_EXPORT,
        )
        key_output.override_logical_id("FerryArtifactKeyArn")
