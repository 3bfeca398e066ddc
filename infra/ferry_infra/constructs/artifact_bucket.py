"""The S3 bucket of dbt run artifacts, and the bucket its access logs go to.

Layout (flows/artifacts.py), under `<prefix>` = `dbt`:
    <prefix>/<project>/<env>/runs/<date>/<run_id>/...   transition, then expire
    <prefix>/<project>/<env>/index/<run_id>.json        expire with the runs they point to
    <prefix>/<project>/<env>/state/...                  kept (noncurrent versions expire)

S3 lifecycle filters match key prefixes, not globs, so there is one rule per dbt project and
environment, from the project names in the configuration.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from ferry_infra.compliance import acknowledge_nag, skip_checkov
from ferry_infra.config import FerryConfig


class ArtifactBucket(Construct):
    """SSE-KMS, versioned, private, TLS-only, access-logged, with lifecycle rules."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: FerryConfig, key: kms.IKey
    ) -> None:
        super().__init__(scope, construct_id)
        self.access_logs = s3.Bucket(
            self,
            "AccessLogs",
            bucket_name=config.access_log_bucket_name,
            # S3 server access logging delivers only to buckets encrypted with SSE-S3.
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            versioned=True,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-access-logs",
                    expiration=Duration.days(config.access_logs_expire_after_days),
                    noncurrent_version_expiration=Duration.days(
                        config.noncurrent_versions_expire_after_days
                    ),
                    abort_incomplete_multipart_upload_after=Duration.days(7),
                )
            ],
            removal_policy=RemovalPolicy.RETAIN,
        )
        _no_logs_of_logs = (
            "This bucket receives the artifact bucket's server access logs; logging it into "
            "itself or into a third bucket would only log the log delivery."
        )
        acknowledge_nag(self.access_logs, "AwsSolutions-S1", _no_logs_of_logs)
        log_bucket_resource = self.access_logs.node.default_child
        assert isinstance(log_bucket_resource, s3.CfnBucket)
        skip_checkov(log_bucket_resource, "CKV_AWS_18", _no_logs_of_logs)

        base = config.artifact_prefix
        run_rules = []
        for env in config.environments:
            retention = env.run_artifacts
            for project in config.dbt_projects:
                run_rules += [
                    s3.LifecycleRule(
                        id=f"runs-{project}-{env.name}",
                        prefix=f"{base}/{project}/{env.name}/runs/",
                        transitions=[
                            s3.Transition(
                                storage_class=s3.StorageClass.INFREQUENT_ACCESS,
                                transition_after=Duration.days(
                                    retention.infrequent_access_after_days
                                ),
                            )
                        ],
                        expiration=Duration.days(retention.expire_after_days),
                    ),
                    s3.LifecycleRule(
                        id=f"index-{project}-{env.name}",
                        prefix=f"{base}/{project}/{env.name}/index/",
                        expiration=Duration.days(retention.expire_after_days),
                    ),
                ]
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            bucket_name=config.artifact_bucket_name,
            encryption=s3.BucketEncryption.KMS,
            encryption_key=key,
            bucket_key_enabled=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            versioned=True,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="artifacts/",
            lifecycle_rules=[
                *run_rules,
                # Everything else, state/ included, keeps its current version; replaced and
                # deleted versions go after a while.
                s3.LifecycleRule(
                    id="noncurrent-versions",
                    noncurrent_version_expiration=Duration.days(
                        config.noncurrent_versions_expire_after_days
                    ),
                    expired_object_delete_marker=True,
                    abort_incomplete_multipart_upload_after=Duration.days(7),
                ),
            ],
            removal_policy=RemovalPolicy.RETAIN,
        )
