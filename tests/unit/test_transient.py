"""Which failures are worth running again: the network's, never the model's."""

from datetime import UTC, datetime
from pathlib import Path

import pytest

from flows.dbt.invoke import DbtOutcome
from flows.dbt.nodes import NodeResult, NodeStatus
from flows.dbt.transient import transient_reason

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def outcome(*nodes: tuple[str, str], error: str | None = None, success=False) -> DbtOutcome:
    return DbtOutcome(
        success=success,
        nodes=[
            NodeResult(f"model.p.m{i}", "model", f"m{i}", NodeStatus(status), msg, T0, T0, 1.0)
            for i, (status, msg) in enumerate(nodes)
        ],
        error=error,
        elapsed=1.0,
        target_path=Path("target"),
        log_path=Path("logs"),
    )


@pytest.mark.parametrize(
    "message",
    [
        'Database Error\n  connection to server at "127.0.0.1", port 5439 failed: '
        "Connection refused",
        "Database Error\n  server closed the connection unexpectedly",
        "An error occurred (ThrottlingException) when calling the GetClusterCredentials operation",
        'could not translate host name "redshift.internal" to address',
        # two runs at once creating one schema: the second finds it the next time
        'Database Error\n  duplicate key value violates unique constraint "pg_namespace_nspname_'
        'index"\n  DETAIL:  Key (nspname)=(analytics) already exists.',
    ],
)
def test_network_failures_are_transient(message):
    assert transient_reason(outcome(("error", message), ("skipped", None)))


@pytest.mark.parametrize(
    "message",
    [
        'Database Error\n  relation "shop.stg_orders" does not exist',
        "Compilation Error in model fct_orders",
        "Got 3 results, configured to fail if != 0",
    ],
)
def test_a_models_own_failure_is_not(message):
    assert transient_reason(outcome(("error", message))) is None


def test_one_real_failure_among_transient_ones_means_no_retry():
    mixed = outcome(("error", "Connection refused"), ("error", 'column "x" does not exist'))
    assert transient_reason(mixed) is None


def test_an_error_before_any_node_ran_is_judged_by_its_message():
    assert transient_reason(outcome(error="could not connect to server: Connection refused"))
    assert transient_reason(outcome(error="Parsing Error in model x")) is None
    assert transient_reason(outcome(("success", None), success=True)) is None


def test_a_retry_takes_the_commands_flags_but_not_its_selection(tmp_path):
    """dbt retry refuses --select: a selected run's transient retry must not pass it on."""
    from flows.dbt.invoke import DbtInvocation
    from flows.dbt.profiles import DbtProject
    from flows.dbt.transient import retry_invocation
    from flows.run.request import RunRequest

    project = DbtProject(tmp_path, tmp_path, "p", "p", ("dev",), "dev")
    request = RunRequest.build(select="+keeper_hours", exclude="stg_x", threads=2, fail_fast=True)
    first = DbtInvocation(project, request.dbt_args(), tmp_path, tmp_path / "t", tmp_path)
    args = retry_invocation(first, tmp_path / "attempt-1").run_args()
    assert args[0] == "retry" and "--select" not in args and "--exclude" not in args
    assert args[args.index("--state") + 1] == str(tmp_path / "attempt-1")
    assert "--fail-fast" in args and args[args.index("--threads") + 1] == "2"
