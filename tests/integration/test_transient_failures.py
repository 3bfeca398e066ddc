"""Transient warehouse failures are retried in the run; a model's own failure never is.

A TCP proxy in front of PostgreSQL plays the flaky network: it drops the first connections it
gets (the client sees "server closed the connection unexpectedly"), then forwards the rest.
"""

from __future__ import annotations

import socket

import pytest

from flows.run.owner import run
from flows.run.request import RunRequest
from flows.run.verdict import Outcome
from tests.conftest import FIXTURES, copy_project, make_settings
from tests.integration.faults import TcpProxy, lighthouse_on

pytestmark = pytest.mark.integration


def test_a_dropped_connection_is_retried_and_the_run_succeeds(tmp_path, pg_schema):
    proxy = TcpProxy(("127.0.0.1", 5432), drop=1)
    try:
        project = lighthouse_on(proxy.port, tmp_path)
        settings = make_settings(project, tmp_path, transient_retry_delay_s=0.1)
        summary = run(RunRequest.build(command="build", target="pg"), settings).summary
    finally:
        proxy.close()
    assert summary.outcome is Outcome.SUCCESS, summary.verdict
    assert summary.attempts == 2
    assert summary.nodes_total == 12 and not summary.failed
    assert "after 2 attempts" in summary.verdict


def test_a_warehouse_that_stays_down_fails_after_the_retries(tmp_path, pg_schema):
    with socket.socket() as sock:  # a port nobody listens on: connection refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    project = lighthouse_on(port, tmp_path)
    settings = make_settings(project, tmp_path, transient_retries=2, transient_retry_delay_s=0.1)
    summary = run(RunRequest.build(command="build", target="pg"), settings).summary
    assert summary.outcome is Outcome.FAILED
    assert summary.attempts == 3
    assert "Connection refused" in summary.verdict or "connection refused" in summary.verdict


def test_a_models_own_failure_is_never_retried(tmp_path, pg_schema):
    project = copy_project(FIXTURES / "other_project", tmp_path / "lighthouse")
    settings = make_settings(project, tmp_path, transient_retry_delay_s=0.1)
    summary = run(
        RunRequest.build(command="build", target="pg", vars={"break_lighthouse": True}), settings
    ).summary
    assert summary.outcome is Outcome.FAILED
    assert summary.attempts == 1
    assert "model.lighthouse.keeper_hours" in summary.verdict
