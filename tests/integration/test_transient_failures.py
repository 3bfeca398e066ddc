"""Transient warehouse failures are retried in the run; a model's own failure never is.

A TCP proxy in front of PostgreSQL plays the flaky network: it drops the first connections it
gets (the client sees "server closed the connection unexpectedly"), then forwards the rest.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from pathlib import Path

import pytest

from flows.dbt_run import execute
from flows.summary import Outcome
from tests.conftest import FIXTURES, copy_project, make_settings

pytestmark = pytest.mark.integration


class FlakyProxy:
    """Forwards 127.0.0.1:<port> to PostgreSQL, after dropping the first `drop` connections."""

    def __init__(self, drop: int, upstream: tuple[str, int] = ("127.0.0.1", 5432)):
        self.drop = drop
        self.upstream = upstream
        self.accepted = 0
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            self.accepted += 1
            if self.accepted <= self.drop:
                client.close()
                continue
            upstream = socket.create_connection(self.upstream)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._server.close()


def lighthouse_on(port: int, tmp_path: Path) -> Path:
    project = copy_project(FIXTURES / "other_project", tmp_path / "lighthouse")
    profiles = project / "profiles.yml"
    text = profiles.read_text().replace("port: 5432", f"port: {port}")
    # dbt-postgres retries a failed connect once by itself; off here, so ferry's retry shows.
    profiles.write_text(text.replace("      threads: 2\n", "      threads: 2\n      retries: 0\n"))
    return project


def test_a_dropped_connection_is_retried_and_the_run_succeeds(tmp_path, pg_schema):
    proxy = FlakyProxy(drop=1)
    try:
        project = lighthouse_on(proxy.port, tmp_path)
        settings = make_settings(project, tmp_path, transient_retry_delay_s=0.1)
        summary = execute({"command": "build", "target": "pg"}, settings).summary
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
    summary = execute({"command": "build", "target": "pg"}, settings).summary
    assert summary.outcome is Outcome.FAILED
    assert summary.attempts == 3
    assert "Connection refused" in summary.verdict or "connection refused" in summary.verdict


def test_a_models_own_failure_is_never_retried(tmp_path, pg_schema):
    project = copy_project(FIXTURES / "other_project", tmp_path / "lighthouse")
    settings = make_settings(project, tmp_path, transient_retry_delay_s=0.1)
    summary = execute(
        {"command": "build", "target": "pg", "vars": {"break_lighthouse": True}}, settings
    ).summary
    assert summary.outcome is Outcome.FAILED
    assert summary.attempts == 1
    assert "model.lighthouse.keeper_hours" in summary.verdict
