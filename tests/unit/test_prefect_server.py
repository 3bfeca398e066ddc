"""The Prefect API client ferry's tools use retries what the server asks to be retried."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from flows.prefect.server import api_client


class Locked(BaseHTTPRequestHandler):
    """503 (SQLite busy, as Prefect's server answers) for the first `busy` requests."""

    busy = 0
    seen = 0

    def log_message(self, *args: Any) -> None:
        pass

    def do_DELETE(self) -> None:
        type(self).seen += 1
        status = 503 if type(self).seen <= type(self).busy else 204
        self.send_response(status)
        self.send_header("Retry-After", "0")
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def server() -> Iterator[str]:
    Locked.seen = 0
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Locked)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()


def test_a_busy_server_is_asked_again(server):
    Locked.busy = 2
    assert api_client(server).delete("/automations/1").status_code == 204
    assert Locked.seen == 3


def test_a_server_that_stays_busy_gets_its_answer_through(server):
    Locked.busy = 100
    assert api_client(server).delete("/automations/1").status_code == 503
    assert Locked.seen == 6
