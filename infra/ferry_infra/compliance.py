"""Recorded exceptions to the rule packs, each with its reason, next to the resource it excuses.

cdk-nag (AwsSolutions) findings are acknowledged through CDK's validations; the reasons are also
written into the template's metadata. checkov reads its skips from the resource's metadata
(`checkov.skip`), so a skip and its reason travel with the template that cfn-lint and checkov see.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, CfnResource, Stack, Validations
from constructs import IConstruct


def acknowledge_nag(construct: IConstruct, finding: str, reason: str) -> None:
    """Accepts one cdk-nag finding (`AwsSolutions-S1`, `AwsSolutions-IAM5[Resource::*]`)."""
    if not reason.strip():
        raise ValueError(f"acknowledging {finding} needs a reason")
    Validations.of(construct).acknowledge(Acknowledgment(id=finding, reason=reason))


def skip_checkov(resource: CfnResource, check_id: str, reason: str) -> None:
    """Skips one checkov check on one resource, with the reason checkov prints."""
    if not reason.strip():
        raise ValueError(f"skipping {check_id} needs a reason")
    checkov = dict(resource.get_metadata("checkov") or {})
    checkov["skip"] = [*checkov.get("skip", []), {"id": check_id, "comment": reason}]
    resource.add_metadata("checkov", checkov)


def acknowledge_resource_wildcards(
    construct: IConstruct, resources: list[str], reason: str
) -> None:
    """Accepts AwsSolutions-IAM5 for these statement resources (ARN patterns with `*`).

    cdk-nag names each finding after the resource (`Resource::arn:aws:s3:::bucket/dbt/*`). The
    stacks write every wildcard ARN from configured names, so it resolves to the literal string
    cdk-nag prints, and no generated logical ID is ever written into a suppression.
    """
    stack = Stack.of(construct)
    for resource in resources:
        literal = stack.resolve(resource)
        if not isinstance(literal, str):
            raise TypeError(
                f"{construct.node.path}: {literal!r} is not a literal ARN; build wildcard "
                "resources from configured names so their findings can be acknowledged"
            )
        acknowledge_nag(construct, f"AwsSolutions-IAM5[Resource::{literal}]", reason)
