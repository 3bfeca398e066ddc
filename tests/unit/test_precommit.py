"""The pre-commit hooks: a valid config that runs the project's own locked linters.

Running the hooks (`pre-commit run --all-files`) takes a minute and reads files other work may
be changing; `make lint` runs the same tools. Here: the config is what pre-commit accepts, each
hook calls a tool of the project's environment that uv.lock pins, and no check is missing.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tomllib

import yaml

from tests.conftest import REPO

CONFIG = REPO / ".pre-commit-config.yaml"

# Hook id -> the locked distribution whose executable it runs (`make lint` runs each one too).
_REQUIRED = {"ruff": "ruff", "ruff-format": "ruff", "mypy": "mypy", "sqlfluff": "sqlfluff"}


def _hooks() -> list[dict]:
    config = yaml.safe_load(CONFIG.read_text())
    return [hook for repo in config["repos"] for hook in repo["hooks"]]


def _locked_packages() -> set[str]:
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    return {package["name"] for package in lock["package"]}


def _tracked_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    )
    return listed.stdout.splitlines()


def test_pre_commit_accepts_the_config():
    checked = subprocess.run(
        [sys.executable, "-m", "pre_commit", "validate-config", str(CONFIG)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_hooks_cover_ruff_ruff_format_mypy_and_sqlfluff():
    assert set(_REQUIRED) <= {hook["id"] for hook in _hooks()}


def test_every_hook_is_local_and_downloads_nothing():
    config = yaml.safe_load(CONFIG.read_text())
    assert [repo["repo"] for repo in config["repos"]] == ["local"] * len(config["repos"])
    assert {hook["language"] for hook in _hooks()} == {"system"}


def test_every_hook_runs_an_existing_tool_of_the_locked_environment():
    locked = _locked_packages()
    for hook in _hooks():
        tool = shlex.split(hook["entry"])[0]
        path = REPO / tool
        assert tool.startswith(".venv/bin/"), f"{hook['id']}: {tool} is not the project's own"
        assert path.is_file() and os.access(path, os.X_OK), f"{hook['id']}: no {tool}"
        expected = _REQUIRED.get(hook["id"], path.name)
        assert path.name == expected, f"{hook['id']} runs {path.name}, not {expected}"
        assert path.name in locked, f"{hook['id']}: {path.name} is not pinned in uv.lock"


def test_every_hook_matches_files_of_the_repository():
    """A renamed folder must not silently leave a hook with nothing to check."""
    tracked = _tracked_files()
    for hook in _hooks():
        pattern = re.compile(hook.get("files", ""))
        assert any(pattern.search(name) for name in tracked), f"{hook['id']} matches no file"


def test_sqlfluff_checks_the_folders_make_lint_checks():
    (sqlfluff,) = [hook for hook in _hooks() if hook["id"] == "sqlfluff"]
    pattern = re.compile(sqlfluff["files"])
    for folder in ("models", "tests", "macros", "snapshots"):
        assert pattern.search(f"dbt_project/{folder}/x.sql"), folder
    assert (REPO / "dbt_project" / ".sqlfluff").is_file()
