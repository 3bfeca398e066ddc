from flows.dbt.nodes import NodeStatus
from flows.prefect.node_runs import prefect_state_of


def test_an_unknown_status_from_a_newer_dbt_counts_as_a_failure():
    assert NodeStatus.parse("exploded") is NodeStatus.ERROR
    assert NodeStatus.parse("PASS") is NodeStatus.PASS


def test_every_status_has_a_prefect_state_and_failures_are_failed():
    for status in NodeStatus:
        state_type, _ = prefect_state_of(status)
        assert (state_type == "FAILED") == status.failed
    assert prefect_state_of(NodeStatus.WARN) == ("COMPLETED", "Warned")
    assert prefect_state_of(NodeStatus.SKIPPED) == ("CANCELLED", "Skipped")
