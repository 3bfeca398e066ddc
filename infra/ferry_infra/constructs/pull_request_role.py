"""The role pull-request workflows assume: read production's dbt state for Slim CI, nothing
else. It cannot write anywhere, read run artifacts, or touch the image repository."""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from ferry_infra import artifact_access
from ferry_infra.compliance import acknowledge_resource_wildcards
from ferry_infra.config import FerryConfig
from ferry_infra.constructs.github_oidc import github_principal, github_subject_for_pull_requests


class PullRequestCiRole(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: FerryConfig,
        provider_arn: str,
        bucket: s3.IBucket,
        key: kms.IKey,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        prod_state = artifact_access.state_prefix(config.artifact_prefix, "prod")
        self.role = iam.Role(
            self,
            "Role",
            role_name="ferry-github-ci",
            description=f"Pull requests of {config.github.slug}: read production dbt state",
            assumed_by=github_principal(
                provider_arn, github_subject_for_pull_requests(config.github)
            ),
            max_session_duration=Duration.hours(1),
            inline_policies={
                "read-production-state": iam.PolicyDocument(
                    statements=[
                        artifact_access.object_statement(
                            "ReadProductionState", bucket, artifact_access.READ, prod_state
                        ),
                        artifact_access.list_statement("ListProductionState", bucket, [prod_state]),
                        artifact_access.key_statement(
                            "DecryptArtifactsThroughS3", key, ["kms:Decrypt"], stack
                        ),
                    ]
                )
            },
        )
        acknowledge_resource_wildcards(
            self.role,
            [bucket.arn_for_objects(prod_state)],
            "Production state of every dbt project (`*` is the project name): the Slim CI "
            "manifest and pointers, read-only.",
        )
