"""The resources themselves: bucket, repository, keys, log groups, secrets, cluster, network."""

from __future__ import annotations

import json

import pytest
from aws_cdk.assertions import Match

from tests.infra.conftest import Synthesized

pytestmark = pytest.mark.infra

ACCOUNT = "111111111111"
REGION = "eu-north-1"


def test_artifact_bucket_is_encrypted_versioned_private_and_logged(
    synthesized: Synthesized,
) -> None:
    template = synthesized.template("ferry-shared")
    template.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "BucketName": f"ferry-artifacts-{ACCOUNT}-{REGION}",
            "BucketEncryption": {
                "ServerSideEncryptionConfiguration": [
                    {
                        "BucketKeyEnabled": True,
                        "ServerSideEncryptionByDefault": {
                            "SSEAlgorithm": "aws:kms",
                            "KMSMasterKeyID": {"Fn::GetAtt": [Match.any_value(), "Arn"]},
                        },
                    }
                ]
            },
            "VersioningConfiguration": {"Status": "Enabled"},
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            },
            "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
            "LoggingConfiguration": {
                "DestinationBucketName": {"Ref": Match.any_value()},
                "LogFilePrefix": "artifacts/",
            },
        },
    )
    template.has_resource(
        "AWS::S3::Bucket",
        {
            "Properties": Match.object_like({"BucketName": f"ferry-artifacts-{ACCOUNT}-{REGION}"}),
            "DeletionPolicy": "Retain",
        },
    )


@pytest.mark.parametrize("bucket", ["artifacts", "access-logs"])
def test_buckets_refuse_anything_but_tls(synthesized: Synthesized, bucket: str) -> None:
    shared = synthesized.json("ferry-shared")["Resources"]
    (logical_id,) = [
        k
        for k, r in shared.items()
        if r["Type"] == "AWS::S3::Bucket"
        and r["Properties"]["BucketName"] == f"ferry-{bucket}-{ACCOUNT}-{REGION}"
    ]
    synthesized.template("ferry-shared").has_resource_properties(
        "AWS::S3::BucketPolicy",
        {
            "Bucket": {"Ref": logical_id},
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Effect": "Deny",
                                "Action": "s3:*",
                                "Principal": {"AWS": "*"},
                                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                            }
                        ),
                        Match.object_like(
                            {
                                "Effect": "Deny",
                                "Condition": {"NumericLessThan": {"s3:TlsVersion": 1.2}},
                            }
                        ),
                    ]
                )
            },
        },
    )


def test_access_logs_are_delivered_by_bucket_policy_from_the_artifact_bucket_only(
    synthesized: Synthesized,
) -> None:
    synthesized.template("ferry-shared").has_resource_properties(
        "AWS::S3::BucketPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Effect": "Allow",
                                "Action": "s3:PutObject",
                                "Principal": {"Service": "logging.s3.amazonaws.com"},
                                "Condition": {
                                    "ArnLike": {"aws:SourceArn": Match.any_value()},
                                    "StringEquals": {"aws:SourceAccount": ACCOUNT},
                                },
                            }
                        )
                    ]
                )
            }
        },
    )


