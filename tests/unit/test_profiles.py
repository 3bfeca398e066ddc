"""profiles.yml checks, and the copy that builds into another schema (FERRY_TARGET_SCHEMA)."""

from __future__ import annotations

import pytest
import yaml

from flows.dbt.errors import InvalidDbtInput
from flows.dbt.profiles import DbtProject

PROFILES = """\
p:
  target: "{{ env_var('P_TARGET', 'dev') }}"
  outputs:
    dev:
      type: duckdb
      path: "{{ env_var('P_PATH', 'p.duckdb') }}"
      schema: main
    ci:
      type: postgres
      schema: "{{ env_var('P_SCHEMA') }}"
"""


@pytest.fixture
def project(tmp_path) -> DbtProject:
    (tmp_path / "dbt_project.yml").write_text("name: p\nprofile: p\n")
    (tmp_path / "profiles.yml").write_text(PROFILES)
    return DbtProject.load(tmp_path)


def test_the_target_is_checked_against_the_profile(project):
    assert project.targets == ("dev", "ci")
    assert project.check_target("ci") == "ci"
    with pytest.raises(InvalidDbtInput, match=r"'prod' is not defined.*dev, ci"):
        project.check_target("prod")


def test_another_schema_replaces_that_one_value_and_nothing_else(project):
    with project.rendered_profiles_dir("ci", "ci_pr_7") as profiles_dir:
        assert profiles_dir != project.profiles_dir
        copied = yaml.safe_load((profiles_dir / "profiles.yml").read_text())
    assert copied["p"]["outputs"]["ci"]["schema"] == "ci_pr_7"
    original = yaml.safe_load(PROFILES)
    original["p"]["outputs"]["ci"]["schema"] = "ci_pr_7"
    assert copied == original  # env_var() calls stay as written, for dbt to render
    assert not profiles_dir.exists()  # the copy lives only as long as the run
    with project.rendered_profiles_dir("ci") as untouched:
        assert untouched == project.profiles_dir


def test_another_schema_needs_a_target_the_profile_names(project):
    # The default target is templated, so ferry cannot know which output to change.
    with (
        pytest.raises(InvalidDbtInput, match="no default target; pass the target"),
        project.rendered_profiles_dir(None, "ci_pr_7"),
    ):
        pass


def test_the_default_target_is_checked_too(tmp_path):
    (tmp_path / "dbt_project.yml").write_text("name: p\nprofile: p\n")
    (tmp_path / "profiles.yml").write_text(
        "p:\n  target: nope\n  outputs:\n    dev: {type: duckdb}\n"
    )
    project = DbtProject.load(tmp_path)
    with pytest.raises(InvalidDbtInput, match=r"names 'nope' as its default target.*dev"):
        project.check_target(None)
    assert project.check_target("dev") == "dev"


@pytest.mark.parametrize(
    ("arrange", "message"),
    [
        (lambda d: None, "project directory .*missing does not exist"),
        (lambda d: d.write_text(""), "project directory .*missing is a file"),
        (
            lambda d: (d.mkdir(), (d / "dbt_project.yml").write_bytes(b"\xff\xfe")),
            "cannot read .*dbt_project.yml as a YAML text file",
        ),
        (
            lambda d: (
                d.mkdir(),
                (d / "dbt_project.yml").write_text("name: p\n"),
                (d / "profiles.yml").write_text("p:\n  target: dev\n"),
            ),
            "profile 'p' in .* defines no targets",
        ),
    ],
)
def test_paths_that_hold_no_project_say_what_is_wrong(tmp_path, arrange, message):
    arrange(tmp_path / "missing")
    with pytest.raises(InvalidDbtInput, match=message):
        DbtProject.load(tmp_path / "missing")


def test_a_profiles_dir_that_does_not_exist_is_named(project, tmp_path):
    with pytest.raises(InvalidDbtInput, match=r"profiles directory .*nowhere does not exist"):
        DbtProject.load(project.project_dir, tmp_path / "nowhere")
