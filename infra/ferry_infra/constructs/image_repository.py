"""The one ECR repository of ferry's image, shared by staging and prod.

Tags are immutable: CI pushes each commit once as `sha-<git sha>`; promotion writes a new tag
`prod-<git sha>` on the same digest (BatchGetImage + PutImage of the same manifest), which an
immutable repository allows because no existing tag moves. Deployments pin by digest.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_ecr as ecr
from constructs import Construct

from ferry_infra.compliance import skip_checkov
from ferry_infra.config import FerryConfig

PROD_TAG_PREFIX = "prod-"
COMMIT_TAG_PREFIX = "sha-"


class ImageRepository(Construct):
    """Scan on push, immutable tags, and a lifecycle that never drops what production ran."""

    def __init__(self, scope: Construct, construct_id: str, *, config: FerryConfig) -> None:
        super().__init__(scope, construct_id)
        kept = config.images
        self.repository = ecr.Repository(
            self,
            "Repository",
            repository_name=config.repository_name,
            image_scan_on_push=True,
            image_tag_mutability=ecr.TagMutability.IMMUTABLE,
            encryption=ecr.RepositoryEncryption.AES_256,
            removal_policy=RemovalPolicy.RETAIN,
            lifecycle_rules=[
                # First match wins: an image tagged prod- is never seen by the sha- rule.
                ecr.LifecycleRule(
                    rule_priority=1,
                    description="Keep the images production ran (the last "
                    f"{kept.prod_images_kept} promotions)",
                    tag_status=ecr.TagStatus.TAGGED,
                    tag_prefix_list=[PROD_TAG_PREFIX],
                    max_image_count=kept.prod_images_kept,
                ),
                ecr.LifecycleRule(
                    rule_priority=2,
                    description=f"Keep the last {kept.sha_images_kept} commit images",
                    tag_status=ecr.TagStatus.TAGGED,
                    tag_prefix_list=[COMMIT_TAG_PREFIX],
                    max_image_count=kept.sha_images_kept,
                ),
                ecr.LifecycleRule(
                    rule_priority=3,
                    description="Expire untagged images (failed or superseded pushes)",
                    tag_status=ecr.TagStatus.UNTAGGED,
                    max_image_age=Duration.days(kept.untagged_expire_after_days),
                ),
            ],
        )
        resource = self.repository.node.default_child
        assert isinstance(resource, ecr.CfnRepository)
        skip_checkov(
            resource,
            "CKV_AWS_136",
            "Images hold no secrets (credentials come from Secrets Manager at run time); "
            "ECR's AES-256 encryption at rest is enough and keeps KMS out of every image pull.",
        )
