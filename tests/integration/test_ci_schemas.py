"""Pull-request schemas on PostgreSQL (the stand-in for Redshift): `ferry ci-schema drop` and
`sweep` drop exactly the pull request's schemas and never another - not a lookalike, not an
open pull request's, not production's. GitHub is a real HTTP server on 127.0.0.1 speaking the
few endpoints ferry calls.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlparse

import psycopg2
import pytest

from flows.ci.github import GitHub, GitHubError
from flows.cli import main
from tests.conftest import SHOP

pytestmark = pytest.mark.integration

DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test"
PREFIX = "fcit"  # this test's own prefix: it can never touch another suite's schemas
SCHEMAS = [
    f"{PREFIX}_pr_3",
    f"{PREFIX}_pr_3_staging",
    f"{PREFIX}_pr_31",
    f"{PREFIX}_pr_31_marts",
    f"{PREFIX}_pr_4",
    f"{PREFIX}x_pr_3",
    f"{PREFIX}_prod",
    f"{PREFIX}_pr_x",
]


def schemas() -> set[str]:
    with psycopg2.connect(DSN) as conn, conn.cursor() as cur:
        cur.execute("select nspname from pg_namespace where nspname like %s", (f"{PREFIX}%",))
        return {name for (name,) in cur.fetchall()}


@pytest.fixture
def warehouse(monkeypatch) -> Iterator[None]:
    conn = psycopg2.connect(DSN)
    conn.autocommit = True
    with conn.cursor() as cur:
        for schema in schemas():
            cur.execute(f'drop schema "{schema}" cascade')
        for schema in SCHEMAS:
            cur.execute(f'create schema "{schema}"')
            cur.execute(f'create table "{schema}".t as select 1 as x')
    monkeypatch.setenv("FERRY_PROJECT_DIR", str(SHOP))
    monkeypatch.setenv("FERRY_PROFILES_DIR", str(SHOP))
    yield
    with conn.cursor() as cur:
        for schema in schemas():
            cur.execute(f'drop schema "{schema}" cascade')
    conn.close()


def ci_schema(tmp_path, *args: str) -> int:
    return main(["ci-schema", *args, "--prefix", PREFIX, "--target", "postgres"])


def test_dropping_a_pull_request_drops_its_schemas_only(warehouse, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FERRY_WORK_DIR", str(tmp_path))
    assert ci_schema(tmp_path, "drop", "--pr", "3", "--dry-run") == 0
    assert schemas() == set(SCHEMAS)
    assert f"would drop {PREFIX}_pr_3_staging" in capsys.readouterr().out

    assert ci_schema(tmp_path, "drop", "--pr", "3") == 0
    assert schemas() == set(SCHEMAS) - {f"{PREFIX}_pr_3", f"{PREFIX}_pr_3_staging"}
    assert ci_schema(tmp_path, "drop", "--pr", "3") == 0  # again: nothing left, still fine


def test_the_sweep_keeps_open_pull_requests(warehouse, tmp_path, monkeypatch):
    monkeypatch.setenv("FERRY_WORK_DIR", str(tmp_path))
    assert ci_schema(tmp_path, "sweep", "--open-prs", "31") == 0
    assert schemas() == {
        f"{PREFIX}_pr_31",
        f"{PREFIX}_pr_31_marts",
        f"{PREFIX}x_pr_3",
        f"{PREFIX}_prod",
        f"{PREFIX}_pr_x",
    }


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


def test_the_nightly_sweep_asks_github_which_pull_requests_are_open(
    warehouse, github, tmp_path, monkeypatch
):
    monkeypatch.setenv("FERRY_WORK_DIR", str(tmp_path))
    github.open_prs = [4, *range(1000, 1150)]  # two pages of open pull requests
    assert ci_schema(tmp_path, "sweep", "--open-prs-from-github") == 0
    assert schemas() == {f"{PREFIX}_pr_4", f"{PREFIX}x_pr_3", f"{PREFIX}_prod", f"{PREFIX}_pr_x"}
    assert [c for c in github.calls if c[1] == "/repos/o/r/pulls"] == [
        ("GET", "/repos/o/r/pulls")
    ] * 2


def test_a_github_refusal_drops_nothing(warehouse, github, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FERRY_WORK_DIR", str(tmp_path))
    monkeypatch.setenv("GITHUB_TOKEN", "wrong")
    assert ci_schema(tmp_path, "sweep", "--open-prs-from-github") == 1
    assert "401" in capsys.readouterr().err
    assert schemas() == set(SCHEMAS)


def test_the_slim_ci_comment_is_created_once_then_updated(github, tmp_path):
    body = tmp_path / "comment.md"
    body.write_text("<!-- ferry:slim-ci -->\nfirst")
    github.comments[7] = [{"id": 1, "body": "a human's comment"}]
    assert main(["ci", "comment", "--pr", "7", "--file", str(body)]) == 0
    body.write_text("<!-- ferry:slim-ci -->\nsecond")
    assert main(["ci", "comment", "--pr", "7", "--file", str(body)]) == 0
    assert [c["body"] for c in github.comments[7]] == [
        "a human's comment",
        "<!-- ferry:slim-ci -->\nsecond",
    ]


def test_github_errors_carry_the_status(github):
    api = GitHub("o/nope", "t0ken", os.environ["GITHUB_API_URL"])
    with pytest.raises(GitHubError, match="404"):
        api.upsert_comment(1, "<!-- m -->", "x")
