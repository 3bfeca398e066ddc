"""Which schemas belong to which pull request: clean-up must never touch anything else."""

from __future__ import annotations

import pytest

from flows.ci.pr_schemas import orphaned, owner_of, pr_schema, schemas_of_pr

WAREHOUSE = [
    "analytics",
    "analytics_raw",
    "ci",
    "ci_pr_1",
    "ci_pr_1_staging",
    "ci_pr_1_marts",
    "ci_pr_12",
    "ci_pr_12_staging",
    "ci_pr_",
    "ci_pr_01",
    "ci_pr_x",
    "cix_pr_1",
    "xci_pr_1",
    "pr_1",
    "public",
]


def test_a_pull_request_builds_into_its_own_schema():
    assert pr_schema(42) == "ci_pr_42"
    assert pr_schema(7, prefix="dev") == "dev_pr_7"
    with pytest.raises(ValueError, match="positive"):
        pr_schema(0)
    with pytest.raises(ValueError, match="lowercase identifier"):
        pr_schema(1, prefix="CI; drop")


@pytest.mark.parametrize(
    ("schema", "owner"),
    [
        ("ci_pr_1", 1),
        ("ci_pr_1_staging", 1),
        ("ci_pr_12", 12),
        ("ci_pr_12_staging", 12),
        ("ci_pr_", None),
        ("ci_pr_01", None),  # never a schema ferry names
        ("ci_pr_x", None),
        ("cix_pr_1", None),
        ("xci_pr_1", None),
        ("analytics", None),
    ],
)
def test_ownership_is_read_from_the_name_alone(schema, owner):
    assert owner_of(schema) == owner


def test_dropping_a_pull_request_takes_exactly_its_schemas():
    cleanup = schemas_of_pr(WAREHOUSE, 1)
    assert cleanup.drop == ("ci_pr_1", "ci_pr_1_marts", "ci_pr_1_staging")
    assert cleanup.keep == ("ci_pr_12", "ci_pr_12_staging")


def test_the_sweep_spares_open_pull_requests_and_everything_not_a_pr_schema():
    cleanup = orphaned(WAREHOUSE, open_prs=[12, 99])
    assert cleanup.drop == ("ci_pr_1", "ci_pr_1_marts", "ci_pr_1_staging")
    assert cleanup.keep == ("ci_pr_12", "ci_pr_12_staging")
    everything = orphaned(WAREHOUSE, open_prs=[])
    assert set(everything.drop) == {s for s in WAREHOUSE if owner_of(s) is not None}
    assert "analytics" not in everything.drop and "cix_pr_1" not in everything.drop
