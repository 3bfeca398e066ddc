"""Builds ferry's stacks from a configuration into an app, with cdk-nag's AwsSolutions checks:
synthesis fails on any finding not acknowledged with a reason."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import App, Environment, Tags, Validations
from cdk_nag import AwsSolutionsChecks

from ferry_infra.config import FerryConfig
from ferry_infra.stacks.environment import EnvironmentStack
from ferry_infra.stacks.shared import SharedStack


@dataclass(frozen=True)
class FerryStacks:
    shared: SharedStack
    environments: dict[str, EnvironmentStack]


def build(app: App, config: FerryConfig) -> FerryStacks:
    """ferry-shared, then one stack per environment (ferry-staging, ferry-prod)."""
    aws_env = Environment(account=config.account, region=config.region)
    shared = SharedStack(app, config=config, aws_env=aws_env)
    environments = {
        env.name: EnvironmentStack(
            app, config=config, environment=env, shared=shared, aws_env=aws_env
        )
        for env in config.environments
    }
    Tags.of(app).add("project", "ferry")
    for name, stack in environments.items():
        Tags.of(stack).add("ferry-environment", name)
    # Rule findings are errors; the reasons of acknowledged ones are written to each
    # resource's metadata (cdk_nag.rules_to_suppress) for review.
    Validations.of(app).add_plugins(
        AwsSolutionsChecks(app, verbose=True, write_suppressions_to_cloud_formation=True)
    )
    return FerryStacks(shared=shared, environments=environments)
