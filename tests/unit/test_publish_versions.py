"""Versions and publications: naming, what is kept, what a rollback returns to, what may be
dropped. Pure: publications are built here as the ledger would return them."""

from __future__ import annotations

from datetime import datetime

import pytest

from flows.publish.statements import Relation
from flows.publish.versions import (
    InvalidVersion,
    NotKept,
    Publication,
    droppable_schemas,
    kept,
    next_mapping,
    publications_of,
    rollback_target,
    split_version_schema,
    version_for_run,
    version_named,
    version_schema,
)

AT = datetime(2025, 1, 1)
ORDERS, CUSTOMERS = Relation("analytics", "fct_orders"), Relation("analytics", "dim_customers")


def pub(seq: int, version: str, *sources: tuple[Relation, str], kind: str = "publish"):
    mapping = tuple(sorted((c, Relation(f"{c.schema}__{v}", c.name)) for c, v in sources))
    return Publication(seq, version, kind, AT, mapping)  # type: ignore[arg-type]


def test_a_run_s_version_is_a_short_name_from_its_id():
    assert version_for_run("5F0C2A1E-9B7D-4C3A-8E21-0123456789AB") == "r5f0c2a1e9b7d"
    assert version_schema("analytics", "r5f0c2a1e9b7d") == "analytics__r5f0c2a1e9b7d"
    with pytest.raises(InvalidVersion):
        version_for_run("---")


@pytest.mark.parametrize("bad", ["", "1abc", "a_b", "A1", "a" * 33])
def test_a_version_is_letters_and_digits(bad):
    with pytest.raises(InvalidVersion):
        version_schema("analytics", bad)


def test_a_versioned_schema_name_fits_postgres():
    with pytest.raises(InvalidVersion, match="longer than 63"):
        version_schema("s" * 50, "r123456789012")


def test_splitting_a_versioned_schema_name():
    assert split_version_schema("analytics__r1") == ("analytics", "r1")
    assert split_version_schema("my__marts__r1") == ("my__marts", "r1")
    assert split_version_schema("analytics") is None
    assert split_version_schema("analytics__ferry_x") is None
    assert split_version_schema("__r1") is None


def test_ledger_rows_become_publications_oldest_first():
    rows = [
        (2, "r2", "publish", AT, "analytics", "fct_orders", "analytics__r2", "fct_orders"),
        (1, "r1", "publish", "2025-01-01 00:00:00", "analytics", "fct_orders", "analytics__r1",
         "fct_orders"),
        (2, "r2", "publish", AT, "analytics", "dim_customers", "analytics__r1", "dim_customers"),
    ]  # fmt: skip
    first, second = publications_of(rows)
    assert (first.seq, first.version, first.published_at) == (1, "r1", AT)
    assert second.sources == {
        ORDERS: Relation("analytics__r2", "fct_orders"),
        CUSTOMERS: Relation("analytics__r1", "dim_customers"),
    }
    assert second.schemas == {"analytics__r1", "analytics__r2"}


def test_a_partial_publish_keeps_what_it_did_not_build():
    current = pub(1, "r1", (ORDERS, "r1"), (CUSTOMERS, "r1"))
    after = dict(next_mapping(current, {ORDERS: Relation("analytics__r2", "fct_orders")}))
    assert after == {
        ORDERS: Relation("analytics__r2", "fct_orders"),
        CUSTOMERS: Relation("analytics__r1", "dim_customers"),
    }
    assert next_mapping(None, {}) == ()


def test_the_last_n_versions_are_kept_a_version_counting_once():
    history = [
        pub(1, "r1", (ORDERS, "r1")),
        pub(2, "r2", (ORDERS, "r2")),
        pub(3, "r3", (ORDERS, "r3")),
        pub(4, "r2", (ORDERS, "r2"), kind="rollback"),
    ]
    assert [p.seq for p in kept(history, 2)] == [2, 3, 4]  # r2 (current) and r3
    assert [p.seq for p in kept(history, 1)] == [2, 4]
    assert [p.seq for p in kept(history, 10)] == [1, 2, 3, 4]
    with pytest.raises(ValueError):
        kept(history, 0)


