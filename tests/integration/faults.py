"""A network that misbehaves, for the fault tests: a TCP proxy that drops the first connections
it gets or holds every connection for a while, and the lighthouse project pointed at it."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from pathlib import Path

from tests.conftest import FIXTURES, copy_project


class TcpProxy:
    """Forwards 127.0.0.1:<port> to `upstream`.

    Args:
        drop: close the first `drop` connections at once (the client sees them dropped).
        hold_until: hold every connection until this `time.monotonic()` before forwarding.
    """

    def __init__(
        self, upstream: tuple[str, int], *, drop: int = 0, hold_until: float | None = None
    ):
        self.upstream = upstream
        self.drop = drop
        self.hold_until = hold_until
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
            threading.Thread(target=self._forward, args=(client,), daemon=True).start()

    def _forward(self, client: socket.socket) -> None:
        if self.hold_until is not None:
            time.sleep(max(self.hold_until - time.monotonic(), 0))
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


def lighthouse_on(port: int, tmp_path: Path, *, slow: bool = False) -> Path:
    """The lighthouse project on PostgreSQL at `port`; `slow` adds a model that sleeps 120 s."""
    project = copy_project(FIXTURES / "other_project", tmp_path / "lighthouse")
    profiles = project / "profiles.yml"
    text = profiles.read_text().replace("port: 5432", f"port: {port}")
    # dbt-postgres retries a failed connect once by itself; off here, so ferry's retry shows.
    profiles.write_text(text.replace("      threads: 2\n", "      threads: 2\n      retries: 0\n"))
    if slow:
        (project / "models" / "marts" / "slow_beam.sql").write_text(
            "select 1 as beam from (select pg_sleep(120)) as slept\n"
        )
    return project
