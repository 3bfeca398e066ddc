"""ferry's GitHub calls over real HTTP, against the GitHub API of tests/integration/conftest.py:
the Slim CI comment is one sticky comment, and GitHub's refusals carry their status."""

from __future__ import annotations

import os

import pytest

from flows.ci.github import GitHub, GitHubError
from flows.cli import main
from flows.exit_codes import ExitCode
from flows.prefect.server import free_port

pytestmark = pytest.mark.integration


def test_the_slim_ci_comment_is_created_once_then_updated(github, tmp_path):
    body = tmp_path / "comment.md"
    body.write_text("<!-- ferry:slim-ci -->\nfirst")
    github.comments[7] = [{"id": 1, "body": "a human's comment"}]
    assert main(["ci", "comment", "--pr", "7", "--file", str(body)]) == ExitCode.OK
    body.write_text("<!-- ferry:slim-ci -->\nsecond")
    assert main(["ci", "comment", "--pr", "7", "--file", str(body)]) == ExitCode.OK
    assert [c["body"] for c in github.comments[7]] == [
        "a human's comment",
        "<!-- ferry:slim-ci -->\nsecond",
    ]


def test_the_comment_command_refuses_bad_input_and_fails_on_githubs_refusal(
    github, tmp_path, monkeypatch, capsys
):
    def comment(*args: str) -> tuple[int, str]:
        code = main(["ci", "comment", "--pr", "7", *args])
        return code, capsys.readouterr().err

    body = tmp_path / "comment.md"
    code, err = comment("--file", str(body))  # not written yet
    assert code == ExitCode.INVALID and err.startswith(
        f"ferry ci comment: cannot read --file {body}"
    ), err
    body.write_text("<!-- ferry:slim-ci -->\nbody")
    monkeypatch.delenv("GITHUB_TOKEN")
    code, err = comment("--file", str(body))
    assert (code, err) == (
        2,
        "ferry ci comment: set GITHUB_REPOSITORY and GITHUB_TOKEN (GitHub Actions sets both)\n",
    )
    monkeypatch.setenv("GITHUB_TOKEN", "wrong")
    code, err = comment("--file", str(body))
    assert code == ExitCode.FAILED and err.startswith(
        "ferry ci comment: GitHub GET /repos/o/r/issues/7"
    ), err
    assert "401" in err and 7 not in github.comments
    monkeypatch.setenv("GITHUB_API_URL", f"http://127.0.0.1:{free_port()}")
    code, err = comment("--file", str(body))
    assert code == ExitCode.FAILED and err.startswith("ferry ci comment: ") and "refused" in err, (
        err
    )


def test_github_errors_carry_the_status(github):
    api = GitHub("o/nope", "t0ken", os.environ["GITHUB_API_URL"])
    with pytest.raises(GitHubError, match="404"):
        api.upsert_comment(1, "<!-- m -->", "x")
