"""automations.yaml: what the loader refuses, what Prefect receives, what an alert reads like.

Templates are rendered with the Prefect server's own sandboxed engine and filters, against
events shaped as the `dbt` flow emits them, so a template error shows up here rather than as
a silent ActionFailed on the server.
"""

from __future__ import annotations

import asyncio
import copy
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from uuid import UUID, uuid4

import pytest
import yaml
from prefect.events.actions import SendNotification
from prefect.events.schemas.automations import Automation, AutomationCore, EventTrigger, Posture
from prefect.server.events.jinja_filters import all_filters
from prefect.server.events.schemas.automations import EventTrigger as ServerEventTrigger
from prefect.server.events.schemas.events import ReceivedEvent
from prefect.server.schemas.core import FlowRun
from prefect.server.utilities.user_templates import (
    register_user_template_filters,
    render_user_template_sync,
)
from prefect.settings import PREFECT_UI_URL, temporary_settings

from flows.notify import automations, channels
from flows.notify.changes import ChangeKind, NotifyConfigError
from flows.publish.environment import RolledBack
from flows.publish.statements import Relation
from flows.publish.versions import Publication

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "automations.yaml"
CONTRACT_EVENTS = {
    "ferry.dbt.run.succeeded",
    "ferry.dbt.run.warned",
    "ferry.dbt.run.failed",
    "ferry.dbt.run.invalid",
    "ferry.dbt.freshness.failed",
    "ferry.dbt.freshness.warned",
    "ferry.dbt.freshness.still-stale",
    "ferry.dbt.timing.regressed",
    "ferry.dbt.volume.anomalous",
    "ferry.data.rolled-back",
}
SECRETS = {
    "FERRY_SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T000/B000/XXXX",
    "FERRY_SENDGRID_API_KEY": "SG.test",
    "FERRY_ALERT_WEBHOOK_URL": "https://alerts.example.com/hook?token=abc",
    "FERRY_ALERT_WEBHOOK_TOKEN": "t0ken",
}


@pytest.fixture(scope="module")
def shipped() -> automations.AlertsSpec:
    return automations.load(SHIPPED)


@pytest.fixture
def document() -> dict[str, Any]:
    """The shipped file as data, for a test to break one thing in."""
    return copy.deepcopy(yaml.safe_load(SHIPPED.read_text()))


def by_name(spec: automations.AlertsSpec, name: str) -> automations.AutomationSpec:
    return next(a for a in spec.automations if a.name == name)


# --- the shipped file ---------------------------------------------------------------------------


def test_the_shipped_file_has_its_alerts(shipped):
    assert [a.name for a in shipped.automations] == [
        "ferry - dbt run failed",
        "ferry - dbt run crashed or timed out",
        "ferry - dbt run warned",
        "ferry - build-prod missing",
        "ferry - source freshness failed",
        "ferry - source freshness warned",
        "ferry - dbt timing regression",
        "ferry - dbt volume anomaly",
        "ferry - data rolled back",
    ]
    assert {c.type for c in shipped.channels} == {"slack", "email", "webhook"}


def test_each_outcome_of_a_run_alerts_at_most_once(shipped):
    """One event per run, one reactive automation per event name: one notification per run."""
    reactive = [a for a in shipped.automations if a.trigger.posture is Posture.Reactive]
    for event in CONTRACT_EVENTS:
        firing = [a.name for a in reactive if event in a.trigger.expect]
        expected = {
            "ferry.dbt.run.failed": ["ferry - dbt run failed"],
            "ferry.dbt.run.invalid": ["ferry - dbt run failed"],
            "ferry.dbt.run.warned": ["ferry - dbt run warned"],
            "ferry.dbt.freshness.failed": ["ferry - source freshness failed"],
            "ferry.dbt.freshness.warned": ["ferry - source freshness warned"],
            "ferry.dbt.timing.regressed": ["ferry - dbt timing regression"],
            "ferry.dbt.volume.anomalous": ["ferry - dbt volume anomaly"],
            "ferry.data.rolled-back": ["ferry - data rolled back"],
        }.get(event, [])  # still-stale: no alert, the period was alerted
        assert firing == expected, event
    crashed = by_name(shipped, "ferry - dbt run crashed or timed out").trigger
    assert crashed.expect == {"prefect.flow-run.Crashed", "prefect.flow-run.TimedOut"}
    assert crashed.match_related.model_dump() == {
        "prefect.resource.role": "flow",
        "prefect.resource.name": "dbt",
    }