def test_rollback_returns_to_the_previous_version_or_the_one_named():
    history = [pub(1, "r1", (ORDERS, "r1")), pub(2, "r2", (ORDERS, "r2"))]
    assert rollback_target(history).version == "r1"
    assert rollback_target(history, "r2").seq == 2
    rolled_back = [*history, pub(3, "r1", (ORDERS, "r1"), kind="rollback")]
    assert rollback_target(rolled_back).version == "r2"  # rolling back a rollback
    assert rollback_target(rolled_back, "r1").seq == 1  # a publish, never a rollback's copy


def test_rollback_is_refused_when_there_is_nothing_kept_to_return_to():
    with pytest.raises(NotKept, match="nothing was ever published"):
        rollback_target([])
    with pytest.raises(NotKept, match="no version before r1"):
        rollback_target([pub(1, "r1", (ORDERS, "r1"))])
    with pytest.raises(NotKept, match="'r0' is not kept"):
        rollback_target([pub(1, "r1", (ORDERS, "r1"))], "r0")


def test_only_versions_no_kept_publication_reads_are_dropped():
    history = [
        pub(1, "r1", (ORDERS, "r1"), (CUSTOMERS, "r1")),
        pub(2, "r2", (ORDERS, "r2"), (CUSTOMERS, "r2")),
        pub(3, "r3", (ORDERS, "r3"), (CUSTOMERS, "r2")),  # a partial build: orders only
    ]
    existing = [
        "analytics",
        "analytics__r1",
        "analytics__r2",
        "analytics__r3",
        "analytics__r4",  # built by a run that failed: never published
        "other__r1",  # another environment's, or anyone's: not ours to drop
        "ferry_publish",
    ]
    assert droppable_schemas(history, 1, existing) == ["analytics__r1", "analytics__r4"]
    assert droppable_schemas(history, 2, existing) == ["analytics__r1", "analytics__r4"]
    assert droppable_schemas(history, 3, existing) == ["analytics__r4"]


RUN_ID = "5f0c2a1e-9b7d-4c3a-8e21-0123456789ab"  # a Prefect flow run id: it built r5f0c2a1e9b7d


def test_a_kept_version_is_named_by_itself_or_by_the_run_that_built_it():
    history = [pub(1, "r1", (ORDERS, "r1")), pub(2, "r5f0c2a1e9b7d", (ORDERS, "r5f0c2a1e9b7d"))]
    assert version_named("r1", history) == "r1"
    assert version_named("r5f0c2a1e9b7d", history) == "r5f0c2a1e9b7d"
    assert version_named(RUN_ID, history) == "r5f0c2a1e9b7d"
    assert version_named(RUN_ID.upper(), history) == "r5f0c2a1e9b7d"


def test_a_version_only_rolled_back_to_is_not_named():
    """Its publish is no longer kept: a rollback restores a publish, never a rollback's copy."""
    history = [pub(2, "r2", (ORDERS, "r2")), pub(3, "r1", (ORDERS, "r1"), kind="rollback")]
    with pytest.raises(NotKept, match=r"no kept version is 'r1'.*\(kept: r2\)"):
        version_named("r1", history)


def test_an_unknown_name_is_refused_listing_the_kept_versions():
    history = [pub(1, "r2", (ORDERS, "r2")), pub(2, "r1", (ORDERS, "r1"))]
    with pytest.raises(NotKept, match=r"nor was built by a run of that id \(kept: r1, r2\)"):
        version_named("r0", history)
    with pytest.raises(NotKept, match=r"'---'.*\(kept: r1, r2\)"):  # no letter: no run's id
        version_named("---", history)
    with pytest.raises(NotKept, match=r"\(kept: none\)"):
        version_named("r1", [])
