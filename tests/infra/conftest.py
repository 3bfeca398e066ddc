"""ferry's CDK app synthesized once per session, into a temp dir, from the real configuration.

Starting jsii (CDK's JavaScript runtime) and synthesizing take seconds, so every infra test reads
the same templates. Synthesis runs cdk-nag's AwsSolutions checks: if it fails, a finding was not
acknowledged.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
# `ferry_infra` lives beside infra/app.py and is not an installed package.
sys.path.insert(0, str(INFRA))
# jsii warns about this machine's node 20 on every start; say nothing, as `make` does.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "20")

from aws_cdk import App  # noqa: E402
from aws_cdk.assertions import Template  # noqa: E402
from ferry_infra.assembly import build  # noqa: E402
from ferry_infra.config import FerryConfig  # noqa: E402
from ferry_infra.environments import FERRY  # noqa: E402


@dataclass(frozen=True)
class Synthesized:
    """One synthesized app: a Template (for matchers) and the raw JSON of each stack."""

    config: FerryConfig
    outdir: Path
    templates: dict[str, Template]

    def template(self, stack_name: str) -> Template:
        return self.templates[stack_name]

    def json(self, stack_name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.templates[stack_name].to_json()
        return result

    def resources(self, stack_name: str, resource_type: str) -> list[dict[str, Any]]:
        return [
            r for r in self.json(stack_name)["Resources"].values() if r["Type"] == resource_type
        ]

    def role(self, stack_name: str, role_name: str) -> dict[str, Any]:
        """A role found by its configured name (never by its generated logical ID)."""
        roles = [
            r
            for r in self.resources(stack_name, "AWS::IAM::Role")
            if r["Properties"].get("RoleName") == role_name
        ]
        assert len(roles) == 1, f"{stack_name} has {len(roles)} roles named {role_name}"
        return roles[0]["Properties"]


def synthesize(config: FerryConfig, outdir: Path) -> Synthesized:
    context = json.loads((INFRA / "cdk.json").read_text())["context"]
    app = App(context=context, outdir=str(outdir))
    stacks = build(app, config)
    app.synth()
    all_stacks = [stacks.shared, *stacks.environments.values()]
    return Synthesized(
        config=config,
        outdir=outdir,
        templates={stack.stack_name: Template.from_stack(stack) for stack in all_stacks},
    )


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synthesized]:
    """The app of infra/ferry_infra/environments.py, as `make infra-synth` builds it."""
    yield synthesize(FERRY, tmp_path_factory.mktemp("cdk.out"))
