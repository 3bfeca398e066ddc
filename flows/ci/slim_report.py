"""The pull-request comment of a Slim CI run: what was built, what failed, what it deferred to.

Built from the run's own files (summary.json, read as flows.run.summary.RunSummary, and dbt's
run_results.json), so the comment says exactly what the run recorded. A run refused before dbt
started (`ferry run --json` then prints only its verdict) gets a comment saying why.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from flows.artifacts import DOCS_PAGE
from flows.ci.diff.records import DIFF_FILE, DataDiff
from flows.ci.diff.render import render as render_diff
from flows.dbt.nodes import NodeStatus
from flows.run.summary import RunSummary
from flows.run.verdict import RefusedRun

MARKER = "<!-- ferry:slim-ci -->"
NO_DOCS = ""
"""`docs` of a pull request whose docs run made no page."""
_ICONS = {"success": "✅", "warnings": "⚠️", "failed": "❌", "invalid": "⛔"}
_ROWS = 40  # node rows before "and N more"


class NotARun(ValueError):
    """The path holds no run to report on: missing, not JSON, or not a run's summary. Bad input
    (exit code 2)."""


@dataclass(frozen=True)
class SlimRun:
    """A Slim CI run as its files recorded it."""

    summary: RunSummary | RefusedRun
    results: list[dict[str, Any]]
    """run_results.json's results (none when dbt stopped before any node)."""
    folder: Path
    """The run's artifact folder: manifest.json, run_results.json, and diff.json once diffed."""

    def data_diff(self) -> DataDiff | None:
        """What `ferry ci diff` stored beside the run, if it ran.

        Raises:
            NotARun: a diff.json that is not one ferry wrote.
        """
        path = self.folder / DIFF_FILE
        if not path.is_file():
            return None
        try:
            return DataDiff.model_validate_json(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise NotARun(f"{path} is not a data diff ferry can read: {exc}") from None


def docs_location(docs: str | None) -> str | None:
    """Where the pull request's docs page is, for `render`: a link as given; a docs run's page
    (its folder, or `ferry run --json` output) as a path relative to here, as the workflow's
    artifacts hold it. A docs run that made no page is NO_DOCS, never a refusal: the comment
    goes out whatever the docs step did."""
    if docs is None or docs.startswith(("http://", "https://")):
        return docs
    try:
        docs_run = load_run(Path(docs))
    except NotARun:
        return NO_DOCS
    page = docs_run.folder / DOCS_PAGE
    stored = isinstance(docs_run.summary, RunSummary) and docs_run.summary.artifacts
    if not stored or not page.is_file():  # refused, or failed early
        return NO_DOCS
    with contextlib.suppress(ValueError):
        page = page.resolve().relative_to(Path.cwd())
    return str(page)


def load_run(path: Path) -> SlimRun:
    """summary.json and run_results' results from a run's folder, or from `ferry run --json`.

    Raises:
        NotARun: no summary where the path says, or one that is not a run's.
    """
    try:
        summary = _summary(path if path.is_file() else path / "summary.json")
        folder = path.parent if path.is_file() else path
        if path.is_file() and path.name != "summary.json":  # `ferry run --json`: names the run
            folder = Path(summary.artifacts or "") if isinstance(summary, RunSummary) else folder
        results_file = folder / "run_results.json"
        results = _json_object(results_file)["results"] if results_file.is_file() else []
    except (OSError, ValueError, KeyError) as exc:
        raise NotARun(f"{path} holds no run summary ferry can read: {exc}") from None
    return SlimRun(summary, results, folder)


def _summary(path: Path) -> RunSummary | RefusedRun:
    """A stored run, or the refusal `ferry run --json` printed instead of one."""
    raw = path.read_bytes()
    try:
        return RunSummary.read(raw)
    except ValidationError as not_a_summary:
        try:
            return RefusedRun.model_validate_json(raw)
        except ValidationError:
            raise not_a_summary from None


def _json_object(path: Path) -> dict[str, Any]:
    document = json.loads(path.read_text())
    if not isinstance(document, dict):
        raise ValueError(f"{path} holds {type(document).__name__}, not a JSON object")
    return document


def render(
    summary: RunSummary | RefusedRun,
    results: list[dict[str, Any]],
    *,
    schema: str | None = None,
    state_env: str = "prod",
    run_url: str | None = None,
    data_diff: DataDiff | None = None,
    docs: str | None = None,
) -> str:
    """Markdown for the pull request, starting with the marker the comment is found by.

    Args:
        data_diff: `ferry ci diff`'s result: its "What changed in the data" section follows.
        docs: where the pull request's dbt docs page is (a link, or a path in the run's
            artifacts).
    """
    if isinstance(summary, RefusedRun):
        lines = [
            MARKER,
            f"### {_ICONS['invalid']} Slim CI: {summary.verdict}",
            "",
            "The run was refused before dbt started: nothing was built.",
        ]
        return _with_links(lines, data_diff=data_diff, docs=docs, run_url=run_url)
    outcome = summary.outcome.value
    lines = [
        MARKER,
        f"### {_ICONS.get(outcome, '')} Slim CI: {summary.verdict}",
        "",
        f"`dbt {summary.request.describe()}`"
        + (f" into schema `{schema}`" if schema else "")
        + f", compared with `{state_env}` state"
        + f" · {summary.duration_s:.0f} s"
        + (f" · commit `{summary.git_sha[:12]}`" if summary.git_sha else ""),
    ]
    if not results and outcome in ("success", "warnings"):
        lines += ["", "No node was built: nothing in this pull request changes the dbt project."]
    elif not results:
        lines += ["", "dbt stopped before any node ran; the verdict above says why."]
    else:
        counts = ", ".join(f"{n} {status}" for status, n in summary.counts.items())
        lines += ["", f"**{len(results)} nodes**: {counts}", ""]
        lines += ["| node | status | time | message |", "|---|---|---:|---|"]
        ordered = sorted(results, key=_order)
        for result in ordered[:_ROWS]:
            message = " ".join(str(result.get("message") or "").split())[:160]
            if result.get("status") in ("success", "pass"):
                message = ""
            lines.append(
                f"| `{result['unique_id']}` | {result.get('status')} | "
                f"{float(result.get('execution_time') or 0):.1f} s | {message.replace('|', '/')} |"
            )
        if len(ordered) > _ROWS:
            lines.append(f"| and {len(ordered) - _ROWS} more | | | |")
    return _with_links(lines, data_diff=data_diff, docs=docs, run_url=run_url)


def _with_links(
    lines: list[str], *, data_diff: DataDiff | None, docs: str | None, run_url: str | None
) -> str:
    """The comment's end: the data diff, then where the docs and the workflow run are."""
    if data_diff is not None:
        lines += ["", render_diff(data_diff).rstrip("\n")]
    links = []
    if docs == NO_DOCS:
        links.append("dbt docs of this pull request: not generated (the workflow run says why)")
    elif docs and docs.startswith(("http://", "https://")):
        links.append(f"[dbt docs of this pull request]({docs})")
    elif docs:
        links.append(f"dbt docs of this pull request: `{docs}` in the workflow run's artifacts")
    if run_url:
        links.append(f"[The workflow run and its artifacts]({run_url})")
    if links:
        lines += ["", " · ".join(links)]
    return "\n".join(lines) + "\n"


def _order(result: dict[str, Any]) -> tuple[int, str]:
    """The order of every report (`NodeStatus.rank`): failures, warnings, skips, passes."""
    return NodeStatus.parse(str(result.get("status"))).rank, str(result.get("unique_id"))
