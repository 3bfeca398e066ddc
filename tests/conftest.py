"""Shared fixtures: copies of dbt projects, warehouses, settings, and AWS kept offline."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from flows.dbt.nodes import NodeResult, NodeStarted
from flows.settings import FerrySettings

REPO = Path(__file__).resolve().parents[1]
SHOP = REPO / "dbt_project"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
_IGNORE = shutil.ignore_patterns("target", "logs", "dbt_packages", "*.duckdb*", "__pycache__")


@pytest.fixture(autouse=True, scope="session")
def _aws_is_never_called_for_real():
    """Fake credentials and no endpoint of the real cloud: moto answers, or nothing does."""
    saved = dict(os.environ)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
        os.environ.pop(name, None)
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
    )
    yield
    os.environ.clear()
    os.environ.update(saved)


def copy_project(source: Path, dest: Path) -> Path:
    """A project copy in a temp dir: tests never write into the repository."""
    shutil.copytree(source, dest, ignore=_IGNORE)
    return dest


@pytest.fixture
def shop_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the example project, with its DuckDB file in the test's temp dir."""
    project = copy_project(SHOP, tmp_path / "shop")
    monkeypatch.setenv("FERRY_DUCKDB_PATH", str(tmp_path / "shop.duckdb"))
    return project


def load_module(path: Path, name: str) -> ModuleType:
    """A script that is no package (the generator, docker/image_recipe.py), loaded by path."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
    return sys.modules[name]


def load_generator(project: Path) -> ModuleType:
    """The project copy's own raw-data generator (a fresh module per copy)."""
    path = project / "scripts" / "generate_raw_data.py"
    return load_module(path, f"generate_raw_data_{uuid.uuid4().hex}")


DOCKERFILE = REPO / "docker" / "Dockerfile"


def load_recipe_module() -> ModuleType:
    """docker/image_recipe.py, which performs the Dockerfile's steps without an engine."""
    return load_module(REPO / "docker" / "image_recipe.py", "ferry_image_recipe")


@pytest.fixture
def shop_duckdb(shop_project: Path, tmp_path: Path) -> Path:
    """The example project with its raw data loaded into DuckDB."""
    generator = load_generator(shop_project)
    rc = generator.main(["--target", "duckdb", "--duckdb-path", str(tmp_path / "shop.duckdb")])
    assert rc == 0
    return shop_project


def make_settings(project: Path, tmp_path: Path, **overrides: object) -> FerrySettings:
    values: dict[str, object] = {
        "project_dir": project,
        "profiles_dir": project,
        "artifacts": str(tmp_path / "artifacts"),
        "work_dir": tmp_path / "runs",
        "env": "test",
    }
    values.update(overrides)
    return FerrySettings.from_env(**values)


class RecordingListener:
    """Keeps what dbt reported, node by node, as the Prefect reporter would receive it."""

    def __init__(self) -> None:
        self.started: list[NodeStarted] = []
        self.finished: list[NodeResult] = []

    def node_started(self, node: NodeStarted) -> None:
        self.started.append(node)

    def node_finished(self, node: NodeResult) -> None:
        self.finished.append(node)


@pytest.fixture
def listener() -> RecordingListener:
    return RecordingListener()


@pytest.fixture
def pg_schema(monkeypatch: pytest.MonkeyPatch):
    """A PostgreSQL schema of this test's own (127.0.0.1:5432); dropped afterwards.

    Never skipped: PostgreSQL runs here and in CI. If it is down, start it with
    `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`.
    """
    schema = new_pg_schema()
    monkeypatch.setenv("FERRY_PG_SCHEMA", schema)
    yield schema
    drop_pg_schemas(schema)


def new_pg_schema() -> str:
    """A schema name no other test uses (dbt creates it, `drop_pg_schemas` drops it)."""
    return f"ferry_t_{uuid.uuid4().hex[:10]}"


def drop_pg_schemas(schema: str) -> None:
    """Drops `schema` and every schema named after it (dbt's `<schema>_<custom>`)."""
    import psycopg2

    conn = psycopg2.connect("host=127.0.0.1 port=5432 user=postgres dbname=test")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(
            "select nspname from pg_namespace where nspname like %s",
            (schema.replace("_", r"\_") + "%",),
        )
        for (name,) in cur.fetchall():
            cur.execute(f'drop schema "{name}" cascade')
    conn.close()


def git_package(repo: Path, releases: dict[str, str]) -> str:
    """A dbt package `shop_dates` in a Git repository of its own on disk, one tag per release.

    Its macro `shop_dates.release()` renders the tag it was installed from; `releases` maps each
    tag to what that release's macro returns. Served as file:// (dbt deps clones it offline).
    """
    git = ["git", "-c", "user.name=ferry tests", "-c", "user.email=tests@ferry.invalid"]
    subprocess.run([*git, "init", "--quiet", str(repo)], check=True)
    (repo / "macros").mkdir()
    (repo / "dbt_project.yml").write_text(
        'name: shop_dates\nversion: "1.0.0"\nconfig-version: 2\nmacro-paths: ["macros"]\n'
    )
    for tag, value in releases.items():
        (repo / "macros" / "release.sql").write_text(
            f"{{% macro release() %}}'{value}'{{% endmacro %}}\n"
        )
        subprocess.run([*git, "-C", str(repo), "add", "--all"], check=True)
        subprocess.run([*git, "-C", str(repo), "commit", "--quiet", "-m", tag], check=True)
        subprocess.run([*git, "-C", str(repo), "tag", tag], check=True)
    return repo.resolve().as_uri()


def add_git_package(project: Path, url: str, revision: str) -> None:
    """Declares the git package beside the project's own, and a model that calls its macro."""
    declared = project / "packages.yml"
    declared.write_text(declared.read_text() + f'  - git: "{url}"\n    revision: {revision}\n')
    (project / "models" / "package_release.sql").write_text(
        "select {{ shop_dates.release() }} as release\n"
    )


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless chromium: the system's (Debian's package); playwright downloads none."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail(
            "chromium is not installed: apt-get install -y --no-install-recommends chromium "
            "(.ci/run installs it before make test)"
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium, headless=True, args=["--no-sandbox"]
        )
        yield launched
        launched.close()