def test_the_missing_build_alert_is_proactive_on_build_prod(shipped):
    trigger = by_name(shipped, "ferry - build-prod missing").trigger
    assert isinstance(trigger, EventTrigger)
    assert trigger.posture is Posture.Proactive
    assert trigger.within == timedelta(hours=26)
    assert trigger.expect == {"ferry.dbt.run.succeeded", "ferry.dbt.run.warned"}
    assert trigger.after == trigger.expect  # a wait from each good run, not fixed windows
    assert trigger.match_related.model_dump() == {
        "prefect.resource.role": "deployment",
        "prefect.resource.name": "build-prod",
    }


def test_warnings_go_to_the_warning_level_slack_block(shipped):
    warned = by_name(shipped, "ferry - dbt run warned")
    levels = {c.name: getattr(c, "notify_type", None) for c in shipped.channels}
    assert levels["ferry-slack-warnings"] == "warning" and levels["ferry-slack"] == "failure"
    assert "ferry-slack-warnings" in warned.notify.channels
    assert "ferry-slack" not in warned.notify.channels


# --- validation ---------------------------------------------------------------------------------


def refused(data: Any) -> str:
    with pytest.raises(NotifyConfigError) as info:
        automations.parse(data, source="test.yaml")
    return str(info.value)


def test_an_unknown_channel_is_named_with_the_automation(document):
    document["automations"][0]["notify"]["channels"] = ["ferry-slack", "ferry-pager"]
    message = refused(document)
    assert "'ferry - dbt run failed' notifies ['ferry-pager']" in message
    assert "defined: ['ferry-email', 'ferry-slack'" in message


def test_a_typo_in_a_trigger_is_refused_not_ignored(document):
    """Prefect ignores unknown trigger keys: `expects` would leave `expect` empty."""
    trigger = document["automations"][2]["trigger"]
    trigger["expects"] = trigger.pop("expect")
    message = refused(document)
    assert "automations[2] (ferry - dbt run warned).trigger: " in message
    assert "unknown trigger keys ['expects']" in message


def test_a_trigger_that_expects_nothing_is_refused(document):
    document["automations"][0]["trigger"]["expect"] = []
    assert "would match every event" in refused(document)


@pytest.mark.parametrize(
    ("within", "message"),
    [
        (5, "must be greater than or equal to 10 seconds"),
        ("a day", "within: 'a day' is no duration"),
    ],
)
def test_a_bad_window_is_refused_with_its_place(document, within, message):
    document["automations"][3]["trigger"]["within"] = within
    text = refused(document)
    assert "automations[3] (ferry - build-prod missing).trigger" in text
    assert message in text


def test_a_window_reads_as_seconds_or_iso_8601(document):
    document["automations"][3]["trigger"]["within"] = 93600
    seconds = automations.parse(document)
    document["automations"][3]["trigger"]["within"] = "P1DT2H"
    iso = automations.parse(document)
    assert seconds.automations[3].trigger.within == iso.automations[3].trigger.within


def test_a_template_the_server_would_refuse_is_refused_here(document):
    document["automations"][1]["notify"]["body"] = "Run {{ event.resource.name }\n"
    message = refused(document)
    assert "automations[1] (ferry - dbt run crashed or timed out).notify.body" in message
    assert "not a valid template" in message


def test_two_automations_alerting_on_one_event_are_refused(document):
    document["automations"][2]["trigger"]["expect"] = ["ferry.dbt.run.*"]
    message = refused(document)
    assert "'ferry - dbt run failed' and 'ferry - dbt run warned'" in message
    assert "one run would alert twice" in message


def test_the_same_event_for_different_resources_is_allowed(document):
    """E.g. one automation per environment, each with its own channels."""
    staging = copy.deepcopy(document["automations"][0])
    staging["name"] = "ferry - dbt run failed (staging)"
    staging["trigger"]["match"]["ferry.env"] = "staging"
    document["automations"][0]["trigger"]["match"]["ferry.env"] = "prod"
    document["automations"].append(staging)
    assert len(automations.parse(document).automations) == len(document["automations"])


