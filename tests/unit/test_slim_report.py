"""The Slim CI comment says what was built and what failed, from the run's own files."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from flows.ci.slim_report import MARKER, load_run, render
from flows.exit_codes import ExitCode
from flows.run.summary import RunSummary
from flows.run.verdict import Outcome, RefusedRun
from tests.stored_runs import SUMMARY_V1, stored_run

SUMMARY = stored_run(
    outcome="failed",
    verdict="1 of 3 nodes failed: model.shop.fct_orders (Database Error: boom)",
    request={"command": "build", "select": ["state:modified+"], "defer": True},
    counts={"error": 1, "success": 1, "skipped": 1},
    started_at=datetime(2026, 11, 1, 6, 0, tzinfo=UTC),
    duration_s=12.4,
    git_sha="0123456789abcdef0123",
)


def summary(**fields) -> RunSummary:
    return SUMMARY.model_copy(update=fields)


def as_json(run: RunSummary, **fields) -> str:
    return run.model_copy(update=fields).model_dump_json()


RESULTS = [
    {"unique_id": "model.shop.dim_customers", "status": "success", "execution_time": 0.5},
    {"unique_id": "test.shop.unique_fct_orders", "status": "skipped", "execution_time": 0},
    {
        "unique_id": "model.shop.fct_orders",
        "status": "error",
        "execution_time": 1.25,
        "message": "Database Error: boom | more",
    },
]


def test_the_comment_names_failures_first_and_the_schema_and_state():
    body = render(SUMMARY, RESULTS, schema="ci_pr_7", run_url="https://example.test/run/1")
    assert body.startswith(MARKER)
    assert "❌ Slim CI: 1 of 3 nodes failed: model.shop.fct_orders" in body
    assert "`dbt build --select state:modified+ --defer` into schema `ci_pr_7`" in body
    assert "compared with `prod` state" in body and "commit `0123456789ab`" in body
    rows = [line for line in body.splitlines() if line.startswith("| `")]
    assert [r.split("`")[1] for r in rows] == [
        "model.shop.fct_orders",
        "test.shop.unique_fct_orders",
        "model.shop.dim_customers",
    ]
    assert "Database Error: boom / more" in rows[0]  # a pipe would break the table
    assert "(https://example.test/run/1)" in body


def test_a_pull_request_that_changes_no_node_says_so():
    body = render(summary(outcome=Outcome.SUCCESS, verdict="dbt build ran no nodes"), [])
    assert "✅" in body and "nothing in this pull request changes the dbt project" in body


def test_a_run_that_failed_before_any_node_does_not_claim_nothing_changed():
    body = render(summary(verdict="dbt build failed: IO Error: cannot open the database"), [])
    assert "❌ Slim CI: dbt build failed: IO Error" in body
    assert "dbt stopped before any node ran" in body and "nothing in this pull" not in body


def test_long_runs_are_cut_with_a_count(tmp_path):
    results = [
        {"unique_id": f"model.p.m{i:03}", "status": "success", "execution_time": 0.1}
        for i in range(55)
    ]
    assert "| and 15 more |" in render(summary(outcome=Outcome.SUCCESS), results)


def test_a_run_is_read_from_its_folder_or_from_the_cli_json(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "summary.json").write_text(SUMMARY.model_dump_json())
    (folder / "run_results.json").write_text(json.dumps({"results": RESULTS}))
    cli_json = tmp_path / "slim-ci.json"
    cli_json.write_text(as_json(SUMMARY, artifacts=str(folder)))
    for source in (folder, folder / "summary.json", cli_json):
        run = load_run(source)
        assert run.summary == SUMMARY.model_copy(update={"artifacts": run.summary.artifacts})
        assert len(run.results) == 3 and run.folder == folder


def test_a_summary_an_older_ferry_wrote_is_read_and_commented(tmp_path):
    """summary.json of schema 1 (no schema_version, no deployment), as stored before."""
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "summary.json").write_bytes(SUMMARY_V1.read_bytes())
    run = load_run(folder)
    assert isinstance(run.summary, RunSummary) and run.summary.schema_version == 2
    body = render(run.summary, run.results)
    assert "❌ Slim CI: 6 of 104 nodes failed" in body
    assert "`dbt build --select tag:daily --exclude tag:lookup`" in body


def test_a_refused_run_is_commented_with_its_reason(tmp_path):
    """`ferry run --json` prints only the verdict of a request refused before dbt started."""
    refused = tmp_path / "slim-ci.json"
    refused.write_text(json.dumps({"outcome": "invalid", "verdict": "Invalid input: no"}))
    run = load_run(refused)
    assert run.summary == RefusedRun(outcome="invalid", verdict="Invalid input: no")
    body = render(run.summary, run.results, run_url="https://example.test/run/1")
    assert body.startswith(MARKER) and "⛔ Slim CI: Invalid input: no" in body
    assert "nothing was built" in body and "(https://example.test/run/1)" in body


def test_the_comment_orders_nodes_as_every_report_does():
    """One order for every report (flows.dbt.nodes): a partial success is a failure too."""
    results = [
        {"unique_id": "model.shop.a", "status": "success", "execution_time": 1},
        {"unique_id": "model.shop.b", "status": "warn", "execution_time": 1},
        {"unique_id": "model.shop.c", "status": "partial success", "execution_time": 1},
    ]
    body = render(SUMMARY, results)
    rows = [line.split("`")[1] for line in body.splitlines() if line.startswith("| `")]
    assert rows == ["model.shop.c", "model.shop.b", "model.shop.a"]


def test_the_comment_says_where_the_docs_are_and_goes_out_when_they_are_not(
    tmp_path, monkeypatch, capsys
):
    """`ferry ci report --docs`: a link as given; a docs run's page by its path in the
    artifacts; a docs run that failed, was refused or wrote nothing: said so, still exit 0."""
    from flows.cli import main

    monkeypatch.chdir(tmp_path)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "summary.json").write_text(SUMMARY.model_dump_json())
    docs_run = tmp_path / "ci" / "docs-run"
    (docs_run / "docs").mkdir(parents=True)
    (docs_run / "docs" / "index.html").write_text("<html>shop</html>")
    (docs_run / "summary.json").write_text(as_json(SUMMARY, artifacts=str(docs_run)))
    docs_json = tmp_path / "slim-ci-docs.json"
    docs_json.write_text(as_json(SUMMARY, artifacts=str(docs_run)))
    empty = tmp_path / "empty.json"
    empty.write_text("")
    refused = tmp_path / "refused.json"
    refused.write_text(json.dumps({"outcome": "invalid", "verdict": "no"}))
    expected = {
        "https://docs.example/pr-7": "[dbt docs of this pull request](https://docs.example/pr-7)",
        str(docs_json): "dbt docs of this pull request: `ci/docs-run/docs/index.html` in the "
        "workflow run's artifacts",
        str(empty): "dbt docs of this pull request: not generated",
        str(refused): "dbt docs of this pull request: not generated",
        str(tmp_path / "missing.json"): "dbt docs of this pull request: not generated",
    }
    for docs, line in expected.items():
        assert main(["ci", "report", str(run_dir), "--docs", docs]) == ExitCode.OK
        assert line in capsys.readouterr().out, docs
