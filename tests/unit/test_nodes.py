from datetime import UTC, datetime

from flows.dbt.nodes import NodeStatus, results_of_json
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


def test_a_stored_run_results_reads_back_as_the_nodes_dbt_reported():
    document = {
        "results": [
            {
                "unique_id": "model.shop.orders",
                "status": "success",
                "timing": [
                    {"name": "compile", "started_at": "2026-12-07T10:00:00Z",
                     "completed_at": "2026-12-07T10:00:01Z"},
                    {"name": "execute", "started_at": "2026-12-07T10:00:01",
                     "completed_at": "2026-12-07T10:00:03.500000Z"},
                ],
                "execution_time": 3.5,
                "adapter_response": {"rows_affected": -1},  # dbt's "the adapter did not say"
            },
            {"unique_id": "test.shop.not_null_orders_id", "status": "fail", "failures": 2,
             "timing": [{"started_at": "not a time"}], "adapter_response": {"rows_affected": 0}},
        ]
    }  # fmt: skip
    orders, test = results_of_json(document, {"model.shop.orders": "orders"})
    assert (orders.name, orders.resource_type, orders.status) == ("orders", "model", "success")
    assert orders.started_at == datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
    assert orders.finished_at == datetime(2026, 12, 7, 10, 0, 3, 500000, tzinfo=UTC)
    assert orders.rows is None and orders.execution_time == 3.5
    assert (test.name, test.status, test.failures, test.rows) == (
        "not_null_orders_id", "fail", 2, 0
    )  # fmt: skip
    assert test.started_at is None and test.finished_at is None
