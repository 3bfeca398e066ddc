"""Alerts against a real Prefect server: idempotent apply, and a notification that arrives.

The server's automation services (triggers and actions, on by default in `prefect server
start`) evaluate the automations; a tiny HTTP server on 127.0.0.1 stands in for the webhook.
"""

from __future__ import annotations

import asyncio
import copy
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.events import emit_event
from prefect.runtime import flow_run
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Failed

from flows.exit_codes import ExitCode
from flows.notify import automations, channels
from flows.notify.changes import Change
from flows.prefect import holds
from flows.prefect.server import free_port
from tests.e2e.conftest import run_ferry

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "automations.yaml"
SECRETS = {
    "FERRY_SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T000/B000/XXXX",
    "FERRY_SENDGRID_API_KEY": "SG.test",
    "FERRY_ALERT_WEBHOOK_URL": "http://127.0.0.1:9/unused",
    "FERRY_ALERT_WEBHOOK_TOKEN": "t0ken",
}
NAMES = [a.name for a in automations.load(SHIPPED).automations]
ENVS = ("local", "staging", "prod")  # the environments of prefect.yaml's deployments
LIMITS = [holds.WriterLimit(env).change_name for env in ENVS]
QUIET_S = 5.0  # after the first notification, how long a second one would have had to arrive


# --- fixtures -----------------------------------------------------------------------------------


