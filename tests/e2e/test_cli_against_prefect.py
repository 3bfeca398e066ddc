"""`ferry run` end to end: a real Prefect server, dbt on DuckDB, the UI's view of the run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.exit_codes import ExitCode
from tests.conftest import load_generator
from tests.e2e.conftest import run_ferry

pytestmark = pytest.mark.e2e


@pytest.fixture
def shop_ready(shop_project: Path, tmp_path: Path) -> dict[str, str]:
    db = tmp_path / "shop.duckdb"
    load_generator(shop_project).main(["--target", "duckdb", "--duckdb-path", str(db)])
    return {"FERRY_DUCKDB_PATH": str(db)}


def summary_of(stdout: str) -> dict:
    """`--json` prints the summary alone on stdout; dbt's and Prefect's output go to stderr."""
    return json.loads(stdout)


def ferry_run(prefect_api, project, tmp_path, env, *extra):
    return run_ferry(
        prefect_api,
        "run",
        "--project-dir",
        str(project),
        "--profiles-dir",
        str(project),
        "--artifacts",
        str(tmp_path / "artifacts"),
        "--json",
        *extra,
        env={**env, "FERRY_WORK_DIR": str(tmp_path / "runs")},
    )


def test_a_build_shows_every_node_as_a_task_run(
    prefect_api, api, shop_project, shop_ready, tmp_path
):
    # FERRY_METRICS as in an ECS task: the EMF lines go where dbt's console goes (stderr under
    # --json, whose stdout holds the summary alone).
    proc = ferry_run(prefect_api, shop_project, tmp_path, {**shop_ready, "FERRY_METRICS": "1"})
    assert proc.returncode == ExitCode.OK, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "nanobind" not in proc.stderr, proc.stderr[-3000:]
    summary = summary_of(proc.stdout)
    assert summary["outcome"] == "warnings"
    [emf] = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith('{"_aws"')]
    assert (emf["RunId"], emf["FlowRunId"]) == (summary["run_id"], summary["flow_run_id"])
    assert (emf["RunSucceeded"], emf["NodesWarned"], emf["Deployment"]) == (1, 1, "ad-hoc")

    flow_run = api.flow_run(summary["flow_run_id"])
    assert flow_run["state_type"] == "COMPLETED"
    assert flow_run["state"]["message"] == summary["verdict"]

    runs = api.wait_for_task_runs(summary["flow_run_id"], summary["nodes_total"])
    assert len(runs) == summary["nodes_total"]
    by_name = {r["name"]: r for r in runs}
    results = json.loads((Path(summary["artifacts"]) / "run_results.json").read_text())
    for result in results["results"]:
        run = by_name[result["unique_id"]]
        expected = {"success": "Completed", "pass": "Completed", "warn": "Warned"}[result["status"]]
        assert run["state_name"] == expected, (result["unique_id"], run["state_name"])
        assert run["start_time"] and run["end_time"] and run["total_run_time"] >= 0
    warned = [r for r in runs if r["state_name"] == "Warned"]
    assert warned and all(r["state"]["message"] for r in warned)

    [event] = api.events(summary["flow_run_id"])  # one outcome event per run, for automations
    assert event["event"] == "ferry.dbt.run.warned"
    assert event["payload"]["verdict"] == summary["verdict"]
    assert event["payload"]["artifacts"] == summary["artifacts"]
    assert event["payload"]["warned"][0]["unique_id"] == summary["warned"][0]["unique_id"]

    [report] = api.artifacts(summary["flow_run_id"])
    assert report["type"] == "markdown" and summary["verdict"] in report["data"]
    assert report["data"].count("| `") == summary["nodes_total"]


def test_a_failed_node_fails_the_flow_and_its_task_run(
    prefect_api, api, shop_project, shop_ready, tmp_path
):
    proc = ferry_run(
        prefect_api,
        shop_project,
        tmp_path,
        shop_ready,
        "--vars",
        '{"fail_models": ["int_orders_enriched"]}',
    )
    assert proc.returncode == ExitCode.FAILED, proc.stderr[-3000:]
    summary = summary_of(proc.stdout)
    flow_run = api.flow_run(summary["flow_run_id"])
    assert flow_run["state_type"] == "FAILED"
    message = flow_run["state"]["message"]
    assert " nodes failed: model.shop.int_orders_enriched (" in message
    runs = api.wait_for_task_runs(summary["flow_run_id"], summary["nodes_total"])
    by_name = {r["name"]: r for r in runs}
    failed = by_name["model.shop.int_orders_enriched"]
    assert failed["state_type"] == "FAILED"
    assert "ferry_injected_failure__int_orders_enriched" in failed["state"]["message"]
    assert by_name["model.shop.fct_orders"]["state_name"] == "Skipped"
    assert Path(summary["artifacts"], "run_results.json").is_file()
    [event] = api.events(summary["flow_run_id"])
    assert event["event"] == "ferry.dbt.run.failed"
    assert event["payload"]["failed"][0]["unique_id"] == "model.shop.int_orders_enriched"


def test_a_run_past_its_timeout_ends_timed_out_with_exit_1(
    prefect_api, api, shop_project, shop_ready, tmp_path
):
    proc = ferry_run(
        prefect_api, shop_project, tmp_path, {**shop_ready, "FERRY_FLOW_TIMEOUT_S": "2"}
    )
    assert proc.returncode == ExitCode.FAILED, proc.stdout[-2000:] + proc.stderr[-2000:]
    out = summary_of(proc.stdout)
    assert out["verdict"].startswith("timed out after 2 s (FERRY_FLOW_TIMEOUT_S)")
    flow_run = api.flow_run(out["flow_run_id"])
    assert flow_run["state_name"] == "TimedOut" and flow_run["state_type"] == "FAILED"
    # nothing is lost: the limit (2 s) fires in the parse or in dbt, and the run is stored
    assert json.loads(Path(out["artifacts"], "summary.json").read_text())["timed_out"]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--target", "nowhere"), "target 'nowhere' is not defined"),
        (("--select", "no_such_model"), "matches no node"),
        (("--vars", "{not json"), "vars"),
        (("--command", "deploy"), "command"),
    ],
)
def test_bad_input_exits_2_with_a_failed_flow_run(
    prefect_api, api, shop_project, tmp_path, args, message
):
    proc = ferry_run(prefect_api, shop_project, tmp_path, {}, *args)
    assert proc.returncode == ExitCode.INVALID, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert message in proc.stderr
    # a clean terminal: no traceback, and no "nanobind: leaked ..." from DuckDB at exit
    assert "Traceback" not in proc.stderr and "nanobind" not in proc.stderr, proc.stderr[-3000:]
    out = summary_of(proc.stdout)
    flow_run = api.flow_run(out["flow_run_id"])
    assert flow_run["state_type"] == "FAILED"
    assert message in flow_run["state"]["message"]
    assert not (tmp_path / "artifacts").exists()
