"""Stale sources alert once per stale period: each freshness run against the stale set the
previous one left in the artifact store (a real LocalStore folder)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from flows.artifacts import LocalStore
from flows.dbt.nodes import NodeResult, NodeStatus
from flows.history.staleness import Staleness, advance, stale_key

T0 = datetime(2026, 11, 1, 6, 0, tzinfo=UTC)
ORDERS = "source.shop.raw.orders"
CUSTOMERS = "source.shop.raw.customers"


def source(uid: str, status: str, resource_type: str = "source") -> NodeResult:
    return NodeResult(
        unique_id=uid,
        resource_type=resource_type,
        name=uid.split(".")[-1],
        status=NodeStatus(status),
        message=None,
        started_at=T0,
        finished_at=T0,
        execution_time=0.1,
    )


@pytest.fixture
def store(tmp_path) -> LocalStore:
    return LocalStore(tmp_path / "store")


class Runs:
    """Freshness runs of shop/prod, an hour apart."""

    def __init__(self, store: LocalStore) -> None:
        self.store = store
        self.hour = 0

    def __call__(self, *nodes: NodeResult) -> Staleness:
        self.hour += 1
        return advance(self.store, "shop", "prod", list(nodes), T0 + timedelta(hours=self.hour))

    def marks(self) -> dict[str, dict[str, str]]:
        raw = self.store.get_bytes(stale_key("shop", "prod"))
        assert raw is not None
        return json.loads(raw)["stale"]


@pytest.fixture
def run(store) -> Runs:
    return Runs(store)


def test_a_source_turning_stale_is_new_then_ongoing_while_it_stays_so(run):
    assert run(source(ORDERS, "warn"), source(CUSTOMERS, "pass")) == Staleness(
        new=[ORDERS], ongoing=[], recovered=[]
    )
    assert run(source(ORDERS, "warn"), source(CUSTOMERS, "pass")) == Staleness(
        new=[], ongoing=[ORDERS], recovered=[]
    )
    # Its stale period started at the first run.
    assert run.marks() == {
        ORDERS: {"status": "warn", "since": (T0 + timedelta(hours=1)).isoformat()}
    }


def test_warn_to_error_is_new_and_error_to_warn_is_ongoing(run):
    run(source(ORDERS, "warn"))

    assert run(source(ORDERS, "error")).new == [ORDERS]
    assert run.marks()[ORDERS]["status"] == "error"
    back = run(source(ORDERS, "warn"))
    assert (back.new, back.ongoing) == ([], [ORDERS])
    assert run(source(ORDERS, "error")) == Staleness(new=[], ongoing=[ORDERS], recovered=[])


def test_a_fresh_source_recovers_and_turning_stale_again_is_new(run):
    run(source(ORDERS, "error"))

    assert run(source(ORDERS, "pass")) == Staleness(new=[], ongoing=[], recovered=[ORDERS])
    assert run.marks() == {}
    assert run(source(ORDERS, "warn")) == Staleness(new=[ORDERS], ongoing=[], recovered=[])


def test_a_runtime_error_keeps_the_earlier_mark(run):
    run(source(ORDERS, "warn"))
    before = run.marks()

    assert run(source(ORDERS, "runtime error")) == Staleness(new=[], ongoing=[], recovered=[])
    assert run.marks() == before
    assert run(source(ORDERS, "warn")).ongoing == [ORDERS]


def test_a_runtime_error_without_an_earlier_mark_marks_nothing(run):
    assert run(source(ORDERS, "runtime error")) == Staleness(new=[], ongoing=[], recovered=[])
    assert run.marks() == {}


def test_a_source_this_run_did_not_check_keeps_its_mark(run):
    run(source(ORDERS, "warn"), source(CUSTOMERS, "error"))

    assert run(source(CUSTOMERS, "pass")).recovered == [CUSTOMERS]
    assert list(run.marks()) == [ORDERS]
    assert run(source(ORDERS, "warn")).ongoing == [ORDERS]


def test_nodes_that_are_not_sources_are_ignored(run):
    found = run(
        source("model.shop.orders", "warn", resource_type="model"),
        source("test.shop.unique_orders_id", "error", resource_type="test"),
    )

    assert found == Staleness(new=[], ongoing=[], recovered=[])
    assert run.marks() == {}


def test_each_environment_keeps_its_own_stale_set(store, run):
    run(source(ORDERS, "warn"))

    staging = advance(store, "shop", "staging", [source(ORDERS, "warn")], T0)

    assert staging.new == [ORDERS]
    assert stale_key("shop", "prod") == "shop/prod/history/stale_sources.json"


def test_the_lists_are_sorted(run):
    ids = ["source.shop.raw.z", "source.shop.raw.a", "source.shop.raw.m"]

    assert run(*(source(uid, "warn") for uid in ids)).new == sorted(ids)
