"""docker/Dockerfile and .dockerignore, read as the build reads them (no engine needed).

The Dockerfile is parsed by BuildKit's own parser and .dockerignore matched by docker-py's
(docker/image_recipe.py). tests/integration/test_image.py performs the build steps; these check
the decisions that the steps alone would not show: pins, the user, labels, where a run writes,
what the build context holds. docs/image.md has the table of what is proven where.
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
flag = image_recipe.flag
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


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


def test_every_repository_path_named_in_a_dockerfile_comment_exists():
    comments = [line for line in DOCKERFILE.read_text().splitlines() if line.startswith("#")]
    named = re.findall(
        r"\b(?:bench|dbt_project|docker|docs|flows|infra|tests)/[\w./-]*\w", "\n".join(comments)
    )
    assert named, "no repository path in the comments: the pattern is stale"
    assert [path for path in named if not (REPO / path).exists()] == []


def test_every_image_pulled_is_pinned_by_digest(recipe):
    images = recipe.external_images()
    assert any(i.startswith("python:3.11-") for i in images)
    assert any(i.startswith("ghcr.io/astral-sh/uv:") for i in images)
    assert [i for i in images if not DIGEST.search(i)] == []


def test_the_final_stage_runs_as_a_non_root_user_and_carries_oci_labels(recipe):
    final = recipe.final
    users = final.of("USER")
    assert users, "the final stage sets no USER"
    user = users[-1].value[0].split(":")[0]
    assert user not in {"root", "0"}
    # nothing after the USER switches back or needs root
    after = [i.cmd for i in final.instructions if i.start_line > users[-1].start_line]
    assert "RUN" not in after
    labels = [word for i in final.of("LABEL") for word in i.value]
    for key in ("org.opencontainers.image.source", "org.opencontainers.image.revision"):
        assert key in labels


def uv_commands(stage) -> list[list[str]]:
    """The `uv ...` commands of a stage's RUN instructions, as words."""
    parts = [p.split() for run in stage.of("RUN") for p in re.split(r"&&|;", run.value[0])]
    return [words for words in parts if words and words[0] == "uv"]


def test_uv_installs_the_locked_runtime_closure_dependencies_first(recipe):
    commands = uv_commands(recipe.stage("builder"))
    assert len(commands) == 2
    for words in commands:
        assert words[:2] == ["uv", "sync"]
        assert "--locked" in words or "--frozen" in words
        # pyproject's default groups are dev and infra: --no-dev alone would keep infra
        assert "--no-default-groups" in words
        assert not any(w in {"--dev", "--all-groups", "--group", "--all-extras"} for w in words)
    assert "--no-install-project" in commands[0]
    builder = recipe.stage("builder")
    deps_run = next(i for i in builder.of("RUN") if "--no-install-project" in i.value[0])
    first_source_copy = next(i for i in builder.of("COPY") if "flows" in i.value)
    assert deps_run.start_line < first_source_copy.start_line
    # the dependency layer sees only the lock and pyproject (bind mounts, no COPY before it)
    sources = {m.split("source=")[1].split(",")[0] for m in flag(deps_run, "mount") if "bind" in m}
    assert sources == {"uv.lock", "pyproject.toml"}
    # uv never reaches the final stage: only the builder copies it in
    final_copies = recipe.final.of("COPY")
    assert not any("uv" in word for i in final_copies for word in i.value + tuple(flag(i, "from")))


def test_the_parse_is_baked_in_the_builder(recipe):
    runs = [i.value[0] for i in recipe.stage("builder").of("RUN")]
    assert any(re.match(r"ferry release bake --spec \"\$FERRY_BAKE\"", r) for r in runs)
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
    names = [w.split("=")[0] for s in recipe.stages for i in s.of("ARG") for w in i.value]
    names += list(image_env(recipe, "builder")) + list(image_env(recipe))
    assert [n for n in names if secret.search(n)] == []


@pytest.mark.parametrize(
    ("path", "excluded"),
    [
        (".git/config", True),
        (".venv/bin/python", True),
        (".env", True),
        ("tests/conftest.py", True),
        ("infra/prefect/ecs-base-job-template.json", True),
        ("dbt_project/target/manifest.json", True),
        ("dbt_project/logs/dbt.log", True),
        ("dbt_project/shop.duckdb", True),
        ("flows/__pycache__/cli.cpython-311.pyc", True),
        ("dbt_project/sqlfluff_libs/dbt.py", True),
        ("flows/cli/run.py", False),
        ("flows/dbt/invoke.py", False),
        ("uv.lock", False),
        ("pyproject.toml", False),
        ("dbt_project/models/staging/shop/stg_shop__orders.sql", False),
        ("dbt_project/profiles.yml", False),
    ],
)
def test_the_build_context_holds_only_what_the_image_is_built_from(path, excluded):
    assert image_recipe.dockerignore(REPO).matches(path) is excluded


def test_the_build_context_of_this_working_tree_is_the_allow_list():
    # What docker-py would send from this checkout, local leftovers (.venv, target/...) included
    context = set(image_recipe.dockerignore(REPO).walk(str(REPO))) - {".dockerignore"}
    tops = {path.split("/")[0] for path in context}
    assert tops == {"pyproject.toml", "uv.lock", "README.md", "flows", "dbt_project"}
    leftovers = re.compile(
        r"(^|/)(__pycache__|\.env)(/|$)|\.py[co]$|\.duckdb(\.wal)?$"
        r"|^dbt_project/(target|logs|dbt_packages|\.user\.yml|\.sqlfluff|sqlfluff_libs)(/|$)"
    )
    assert sorted(p for p in context if leftovers.search(p)) == []


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
    assert flag(run, "mount") == ["type=cache,target=/root/.cache"]
    assert run.value == ("echo one     && echo two",)
    env = recipe.env("next", {"/app": tmp_path / "app"}, host_env={})
    assert env["A"] == f"{tmp_path}/app/x"
    assert env["B"] == f"{tmp_path}/app/x:/usr/bin"
    assert env["C"] == "$A"  # single quotes: no substitution
    assert env["D"] == f"{tmp_path}/app/x/y"
    assert env["E"] == ""  # as in Docker: one ENV sees the values from before it
