"""Which dbt invocations hold their environment's writer slot, and what the limit must be."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from uuid import uuid4

import pytest
from prefect.client.schemas.responses import GlobalConcurrencyLimitResponse

from flows.dbt.commands import DbtCommand
from flows.prefect.deployments import environments, names_of_env
from flows.prefect.writer_slot import WRITERS, WriterLimit, limit_name, takes_slot, writer_slot

WRITING = {
    DbtCommand.BUILD,
    DbtCommand.RUN,
    DbtCommand.SEED,
    DbtCommand.SNAPSHOT,
    DbtCommand.TEST,  # store_failures writes audit tables
    DbtCommand.RETRY,  # re-runs any of the above
}


@pytest.mark.parametrize("adapter", ["redshift", "postgres", None])
def test_on_a_warehouse_only_the_commands_that_may_write_take_the_slot(adapter):
    taking = {command for command in DbtCommand if takes_slot(command, adapter)}
    assert taking == WRITING
    assert not takes_slot(DbtCommand.SOURCE_FRESHNESS, adapter)
    assert not takes_slot(DbtCommand.COMPILE, adapter)
    assert not takes_slot(DbtCommand.DOCS_GENERATE, adapter)


def test_on_duckdb_every_command_takes_the_slot_as_each_opens_the_file():
    assert all(takes_slot(command, "duckdb") for command in DbtCommand)


def test_a_command_that_takes_no_slot_asks_nothing_of_prefect():
    slot = writer_slot("prod", DbtCommand.SOURCE_FRESHNESS, "redshift")
    assert isinstance(slot, contextlib.nullcontext)


def test_one_limit_per_environment_with_one_slot():
    assert limit_name("prod") == "ferry-writer-prod"
    assert limit_name("staging") != limit_name("prod")
    assert WRITERS == 1
    assert WriterLimit("prod").name == "ferry-writer-prod"
    assert WriterLimit("prod").change_name == "concurrency limit ferry-writer-prod"


def _on_server(**fields: object) -> GlobalConcurrencyLimitResponse:
    values: dict[str, object] = {
        "id": uuid4(),
        "created": datetime.now(UTC),
        "updated": datetime.now(UTC),
        "name": "ferry-writer-prod",
        "limit": 1,
        "active": True,
        "active_slots": 0,
        "slot_decay_per_second": 0.0,
    }
    return GlobalConcurrencyLimitResponse.model_validate(values | fields)


def test_a_limit_as_it_should_be_matches_whoever_holds_it_now():
    spec = WriterLimit("prod")
    assert spec.matches(_on_server())
    assert spec.matches(_on_server(active_slots=1))  # a run writing right now changes nothing


@pytest.mark.parametrize(
    "changed_by_hand",
    [{"limit": 2}, {"limit": 0}, {"active": False}, {"slot_decay_per_second": 0.5}],
)
def test_a_limit_changed_by_hand_does_not_match(changed_by_hand):
    assert not WriterLimit("prod").matches(_on_server(**changed_by_hand))


def test_the_environments_are_those_prefect_yaml_deploys_to():
    assert environments() == ["local", "staging", "prod"]
    assert environments(names=names_of_env("staging")) == ["staging"]
    assert environments(names=["build-prod", "run-local"]) == ["local", "prod"]
