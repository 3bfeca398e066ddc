"""Finding the Prefect API before a run: which one, and whether it answers."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

from flows.prefect import api as prefect_api
from flows.prefect.server import free_port


def test_the_api_url_in_the_environment_is_the_one(tmp_path):
    environ = {"PREFECT_API_URL": "http://127.0.0.1:4200/api", "PREFECT_HOME": str(tmp_path)}
    assert prefect_api.configured_url(environ) == "http://127.0.0.1:4200/api"


def test_without_a_url_or_a_profile_there_is_no_api(tmp_path):
    assert prefect_api.configured_url({"PREFECT_HOME": str(tmp_path)}) is None


def test_an_api_that_answers_anything_is_reachable_and_a_closed_port_is_not():
    class NotFound(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(404)  # any HTTP answer: something listens there
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert prefect_api.unreachable(f"http://127.0.0.1:{server.server_port}/api") is None
    finally:
        server.shutdown()
    reason = prefect_api.unreachable(f"http://127.0.0.1:{free_port()}/api", timeout_s=2)
    assert reason is not None and "ConnectError" in reason
