"""ferry's GitHub calls over real HTTP, against the GitHub API of tests/integration/conftest.py:
the Slim CI comment is one sticky comment, and GitHub's refusals carry their status."""

from __future__ import annotations

import os

import pytest

from flows.ci.github import GitHub, GitHubError
from flows.cli import main

pytestmark = pytest.mark.integration


def test_the_slim_ci_comment_is_created_once_then_updated(github, tmp_path):
    body = tmp_path / "comment.md"
    body.write_text("<!-- ferry:slim-ci -->\nfirst")
    github.comments[7] = [{"id": 1, "body": "a human's comment"}]
    assert main(["ci", "comment", "--pr", "7", "--file", str(body)]) == 0
    body.write_text("<!-- ferry:slim-ci -->\nsecond")
    assert main(["ci", "comment", "--pr", "7", "--file", str(body)]) == 0
    assert [c["body"] for c in github.comments[7]] == [
        "a human's comment",
        "<!-- ferry:slim-ci -->\nsecond",
    ]


def test_github_errors_carry_the_status(github):
    api = GitHub("o/nope", "t0ken", os.environ["GITHUB_API_URL"])
    with pytest.raises(GitHubError, match="404"):
        api.upsert_comment(1, "<!-- m -->", "x")
