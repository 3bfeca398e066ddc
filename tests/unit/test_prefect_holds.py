"""What a run holds on Prefect, what the environment's limit must be, and when a lease that can
no longer be renewed stops the run (the clock and the API's answers are the test's)."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import httpx
import pytest
from prefect.client.schemas.responses import GlobalConcurrencyLimitResponse

from flows.dbt.commands import DbtCommand
from flows.prefect import holds
from flows.prefect.deployments import environments, names_of_env
from flows.prefect.holds import (
    FENCE_FRACTION,
    WRITERS,
    WriterLimit,
    limit_name,
    node_limit_name,
    takes_holds,
)
from flows.run.holds import Writes

WRITING = {
    DbtCommand.BUILD,
    DbtCommand.RUN,
    DbtCommand.SEED,
    DbtCommand.SNAPSHOT,
    DbtCommand.TEST,  # store_failures writes audit tables
    DbtCommand.RETRY,  # re-runs any of the above
}


@pytest.mark.parametrize("adapter", ["redshift", "postgres", None])
def test_on_a_warehouse_only_the_commands_that_may_write_hold_anything(adapter):
    taking = {command for command in DbtCommand if takes_holds(command, adapter)}
    assert taking == WRITING


def test_on_duckdb_every_command_holds_the_environment_as_each_opens_the_file():
    assert all(takes_holds(command, "duckdb") for command in DbtCommand)
    assert Writes(DbtCommand.COMPILE, "duckdb", ("model.a",)).holds_environment


def test_on_a_warehouse_a_run_holds_its_nodes_unless_it_writes_the_whole_environment():
    assert not Writes(DbtCommand.BUILD, "postgres", ("model.a",)).holds_environment
    assert Writes(DbtCommand.BUILD, "postgres", None).holds_environment  # not known
    assert Writes(DbtCommand.BUILD, "redshift", ("model.a",), True).holds_environment


def test_a_run_that_writes_nothing_asks_nothing_of_prefect():
    def never(why: str) -> None:
        raise AssertionError(why)

    reading = Writes(DbtCommand.SOURCE_FRESHNESS, "redshift", ("source.a",))
    assert isinstance(holds.holds("prod", reading, never, wait_s=1), contextlib.nullcontext)
    nothing = Writes(DbtCommand.BUILD, "redshift", ())
    assert isinstance(holds.holds("prod", nothing, never, wait_s=1), contextlib.nullcontext)


def test_one_limit_per_environment_and_one_per_node_in_it():
    assert limit_name("prod") == "ferry-writer-prod"
    assert node_limit_name("prod", "model.shop.orders") == "ferry-writer-prod:model.shop.orders"
    assert node_limit_name("staging", "model.shop.orders") != node_limit_name(
        "prod", "model.shop.orders"
    )
    assert WRITERS > 1  # runs of disjoint nodes write at once
    assert WriterLimit("prod").change_name == "concurrency limit ferry-writer-prod"


def _on_server(**fields: object) -> GlobalConcurrencyLimitResponse:
    values: dict[str, object] = {
        "id": uuid4(),
        "created": datetime.now(UTC),
        "updated": datetime.now(UTC),
        "name": "ferry-writer-prod",
        "limit": WRITERS,
        "active": True,
        "active_slots": 0,
        "slot_decay_per_second": 0.0,
    }
    return GlobalConcurrencyLimitResponse.model_validate(values | fields)


def test_a_limit_as_it_should_be_matches_whoever_holds_it_now():
    spec = WriterLimit("prod")
    assert spec.matches(_on_server())
    assert spec.matches(_on_server(active_slots=3))  # runs writing right now change nothing


@pytest.mark.parametrize(
    "changed_by_hand",
    [{"limit": 1}, {"limit": 0}, {"active": False}, {"slot_decay_per_second": 0.5}],
)
def test_a_limit_changed_by_hand_does_not_match(changed_by_hand):
    assert not WriterLimit("prod").matches(_on_server(**changed_by_hand))


def test_the_environments_are_those_prefect_yaml_deploys_to():
    assert environments() == ["local", "staging", "prod"]
    assert environments(names=names_of_env("staging")) == ["staging"]
    assert environments(names=["build-prod", "run-local"]) == ["local", "prod"]


# --- the lease: renewed, or the run stopped before it can lapse --------------------------------


class _Api:
    """The renewals' answers, in order (an exception, or None for renewed), on a test clock
    that moves only when the keeper pauses or a call takes time."""

    def __init__(self, answers: list[BaseException | None], call_s: float = 0.0) -> None:
        self.answers = answers
        self.now = 1000.0
        self.calls: list[float] = []
        self.call_s = call_s

    def renew_concurrency_lease(self, lease_id: Any, lease_duration: float) -> None:
        self.calls.append(self.now)
        self.now += self.call_s
        answer = self.answers.pop(0) if self.answers else None
        if answer is not None:
            raise answer

    @contextlib.contextmanager
    def connect(self) -> Iterator[_Api]:
        yield self


def _status(code: int) -> httpx.HTTPStatusError:
    request = httpx.Request("POST", "http://api/v2/concurrency_limits/leases/x/renew")
    return httpx.HTTPStatusError("", request=request, response=httpx.Response(code))


def _keep(api: _Api, lease_s: float = 60.0) -> tuple[list[str], float]:
    """Runs a keeper to its end on the test's clock: why it was told to stop, and when."""
    lost: list[str] = []
    stopped = threading.Event()

    def pause(seconds: float) -> bool:
        api.now += seconds
        return stopped.is_set() or len(api.calls) > 200  # never renewed forever

    def on_lost(why: str) -> None:
        lost.append(why)
        stopped.set()

    keeper = holds._Keeper(
        holds._Lease(uuid4(), asked_at=api.now),
        lease_s,
        on_lost,
        "3 node(s) of ferry-writer-prod",
        logging.getLogger("test"),
        connect=api.connect,
        clock=lambda: api.now,
        pause=pause,
    )
    started = api.now
    keeper._keep()
    return lost, api.now - started


