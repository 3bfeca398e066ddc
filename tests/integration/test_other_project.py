"""ferry runs a dbt project that is not ours, unchanged: its own profile, seeds, snapshot, tags."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.run.owner import run
from flows.run.request import InvalidRunRequest, RunRequest
from flows.run.verdict import Outcome
from tests.conftest import FIXTURES, copy_project, make_settings

pytestmark = pytest.mark.integration


@pytest.fixture
def lighthouse(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("LIGHTHOUSE_DB", str(tmp_path / "lighthouse.duckdb"))
    return copy_project(FIXTURES / "other_project", tmp_path / "lighthouse")


def test_another_projects_build_with_its_own_profile_and_tags(lighthouse, tmp_path):
    settings = make_settings(lighthouse, tmp_path)
    summary = run(RunRequest.build(command="build"), settings).summary
    assert summary.outcome is Outcome.SUCCESS, summary.verdict
    assert summary.project == "lighthouse" and summary.target == "local"
    ran = {line.unique_id for line in summary.slowest}
    counts = summary.counts
    assert counts == {"pass": 6, "success": 6}, counts  # 2 seeds, 3 models, 1 snapshot, 6 tests
    assert "snapshot.lighthouse.keepers_snapshot" in ran or summary.nodes_total == 12
    stored = Path(summary.artifacts)
    assert json.loads((stored / "summary.json").read_text())["project"] == "lighthouse"

    hourly = run(RunRequest.build(command="run", select="tag:hourly"), settings).summary
    assert hourly.outcome is Outcome.SUCCESS and hourly.nodes_total == 2, hourly.verdict


def test_another_projects_failure_is_named_in_the_verdict(lighthouse, tmp_path):
    settings = make_settings(lighthouse, tmp_path)
    summary = run(
        RunRequest.build(command="build", vars={"break_lighthouse": True}), settings
    ).summary
    assert summary.outcome is Outcome.FAILED
    assert summary.verdict.startswith("1 of 12 nodes failed: model.lighthouse.keeper_hours (")
    assert "undefined_column" in summary.verdict
    assert summary.counts["skipped"] == 3  # keeper_hours' three tests


def test_indirect_selection_decides_which_tests_of_the_selection_run(lighthouse, tmp_path):
    settings = make_settings(lighthouse, tmp_path)
    assert run(RunRequest.build(command="seed"), settings).summary.outcome is Outcome.SUCCESS

    def tests_run(**given: object) -> set[str]:
        report = run(RunRequest.build(command="build", select="stg_keepers", **given), settings)
        assert report.summary.outcome is Outcome.SUCCESS, report.summary.verdict
        return {n.unique_id for n in report.nodes if n.resource_type == "test"}

    assert len(tests_run()) == 2  # dbt's default, eager: the model's own tests
    assert tests_run(indirect_selection="empty") == set()
    # the selection check (dbt ls) hears the flag too: with no test left, `test` runs nothing
    with pytest.raises(InvalidRunRequest, match="runs only test"):
        run(
            RunRequest.build(command="test", select="stg_keepers", indirect_selection="empty"),
            settings,
        )
