"""The secrets of one environment, encrypted with its key. CloudFormation creates each with a
generated placeholder; the real value is set outside the code (docs/infrastructure.md) and
CloudFormation never overwrites it, as generation happens only on creation.

These are L1 secrets on purpose: the L2 `Secret` adds `kms:ReEncrypt*` / `kms:GenerateDataKey*`
to the key policy, and no policy here allows a wildcard action. Secrets Manager uses the key
through the account's IAM delegation in the key policy and the callers' own narrow grants.
"""

from __future__ import annotations

import json

from aws_cdk import RemovalPolicy
from aws_cdk import aws_kms as kms
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from ferry_infra.compliance import acknowledge_nag
from ferry_infra.config import EnvironmentConfig

_NO_ROTATION = (
    "{what} is issued outside AWS and set by its owner (docs/infrastructure.md); a "
    "rotation Lambda would need network and admin access to {where} that no ferry "
    "component should hold. Rotate by putting a new value; tasks read it at start."
)


class EnvironmentSecrets(Construct):
    """`ferry/<env>/warehouse` (JSON: username, password) and `ferry/<env>/prefect-api` (the
    Prefect Cloud API key, or a self-hosted server's auth string)."""

    def __init__(
        self, scope: Construct, construct_id: str, *, env: EnvironmentConfig, key: kms.IKey
    ) -> None:
        super().__init__(scope, construct_id)
        self.warehouse = secretsmanager.CfnSecret(
            self,
            "Warehouse",
            name=env.warehouse_secret_name,
            description=f"ferry {env.name}: warehouse credentials, JSON keys username/password",
            kms_key_id=key.key_arn,
            generate_secret_string=secretsmanager.CfnSecret.GenerateSecretStringProperty(
                secret_string_template=json.dumps({"username": "ferry"}),
                generate_string_key="password",
                password_length=40,
                # characters Redshift refuses in a password
                exclude_characters="'\"\\/@ ",
                require_each_included_type=True,
            ),
        )
        self.prefect_api = secretsmanager.CfnSecret(
            self,
            "PrefectApi",
            name=env.prefect_api_secret_name,
            description=f"ferry {env.name}: Prefect API key (Cloud) or auth string (self-hosted)",
            kms_key_id=key.key_arn,
            generate_secret_string=secretsmanager.CfnSecret.GenerateSecretStringProperty(
                exclude_punctuation=True, password_length=40
            ),
        )
        for secret, what, where in (
            (self.warehouse, "The warehouse password", "the warehouse"),
            (self.prefect_api, "The Prefect API key", "Prefect"),
        ):
            secret.apply_removal_policy(RemovalPolicy.RETAIN)
            acknowledge_nag(
                secret, "AwsSolutions-SMG4", _NO_ROTATION.format(what=what, where=where)
            )

    @property
    def warehouse_arn(self) -> str:
        return self.warehouse.ref

    @property
    def prefect_api_arn(self) -> str:
        return self.prefect_api.ref