def test_repeated_names_are_refused(document):
    document["automations"][1]["name"] = document["automations"][0]["name"]
    assert "automation names must be unique; repeated: ['ferry - dbt run failed']" in refused(
        document
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": "Ferry Slack"}, "channels[0] (Ferry Slack).name: String should match pattern"),
        ({"type": "pager"}, "channels[0] (ferry-slack): Input tag 'pager' found"),
        ({"url_env": "lower-case"}, "channels[0] (ferry-slack).url_env"),
        ({"url": "https://hooks.slack.com/x"}, "url: Extra inputs are not permitted"),
    ],
)
def test_channel_mistakes_are_named(document, change, message):
    document["channels"][0].update(change)
    assert message in refused(document)


def test_a_webhook_placeholder_must_be_known(document):
    document["channels"][3]["headers"]["X-Key"] = "{{api_key}}"
    assert "unknown placeholders ['api_key']" in refused(document)


def test_file_level_mistakes(tmp_path):
    with pytest.raises(NotifyConfigError, match="no such file"):
        automations.load(tmp_path / "automations.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("automations: [\n")
    with pytest.raises(NotifyConfigError, match="not valid YAML"):
        automations.load(bad)
    assert "expected a mapping" in refused(["not", "a", "mapping"])
    assert "Extra inputs are not permitted" in refused({"automation": []})


# --- rendering to Prefect -----------------------------------------------------------------------


def test_rendering_sends_one_notification_per_channel(shipped):
    ids = {c.name: uuid4() for c in shipped.channels}
    failed = by_name(shipped, "ferry - dbt run failed")
    core = automations.render(failed, ids)
    assert core.name == failed.name and core.tags == [automations.MANAGED_TAG]
    assert [a.block_document_id for a in core.actions if isinstance(a, SendNotification)] == [
        ids["ferry-slack"],
        ids["ferry-email"],
        ids["ferry-webhook"],
    ]
    assert {a.body for a in core.actions if isinstance(a, SendNotification)} == {failed.notify.body}


def test_rendering_sets_every_field_so_an_update_replaces_the_whole_automation(shipped):
    """The client sends updates with exclude_unset; a default left unset would not be reset."""
    core = automations.render(shipped.automations[3], {c.name: uuid4() for c in shipped.channels})
    assert core.model_fields_set == set(AutomationCore.model_fields) - {"owner_resource"}
    assert core.trigger.model_fields_set == set(type(core.trigger).model_fields)
    sent = core.model_dump(mode="json", exclude_unset=True)
    assert sent["trigger"]["posture"] == "Proactive" and sent["actions_on_resolve"] == []
    assert "owner_resource" not in sent  # the server's AutomationUpdate forbids it


# --- what a notification reads like -------------------------------------------------------------

RUN_ID = UUID("6f0c1a52-0000-4000-8000-000000000001")
RELATED = [
    {"prefect.resource.id": f"prefect.flow.{uuid4()}", "prefect.resource.role": "flow",
     "prefect.resource.name": "dbt"},
    {"prefect.resource.id": f"prefect.deployment.{uuid4()}", "prefect.resource.role": "deployment",
     "prefect.resource.name": "build-prod"},
    {"prefect.resource.id": "prefect.tag.dbt", "prefect.resource.role": "tag"},
    {"prefect.resource.id": "prefect.tag.env:prod", "prefect.resource.role": "tag"},
]  # fmt: skip
FAILED_PAYLOAD = {
    "verdict": "2 of 40 nodes failed: model.shop.fct_orders (Database Error: relation ...)",
    "outcome": "failed",
    "env": "prod",
    "project": "shop",
    "command": "build",
    "selection": "build --selector daily",
    "failed": [
        {
            "unique_id": "model.shop.fct_orders",
            "status": "error",
            "message": 'Database Error: relation "shop.stg_orders" does not exist',
        },
        {"unique_id": "test.shop.unique_orders_id", "status": "fail", "message": "Got 1 result"},
    ],
    "warned": [],
    "counts": {"error": 1, "fail": 1, "success": 38},
    "artifacts": "s3://ferry-artifacts/dbt/shop/prod/runs/2026-01-02/6f0c1a52",
    "flow_run_url": None,
}


def ferry_event(name: str, payload: dict[str, Any], **labels: str) -> ReceivedEvent:
    resource = {
        "prefect.resource.id": f"prefect.flow-run.{RUN_ID}",
        "prefect.resource.name": "daring-fox",
        "ferry.env": payload["env"],
        "ferry.command": payload["command"],
        **labels,
    }
    return ReceivedEvent(
        occurred="2026-01-02T05:40:00Z",
        event=name,
        resource=resource,
        related=RELATED,
        payload=payload,
        id=uuid4(),
    )


def notification(spec: automations.AutomationSpec, **context: Any) -> tuple[str, str]:
    """Subject and body as the Prefect server renders them."""
    register_user_template_filters(all_filters)
    context.setdefault("flow_run", FlowRun(id=RUN_ID, flow_id=uuid4(), parameters={}))
    with temporary_settings({PREFECT_UI_URL: "https://prefect.example.com"}):
        return (
            render_user_template_sync(spec.notify.subject, context),
            render_user_template_sync(spec.notify.body, context),
        )


def test_a_failed_run_names_its_nodes_first_error_lines_run_and_artifacts(shipped):
    event = ferry_event("ferry.dbt.run.failed", FAILED_PAYLOAD, **{"ferry.project": "shop"})
    subject, body = notification(by_name(shipped, "ferry - dbt run failed"), event=event)
    assert subject == "[ferry prod] dbt build failed: build-prod"
    assert body == (
        "2 of 40 nodes failed: model.shop.fct_orders (Database Error: relation ...)\n"
        "\n"
        "Deployment:  build-prod\n"
        "Environment: prod\n"
        "Project:     shop\n"
        "Selection:   dbt build --selector daily\n"
        "\n"
        "Failed nodes:\n"
        '- model.shop.fct_orders (error): Database Error: relation "shop.stg_orders" does not '
        "exist\n"
        "- test.shop.unique_orders_id (fail): Got 1 result\n"
        "\n"
        f"Run:       https://prefect.example.com/runs/flow-run/{RUN_ID}\n"
        "Artifacts: s3://ferry-artifacts/dbt/shop/prod/runs/2026-01-02/6f0c1a52"
    )


def test_the_payloads_url_wins_and_a_long_list_says_it_is_cut(shipped):
    payload = {
        **FAILED_PAYLOAD,
        "flow_run_url": "https://ui.example.com/runs/flow-run/x",
        "failed": [
            {"unique_id": f"model.shop.m{i}", "status": "error", "message": "boom"}
            for i in range(20)
        ],
    }
    event = ferry_event("ferry.dbt.run.failed", payload)
    _, body = notification(by_name(shipped, "ferry - dbt run failed"), event=event)
    assert "Failed nodes (the first 20; run_results.json has all):" in body
    assert "Run:       https://ui.example.com/runs/flow-run/x" in body


def test_an_invalid_request_alerts_with_the_little_it_has(shipped):
    """emit_invalid sends no project, selection, counts or artifacts."""
    payload = {
        "verdict": "Invalid input: unknown dbt command 'deploy'",
        "outcome": "invalid",
        "failed": [],
        "env": "staging",
        "project": None,
        "command": "deploy",
        "flow_run_url": None,
    }
    event = ferry_event("ferry.dbt.run.invalid", payload)
    subject, body = notification(
        by_name(shipped, "ferry - dbt run failed"), event=event, flow_run=None
    )
    assert subject == "[ferry staging] dbt deploy refused (invalid input): build-prod"
    assert "Selection:   dbt deploy\n" in body and "Failed nodes" not in body
    assert body.endswith(f"Run:       prefect.flow-run.{RUN_ID}\nArtifacts: none written")


def test_a_warned_run_lists_its_warnings(shipped):
    payload = {
        **FAILED_PAYLOAD,
        "outcome": "warnings",
        "verdict": "40 of 40 nodes passed, 1 with warnings: test.shop.t (3 failures)",
        "failed": [],
        "warned": [{"unique_id": "test.shop.t", "status": "warn", "message": "Got 3 results"}],
    }
    event = ferry_event("ferry.dbt.run.warned", payload)
    subject, body = notification(by_name(shipped, "ferry - dbt run warned"), event=event)
    assert subject == "[ferry prod] warning: dbt build passed with warnings: build-prod"
    assert "Warnings:\n- test.shop.t: Got 3 results\n" in body


def test_a_freshness_failure_names_the_stale_sources(shipped):
    payload = {
        **FAILED_PAYLOAD,
        "command": "source freshness",
        "selection": "source freshness",
        "verdict": "1 of 3 sources failed: source.shop.raw.orders",
        "failed": [
            {
                "unique_id": "source.shop.raw.orders",
                "status": "error",
                "message": "Source is 30 hours old (error after 24 hours)",
            }
        ],
    }
    event = ferry_event("ferry.dbt.freshness.failed", payload)
    subject, body = notification(by_name(shipped, "ferry - source freshness failed"), event=event)
    assert subject.startswith("[ferry prod] stale sources: dbt source freshness failed")
    assert "- source.shop.raw.orders (error): Source is 30 hours old" in body


def test_a_crash_names_the_state_selection_env_and_artifact_store(shipped):
    event = ReceivedEvent(
        occurred="2026-01-02T05:40:00Z",
        event="prefect.flow-run.TimedOut",
        resource={
            "prefect.resource.id": f"prefect.flow-run.{RUN_ID}",
            "prefect.resource.name": "daring-fox",
            "prefect.state-name": "TimedOut",
            "prefect.state-message": "Flow run exceeded timeout of 7200.0 second(s)",
            "prefect.state-type": "FAILED",
        },
        related=RELATED,
        id=uuid4(),
    )
    flow_run = FlowRun(
        id=RUN_ID, flow_id=uuid4(), parameters={"command": "build", "selector": "daily"}
    )

    deployment = SimpleNamespace(
        job_variables={"env": {"FERRY_ARTIFACTS": "s3://ferry-artifacts/dbt"}}
    )

    subject, body = notification(
        by_name(shipped, "ferry - dbt run crashed or timed out"),
        event=event,
        flow_run=flow_run,
        deployment=deployment,
    )
    assert subject == "[ferry prod] dbt run timedout: build-prod"
    assert body.startswith(
        "Flow run daring-fox ended TimedOut: Flow run exceeded timeout of 7200.0 second(s)\n"
    )
    assert "Environment: prod\nSelection:   dbt build --selector daily\n" in body
    assert "under s3://ferry-artifacts/dbt (" in body


def test_the_missing_build_alert_states_its_window(shipped):
    spec = by_name(shipped, "ferry - build-prod missing")

    automation = SimpleNamespace(trigger=spec.trigger)
    subject, body = notification(spec, event=None, flow_run=None, automation=automation)
    assert subject == "[ferry prod] no successful build-prod run in the last 1 day and 2 hours"
    assert "succeeded in the last 1 day and 2 hours." in body


_ROLLED_BACK_PROD = RolledBack(
    "prod",
    Publication(
        seq=42,
        version="r6f0c1a520000",
        kind="rollback",
        published_at=datetime(2026, 12, 6, 9, 30, tzinfo=UTC),
        mapping=tuple(
            (Relation("analytics", f"m{i:02}"), Relation("analytics__r6f0c1a520000", f"m{i:02}"))
            for i in range(17)
        ),
    ),
    before="r9b1d2e3f4a5b",
)


@pytest.fixture
def rolled_back(monkeypatch) -> ReceivedEvent:
    """The event `ferry rollback` emits, as the server receives it: sent by the real emitter
    through Prefect's own recording events client instead of a websocket."""
    from prefect.events import clients
    from prefect.settings import PREFECT_API_URL

    from flows.prefect import events

    monkeypatch.setattr(clients, "get_events_client", lambda **_: clients.AssertingEventsClient())
    monkeypatch.setattr(events.socket, "gethostname", lambda: "ops-laptop")
    clients.AssertingEventsClient.reset()
    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api"}):  # never contacted
        not_sent = events.emit_rolled_back(_ROLLED_BACK_PROD, timeout_s=5)
    assert not_sent is None
    [sent] = [e for client in clients.AssertingEventsClient.all for e in client.events]
    return ReceivedEvent(**sent.model_dump(), received=sent.occurred)


def test_a_rollback_from_the_command_line_names_the_versions_and_where_it_ran(shipped, rolled_back):
    spec = by_name(shipped, "ferry - data rolled back")
    assert rolled_back.event == "ferry.data.rolled-back"
    assert rolled_back.resource.id == "ferry.env.prod"
    assert server_trigger(spec).covers(rolled_back)
    subject, body = notification(spec, event=rolled_back, flow_run=None)
    assert subject == "[ferry prod] data rolled back: consumers read r6f0c1a520000 again"
    assert body == (
        "rolled back prod: consumers read r6f0c1a520000 again (17 relation(s), publication 42)\n"
        "\n"
        "Environment: prod\n"
        "Now read:    r6f0c1a520000 (publication 42, 17 relation(s))\n"
        "Read before: r9b1d2e3f4a5b\n"
        "Rolled back: by `ferry rollback` on ops-laptop\n"
        "Run:         none (run from the command line)\n"
        "\n"
        "The next build-prod or build-changed-prod publishes again from the current code and "
        "data: pause them, or revert the code, if the bad data came from the code."
    )


def test_a_rollback_by_the_deployment_names_it_and_links_the_run(shipped, rolled_back):
    """The flow's event: the same, with the run's link instead of a host, and the run, its
    flow and deployment related to it (as the e2e test sees the server receive it)."""
    related = [
        {"prefect.resource.id": f"prefect.flow-run.{RUN_ID}", "prefect.resource.role": "flow-run",
         "prefect.resource.name": "brisk-otter"},
        {"prefect.resource.id": f"prefect.deployment.{uuid4()}",
         "prefect.resource.role": "deployment", "prefect.resource.name": "rollback-prod"},
        {"prefect.resource.id": "prefect.tag.env:prod", "prefect.resource.role": "tag"},
    ]  # fmt: skip
    payload = {**rolled_back.payload, "host": None, "before": None, "flow_run_url": None}
    event = ReceivedEvent.model_validate(
        {**rolled_back.model_dump(), "payload": payload, "related": related}
    )
    spec = by_name(shipped, "ferry - data rolled back")
    assert server_trigger(spec).covers(event)
    _, body = notification(spec, event=event)
    assert "Read before: unknown\n" in body
    assert "Rolled back: by rollback-prod\n" in body
    assert f"Run:         https://prefect.example.com/runs/flow-run/{RUN_ID}\n" in body


def server_trigger(spec: automations.AutomationSpec) -> ServerEventTrigger:
    """The trigger as the server holds it: its `covers` is what decides an automation fires."""
    return ServerEventTrigger.model_validate(spec.trigger.model_dump())


def test_only_an_environments_rollback_fires_the_rollback_alert(shipped):
    trigger = server_trigger(by_name(shipped, "ferry - data rolled back"))
    about_a_run = ferry_event("ferry.data.rolled-back", {**FAILED_PAYLOAD})
    assert not trigger.covers(about_a_run)  # about a flow run, not an environment
    resource = {**about_a_run.resource.root, "prefect.resource.id": "ferry.env.prod"}
    about_prod = ReceivedEvent.model_validate({**about_a_run.model_dump(), "resource": resource})
    assert trigger.covers(about_prod)
    failed = ReceivedEvent.model_validate(
        {**about_prod.model_dump(), "event": "ferry.dbt.run.failed"}
    )
    assert not trigger.covers(failed)


# --- diffing against the server ---------------------------------------------------------------


def existing(core: AutomationCore, **changes: Any) -> Automation:
    return Automation(**{**core.model_dump(), **changes, "id": uuid4()})


@pytest.fixture
def desired(shipped) -> AutomationCore:
    return automations.render(shipped.automations[0], {c.name: uuid4() for c in shipped.channels})


def test_diff_creates_what_is_missing(desired):
    assert automations.diff(desired, []) == automations.Plan(ChangeKind.CREATED)


def test_diff_leaves_an_identical_automation_alone(desired):
    same = existing(desired)
    assert automations.diff(desired, [same]) == automations.Plan(ChangeKind.UNCHANGED, same.id)


def test_diff_updates_one_that_differs(desired):
    other = existing(desired, description="edited in the UI", enabled=False)
    assert automations.diff(desired, [other]) == automations.Plan(ChangeKind.UPDATED, other.id)


def test_diff_keeps_the_matching_duplicate_and_deletes_the_others(desired):
    newest_but_edited = existing(desired, enabled=False)
    same = existing(desired)
    older = existing(desired, description="old")
    plan = automations.diff(desired, [newest_but_edited, same, older])
    assert plan == automations.Plan(ChangeKind.UNCHANGED, same.id, (newest_but_edited.id, older.id))


def test_diff_keeps_the_least_recently_updated_of_equals(desired):
    """The server lists newest first; the oldest has watched its proactive window longest."""
    newer, older = existing(desired), existing(desired)
    plan = automations.diff(desired, [newer, older])
    assert plan == automations.Plan(ChangeKind.UNCHANGED, older.id, (newer.id,))


def test_diff_without_a_match_updates_the_oldest_and_deletes_the_rest(desired):
    recent, old = existing(desired, enabled=False), existing(desired, description="old")
    plan = automations.diff(desired, [recent, old])
    assert plan == automations.Plan(ChangeKind.UPDATED, old.id, (recent.id,))


def test_stale_is_only_ferrys_own_automations_the_file_no_longer_names(shipped, desired):
    in_the_file = existing(desired)
    renamed = existing(desired, name="ferry - dbt run failed (old name)")
    by_hand = existing(desired, name="ferry - dbt run failed (by hand)", tags=["team-a"])
    untagged = existing(desired, name="ferry - dbt run failed (no tags)", tags=[])
    on_server = [in_the_file, renamed, by_hand, untagged]
    assert automations.stale(shipped, on_server) == [renamed]


class FakeClient:
    """The few client calls apply makes, recording the writes."""

    def __init__(self, blocks: dict[str, UUID], automations: list[Automation]):
        self.blocks = blocks
        self.automations = automations
        self.writes: list[str] = []

    async def read_block_document_by_name(self, name, block_type_slug, include_secrets=True):
        from prefect.exceptions import ObjectNotFound

        if name not in self.blocks:
            raise ObjectNotFound(http_exc=Exception(name))

        class Document:
            id = self.blocks[name]

        return Document()

    async def read_automations_by_name(self, name):
        return [a for a in self.automations if a.name == name]

    async def read_automations(self, *, automations=None, sort=None, limit=200, offset=0):
        # Ignores the tag filter, as a server that did not know it would: apply checks the tag.
        return self.automations[offset : offset + limit]

    async def create_automation(self, automation):
        self.writes.append(f"create {automation.name}")

    async def update_automation(self, automation_id, automation):
        self.writes.append(f"update {automation.name}")

    async def delete_automation(self, automation_id):
        self.writes.append(f"delete {automation_id}")


def test_apply_reports_every_automation_and_a_dry_run_writes_nothing(shipped):
    ids = {c.name: uuid4() for c in shipped.channels}
    first = automations.render(shipped.automations[0], ids)
    warned = automations.render(shipped.automations[2], ids)
    retired = existing(first, name="ferry - retired alert")
    by_hand = existing(first, name="ferry - made by hand", tags=[])
    server = [existing(first), existing(first), existing(warned, enabled=False), retired, by_hand]
    dry = FakeClient(ids, server)
    changes = asyncio.run(automations.apply(shipped, dry, dry_run=True))  # type: ignore[arg-type]
    assert [str(c) for c in changes] == [
        "unchanged: ferry - dbt run failed",
        "deleted duplicate: ferry - dbt run failed",
        "created: ferry - dbt run crashed or timed out",
        "updated: ferry - dbt run warned",
        "created: ferry - build-prod missing",
        "created: ferry - source freshness failed",
        "created: ferry - source freshness warned",
        "created: ferry - dbt timing regression",
        "created: ferry - dbt volume anomaly",
        "created: ferry - data rolled back",
        "deleted: ferry - retired alert (no longer in automations.yaml)",
    ]
    assert dry.writes == []
    real = FakeClient(ids, server)
    assert asyncio.run(automations.apply(shipped, real)) == changes  # type: ignore[arg-type]
    assert real.writes == [
        f"delete {server[0].id}",
        "create ferry - dbt run crashed or timed out",
        "update ferry - dbt run warned",
        "create ferry - build-prod missing",
        "create ferry - source freshness failed",
        "create ferry - source freshness warned",
        "create ferry - dbt timing regression",
        "create ferry - dbt volume anomaly",
        "create ferry - data rolled back",
        f"delete {retired.id}",
    ]


def test_apply_deletes_past_the_servers_first_page(shipped):
    ids = {c.name: uuid4() for c in shipped.channels}
    first = automations.render(shipped.automations[0], ids)
    retired = [existing(first, name=f"ferry - retired {i}") for i in range(250)]
    client = FakeClient(ids, retired)
    asyncio.run(automations.apply(shipped, client))  # type: ignore[arg-type]
    assert client.writes[-250:] == [f"delete {a.id}" for a in retired]


def test_apply_needs_the_channels_first(shipped):
    client = FakeClient({"ferry-slack": uuid4()}, [])
    with pytest.raises(NotifyConfigError) as info:
        asyncio.run(automations.apply(shipped, client))  # type: ignore[arg-type]
    assert str(info.value) == (
        "these channels have no notification block on the server yet: ferry-email "
        "(sendgrid-email), ferry-slack-warnings (slack-webhook), ferry-webhook (custom-webhook); "
        "run `ferry alerts channels apply` first"
    )


# --- channels -----------------------------------------------------------------------------------


def test_missing_secrets_are_all_named_at_once(shipped):
    with pytest.raises(NotifyConfigError) as info:
        channels.build_blocks(shipped.channels, {"FERRY_SENDGRID_API_KEY": "k"})
    assert str(info.value).startswith(
        "missing secrets: set FERRY_SLACK_WEBHOOK_URL (for ferry-slack, ferry-slack-warnings), "
        "FERRY_ALERT_WEBHOOK_URL (for ferry-webhook), FERRY_ALERT_WEBHOOK_TOKEN (for "
        "ferry-webhook) in the environment"
    )


def test_blocks_hold_the_secrets_and_the_webhook_url_among_them(shipped):
    blocks = channels.build_blocks(shipped.channels, SECRETS)
    data = {channel.name: channels.block_data(block) for channel, block in blocks}
    assert data["ferry-slack"] == {
        "url": SECRETS["FERRY_SLACK_WEBHOOK_URL"],
        "notify_type": "failure",
        "allow_private_urls": True,
    }
    assert data["ferry-slack-warnings"]["notify_type"] == "warning"
    assert data["ferry-email"]["to_emails"] == ["data-platform@example.com"]
    hook = data["ferry-webhook"]
    assert hook["url"] == "{{webhook_url}}"  # the real one is a secret, hidden by Prefect
    assert hook["secrets"] == {
        "token": "t0ken",
        "webhook_url": "https://alerts.example.com/hook?token=abc",
    }
    assert hook["headers"] == {"Authorization": "Bearer {{token}}"}
    # Nothing secret in the file itself.
    assert not any(value in SHIPPED.read_text() for value in SECRETS.values())


def test_the_webhook_sends_subject_and_body_with_its_secrets_filled_in(shipped):
    webhook = next(c for c in shipped.channels if c.type == "webhook")
    [(_, block)] = channels.build_blocks([webhook], SECRETS)
    request = block._build_request_args(body="the body", subject="the subject")  # type: ignore[attr-defined]
    assert request["url"] == "https://alerts.example.com/hook?token=abc"
    assert request["headers"] == {"Authorization": "Bearer t0ken"}
    assert request["json"] == {
        "source": "ferry",
        "channel": "ferry-webhook",
        "subject": "the subject",
        "text": "the body",
    }


def test_an_address_apprise_refuses_is_named_with_its_channel(shipped, document):
    document["channels"][2]["sender"] = "not-an-address"
    spec = automations.parse(document)
    with pytest.raises(NotifyConfigError, match="channel ferry-email: Invalid ~From~ email"):
        channels.build_blocks(spec.channels, SECRETS)