@pytest.fixture
def prefect_env(prefect_api: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """This process talks to the test server, as a flow run in production talks to its own."""
    monkeypatch.setenv("PREFECT_API_URL", prefect_api)
    with temporary_settings(updates={PREFECT_API_URL: prefect_api}):
        yield prefect_api


@pytest.fixture
def clean_automations(api) -> Iterator[None]:
    """No ferry automation survives a test: they would fire for other tests' dbt runs."""

    def delete_ours() -> None:
        for automation in api.client.post("/automations/filter", json={}).json():
            if automations.MANAGED_TAG in automation["tags"]:
                api.client.delete(f"/automations/{automation['id']}").raise_for_status()

    delete_ours()
    yield
    delete_ours()


def writer_limits(api) -> dict[str, list[tuple[int, bool]]]:
    """(limit, active) of each global concurrency limit named ferry-writer-*, by name."""
    found = api.client.post("/v2/concurrency_limits/filter", json={"limit": 200})
    limits: dict[str, list[tuple[int, bool]]] = {}
    for limit in found.raise_for_status().json():
        if limit["name"].startswith("ferry-writer-"):
            limits.setdefault(limit["name"], []).append((limit["limit"], limit["active"]))
    return limits


@pytest.fixture
def no_writer_limits(api) -> None:
    """Other tests of the session (`ferry release deploy`) may have created some already."""
    for name in writer_limits(api):
        api.client.delete(f"/v2/concurrency_limits/{name}").raise_for_status()


@dataclass
class Received:
    at: float  # time.monotonic()
    body: dict[str, Any]
    headers: dict[str, str]


class Receiver:
    """An HTTP endpoint on 127.0.0.1 that records every request it gets."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self._arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver._arrived:
                    receiver.requests.append(
                        Received(time.monotonic(), json.loads(raw), dict(self.headers))
                    )
                    receiver._arrived.notify_all()
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/alerts"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def wait(self, count: int, timeout: float) -> list[Received]:
        """The requests so far, once there are `count` of them or `timeout` has passed."""
        with self._arrived:
            self._arrived.wait_for(lambda: len(self.requests) >= count, timeout=timeout)
            return list(self.requests)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def webhook_spec(receiver_url: str, **trigger_changes: Any) -> tuple[automations.AlertsSpec, dict]:
    """The shipped automations, every one sending to a webhook at `receiver_url` instead."""
    document = yaml.safe_load(SHIPPED.read_text())
    document["channels"] = [
        {
            "name": "ferry-test-hook",
            "type": "webhook",
            "url_env": "FERRY_TEST_HOOK_URL",
            "headers": {"Authorization": "Bearer {{token}}"},
            "secrets_env": {"token": "FERRY_TEST_HOOK_TOKEN"},
            "payload": {"subject": "{{subject}}", "text": "{{body}}"},
        }
    ]
    for automation in document["automations"]:
        automation["notify"]["channels"] = ["ferry-test-hook"]
        automation["trigger"].update(copy.deepcopy(trigger_changes.get(automation["name"], {})))
    environ = {"FERRY_TEST_HOOK_URL": receiver_url, "FERRY_TEST_HOOK_TOKEN": "s3cret"}
    return automations.parse(document), environ


async def _apply(spec: automations.AlertsSpec, environ: dict[str, str]) -> list[Change]:
    async with get_client() as client:
        changes = await channels.apply_channels(spec.channels, client, environ)
        return changes + await automations.apply(spec, client)


def ferry_automations(api) -> list[dict[str, Any]]:
    found = api.client.post("/automations/filter", json={}).raise_for_status().json()
    return [a for a in found if automations.MANAGED_TAG in a["tags"]]


# --- apply --------------------------------------------------------------------------------------


def lines(proc) -> list[str]:
    assert proc.returncode == ExitCode.OK, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()


def test_applying_twice_leaves_exactly_one_of_each(
    prefect_api, api, clean_automations, no_writer_limits
):
    def ferry(*args: str, env: dict[str, str] = SECRETS):
        return run_ferry(prefect_api, *args, "--file", str(SHIPPED), env=env)

    blocks = ["ferry-slack", "ferry-slack-warnings", "ferry-email", "ferry-webhook"]

    # Automations need their channels' blocks, and say so.
    refused = ferry("alerts", "automations", "apply")
    assert (
        refused.returncode == ExitCode.INVALID
        and "run `ferry alerts channels apply` first" in refused.stderr
    )

    assert lines(ferry("alerts", "channels", "apply", "--dry-run")) == [
        f"(dry run) created: {b}" for b in blocks
    ]
    assert lines(ferry("alerts", "channels", "apply")) == [f"created: {b}" for b in blocks]
    assert lines(ferry("alerts", "channels", "apply")) == [f"unchanged: {b}" for b in blocks]
    rotated = {**SECRETS, "FERRY_ALERT_WEBHOOK_TOKEN": "rotated"}
    assert lines(ferry("alerts", "channels", "apply", env=rotated))[-1] == "updated: ferry-webhook"

    assert lines(ferry("alerts", "automations", "apply", "--dry-run")) == [
        f"(dry run) created: {n}" for n in NAMES + LIMITS
    ]
    assert ferry_automations(api) == [], "a dry run changed the server"
    assert writer_limits(api) == {}, "a dry run changed the server"
    assert lines(ferry("alerts", "automations", "apply")) == [
        f"created: {n}" for n in NAMES + LIMITS
    ]
    assert lines(ferry("alerts", "automations", "apply")) == [
        f"unchanged: {n}" for n in NAMES + LIMITS
    ]
    on_server = ferry_automations(api)
    assert sorted(a["name"] for a in on_server) == sorted(NAMES)
    # One writers' queue per environment: exactly one limit each, WRITERS active slots.
    assert writer_limits(api) == {f"ferry-writer-{env}": [(holds.WRITERS, True)] for env in ENVS}

    # A writer limit raised and switched off by hand: put back, as the automations are.
    api.client.patch(
        "/v2/concurrency_limits/ferry-writer-prod", json={"limit": 3, "active": False}
    ).raise_for_status()
    assert lines(ferry("alerts", "automations", "apply", "--dry-run"))[-3:] == [
        f"(dry run) unchanged: {LIMITS[0]}",
        f"(dry run) unchanged: {LIMITS[1]}",
        f"(dry run) updated: {LIMITS[2]}",
    ]
    assert writer_limits(api)["ferry-writer-prod"] == [(3, False)]
    assert lines(ferry("alerts", "automations", "apply"))[-1] == f"updated: {LIMITS[2]}"
    assert writer_limits(api) == {f"ferry-writer-{env}": [(holds.WRITERS, True)] for env in ENVS}

    # Edited or paused by hand: put back as the file says.
    warned = next(a for a in on_server if a["name"] == "ferry - dbt run warned")
    api.client.patch(f"/automations/{warned['id']}", json={"enabled": False}).raise_for_status()
    assert "updated: ferry - dbt run warned" in lines(ferry("alerts", "automations", "apply"))
    assert api.client.get(f"/automations/{warned['id']}").json()["enabled"] is True
    assert lines(ferry("alerts", "automations", "apply")) == [
        f"unchanged: {n}" for n in NAMES + LIMITS
    ]

    # What `prefect automation create` leaves after a second deploy: a copy, here also edited.
    failed = next(a for a in on_server if a["name"] == "ferry - dbt run failed")
    copy_of = {k: v for k, v in failed.items() if k not in {"id", "created", "updated"}}
    api.client.post("/automations/", json=copy_of).raise_for_status()
    api.client.post("/automations/", json={**copy_of, "enabled": False}).raise_for_status()
    assert lines(ferry("alerts", "automations", "apply", "--dry-run"))[:3] == [
        "(dry run) unchanged: ferry - dbt run failed",
        "(dry run) deleted duplicate: ferry - dbt run failed",
        "(dry run) deleted duplicate: ferry - dbt run failed",
    ]
    assert len(ferry_automations(api)) == len(NAMES) + 2
    assert lines(ferry("alerts", "automations", "apply"))[:3] == [
        "unchanged: ferry - dbt run failed",
        "deleted duplicate: ferry - dbt run failed",
        "deleted duplicate: ferry - dbt run failed",
    ]
    after = ferry_automations(api)
    assert sorted(a["name"] for a in after) == sorted(NAMES)
    assert failed["id"] in {a["id"] for a in after}, "the oldest matching one was kept"
    assert all(a["enabled"] for a in after)


def test_an_automation_removed_from_the_file_is_deleted_and_one_made_by_hand_is_not(
    prefect_api, prefect_env, api, clean_automations, tmp_path
):
    asyncio.run(_apply(automations.load(SHIPPED), SECRETS))  # channels and automations, as shipped
    removed, kept = NAMES[-1], NAMES[:-1]
    # Made by hand in the UI with the very name removed: ferry's tag is all that tells them apart.
    [ours] = [a for a in ferry_automations(api) if a["name"] == removed]
    hand_made = {k: v for k, v in ours.items() if k not in {"id", "created", "updated"}}
    hand_made |= {"tags": [], "enabled": False}  # disabled: it must not alert for other tests
    by_hand = api.client.post("/automations/", json=hand_made).raise_for_status().json()["id"]

    document = yaml.safe_load(SHIPPED.read_text())
    document["automations"] = [a for a in document["automations"] if a["name"] != removed]
    trimmed = tmp_path / "automations.yaml"
    trimmed.write_text(yaml.safe_dump(document, sort_keys=False))
    (tmp_path / "prefect.yaml").write_text((REPO / "prefect.yaml").read_text())

    def apply(*args: str) -> list[str]:
        return lines(
            run_ferry(prefect_api, "alerts", "automations", "apply", *args, "--file", str(trimmed))
        )

    try:
        deleted = f"deleted: {removed} (no longer in automations.yaml)"
        assert apply("--dry-run")[: len(NAMES)] == [
            *(f"(dry run) unchanged: {n}" for n in kept),
            f"(dry run) {deleted}",
        ]
        assert sorted(a["name"] for a in ferry_automations(api)) == sorted(NAMES), "dry run"
        assert apply()[: len(NAMES)] == [*(f"unchanged: {n}" for n in kept), deleted]
        assert sorted(a["name"] for a in ferry_automations(api)) == sorted(kept)
        assert api.client.get(f"/automations/{by_hand}").json()["name"] == removed
        assert apply() == [f"unchanged: {n}" for n in kept + LIMITS]
    finally:
        api.client.delete(f"/automations/{by_hand}").raise_for_status()


def test_bad_input_is_refused_and_an_unreachable_api_is_a_failure(tmp_path):
    closed = f"http://127.0.0.1:{free_port()}/api"
    broken = tmp_path / "automations.yaml"
    broken.write_text("channels: [\n")

    def ferry(api_url: str, noun: str, *args: str, env: dict[str, str] = SECRETS):
        apply = ("alerts", noun, "apply", "--dry-run")
        environ = {**env, "PREFECT_HOME": str(tmp_path / "home")}
        return run_ferry(api_url, *apply, "--file", str(SHIPPED), *args, env=environ)

    no_secrets = {name: "" for name in SECRETS}
    for result, noun, message in (
        (ferry("", "automations"), "automations", "set PREFECT_API_URL"),
        (
            ferry(closed, "channels", "--file", str(tmp_path / "nope.yaml")),
            "channels",
            "nope.yaml: no such file",
        ),
        (ferry(closed, "automations", "--file", str(broken)), "automations", "not valid YAML"),
        (ferry(closed, "channels", env=no_secrets), "channels", "missing secrets: set FERRY_"),
    ):
        assert result.returncode == ExitCode.INVALID, result.stdout + result.stderr
        assert result.stderr.startswith(f"ferry alerts {noun} apply: "), result.stderr
        assert message in result.stderr and "Traceback" not in result.stderr, result.stderr
    for noun in ("channels", "automations"):
        result = ferry(closed, noun)
        assert result.returncode == ExitCode.FAILED, result.stdout + result.stderr
        assert result.stderr.startswith(
            f"ferry alerts {noun} apply: the Prefect API at {closed} failed"
        ), result.stderr
        assert "Traceback" not in result.stderr


# --- notifications ------------------------------------------------------------------------------


def test_a_failed_run_sends_exactly_one_notification_naming_what_failed(
    prefect_env, clean_automations, receiver
):
    spec, environ = webhook_spec(receiver.url)
    asyncio.run(_apply(spec, environ))
    time.sleep(2)  # the triggers service loads new automations within a second or so

    payload = {
        "verdict": "2 of 7 nodes failed: model.shop.fct_orders (Database Error: relation "
        '"shop.stg_orders" does not exist); test.shop.unique_orders_id (1 failure)',
        "outcome": "failed",
        "env": "e2e",
        "project": "shop",
        "command": "build",
        "selection": "build --select tag:daily",
        "failed": [
            {
                "unique_id": "model.shop.fct_orders",
                "status": "error",
                "message": 'Database Error: relation "shop.stg_orders" does not exist',
            },
            {
                "unique_id": "test.shop.unique_orders_id",
                "status": "fail",
                "message": "Got 1 result, configured to fail if != 0",
            },
        ],
        "warned": [],
        "counts": {"error": 1, "fail": 1, "success": 5},
        "artifacts": f"s3://ferry-e2e/dbt/shop/e2e/runs/2026-01-02/{uuid.uuid4().hex[:8]}",
        "flow_run_url": None,
    }

    emitted: list[float] = []

    @flow(name="dbt")
    def failing_dbt() -> Any:
        run_id = flow_run.get_id()
        emit_event(
            "ferry.dbt.run.failed",
            resource={
                "prefect.resource.id": f"prefect.flow-run.{run_id}",
                "prefect.resource.name": flow_run.get_name() or "",
                "ferry.env": "e2e",
                "ferry.project": "shop",
                "ferry.command": "build",
            },
            payload=payload,
        )
        emitted.append(time.monotonic())
        return Failed(message=payload["verdict"])

    state = failing_dbt(return_state=True)
    ended = time.monotonic()  # the run's final state is set
    assert state.is_failed()
    run_id = state.state_details.flow_run_id

    [first] = receiver.wait(1, timeout=60)[:1] or pytest.fail("no notification within 60 s")
    latency = first.at - emitted[0]
    assert receiver.wait(2, timeout=QUIET_S) == [first], "more than one notification for a run"
    print(
        f"\nalert latency: event emitted -> webhook received {latency:.2f} s; "
        f"flow call returned -> webhook received {first.at - ended:+.2f} s"
    )

    assert first.headers["Authorization"] == "Bearer s3cret"
    subject, text = first.body["subject"], first.body["text"]
    assert subject.startswith("[ferry e2e] dbt build failed: ")
    assert payload["verdict"] in text
    assert '- model.shop.fct_orders (error): Database Error: relation "shop.stg_orders"' in text
    assert "- test.shop.unique_orders_id (fail): Got 1 result, configured to fail" in text
    assert f"Artifacts: {payload['artifacts']}" in text
    assert "Environment: e2e" in text and "Selection:   dbt build --select tag:daily" in text
    assert str(run_id) in text, "the run is named (its URL when PREFECT_UI_URL is set)"
    assert latency < 60


def test_a_timed_out_run_is_notified_once_from_prefects_own_event(
    prefect_env, clean_automations, receiver
):
    spec, environ = webhook_spec(receiver.url)
    asyncio.run(_apply(spec, environ))
    time.sleep(2)

    @flow(name="dbt", timeout_seconds=1)
    def hanging_dbt(command: str = "build", selector: str | None = "daily") -> None:
        # Short sleeps: under pytest-timeout's SIGALRM, Prefect enforces the timeout from
        # another thread, which can only interrupt Python code between blocking calls.
        for _ in range(300):
            time.sleep(0.1)

    state = hanging_dbt(return_state=True)
    ended = time.monotonic()
    assert state.name == "TimedOut"

    [first] = receiver.wait(1, timeout=60)[:1] or pytest.fail("no notification within 60 s")
    assert receiver.wait(2, timeout=QUIET_S) == [first], "more than one notification for a run"
    print(f"\nalert latency, TimedOut -> webhook received: {first.at - ended:.2f} s")
    assert first.body["subject"].startswith("[ferry unknown env] dbt run timedout: ")
    text = first.body["text"]
    assert "ended TimedOut: " in text and "Selection:   dbt build --selector daily" in text


def test_no_good_build_prod_within_the_window_alerts(prefect_env, clean_automations, receiver):
    """The proactive alert, its window shrunk to Prefect's minimum of 10 s: quiet while good
    build-prod runs keep arriving, an alert once one is overdue."""
    window = {"ferry - build-prod missing": {"within": 10}}
    spec, environ = webhook_spec(receiver.url, **window)
    deployment = {
        "prefect.resource.id": f"prefect.deployment.{uuid.uuid4()}",
        "prefect.resource.role": "deployment",
        "prefect.resource.name": "build-prod",
    }

    def good_build() -> None:
        run = f"prefect.flow-run.{uuid.uuid4()}"
        emit_event(
            "ferry.dbt.run.succeeded",
            resource={"prefect.resource.id": run, "ferry.env": "prod", "ferry.command": "build"},
            related=[deployment],
            payload={"outcome": "success"},
        )

    asyncio.run(_apply(spec, environ))
    time.sleep(2)
    quiet_until = time.monotonic() + 25
    while time.monotonic() < quiet_until:
        good_build()
        last_good = time.monotonic()
        time.sleep(3)
    assert receiver.requests == [], "alerted although build-prod kept succeeding"

    [first] = receiver.wait(1, timeout=40)[:1] or pytest.fail("no alert after the window")
    print(f"\nproactive alert {first.at - last_good:.1f} s after the last good build (window 10 s)")
    assert first.at - last_good >= 10
    assert (
        first.body["subject"] == "[ferry prod] no successful build-prod run in the last 10 seconds"
    )
