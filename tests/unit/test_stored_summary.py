"""A run's stored summary (summary.json) read back typed, whichever ferry wrote it."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from flows.dbt.nodes import NodeStatus
from flows.run.request import RunRequest
from flows.run.summary import AD_HOC, NOT_RECORDED, SCHEMA_VERSION, RunSummary, summarize
from flows.run.verdict import Outcome, judge
from tests.stored_runs import SUMMARY_V1

T0 = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)


def _new(**given) -> RunSummary:
    request = RunRequest.build(select="tag:daily", exclude="tag:lookup")
    return summarize(
        run_id="r1",
        flow_run_id="f1",
        project="shop",
        env="prod",
        request=request,
        target="duckdb",
        nodes=[],
        verdict=judge(request, [], dbt_ok=True, error=None),
        started_at=T0,
        finished_at=T0,
        **given,
    )


def test_a_summary_of_schema_1_reads_with_its_deployment_not_recorded():
    """A real summary.json stored before summaries were versioned: no schema_version and no
    deployment. It reads whole; its deployment is "-" (not known), never "ad-hoc"."""
    raw = SUMMARY_V1.read_bytes()
    assert "schema_version" not in json.loads(raw) and "deployment" not in json.loads(raw)
    old = RunSummary.read(raw)
    assert (old.schema_version, old.deployment) == (SCHEMA_VERSION, NOT_RECORDED)
    assert old.outcome is Outcome.FAILED and old.nodes_total == 104 and len(old.failed) == 6
    assert old.failed[0].status is NodeStatus.ERROR and old.failed[0].resource_type == "test"
    assert old.request.describe() == "build --select tag:daily --exclude tag:lookup"
    assert old.started_at == datetime(2026, 12, 6, 16, 30, 56, 373920, tzinfo=UTC)
    assert RunSummary.read(json.loads(raw)) == old  # from a parsed document too


def test_a_new_summary_reads_back_as_written():
    written = _new(deployment="dbt/build-prod")
    stored = json.loads(written.model_dump_json())
    assert stored["schema_version"] == SCHEMA_VERSION and stored["deployment"] == "dbt/build-prod"
    assert RunSummary.read(written.model_dump_json().encode()) == written
    assert RunSummary.read(stored) == written


def test_a_run_without_a_deployment_is_ad_hoc():
    assert _new().deployment == AD_HOC == "ad-hoc"


def test_the_markdown_report_names_the_deployment_and_the_request():
    from flows.run.summary import markdown_report

    report = markdown_report(_new(deployment="dbt/build-prod"), [])
    assert report.startswith("## dbt build --select tag:daily --exclude tag:lookup: success")
    assert "deployment `dbt/build-prod`" in report


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        (b"{not json", "Expecting property name"),
        (b"[]", "a run summary is a JSON object, not list"),
        (b'{"schema_version": 99}', "schema version 99 is not one this ferry reads"),
        (b'{"schema_version": 0}', "schema version 0 is not one this ferry reads"),
        (b'{"outcome": "invalid", "verdict": "no"}', "validation error"),
    ],
)
def test_what_is_no_summary_this_ferry_reads_is_refused(document, reason):
    with pytest.raises(ValueError, match=reason):
        RunSummary.read(document)
