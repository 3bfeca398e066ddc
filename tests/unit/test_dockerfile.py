"""docker/Dockerfile and .dockerignore, read as the build reads them (no engine needed).

tests/integration/test_image.py performs the build steps; these check the decisions that the
steps alone would not show: pins, the user, labels, where a run writes, what the context holds.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DOCKERFILE, REPO, load_recipe_module

image_recipe = load_recipe_module()
Recipe = image_recipe.Recipe


@pytest.fixture(scope="module")
def recipe():
    return Recipe.load(DOCKERFILE)


def image_env(recipe, stage: str = "runtime") -> dict[str, str]:
    roots = {"/app": Path("/app"), "/tmp": Path("/tmp")}  # identity: the image's own paths
    return recipe.env(stage, roots, host_env={"PATH": "/usr/local/bin:/usr/bin"})


def test_hadolint_passes():
    hadolint = Path(sys.executable).parent / "hadolint"
    done = subprocess.run(
        [str(hadolint), str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_image_pulled_is_pinned_by_digest(recipe):
    images = recipe.external_images()
    assert any(i.startswith("python:3.11-") for i in images)
    assert any(i.startswith("ghcr.io/astral-sh/uv:") for i in images)
    assert [i for i in images if not Recipe.pinned(i)] == []


def test_the_final_stage_runs_as_a_non_root_user_and_carries_oci_labels(recipe):
    final = recipe.final
    users = final.of("USER")
    assert users, "the final stage sets no USER"
    user = users[-1].args.split(":")[0]
    assert user not in {"root", "0"}
    # nothing after the USER switches back or needs root
    assert all(i.keyword != "RUN" for i in final.instructions if i.line > users[-1].line)
    labels = " ".join(i.args for i in final.of("LABEL"))
    for key in ("org.opencontainers.image.source", "org.opencontainers.image.revision"):
        assert key in labels


def test_uv_installs_the_locked_runtime_closure_dependencies_first(recipe):
    commands = recipe.uv_commands("builder")
    assert len(commands) == 2
    for words in commands:
        assert words[:2] == ["uv", "sync"]
        assert "--locked" in words or "--frozen" in words
        # pyproject's default groups are dev and infra: --no-dev alone would keep infra
        assert "--no-default-groups" in words
        assert not any(w in {"--dev", "--all-groups", "--group", "--all-extras"} for w in words)
    assert "--no-install-project" in commands[0]
    builder = recipe.stage("builder")
    deps_run = next(i for i in builder.of("RUN") if "--no-install-project" in i.args)
    first_source_copy = next(i for i in builder.of("COPY") if "flows" in i.args)
    assert deps_run.line < first_source_copy.line
    # uv never reaches the final stage: only the builder copies it in
    assert not any("uv" in i.args for i in recipe.final.of("COPY"))


def test_the_parse_is_baked_in_the_builder(recipe):
    runs = [i.args for i in recipe.stage("builder").of("RUN")]
    assert any(re.match(r"ferry bake\b", r) for r in runs)
    assert image_env(recipe)["FERRY_BAKED_DIR"].startswith("/app/")


def test_a_run_writes_only_under_tmp_and_finds_its_commands_on_path(recipe):
    env = image_env(recipe)
    for name in ("FERRY_TARGET_PATH", "FERRY_WORK_DIR", "FERRY_ARTIFACTS", "PREFECT_HOME"):
        assert env[name].startswith("/tmp/"), name
    # Prefect creates its home without parents, on what may be an empty /tmp volume
    assert Path(env["PREFECT_HOME"]).parent == Path("/tmp")
    # the ECS worker's `prefect flow-run execute` resolves to the venv's prefect
    assert env["PATH"].split(":")[0] == "/app/.venv/bin"
    assert env["FERRY_PROJECT_DIR"] == "/app/dbt_project"


def test_no_secret_is_a_build_argument_or_baked_into_the_environment(recipe):
    secret = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY|PRIVATE|CREDENTIAL", re.IGNORECASE)
    names = [i.args.split("=")[0] for s in recipe.stages for i in s.of("ARG")]
    names += list(image_env(recipe, "builder")) + list(image_env(recipe))
    assert [n for n in names if secret.search(n)] == []


@pytest.mark.parametrize(
    ("path", "excluded"),
    [
        (".git/config", True),
        (".venv/bin/python", True),
        (".env", True),
        ("tests/unit/test_request.py", True),
        ("infra/prefect/ecs-base-job-template.json", True),
        ("dbt_project/target/manifest.json", True),
        ("dbt_project/logs/dbt.log", True),
        ("dbt_project/shop.duckdb", True),
        ("flows/__pycache__/cli.cpython-311.pyc", True),
        ("dbt_project/sqlfluff_libs/dbt.py", True),
        ("flows/cli.py", False),
        ("flows/dbt/invoke.py", False),
        ("uv.lock", False),
        ("pyproject.toml", False),
        ("dbt_project/models/staging/shop/stg_shop__orders.sql", False),
        ("dbt_project/profiles.yml", False),
    ],
)
def test_the_build_context_holds_only_what_the_image_is_built_from(path, excluded):
    assert image_recipe.DockerIgnore.load(REPO).excludes(path) is excluded


def test_the_recipe_reads_instructions_as_docker_does(tmp_path):
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(
        "FROM img@sha256:" + "0" * 64 + " AS base\n"
        "# a comment\n"
        "ENV A=/app/x \\\n"
        "    # comments inside a continuation are dropped\n"
        "    E=$A\n"
        "ENV B=$A:/usr/bin C='$A' D=\"${A}/y\"\n"
        "WORKDIR /app\n"
        "FROM base AS next\n"
        "RUN --mount=type=cache,target=/root/.cache \\\n"
        "    echo one \\\n"
        "    && echo two\n"
    )
    recipe = Recipe.load(dockerfile)
    assert [s.name for s in recipe.stages] == ["base", "next"]
    run = recipe.stage("next").of("RUN")[0]
    assert run.flag("mount") == ["type=cache,target=/root/.cache"]
    assert run.args == "echo one     && echo two"
    env = recipe.env("next", {"/app": tmp_path / "app"}, host_env={})
    assert env["A"] == f"{tmp_path}/app/x"
    assert env["B"] == f"{tmp_path}/app/x:/usr/bin"
    assert env["C"] == "$A"  # single quotes: no substitution
    assert env["D"] == f"{tmp_path}/app/x/y"
    assert env["E"] == ""  # as in Docker: one ENV sees the values from before it
