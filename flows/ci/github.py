"""The few GitHub REST calls the workflows need: open pull requests, one sticky comment.

Plain HTTPS with the workflow's own GITHUB_TOKEN; GITHUB_API_URL makes it work on GitHub
Enterprise and against a local server in tests.
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass
from typing import Any


class GitHubError(RuntimeError):
    """GitHub refused a call; the message has its status and answer."""


@dataclass(frozen=True)
class GitHub:
    repository: str  # owner/name
    token: str
    api_url: str = "https://api.github.com"
    timeout_s: float = 30.0

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        request = urllib.request.Request(
            f"{self.api_url.rstrip('/')}{path}",
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={
                "Accept": "application/vnd.github+json",
                "Authorization": f"Bearer {self.token}",
                "X-GitHub-Api-Version": "2022-11-28",
                "Content-Type": "application/json",
                "User-Agent": "ferry-ci",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:300]
            raise GitHubError(f"GitHub {method} {path}: {exc.code} {detail}") from None
        return json.loads(raw) if raw else None

    def _pages(self, path: str) -> list[Any]:
        items: list[Any] = []
        for page in range(1, 101):  # 10,000 items: far beyond any repository's open PRs
            sep = "&" if "?" in path else "?"
            batch = self._call("GET", f"{path}{sep}per_page=100&page={page}")
            items += batch
            if len(batch) < 100:
                break
        return items

    def open_pull_requests(self) -> list[int]:
        pulls = self._pages(f"/repos/{self.repository}/pulls?state=open")
        return sorted(int(p["number"]) for p in pulls)

    def upsert_comment(self, pr: int, marker: str, body: str) -> str:
        """Edits the pull request's comment that carries `marker`, or adds one.

        Returns:
            "updated" or "created".
        """
        if marker not in body:
            body = f"{marker}\n{body}"
        comments = self._pages(f"/repos/{self.repository}/issues/{pr}/comments")
        mine = [c for c in comments if marker in (c.get("body") or "")]
        if mine:
            self._call(
                "PATCH",
                f"/repos/{self.repository}/issues/comments/{mine[-1]['id']}",
                {"body": body},
            )
            return "updated"
        self._call("POST", f"/repos/{self.repository}/issues/{pr}/comments", {"body": body})
        return "created"
