"""The alerts on a run's history findings and on newly stale sources, as they read: the shipped
templates rendered by the Prefect server's own engine against the events ferry emits (captured
from emit_findings and emit_outcome, not written by hand)."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import pytest
from prefect.server.events.schemas.events import ReceivedEvent

from flows.notify import automations
from flows.prefect import events
from tests.unit.test_automations_config import RELATED, SHIPPED, by_name, notification
from tests.unit.test_run_findings_events import (
    ANOMALIES,
    CUSTOMERS,
    ORDERS,
    REGRESSIONS,
    build_with,
    freshness_warned,
)
from tests.unit.test_run_findings_events import emitted as emitted  # the capturing fixture

REPORT = "s3://ferry-artifacts/dbt/shop/prod/report/index.html"


@pytest.fixture(scope="module")
def shipped() -> automations.AlertsSpec:
    return automations.load(SHIPPED)


def received(sent: dict[str, Any]) -> ReceivedEvent:
    """An emitted event as the server hands it to an automation (related to its deployment)."""
    return ReceivedEvent(
        occurred="2026-11-01T05:40:00Z",
        event=sent["event"],
        resource=sent["resource"],
        related=RELATED,
        payload=sent["payload"],
        id=uuid4(),
    )


def test_a_timing_regression_names_each_model_with_its_time_and_usual_time(shipped, emitted):
    events.emit_findings(build_with(regressions=REGRESSIONS))
    [sent] = emitted

    subject, body = notification(
        by_name(shipped, "ferry - dbt timing regression"), event=received(sent)
    )

    assert subject == "[ferry prod] slower than usual: 2 node(s) in build-prod"
    assert body.startswith("2 node(s) slower than usual in dbt build\n")
    assert "- model.shop.fct_orders: 42.5 s, usually 10.0 s (median of 20 runs)\n" in body
    assert "- model.shop.dim_customers: 31.0 s, usually 12.25 s (median of 7 runs)\n" in body
    assert "Deployment:  build-prod\nEnvironment: prod\n" in body
    assert f"Report:    {REPORT}" in body


def test_a_volume_anomaly_lists_each_anomalys_text(shipped, emitted):
    events.emit_findings(build_with(anomalies=ANOMALIES))
    [sent] = emitted

    subject, body = notification(
        by_name(shipped, "ferry - dbt volume anomaly"), event=received(sent)
    )

    assert subject == "[ferry prod] unusual row counts: 1 model(s) in build-prod"
    assert body.startswith("1 node(s) with unusual row counts in dbt build\n")
    assert (
        "- model.shop.stg_orders: 0 rows, usually 1,200 (did its sources deliver nothing new?)\n"
        in body
    )
    assert f"Report:    {REPORT}" in body


def test_a_freshness_warning_marks_the_sources_that_are_new(shipped, emitted):
    events.emit_outcome(freshness_warned(newly_stale=[ORDERS]))
    [sent] = emitted

    subject, body = notification(
        by_name(shipped, "ferry - source freshness warned"), event=received(sent)
    )

    assert subject == "[ferry prod] warning: sources getting stale: build-prod"
    assert f"- {ORDERS} (new): Source is 30 hours old (warn after 24 hours)\n" in body
    assert f"- {CUSTOMERS}: Source is 30 hours old (warn after 24 hours)\n" in body


def test_a_freshness_warning_that_does_not_know_what_is_new_marks_nothing(shipped, emitted):
    events.emit_outcome(freshness_warned(newly_stale=None))
    [sent] = emitted

    _, body = notification(
        by_name(shipped, "ferry - source freshness warned"), event=received(sent)
    )

    assert f"- {ORDERS}: Source" in body and f"- {CUSTOMERS}: Source" in body
    assert "(new)" not in body


def test_the_new_events_each_have_one_automation_and_still_stale_none(shipped):
    listening: dict[str, list[str]] = {}
    for spec in shipped.automations:
        for name in spec.trigger.expect:
            listening.setdefault(name, []).append(spec.name)

    assert listening[events.REGRESSED] == ["ferry - dbt timing regression"]
    assert listening[events.ANOMALOUS] == ["ferry - dbt volume anomaly"]
    assert listening["ferry.dbt.freshness.warned"] == ["ferry - source freshness warned"]
    assert events.STILL_STALE not in listening