def test_lifecycle_expires_runs_and_keeps_state(synthesized: Synthesized) -> None:
    (bucket,) = [
        b
        for b in synthesized.resources("ferry-shared", "AWS::S3::Bucket")
        if b["Properties"]["BucketName"].startswith("ferry-artifacts-")
    ]
    rules = {r["Id"]: r for r in bucket["Properties"]["LifecycleConfiguration"]["Rules"]}
    for env, days in (("staging", 90), ("prod", 400)):
        runs = rules[f"runs-shop-{env}"]
        assert runs["Prefix"] == f"dbt/shop/{env}/runs/"
        assert runs["Transitions"] == [{"StorageClass": "STANDARD_IA", "TransitionInDays": 30}]
        assert runs["ExpirationInDays"] == days
        index = rules[f"index-shop-{env}"]
        assert index["Prefix"] == f"dbt/shop/{env}/index/"
        assert index["ExpirationInDays"] == days
    assert not any("state" in r.get("Prefix", "") for r in rules.values())
    everything = rules["noncurrent-versions"]
    assert "Prefix" not in everything and "ExpirationInDays" not in everything
    assert everything["NoncurrentVersionExpiration"] == {"NoncurrentDays": 30}
    assert everything["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 7}


def test_image_repository_is_immutable_scanned_and_keeps_production_images(
    synthesized: Synthesized,
) -> None:
    synthesized.template("ferry-shared").has_resource_properties(
        "AWS::ECR::Repository",
        {
            "RepositoryName": "ferry",
            "ImageTagMutability": "IMMUTABLE",
            "ImageScanningConfiguration": {"ScanOnPush": True},
        },
    )
    (repository,) = synthesized.resources("ferry-shared", "AWS::ECR::Repository")
    policy = json.loads(repository["Properties"]["LifecyclePolicy"]["LifecyclePolicyText"])
    rules = sorted(policy["rules"], key=lambda r: r["rulePriority"])
    assert [r["selection"] for r in rules] == [
        {
            "tagStatus": "tagged",
            "tagPrefixList": ["prod-"],
            "countType": "imageCountMoreThan",
            "countNumber": 50,
        },
        {
            "tagStatus": "tagged",
            "tagPrefixList": ["sha-"],
            "countType": "imageCountMoreThan",
            "countNumber": 100,
        },
        {
            "tagStatus": "untagged",
            "countType": "sinceImagePushed",
            "countNumber": 7,
            "countUnit": "days",
        },
    ]
    assert rules[0]["rulePriority"] == 1  # prod- first: the sha- rule never sees them


@pytest.mark.parametrize("stack", ["ferry-shared", "ferry-staging", "ferry-prod"])
def test_keys_rotate_and_are_kept(synthesized: Synthesized, stack: str) -> None:
    template = synthesized.template(stack)
    template.resource_count_is("AWS::KMS::Key", 1)
    template.has_resource(
        "AWS::KMS::Key",
        {"Properties": Match.object_like({"EnableKeyRotation": True}), "DeletionPolicy": "Retain"},
    )


@pytest.mark.parametrize(("env", "days"), [("staging", 30), ("prod", 365)])
def test_log_group_with_retention_and_its_key(
    synthesized: Synthesized, env: str, days: int
) -> None:
    template = synthesized.template(f"ferry-{env}")
    template.has_resource_properties(
        "AWS::Logs::LogGroup",
        {
            "LogGroupName": f"/ferry/{env}/dbt",
            "RetentionInDays": days,
            "KmsKeyId": {"Fn::GetAtt": [Match.any_value(), "Arn"]},
        },
    )
    template.has_resource_properties(
        "AWS::KMS::Key",
        {
            "KeyPolicy": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Principal": {"Service": f"logs.{REGION}.amazonaws.com"},
                                "Condition": {
                                    "ArnEquals": {
                                        "kms:EncryptionContext:aws:logs:arn": [
                                            f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/ferry/{env}/dbt"
                                        ]
                                    }
                                },
                            }
                        )
                    ]
                )
            }
        },
    )


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_secrets_have_their_names_and_no_value_in_the_template(
    synthesized: Synthesized, env: str
) -> None:
    template = synthesized.template(f"ferry-{env}")
    template.has_resource_properties(
        "AWS::SecretsManager::Secret",
        {
            "Name": f"ferry/{env}/warehouse",
            "KmsKeyId": {"Fn::GetAtt": [Match.any_value(), "Arn"]},
            "GenerateSecretString": Match.object_like(
                {"SecretStringTemplate": '{"username": "ferry"}', "GenerateStringKey": "password"}
            ),
        },
    )
    template.has_resource_properties(
        "AWS::SecretsManager::Secret", {"Name": f"ferry/{env}/prefect-api"}
    )
    for secret in synthesized.resources(f"ferry-{env}", "AWS::SecretsManager::Secret"):
        assert "SecretString" not in secret["Properties"]
        assert secret["DeletionPolicy"] == "Retain"


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_fargate_cluster_with_container_insights(synthesized: Synthesized, env: str) -> None:
    template = synthesized.template(f"ferry-{env}")
    template.has_resource_properties(
        "AWS::ECS::Cluster",
        {
            "ClusterName": f"ferry-{env}",
            "ClusterSettings": [{"Name": "containerInsights", "Value": "enabled"}],
        },
    )
    template.has_resource_properties(
        "AWS::ECS::ClusterCapacityProviderAssociations",
        {"CapacityProviders": ["FARGATE", "FARGATE_SPOT"]},
    )
    # The network is imported: nothing of it is created.
    for kind in ("AWS::EC2::VPC", "AWS::EC2::Subnet", "AWS::EC2::NatGateway"):
        template.resource_count_is(kind, 0)


@pytest.mark.parametrize(("env", "cidr"), [("staging", "10.20.0.0/24"), ("prod", "10.30.0.0/24")])
def test_security_group_has_egress_only(synthesized: Synthesized, env: str, cidr: str) -> None:
    template = synthesized.template(f"ferry-{env}")
    template.resource_count_is("AWS::EC2::SecurityGroupIngress", 0)
    (group,) = synthesized.resources(f"ferry-{env}", "AWS::EC2::SecurityGroup")
    assert "SecurityGroupIngress" not in group["Properties"]
    egress = [
        (r["CidrIp"], r["IpProtocol"], r["FromPort"], r["ToPort"])
        for r in group["Properties"]["SecurityGroupEgress"]
    ]
    assert egress == [("0.0.0.0/0", "tcp", 443, 443), (cidr, "tcp", 5439, 5439)]
    assert group["Properties"]["VpcId"] == synthesized.config.environment(env).network.vpc_id  # type: ignore[arg-type]
