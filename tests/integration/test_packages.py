"""dbt packages: a `local:` and a `git:` package (served from a file:// repository, offline)
installed by `ferry run`, `ferry release bake` and `ferry packages`, from the project's lock.

The project is a copy of the example project, whose own local package (shop_expectations) gives
fct_orders its row-count and value-range tests, plus the git package `shop_dates` and a model
calling its macro. Every run is the real CLI in a subprocess (`--no-prefect --json`).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from flows.dbt import packages
from flows.exit_codes import ExitCode
from tests.conftest import add_git_package, git_package, load_generator

pytestmark = pytest.mark.integration

FERRY = Path(sys.executable).with_name("ferry")


@pytest.fixture
def project(shop_project: Path, tmp_path: Path) -> Path:
    """The example project with a git package added and locked, as a team commits it: the lock
    in the repository, nothing installed (a fresh clone)."""
    url = git_package(tmp_path / "shop_dates", {"v1.0.0": "one", "v1.1.0": "one-one"})
    add_git_package(shop_project, url, "v1.0.0")
    packages.ensure(shop_project, log_path=tmp_path / "deps", upgrade=True)  # packages update
    shutil.rmtree(shop_project / "dbt_packages")
    return shop_project


@pytest.fixture
def raw_data(project: Path) -> Path:
    """The example project's raw tables, in the DuckDB file the runs build into."""
    warehouse = project.parent / "shop.duckdb"
    load_generator(project).main(["--target", "duckdb", "--duckdb-path", str(warehouse)])
    return warehouse


