"""profiles.yml that reads Prefect variables: rendered by prefect-dbt, for any project."""

from __future__ import annotations

import json

import pytest

from flows.exit_codes import ExitCode
from tests.conftest import FIXTURES, copy_project
from tests.e2e.conftest import run_ferry

pytestmark = pytest.mark.e2e


def test_a_profile_can_take_its_settings_from_prefect_variables(prefect_api, api, tmp_path):
    project = copy_project(FIXTURES / "other_project", tmp_path / "lighthouse")
    profiles = project / "profiles.yml"
    profiles.write_text(
        profiles.read_text().replace(
            "\"{{ env_var('LIGHTHOUSE_DB', 'lighthouse.duckdb') }}\"",
            '"{{ prefect.variables.lighthouse_db_path }}"',
        )
    )
    assert "prefect.variables" in profiles.read_text()
    database = tmp_path / "from-a-prefect-variable.duckdb"
    api.client.post(
        "/variables/", json={"name": "lighthouse_db_path", "value": str(database)}
    ).raise_for_status()

    proc = run_ferry(
        prefect_api,
        "run",
        "--project-dir",
        str(project),
        "--artifacts",
        str(tmp_path / "artifacts"),
        "--command",
        "seed",
        "--json",
        env={"FERRY_WORK_DIR": str(tmp_path / "runs")},
    )
    assert proc.returncode == ExitCode.OK, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert summary["outcome"] == "success" and summary["nodes_total"] == 2
    assert database.is_file(), "dbt did not use the path from the Prefect variable"
    assert "prefect.variables" in profiles.read_text(), "the project's profile was rewritten"