def test_a_lease_renewed_in_time_never_stops_the_run():
    api = _Api([None] * 300)
    lost, _ = _keep(api)
    assert lost == []
    gaps = {round(b - a, 3) for a, b in zip(api.calls, api.calls[1:], strict=False)}
    assert gaps == {10.0}  # every sixth of a 60 s lease


def test_an_api_gone_stops_the_run_before_the_lease_can_lapse():
    api = _Api([httpx.ConnectError("refused")] * 300, call_s=0.5)
    lost, after = _keep(api, lease_s=60.0)
    assert len(lost) == 1, lost
    assert "could not be renewed for" in lost[0] and "ConnectError: refused" in lost[0]
    # Stopped once 80 % of the lease passed without a renewal, never later.
    assert 60.0 * FENCE_FRACTION <= after < 60.0, after


def test_a_renewal_after_failures_keeps_the_run_going():
    answers: list[BaseException | None] = [None, httpx.ReadTimeout("slow")] * 3 + [None] * 300
    api = _Api(answers, call_s=0.2)
    lost, _ = _keep(api)
    assert lost == []


def test_a_lease_the_server_no_longer_has_stops_the_run_at_once():
    api = _Api([None, _status(410)])
    lost, after = _keep(api)
    assert lost == ["the Prefect server no longer has its hold on 3 node(s) of ferry-writer-prod"]
    assert after == pytest.approx(20.0)  # the second renewal


def test_an_api_error_is_retried_until_the_fence():
    api = _Api([_status(503)] * 300, call_s=0.1)
    lost, after = _keep(api, lease_s=300.0)
    assert lost and "HTTP 503" in lost[0]
    assert 300 * FENCE_FRACTION <= after < 300 * FENCE_FRACTION + holds.POLL_S + 1
    assert len(api.calls) > 10  # asked again every few seconds, not once
