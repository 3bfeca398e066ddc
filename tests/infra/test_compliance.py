"""cdk-nag, cfn-lint and checkov's exceptions are few and each carries its reason; cfn-lint finds
nothing; `python app.py` synthesizes without the CDK CLI; a variant configuration synthesizes."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cfnlint.api import lint_file
from ferry_infra.environments import FERRY

from tests.infra.conftest import INFRA, Synthesized, synthesize

pytestmark = pytest.mark.infra

STACKS = ("ferry-shared", "ferry-staging", "ferry-prod")


def test_cdk_nag_ran_and_left_no_unacknowledged_finding(synthesized: Synthesized) -> None:
    # Synthesis raises on a finding that is not acknowledged; a clean run writes an empty report.
    report = json.loads((synthesized.outdir / "validation-report.json").read_text())
    assert report["pluginReports"] == []


def _exceptions(synthesized: Synthesized) -> list[tuple[str, str, str, str]]:
    found = []
    for stack in STACKS:
        for logical_id, resource in synthesized.json(stack)["Resources"].items():
            metadata = resource.get("Metadata", {})
            for rule in metadata.get("cdk_nag", {}).get("rules_to_suppress", []):
                found.append((stack, logical_id, rule["id"], rule["reason"]))
            for skip in metadata.get("checkov", {}).get("skip", []):
                found.append((stack, logical_id, skip["id"], skip["comment"]))
    return found


def test_every_acknowledgment_and_skip_has_a_reason(synthesized: Synthesized) -> None:
    exceptions = _exceptions(synthesized)
    assert exceptions
    for stack, logical_id, rule, reason in exceptions:
        assert len(reason) > 40, f"{stack} {logical_id} {rule}: {reason!r} says too little"


def test_the_exceptions_are_these_and_no_more(synthesized: Synthesized) -> None:
    rules = sorted({rule.split("[")[0] for _, _, rule, _ in _exceptions(synthesized)})
    assert rules == [
        "AwsSolutions-IAM5",
        "AwsSolutions-S1",
        "AwsSolutions-SMG4",
        "CKV_AWS_136",
        "CKV_AWS_18",
    ]
    # IAM5 (wildcard resources) only ever for resources, never for actions.
    assert not [rule for _, _, rule, _ in _exceptions(synthesized) if "Action::" in rule]


@pytest.mark.parametrize("stack", STACKS)
def test_cfn_lint_reports_nothing(synthesized: Synthesized, stack: str) -> None:
    matches = lint_file(synthesized.outdir / f"{stack}.template.json")
    assert [str(m) for m in matches] == []


def test_app_py_synthesizes_without_the_cdk_cli(tmp_path: Path) -> None:
    # CDK_OUTDIR is how the CDK CLI names the output folder; here it keeps the repo untouched.
    env = {**os.environ, "CDK_OUTDIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, str(INFRA / "app.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.glob("*.template.json")) == [
        f"{stack}.template.json" for stack in sorted(STACKS)
    ]


def test_an_account_with_github_oidc_already_and_an_external_id(tmp_path: Path) -> None:
    provider = "arn:aws:iam::111111111111:oidc-provider/token.actions.githubusercontent.com"
    staging = dataclasses.replace(
        FERRY.environment("staging"), push_pool_external_id="ferry-staging-pool"
    )
    config = dataclasses.replace(
        FERRY,
        existing_github_oidc_provider_arn=provider,
        environments=(staging, FERRY.environment("prod")),
    )
    variant = synthesize(config, tmp_path)
    variant.template("ferry-shared").resource_count_is("AWS::IAM::OIDCProvider", 0)
    ci = variant.role("ferry-shared", "ferry-github-ci")
    assert ci["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Federated": provider}
    pool = variant.role("ferry-staging", "ferry-staging-push-pool")
    assert pool["AssumeRolePolicyDocument"]["Statement"][0]["Condition"] == {
        "StringEquals": {"sts:ExternalId": "ferry-staging-pool"}
    }
