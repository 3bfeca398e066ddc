"""The GitHub workflows keep the release rules, and call only `ferry` commands that exist.

actionlint and zizmor (make lint) check the syntax and the known security pitfalls; these
tests check ferry's own rules, which neither knows.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from flows.ci.pr_schemas import pr_schema
from flows.cli import _parser

WORKFLOWS = Path(__file__).resolve().parents[2] / ".github" / "workflows"
FILES = sorted(WORKFLOWS.glob("*.yml"))
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")


def load(path: Path) -> dict[str, Any]:
    # `on:` is YAML 1.1's boolean true to PyYAML; the key is all we need to keep apart.
    return yaml.safe_load(path.read_text())


def steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for job in workflow["jobs"].values() for s in job.get("steps", [])]


def test_there_are_the_workflows_the_pipeline_needs():
    assert {p.name for p in FILES} >= {
        "checks.yml",
        "pr.yml",
        "pr-closed.yml",
        "nightly.yml",
        "main.yml",
    }


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_permissions_start_empty_and_are_granted_per_job(path):
    workflow = load(path)
    assert workflow["permissions"] == {}, f"{path.name}: top-level permissions must be {{}}"
    for name, job in workflow["jobs"].items():
        if "uses" in job or "steps" in job:
            assert "permissions" in job, f"{path.name}:{name} grants no permissions explicitly"
        if job.get("permissions", {}).get("id-token") == "write":
            uses = [s.get("uses", "") for s in job.get("steps", [])]
            assert any("configure-aws-credentials" in u for u in uses), (
                f"{path.name}:{name} asks for an OIDC token it never uses"
            )


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_actions_are_pinned_by_full_sha_with_their_version(path):
    text = path.read_text()
    for step in steps(load(path)):
        if "uses" not in step:
            continue
        assert PINNED.match(step["uses"]), f"{path.name}: {step['uses']} is not pinned by SHA"
        line = next(ln for ln in text.splitlines() if step["uses"] in ln)
        assert re.search(r"# v\d", line), f"{path.name}: {step['uses']} lacks its # vX.Y.Z"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_no_credentials_persist_and_no_static_keys(path):
    text = path.read_text()
    assert "aws-access-key-id" not in text and "AWS_SECRET_ACCESS_KEY" not in text
    for step in steps(load(path)):
        if step.get("uses", "").startswith("actions/checkout@"):
            assert step["with"]["persist-credentials"] is False


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_jobs_that_deploy_are_serialised_and_time_boxed(path):
    for name, job in load(path)["jobs"].items():
        if "steps" in job:
            assert "timeout-minutes" in job, f"{path.name}:{name} has no timeout"
        if "environment" in job and any("deploy" in str(s.get("run", "")) for s in job["steps"]):
            assert "concurrency" in job, f"{path.name}:{name} deploys without concurrency"
            assert job["concurrency"].get("cancel-in-progress") is False


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_run_steps_take_untrusted_values_through_env_only(path):
    for step in steps(load(path)):
        assert "${{" not in str(step.get("run", "")), f"{path.name}: expression in run: {step}"


def _ferry_commands(path: Path) -> list[list[str]]:
    commands = []
    for step in steps(load(path)):
        for part in re.split(r"\s*(?:&&|;|\n)\s*", str(step.get("run", ""))):
            if ".venv/bin/ferry " not in part:
                continue
            words = shlex.split(part.split(">", 1)[0])
            words = words[words.index(".venv/bin/ferry") + 1 :]
            commands.append([re.sub(r"\$\w+", "1", w) for w in words])
    return commands


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_ferry_command_in_a_workflow_exists(path):
    for argv in _ferry_commands(path):
        try:
            args = _parser().parse_args(argv)
        except SystemExit:
            pytest.fail(f"{path.name}: `ferry {' '.join(argv)}` is not a valid ferry command")
        assert args.action == "run" or callable(getattr(args, "leaf", None)), argv


def test_the_workflows_run_each_release_step():
    """The ferry commands the pipeline depends on are there, by their full names."""
    called = set()
    for path in FILES:
        for argv in _ferry_commands(path):
            args = _parser().parse_args(argv)
            called.add("ferry run" if args.action == "run" else args.leaf.prog)
    assert called == {
        "ferry run",
        "ferry release scan",
        "ferry release deploy",
        "ferry release smoke",
        "ferry release promote",
        "ferry ci stack-env",
        "ferry ci diff",
        "ferry ci report",
        "ferry ci comment",
        "ferry ci schema drop",
        "ferry ci schema sweep",
    }


def test_slim_ci_builds_into_the_schema_clean_up_drops():
    job = load(WORKFLOWS / "pr.yml")["jobs"]["slim-ci"]
    template = job["env"]["FERRY_TARGET_SCHEMA"]
    rendered = template.replace("${{ github.event.pull_request.number }}", "42")
    assert rendered == pr_schema(42)
    run = next(s["run"] for s in job["steps"] if s.get("id") == "slim")
    assert "state:modified+" in run and "--defer" in run and "--no-prefect" in run
    assert job["env"]["FERRY_STATE_ENV"] == "prod"
    assert load(WORKFLOWS / "pr.yml")["concurrency"]["cancel-in-progress"] is True


def test_production_promotes_the_digest_staging_tested_and_never_builds():
    jobs = load(WORKFLOWS / "main.yml")["jobs"]
    assert jobs["production"]["environment"] == "production"
    assert jobs["staging"]["needs"] == "build"
    assert set(jobs["production"]["needs"]) == {"build", "staging"}
    for job in ("staging", "production"):
        assert jobs[job]["env"]["DIGEST"] == "${{ needs.build.outputs.digest }}"
        uses = " ".join(s.get("uses", "") for s in jobs[job]["steps"])
        assert "build-push-action" not in uses, f"{job} must not build"
    promote = next(
        s["run"] for s in jobs["production"]["steps"] if "release promote" in str(s.get("run"))
    )
    assert '--expect-digest "$DIGEST"' in promote
    assert '--from-tag "sha-$GITHUB_SHA"' in promote and '--to-tag "prod-$GITHUB_SHA"' in promote
    build = next(s for s in jobs["build"]["steps"] if "build-push-action" in s.get("uses", ""))
    assert build["with"]["tags"].endswith(":sha-${{ github.sha }}")
    assert "FERRY_BAKE=${{ vars.FERRY_BAKE }}" in build["with"]["build-args"]
    assert build["with"]["provenance"] is False  # one manifest: the digest that is promoted
    deploys = [
        s["run"]
        for j in ("staging", "production")
        for s in jobs[j]["steps"]
        if "ferry release deploy" in str(s.get("run"))
    ]
    assert all('FERRY_IMAGE="$FERRY_IMAGE_REPOSITORY@$DIGEST"' in d for d in deploys)
