"""A customer managed KMS key whose key policy names every action it allows.

CDK's default key policy gives the account `kms:*`. This one gives the account the
administrative and cryptographic actions by name, so IAM policies decide who uses the key and no
statement anywhere allows `*`. Services that use the key on their own (CloudWatch Logs) get a
statement of their own, limited by encryption context.
"""

from __future__ import annotations

from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

# The account root may administer the key and use it: this delegates to IAM, where the roles'
# own policies grant the narrow use each needs. kms:PutKeyPolicy must stay, or the key locks.
_ACCOUNT_ACTIONS = [
    "kms:CancelKeyDeletion",
    "kms:CreateAlias",
    "kms:CreateGrant",
    "kms:Decrypt",
    "kms:DeleteAlias",
    "kms:DescribeKey",
    "kms:DisableKey",
    "kms:DisableKeyRotation",
    "kms:EnableKey",
    "kms:EnableKeyRotation",
    "kms:Encrypt",
    "kms:GenerateDataKey",
    "kms:GenerateDataKeyWithoutPlaintext",
    "kms:GetKeyPolicy",
    "kms:GetKeyRotationStatus",
    "kms:ListGrants",
    "kms:ListKeyPolicies",
    "kms:ListKeyRotations",
    "kms:ListResourceTags",
    "kms:PutKeyPolicy",
    "kms:ReEncryptFrom",
    "kms:ReEncryptTo",
    "kms:RetireGrant",
    "kms:RevokeGrant",
    "kms:RotateKeyOnDemand",
    "kms:ScheduleKeyDeletion",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:UpdateAlias",
    "kms:UpdateKeyDescription",
]
_SERVICE_ACTIONS = [
    "kms:Decrypt",
    "kms:DescribeKey",
    "kms:Encrypt",
    "kms:GenerateDataKey",
    "kms:GenerateDataKeyWithoutPlaintext",
    "kms:ReEncryptFrom",
    "kms:ReEncryptTo",
]


class EncryptionKey(Construct):
    """A rotating KMS key with an alias and an explicit key policy; kept when its stack goes."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        alias: str,
        description: str,
        log_group_names: tuple[str, ...] = (),
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        statements = [
            iam.PolicyStatement(
                sid="AccountAdministersAndDelegatesUseToIam",
                principals=[iam.AccountRootPrincipal()],
                actions=_ACCOUNT_ACTIONS,
                resources=["*"],  # in a key policy, "*" is this key
            )
        ]
        if log_group_names:
            statements.append(
                iam.PolicyStatement(
                    sid="CloudWatchLogsEncryptsTheseLogGroups",
                    principals=[iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com")],
                    actions=_SERVICE_ACTIONS,
                    resources=["*"],
                    conditions={
                        "ArnEquals": {
                            "kms:EncryptionContext:aws:logs:arn": [
                                stack.format_arn(
                                    service="logs",
                                    resource="log-group",
                                    resource_name=name,
                                    arn_format=ArnFormat.COLON_RESOURCE_NAME,
                                )
                                for name in log_group_names
                            ]
                        }
                    },
                )
            )
        self.key = kms.Key(
            self,
            "Key",
            alias=alias,
            description=description,
            enable_key_rotation=True,
            pending_window=Duration.days(30),
            policy=iam.PolicyDocument(statements=statements),
            removal_policy=RemovalPolicy.RETAIN,
        )

    @property
    def key_arn(self) -> str:
        return self.key.key_arn
