"""Planning a run reads and refuses; it never changes anything."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from flows.artifacts import RunLayout, open_store, store_run
from flows.dbt.commands import DbtCommand
from flows.run.plan import plan
from flows.run.request import InvalidRunRequest, RunRequest
from tests.conftest import make_settings


def test_a_refused_retry_leaves_no_folder_and_every_earlier_artifact(shop_project, tmp_path):
    earlier = shop_project / "target" / "run_results.json"
    earlier.parent.mkdir()
    earlier.write_text("{}")
    settings = make_settings(shop_project, tmp_path)
    with pytest.raises(InvalidRunRequest, match="no failed run of project 'shop'"):
        plan(RunRequest.build(command="retry"), settings)
    assert earlier.read_text() == "{}"
    assert not settings.run.work_dir.exists() and not (tmp_path / "artifacts").exists()


def test_a_missing_state_is_refused_before_anything_is_written(shop_project, tmp_path):
    settings = make_settings(shop_project, tmp_path)
    with pytest.raises(InvalidRunRequest, match="no state manifest of project 'shop'"):
        plan(RunRequest.build(select="state:modified+", defer=True), settings)
    assert not settings.run.work_dir.exists()


def test_the_plan_names_the_target_and_where_the_run_goes(shop_project, tmp_path):
    settings = make_settings(shop_project, tmp_path)
    planned = plan(RunRequest.build(command="seed"), settings, run_id="r1")
    # dbt hashes whether --target was given into its parse state: the plan always names it
    assert planned.request.target == planned.target == "duckdb"
    assert planned.request.command is DbtCommand.SEED
    assert planned.run_dir == (tmp_path / "runs" / "r1").resolve()
    assert planned.layout.run_prefix.startswith("shop/test/runs/")
    assert not planned.run_dir.exists()


def test_dbts_refusal_of_the_profile_is_the_runs_refusal(shop_project, tmp_path):
    """flows/dbt raises its own type (InvalidDbtInput); a run raises InvalidRunRequest, exit 2."""
    from flows.dbt.errors import InvalidDbtInput

    settings = make_settings(shop_project, tmp_path)
    with pytest.raises(InvalidRunRequest, match="target 'nope' is not defined") as raised:
        plan(RunRequest.build(target="nope"), settings)
    assert isinstance(raised.value.__cause__, InvalidDbtInput)


def _store_failed_run(settings, tmp_path, run_id: str, publish: str) -> None:
    """A failed build stored as a run stores it: its files, then its pointers (flows/run/store)."""
    local = tmp_path / "stored" / run_id
    local.mkdir(parents=True)
    files = {name: local / name for name in ("manifest.json", "run_results.json")}
    for path in files.values():
        path.write_text("{}")
    store_run(
        open_store(settings.store.artifacts),
        RunLayout("shop", settings.run.env, run_id, datetime.now(UTC)),
        files,
        local,
        failed=True,
        update_state=False,
        pointer={"run_id": run_id, "command": "build", "publish": publish, "outcome": "failed"},
    )


def test_a_failed_blue_green_run_is_not_retried_but_built_again(shop_project, tmp_path):
    settings = make_settings(shop_project, tmp_path)
    _store_failed_run(settings, tmp_path, "run-direct", "direct")
    _store_failed_run(settings, tmp_path, "run-bg", "blue-green")  # the latest failure
    refusal = "run run-bg was a blue-green build: run the build again"
    with pytest.raises(InvalidRunRequest, match=refusal):
        plan(RunRequest.build(command="retry"), settings)
    with pytest.raises(InvalidRunRequest, match=refusal):
        plan(RunRequest.build(command="retry", retry_of="run-bg"), settings)
    assert not settings.run.work_dir.exists()
    # a direct run that failed is retried as before
    planned = plan(RunRequest.build(command="retry", retry_of="run-direct"), settings)
    assert planned.request.retry_of == "run-direct"