def ferry(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    tmp = project.parent
    return subprocess.run(
        [str(FERRY), *args],
        env={
            **os.environ,
            "FERRY_PROJECT_DIR": str(project),
            "FERRY_PROFILES_DIR": str(project),
            "FERRY_DUCKDB_PATH": str(tmp / "shop.duckdb"),
            "FERRY_WORK_DIR": str(tmp / "runs"),
            "FERRY_ARTIFACTS": str(tmp / "artifacts"),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=300,
    )


def run(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return ferry(project, "run", "--no-prefect", "--json", *args)


def release(project: Path) -> str:
    with duckdb.connect(str(project.parent / "shop.duckdb"), read_only=True) as db:
        row = db.execute("select release from main.package_release").fetchone()
    assert row is not None
    return str(row[0])


def test_a_run_installs_both_packages_once_and_then_costs_nothing(project: Path, raw_data):
    lock = (project / "package-lock.yml").read_bytes()
    first = run(project, "--select", "package_release")
    assert first.returncode == ExitCode.OK, first.stderr[-3000:]
    assert "dbt packages: installed shop_expectations (local packages/shop_expectations)" in (
        first.stderr
    )
    assert "shop_dates (git file://" in first.stderr
    assert "wrote package-lock.yml" not in first.stderr  # installed from the lock as it was
    assert (project / "package-lock.yml").read_bytes() == lock
    assert release(project) == "one"  # the git package's macro, at the locked tag
    # fct_orders's tests come from the local package (the full build runs them: test_shop_*)
    manifest = Path(json.loads(first.stdout)["artifacts"], "manifest.json").read_text()
    assert "test.shop.shop_expectations_expect_table_row_count_to_be_between_fct_orders" in manifest

    again = run(project, "--select", "package_release")
    assert again.returncode == ExitCode.OK, again.stderr[-3000:]
    assert "dbt packages: installed" not in again.stderr
    assert "dbt packages: 2 declared, installed as package-lock.yml pins them" in again.stderr

    # Up to date: reading two small files, nothing measurable beside a run.
    timings = []
    for _ in range(20):
        started = time.perf_counter()
        done = packages.ensure(project, log_path=project.parent / "deps")
        timings.append(time.perf_counter() - started)
        assert done.packages == ()
    median_ms = statistics.median(timings) * 1000
    print(f"\npackages up to date: the check takes {median_ms:.2f} ms (median of 20)")
    assert median_ms < 20


def test_a_lock_moved_on_by_a_teammate_is_installed_by_the_next_run(
    project: Path, raw_data, tmp_path
):
    assert run(project, "--select", "package_release").returncode == ExitCode.OK
    assert release(project) == "one"
    # A teammate moved to v1.1.0 and committed both files; this checkout pulled them.
    teammate = tmp_path / "teammate"
    shutil.copytree(project, teammate, ignore=shutil.ignore_patterns("dbt_packages", "target"))
    declared = teammate / "packages.yml"
    declared.write_text(declared.read_text().replace("revision: v1.0.0", "revision: v1.1.0"))
    updated = ferry(teammate, "packages", "update")
    assert updated.returncode == ExitCode.OK, updated.stderr
    for name in ("packages.yml", "package-lock.yml"):
        shutil.copyfile(teammate / name, project / name)

    moved = run(project, "--select", "package_release")
    assert moved.returncode == ExitCode.OK, moved.stderr[-3000:]
    assert "dbt packages: installed" in moved.stderr and "shop_dates (git" in moved.stderr
    assert release(project) == "one-one"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        pytest.param(("revision: v1.0.0", "revision: v9.9.9"), "v9.9.9", id="unknown-revision"),
        pytest.param(("file://", "file:///nowhere"), "nowhere", id="unreachable-repository"),
        pytest.param(("packages:", "packages: ["), "is not valid YAML", id="malformed-yml"),
    ],
)
def test_packages_that_cannot_be_installed_are_refused_before_the_warehouse(
    project: Path, change: tuple[str, str], reason: str
):
    declared = project / "packages.yml"
    declared.write_text(declared.read_text().replace(*change, 1))
    (project / "package-lock.yml").unlink()  # what a changed packages.yml is resolved from
    warehouse = project.parent / "shop.duckdb"

    refused = run(project, "--select", "package_release")

    assert refused.returncode == ExitCode.INVALID, refused.stderr[-3000:]
    assert reason in refused.stderr, refused.stderr[-3000:]
    assert "packages.yml" in refused.stderr  # what to check
    assert "Traceback" not in refused.stderr
    assert json.loads(refused.stdout)["outcome"] == "invalid"
    assert not warehouse.exists(), "the warehouse was touched"


def test_the_image_build_installs_from_the_committed_lock_or_refuses(project: Path):
    frozen = ferry(project, "packages", "install", "--frozen")
    assert frozen.returncode == ExitCode.OK, frozen.stderr
    assert "installed shop_expectations" in frozen.stdout and "shop_dates" in frozen.stdout
    assert ferry(project, "packages", "install", "--frozen").stdout == (
        "ferry: dbt packages: 2 declared, installed as package-lock.yml pins them\n"
    )

    # packages.yml changed, the lock not: refused, and the committed lock left as it was.
    lock = (project / "package-lock.yml").read_bytes()
    declared = project / "packages.yml"
    declared.write_text(declared.read_text().replace("revision: v1.0.0", "revision: v1.1.0"))
    stale = ferry(project, "packages", "install", "--frozen")
    assert stale.returncode == ExitCode.INVALID, stale.stderr
    assert stale.stderr.startswith("ferry packages install: package-lock.yml does not match")
    assert "`ferry packages update`" in stale.stderr
    assert (project / "package-lock.yml").read_bytes() == lock

    (project / "package-lock.yml").unlink()
    missing = ferry(project, "packages", "install", "--frozen")
    assert (
        missing.returncode == ExitCode.INVALID and "there is no package-lock.yml" in missing.stderr
    )

    # A folder that is no dbt project is bad input, not "no packages declared".
    elsewhere = ferry(project, "packages", "install", "--project-dir", str(project / "models"))
    assert elsewhere.returncode == ExitCode.INVALID, elsewhere.stdout + elsewhere.stderr
    assert elsewhere.stderr.startswith("ferry packages install: no dbt_project.yml in ")


def test_the_bake_installs_the_packages_and_parses_with_them(project: Path, tmp_path: Path):
    baked_dir = tmp_path / "baked"
    done = ferry(project, "release", "bake", "--baked-dir", str(baked_dir), "--target", "duckdb")
    assert done.returncode == ExitCode.OK, done.stderr
    assert "ferry: dbt packages: installed shop_expectations" in done.stdout
    manifest = json.loads((baked_dir / "local" / "duckdb" / "manifest.json").read_text())
    assert "macro.shop_dates.release" in manifest["macros"]
    assert (
        "macro.shop_expectations.test_expect_table_row_count_to_be_between" in (manifest["macros"])
    )
