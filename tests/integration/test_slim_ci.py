"""Slim CI on PostgreSQL, as the pull-request workflow runs it: production builds and keeps its
manifest; a pull request changing one model builds that model and its children only, into a
schema of its own, reading its unchanged parents from production (--defer); clean-up drops the
pull request's schema and nothing else."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import psycopg2
import pytest

from flows.ci.pr_schemas import pr_schema
from flows.cli import main
from flows.exit_codes import ExitCode
from flows.run.owner import run
from flows.run.request import InvalidRunRequest, RunRequest
from flows.run.verdict import Outcome
from tests.conftest import load_generator, make_settings
from tests.stored_runs import stored_run

pytestmark = pytest.mark.integration

DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test"


def columns(schema: str, table: str) -> list[str]:
    with psycopg2.connect(DSN) as conn, conn.cursor() as cur:
        cur.execute(
            "select column_name from information_schema.columns "
            "where table_schema = %s and table_name = %s order by ordinal_position",
            (schema, table),
        )
        return [name for (name,) in cur.fetchall()]


def tables(schema: str) -> set[str]:
    with psycopg2.connect(DSN) as conn, conn.cursor() as cur:
        cur.execute(
            "select table_name from information_schema.tables where table_schema = %s", (schema,)
        )
        return {name for (name,) in cur.fetchall()}


def test_a_pull_request_builds_what_it_changed_and_defers_the_rest(
    shop_project, tmp_path, pg_schema, monkeypatch
):
    assert load_generator(shop_project).main(["--target", "postgres"]) == 0
    store = str(tmp_path / "store")
    prod = make_settings(shop_project, tmp_path, env="prod", artifacts=store)
    built = run(RunRequest.build(command="build", target="postgres"), prod).summary
    assert built.outcome is Outcome.WARNINGS and not built.failed, built.verdict

    ci_schema = pr_schema(5, prefix=pg_schema)
    ci = make_settings(
        shop_project,
        tmp_path,
        env="ci-pr-5",
        artifacts=str(tmp_path / "ci"),
        state_from=store,
        target_schema=ci_schema,
    )
    slim = {
        "command": "build",
        "select": "state:modified+",
        "defer": True,
        "target": "postgres",
        "vars": {"raw_schema": f"{pg_schema}_raw"},  # raw data is where production reads it
    }

    unchanged = run(RunRequest.build(**slim), ci)
    assert unchanged.summary.outcome is Outcome.SUCCESS, unchanged.summary.verdict
    assert unchanged.nodes == []
    assert "differs from state" in unchanged.summary.verdict

    model = shop_project / "models" / "marts" / "marketing" / "fct_sessions.sql"
    model.write_text(
        model.read_text().replace("select * from final", "select *, 1 as pr_column from final")
    )
    report = run(RunRequest.build(**slim), ci)
    summary = report.summary
    assert summary.outcome is Outcome.SUCCESS, summary.verdict
    ran = {n.unique_id for n in report.nodes}
    assert "model.shop.fct_sessions" in ran
    assert all("fct_sessions" in uid for uid in ran), ran  # the model and its tests, no more
    assert len(ran) < built.nodes_total / 5
    # Built in the pull request's schema from production's unchanged parents...
    assert tables(ci_schema) == {"fct_sessions"}
    assert "pr_column" in columns(ci_schema, "fct_sessions")
    # ...and production is untouched.
    assert "pr_column" not in columns(pg_schema, "fct_sessions")

    monkeypatch.setenv("FERRY_WORK_DIR", str(tmp_path / "work"))
    monkeypatch.setenv("FERRY_PROJECT_DIR", str(shop_project))
    monkeypatch.setenv("FERRY_PROFILES_DIR", str(shop_project))
    argv = ["ci", "schema", "drop", "--pr", "5", "--prefix", pg_schema, "--target", "postgres"]
    assert main(argv) == ExitCode.OK
    assert tables(ci_schema) == set()
    assert "fct_sessions" in tables(pg_schema)


def test_deferring_without_production_state_is_refused_before_dbt_starts(shop_project, tmp_path):
    ci = make_settings(
        shop_project, tmp_path, env="ci-pr-6", state_from=str(tmp_path / "empty-store")
    )
    with pytest.raises(InvalidRunRequest, match=r"no state manifest of project 'shop'.*'prod'"):
        run(RunRequest.build(command="build", select="state:modified+", defer=True), ci)
    assert not (tmp_path / "shop.duckdb").exists()


def test_a_bad_target_schema_is_refused(shop_project, tmp_path):
    with pytest.raises(ValueError, match="FERRY_TARGET_SCHEMA"):
        make_settings(shop_project, tmp_path, target_schema="ci-pr-5; drop")


def test_the_ci_run_prints_only_its_summary_on_stdout(shop_duckdb, tmp_path):
    """pr.yml redirects `ferry run --no-prefect --json` into the file the comment is made from."""
    ferry = [
        str(Path(sys.executable).with_name("ferry")), "run", "--no-prefect", "--json",
        "--project-dir", str(shop_duckdb), "--profiles-dir", str(shop_duckdb),
        "--artifacts", str(tmp_path / "ci"),
    ]  # fmt: skip
    done = subprocess.run(
        [*ferry, "--command", "seed"], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == ExitCode.OK, done.stderr[-2000:]
    summary = json.loads(done.stdout)  # the whole of stdout: nothing else is printed there
    assert summary["outcome"] == "success" and summary["nodes_total"] >= 2
    assert "Running with dbt=" in done.stderr  # dbt's own log still reaches the job's log

    refused = subprocess.run(
        [*ferry, "--select", "nope"], capture_output=True, text=True, timeout=300, check=False
    )
    assert refused.returncode == ExitCode.INVALID
    assert json.loads(refused.stdout)["outcome"] == "invalid"


def test_the_report_refuses_what_is_no_run_and_fails_when_it_cannot_write(tmp_path, capsys):
    """`ferry ci report`: a run folder that is missing or holds no summary is bad input (2); the
    comment not written is a failure (1)."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    started = datetime(2026, 11, 1, tzinfo=UTC)
    summary = stored_run(verdict="2 nodes passed", request={"select": ["a"]}, started_at=started)
    (run_dir / "summary.json").write_text(summary.model_dump_json())
    out = tmp_path / "slim-ci.md"
    assert main(["ci", "report", str(run_dir), "--out", str(out)]) == ExitCode.OK
    assert "2 nodes passed" in out.read_text()

    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "list.json").write_text("[]")
    for path in (tmp_path / "nope", tmp_path / "broken.json", tmp_path / "list.json"):
        assert main(["ci", "report", str(path)]) == ExitCode.INVALID
        err = capsys.readouterr().err
        assert err.startswith(f"ferry ci report: {path} holds no run summary"), err

    assert main(["ci", "report", str(run_dir), "--out", "/dev/full"]) == ExitCode.FAILED
    err = capsys.readouterr().err
    assert err.startswith("ferry ci report: cannot write /dev/full"), err
