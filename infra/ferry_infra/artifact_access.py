"""IAM statements on the artifact bucket, by key pattern: who reads and writes which prefix.

Object patterns use `*` for the dbt project (`dbt/*/staging/*`), so a new project needs no IAM
change. Listing is allowed only with a prefix under the same patterns; that is also what makes a
missing key a 404 (NoSuchKey) rather than a 403 for the flows' artifact store.
"""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3

READ = ["s3:GetObject"]
READ_WRITE = ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"]


def env_prefix(artifact_prefix: str, env: str) -> str:
    """Every key of one environment: `dbt/*/staging/*`."""
    return f"{artifact_prefix}/*/{env}/*"


def state_prefix(artifact_prefix: str, env: str) -> str:
    """The state of one environment (pointers, the deferral manifest): `dbt/*/prod/state/*`."""
    return f"{artifact_prefix}/*/{env}/state/*"


def object_statement(
    sid: str, bucket: s3.IBucket, actions: list[str], pattern: str
) -> iam.PolicyStatement:
    return iam.PolicyStatement(
        sid=sid, actions=actions, resources=[bucket.arn_for_objects(pattern)]
    )


def list_statement(sid: str, bucket: s3.IBucket, patterns: list[str]) -> iam.PolicyStatement:
    return iam.PolicyStatement(
        sid=sid,
        actions=["s3:ListBucket"],
        resources=[bucket.bucket_arn],
        conditions={"StringLike": {"s3:prefix": patterns}},
    )


def key_statement(sid: str, key: kms.IKey, actions: list[str], stack: Stack) -> iam.PolicyStatement:
    """Use of the bucket's key, only through S3."""
    return iam.PolicyStatement(
        sid=sid,
        actions=actions,
        resources=[key.key_arn],
        conditions={"StringEquals": {"kms:ViaService": f"s3.{stack.region}.amazonaws.com"}},
    )
