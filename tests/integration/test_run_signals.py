"""A run compared with its environment's history, on real dbt: a model slowed on purpose is a
timing regression (DuckDB), rows far from their history and a source delivering nothing are
volume anomalies (PostgreSQL, whose adapter reports rows). The history lives in the artifact
store, so each run here starts with no local cache, as in an ephemeral container."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import boto3
import duckdb
import psycopg2
import pytest
from moto import mock_aws

from flows import cli
from flows.artifacts import open_store
from flows.exit_codes import ExitCode
from flows.history.query import RUNS_TABLE
from flows.history.store import download
from flows.run.owner import RunReport, run
from flows.run.request import RunRequest
from flows.run.summary import RunSummary, markdown_report
from flows.run.verdict import Outcome
from tests.conftest import load_generator, make_settings

pytestmark = pytest.mark.integration


def _rows(settings, request) -> tuple[dict[str, int], list]:
    report = run(request, settings)
    assert report.summary.outcome is Outcome.SUCCESS, report.summary.verdict
    return {n.unique_id: n.rows for n in report.nodes if n.rows is not None}, list(
        report.summary.anomalies
    )


def test_rows_far_from_history_and_an_empty_delivery_are_volume_anomalies(
    shop_duckdb, tmp_path, pg_schema
):
    generator = load_generator(shop_duckdb)
    settings = make_settings(shop_duckdb, tmp_path, history_min_runs=3)
    request = RunRequest.build(
        command="build",
        select=["+fct_orders"],
        exclude=["resource_type:test", "resource_type:unit_test"],
        target="postgres",
    )
    assert generator.main(["--target", "postgres"]) == 0
    for _ in range(3):  # the usual day: the same load, the same counts
        rows, anomalies = _rows(settings, request)
        assert anomalies == []
    usual = rows["model.shop.fct_orders"]
    assert usual > 0

    assert generator.main(["--target", "postgres", "--scale", "10"]) == 0  # a 10x delivery
    rows, anomalies = _rows(settings, request)
    flagged = {a.unique_id: a for a in anomalies}
    assert "model.shop.fct_orders" in flagged, anomalies
    big = flagged["model.shop.fct_orders"]
    assert big.kind == "unusual" and big.rows == rows["model.shop.fct_orders"] > 5 * usual
    assert big.usual_rows == usual and big.runs == 3

    # The loader delivered nothing: every raw table emptied.
    dsn = "host=127.0.0.1 port=5432 user=postgres dbname=test"
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        for table in ("orders", "order_items", "payments"):
            cur.execute(f"truncate {pg_schema}_raw.{table}")
    rows, anomalies = _rows(settings, request)
    empty = {a.unique_id: a for a in anomalies}["model.shop.fct_orders"]
    assert empty.kind == "nothing_new" and empty.rows == 0
    assert "did its sources deliver nothing new?" in empty.describe()


def test_a_stale_source_is_news_once_per_stale_period(shop_duckdb, tmp_path):
    """Hourly freshness checks of a source that stays stale alert once; fresh again, then
    stale again, is a new period."""
    generator = load_generator(shop_duckdb)
    duckdb_path = str(tmp_path / "shop.duckdb")  # shop_duckdb's file
    settings = make_settings(shop_duckdb, tmp_path)
    freshness = RunRequest.build(command="source freshness")
    today = datetime.now(UTC).date()

    def load(days_ago: int) -> None:
        as_of = (today - timedelta(days=days_ago)).isoformat()
        argv = ["--target", "duckdb", "--duckdb-path", duckdb_path, "--as-of", as_of]
        assert generator.main(argv) == 0

    def check() -> RunSummary:
        return run(freshness, settings).summary

    load(days_ago=2)  # past every source's warn_after, short of error_after
    first = check()
    assert first.outcome is Outcome.WARNINGS
    stale = sorted(n.unique_id for n in first.warned)
    assert stale and first.newly_stale == stale
    again = check()  # the next hour, nothing loaded: already alerted
    assert again.outcome is Outcome.WARNINGS and again.newly_stale == []

    load(days_ago=0)
    fresh = check()
    assert fresh.outcome is Outcome.SUCCESS and fresh.newly_stale == []
    load(days_ago=2)
    assert check().newly_stale == stale  # a new stale period


@mock_aws
def test_a_model_slowed_on_purpose_is_the_one_timing_regression_each_fresh_container_sees(
    shop_duckdb, tmp_path
):
    """Each run in a work folder of its own (an ephemeral ECS task): the history it compares
    with comes from the store (S3) alone. Then `ferry report` draws the same runs from S3."""
    boto3.client("s3").create_bucket(Bucket="ferry-artifacts")
    untested = ["resource_type:test", "resource_type:unit_test"]

    def in_a_fresh_container(n: int, **vars: object) -> RunReport:
        settings = make_settings(
            shop_duckdb,
            tmp_path,
            artifacts="s3://ferry-artifacts/dbt",
            work_dir=tmp_path / f"container-{n}",
            history_min_runs=2,
            regression_floor_s=1.0,
            regression_factor=2.0,
        )
        request = RunRequest.build(
            command="build", select=["+dim_customers"], exclude=untested, vars=vars or None
        )
        return run(request, settings)

    for n in (1, 2):
        usual = in_a_fresh_container(n).summary
        assert usual.outcome is Outcome.SUCCESS and usual.regressions == []
    report = in_a_fresh_container(3, slow_models=["dim_customers"], slow_seconds=2)
    slowed = report.summary

    assert slowed.outcome is Outcome.SUCCESS
    # dim_customers was slowed on purpose; on a busy machine another model may be slow too.
    regression = next(r for r in slowed.regressions if r.unique_id == "model.shop.dim_customers")
    assert regression.s >= 2.0 and regression.usual_s < 1.0 and regression.runs == 2
    assert slowed.anomalies == []  # DuckDB reports no rows: nothing to judge
    markdown = markdown_report(slowed, report.nodes)
    assert "**Timing regressions**" in markdown and regression.describe() in markdown
    assert "s3.console.aws.amazon.com" in markdown  # the report's link

    # The store keeps the history (3 runs) and the refreshed report; summary.json names both.
    s3 = boto3.client("s3")
    history = tmp_path / "history"
    assert download(open_store("s3://ferry-artifacts/dbt"), "shop", "test", history).found
    runs_table = history / RUNS_TABLE
    assert duckdb.sql(f"select count(*) from '{runs_table}'").fetchall() == [(3,)]
    columns = [c[0] for c in duckdb.sql(f"describe from '{runs_table}'").fetchall()]
    assert "filename" not in columns  # no path of the machine that wrote it
    assert slowed.report == "s3://ferry-artifacts/dbt/shop/test/report/index.html"
    page = s3.get_object(Bucket="ferry-artifacts", Key="dbt/shop/test/report/index.html")
    drawn = page["Body"].read()
    assert b'id="plot-durations"' in drawn and b"model.shop.dim_customers" in drawn
    prefix = (slowed.artifacts or "").removeprefix("s3://ferry-artifacts/")
    stored = RunSummary.read(
        s3.get_object(Bucket="ferry-artifacts", Key=f"{prefix}/summary.json")["Body"].read()
    )
    assert stored.regressions == slowed.regressions  # as the run found them, in its order
    assert stored.report == slowed.report and stored.deployment == "ad-hoc"

    out = tmp_path / "report.html"
    argv = ["report", "--env", "test", "--artifacts", "s3://ferry-artifacts/dbt"]
    argv += ["--cache-dir", str(tmp_path / "cache"), "--out", str(out)]
    assert cli.main(argv) == ExitCode.OK
    drawn_again = out.read_text()
    assert "plot-durations" in drawn_again and "model.shop.dim_customers" in drawn_again
