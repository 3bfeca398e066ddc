"""The pull-request path as `.github/workflows/pr.yml` runs it: its Slim CI job's own `run:`
scripts, verbatim, in bash, with the job's environment (the GitHub expressions given local
values: DuckDB instead of Redshift, a folder instead of production's bucket) against a fake
GitHub API. Production was built first; the pull request changes one model's logic. The one
comment holds the Slim CI summary, what changed in the data, and where the docs are."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from flows.ci.slim_report import MARKER
from flows.run.owner import run
from flows.run.request import RunRequest
from flows.run.verdict import Outcome
from tests.conftest import REPO, make_settings

pytestmark = pytest.mark.integration

WORKFLOW = REPO / ".github" / "workflows" / "pr.yml"


def expression_values(store: Path, github_api: str) -> dict[str, str]:
    """What GitHub would put in place of each `${{ }}` of the job's environment."""
    return {
        "github.event.pull_request.number": "12",
        "github.event.pull_request.head.sha": "0123456789abcdef0123",
        "github.token": "t0ken",
        "github.server_url": "https://github.example",
        "github.repository": "o/r",
        "github.run_id": "777",
        "vars.FERRY_CI_TARGET": "duckdb",
        "vars.FERRY_ARTIFACT_BUCKET": "unused",
        "vars.FERRY_CI_DBT_VARS": json.dumps({"raw_schema": "main_raw"}),
        "vars.FERRY_CI_REDSHIFT_HOST": "unused",
        "vars.FERRY_CI_REDSHIFT_DATABASE": "unused",
        "secrets.FERRY_CI_REDSHIFT_USER": "unused",
        "secrets.FERRY_CI_REDSHIFT_PASSWORD": "unused",
    }


def resolve(value: Any, values: dict[str, str]) -> str:
    return re.sub(r"\$\{\{\s*([^}]+?)\s*\}\}", lambda m: values[m.group(1)], str(value))


def test_the_pull_request_job_comments_once_with_the_build_and_the_data(
    shop_duckdb, tmp_path, github
):
    project = shop_duckdb
    store = tmp_path / "prod-store"
    prod = make_settings(project, tmp_path, env="prod", artifacts=str(store))
    for command in ("seed", "run"):
        built = run(RunRequest.build(command=command), prod).summary
        assert built.outcome is Outcome.SUCCESS, built.verdict
    # dbt-duckdb keeps its database open in this process; the job's processes need the file.
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager

    DuckDBConnectionManager.close_all_connections()

    # The checkout: the pull request's project beside the environment `make setup` made.
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / ".venv").symlink_to(Path(sys.executable).parents[1])
    project.rename(checkout / "dbt_project")
    model = checkout / "dbt_project" / "models" / "marts" / "marketing" / "fct_sessions.sql"
    model.write_text(
        model.read_text().replace(
            "sessions.pageviews,",
            "case when sessions.channel = 'email' then 0 else sessions.pageviews end as pageviews,",
        )
    )

    job = yaml.safe_load(WORKFLOW.read_text())["jobs"]["slim-ci"]
    values = expression_values(store, os.environ["GITHUB_API_URL"])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FERRY_", "PREFECT_"))}
    env["FERRY_DUCKDB_PATH"] = os.environ["FERRY_DUCKDB_PATH"]  # the warehouse: one file
    env["GITHUB_API_URL"] = os.environ["GITHUB_API_URL"]
    env.update({k: resolve(v, values) for k, v in job["env"].items()})
    env["FERRY_STATE_FROM"] = str(store)  # production's bucket, here a folder
    scripts = [step for step in job["steps"] if "run" in step and step["run"] != "make setup"]
    assert [s["name"] for s in scripts] == [
        "Build what changed, deferring to production",
        "Compare the built models' data with production's",
        "Document the pull request's project",
        "Summarise on the pull request",
    ]
    for step in scripts:
        step_env = {**env, **{k: resolve(v, values) for k, v in (step.get("env") or {}).items()}}
        done = subprocess.run(
            ["bash", "-e", "-c", step["run"]],
            cwd=checkout,
            env=step_env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, f"{step['name']}: {done.stderr[-3000:]}"
        assert "Traceback" not in done.stderr, done.stderr[-3000:]

    comments = github.comments[12]
    assert len(comments) == 1
    body = comments[0]["body"]
    assert body.startswith(MARKER)
    assert body.index("Slim CI") < body.index("### What changed in the data")
    assert "| `fct_sessions` | 🔶 changed |" in body
    assert "<summary><code>fct_sessions</code>" in body and "`pageviews`" in body
    assert "https://github.example/o/r/actions/runs/777" in body
    docs = re.search(r"dbt docs of this pull request: `([^`]+)`", body)
    assert docs, body
    page = checkout / docs.group(1)
    assert page.is_file() and "fct_sessions" in page.read_text()
    assert (checkout / "slim-ci-diff.md").read_text().startswith("### What changed in the data")
