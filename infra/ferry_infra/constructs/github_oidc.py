"""GitHub's OIDC identity provider, and the trust that lets one repository's workflows assume a
role: for pull requests (`repo:<owner>/<name>:pull_request`) or for a GitHub environment
(`repo:<owner>/<name>:environment:<name>`), never for any branch or any repository."""

from __future__ import annotations

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from constructs import Construct

from ferry_infra.config import GITHUB_OIDC_AUDIENCE, GITHUB_OIDC_HOST, FerryConfig, GitHubRepository


class GitHubOidcProvider(Construct):
    """Creates the account's GitHub OIDC provider, or uses the one the configuration names (an
    account holds one provider per issuer). IAM fetches GitHub's certificates itself, so no
    thumbprint is pinned."""

    def __init__(self, scope: Construct, construct_id: str, *, config: FerryConfig) -> None:
        super().__init__(scope, construct_id)
        if config.existing_github_oidc_provider_arn:
            self.provider_arn = config.existing_github_oidc_provider_arn
            return
        provider = iam.OidcProviderNative(
            self,
            "Provider",
            url=f"https://{GITHUB_OIDC_HOST}",
            client_ids=[GITHUB_OIDC_AUDIENCE],
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.provider_arn = provider.oidc_provider_arn


def github_oidc_provider_arn(scope: Construct, config: FerryConfig) -> str:
    """The provider's ARN as another stack of the same account writes it (no cross-stack export:
    the ARN is fixed by the issuer)."""
    if config.existing_github_oidc_provider_arn:
        return config.existing_github_oidc_provider_arn
    stack = Stack.of(scope)
    return f"arn:{stack.partition}:iam::{config.account}:oidc-provider/{GITHUB_OIDC_HOST}"


def github_subject_for_pull_requests(repository: GitHubRepository) -> str:
    return f"repo:{repository.slug}:pull_request"


def github_subject_for_environment(repository: GitHubRepository, environment: str) -> str:
    return f"repo:{repository.slug}:environment:{environment}"


def github_principal(provider_arn: str, subject: str) -> iam.WebIdentityPrincipal:
    """Workflows whose OIDC token has exactly this subject and STS as audience."""
    return iam.WebIdentityPrincipal(
        provider_arn,
        conditions={
            "StringEquals": {
                f"{GITHUB_OIDC_HOST}:aud": GITHUB_OIDC_AUDIENCE,
                f"{GITHUB_OIDC_HOST}:sub": subject,
            }
        },
    )
