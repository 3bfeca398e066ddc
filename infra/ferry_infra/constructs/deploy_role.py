"""The role a GitHub deploy job assumes, behind its GitHub environment.

- staging: push the commit's image to the ferry repository, read its scan findings, and read the
  outputs of ferry-shared and ferry-staging (the values `prefect deploy` needs).
- prod: promote by retag (read the manifest of the image staging ran, put it back under a new
  `prod-` tag; no layer upload), and read the outputs of ferry-shared and ferry-prod.
"""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_iam as iam
from constructs import Construct

from ferry_infra.compliance import acknowledge_resource_wildcards
from ferry_infra.config import EnvironmentConfig, FerryConfig
from ferry_infra.constructs.github_oidc import github_principal, github_subject_for_environment

ECR_PUSH = [
    "ecr:BatchCheckLayerAvailability",
    "ecr:BatchGetImage",
    "ecr:CompleteLayerUpload",
    "ecr:DescribeImageScanFindings",
    "ecr:DescribeImages",
    "ecr:InitiateLayerUpload",
    "ecr:PutImage",
    "ecr:UploadLayerPart",
]
ECR_RETAG = ["ecr:BatchGetImage", "ecr:DescribeImages", "ecr:PutImage"]


class GitHubDeployRole(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: FerryConfig,
        env: EnvironmentConfig,
        provider_arn: str,
        repository: ecr.IRepository,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        stack_arns = [
            stack.format_arn(service="cloudformation", resource="stack", resource_name=f"{name}/*")
            for name in (config.shared_stack_name, env.stack_name)
        ]
        statements = []
        if env.name == "prod":
            statements.append(
                iam.PolicyStatement(
                    sid="PromoteImageByRetag",
                    actions=ECR_RETAG,
                    resources=[repository.repository_arn],
                )
            )
        else:
            statements += [
                iam.PolicyStatement(
                    sid="EcrLogin", actions=["ecr:GetAuthorizationToken"], resources=["*"]
                ),
                iam.PolicyStatement(
                    sid="PushFerryImage", actions=ECR_PUSH, resources=[repository.repository_arn]
                ),
            ]
        statements.append(
            iam.PolicyStatement(
                sid="ReadStackOutputs",
                actions=["cloudformation:DescribeStacks"],
                resources=stack_arns,
            )
        )
        self.role = iam.Role(
            self,
            "Role",
            role_name=f"ferry-{env.name}-github-deploy",
            description=f"GitHub environment {env.github_environment} of {config.github.slug}",
            assumed_by=github_principal(
                provider_arn, github_subject_for_environment(config.github, env.github_environment)
            ),
            max_session_duration=Duration.hours(1),
            inline_policies={"deploy": iam.PolicyDocument(statements=statements)},
        )
        if env.name != "prod":
            acknowledge_resource_wildcards(
                self.role,
                ["*"],
                "ecr:GetAuthorizationToken has no resource type; pushes are limited to the "
                "ferry repository.",
            )
        acknowledge_resource_wildcards(
            self.role,
            stack_arns,
            "A stack's ARN ends in its generated id; the name before it is fixed.",
        )
