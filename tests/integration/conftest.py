"""Fixtures of the integration tests: a GitHub API on 127.0.0.1, a page that loads files only,
the ECS stack in moto."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlparse

import pytest


class FakeGitHub(BaseHTTPRequestHandler):
    """Open pull requests, paged as GitHub pages them, and issue comments."""

    open_prs: ClassVar[list[int]] = []
    comments: ClassVar[dict[int, list[dict[str, Any]]]] = {}
    calls: ClassVar[list[tuple[str, str]]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, body: Any) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self) -> None:
        url = urlparse(self.path)
        query = parse_qs(url.query)
        self.calls.append(("GET", url.path))
        if self.headers.get("Authorization") != "Bearer t0ken":
            return self._send(401, {"message": "Bad credentials"})
        page, per_page = int(query["page"][0]), int(query["per_page"][0])
        if url.path == "/repos/o/r/pulls":
            items = [{"number": n} for n in self.open_prs]
        elif url.path.startswith("/repos/o/r/issues/") and url.path.endswith("/comments"):
            items = self.comments.get(int(url.path.split("/")[5]), [])
        else:
            return self._send(404, {"message": "Not Found"})
        self._send(200, items[(page - 1) * per_page : page * per_page])

    def do_POST(self) -> None:
        pr = int(self.path.split("/")[5])
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.calls.append(("POST", self.path))
        comment = {"id": 1000 + len(self.calls), "body": body["body"]}
        self.comments.setdefault(pr, []).append(comment)
        self._send(201, comment)

    def do_PATCH(self) -> None:
        comment_id = int(self.path.rsplit("/", 1)[1])
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.calls.append(("PATCH", self.path))
        for comment in (c for cs in self.comments.values() for c in cs):
            if comment["id"] == comment_id:
                comment["body"] = body["body"]
                return self._send(200, comment)
        self._send(404, {"message": "Not Found"})


@pytest.fixture
def github(monkeypatch) -> Iterator[type[FakeGitHub]]:
    FakeGitHub.open_prs, FakeGitHub.comments, FakeGitHub.calls = [], {}, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeGitHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("GITHUB_API_URL", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("GITHUB_REPOSITORY", "o/r")
    monkeypatch.setenv("GITHUB_TOKEN", "t0ken")
    yield FakeGitHub
    server.shutdown()


def offline_page(browser: Any) -> tuple[Any, list[str], list[str]]:
    """A page that may load files only: (the page, every URL it asked for, its console and
    page errors). What people look at must work offline."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    requests: list[str] = []
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))

    def only_files(route: Any) -> None:
        requests.append(route.request.url)
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            route.abort()

    page.route("**/*", only_files)
    return page, requests, errors


@pytest.fixture
def ecs_stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """The infrastructure stack's outputs, made in moto (tests/integration/ecs.py), with
    prefect-aws's ECS observer off."""
    from tests.integration import ecs

    ecs.observer_off(monkeypatch)
    with ecs.stack_in_moto() as outputs:
        yield outputs
