"""A run's history step: compared with the runs before it, then added to them.

    compare (before the artifacts are stored)      record (after)
    ├ the history tables from the store            ├ this run's own part written to the store
    ├ timing regressions, volume anomalies         ├ the environment's report refreshed
    └ source freshness: which sources turned stale └ the parts compacted, when enough piled up

What it finds goes into the run's summary (so into summary.json, the markdown report, the
metrics and the alerts). Nothing here can fail a run: a store that cannot be read or written
costs the comparison, never the verdict, and the history is then left as it was.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from flows.artifacts import StoredRun
from flows.dbt.commands import DbtCommand
from flows.dbt.nodes import NodeResult
from flows.history import signals, staleness, store
from flows.history.fetch import RECORD_VERSION
from flows.history.signals import Rules, Signals, find
from flows.run.plan import Log, RunPlan
from flows.run.summary import RunSummary

# Commands whose node times are comparable run to run (compile and docs time nothing real).
_RECORDED = {
    DbtCommand.BUILD,
    DbtCommand.RUN,
    DbtCommand.TEST,
    DbtCommand.SEED,
    DbtCommand.SNAPSHOT,
    DbtCommand.SOURCE_FRESHNESS,
    DbtCommand.RETRY,
}


@dataclass
class Comparison:
    """What `compare` found, and what `record` needs to add the run."""

    signals: Signals = field(default_factory=Signals)
    newly_stale: list[str] | None = None
    tables: Path | None = None
    """The history as read (None: nothing to add to, it could not be read)."""
    report: str | None = None
    seconds: float = 0.0
    compaction_due: bool = False
    """The history read had enough parts to fold (flows.history.store.COMPACT_AFTER)."""
    since: datetime | None = None
    """The tables hold every run from then on (the recent base): the report draws those."""

    def summary_fields(self) -> dict[str, Any]:
        return {
            "regressions": self.signals.regressions,
            "anomalies": self.signals.anomalies,
            "newly_stale": self.newly_stale,
            "report": self.report,
        }


def compare(planned: RunPlan, nodes: list[NodeResult], log: Log) -> Comparison:
    """The run against the environment's history. Never raises."""
    settings = planned.settings
    command = planned.request.command
    if not settings.history.enabled or command not in _RECORDED:
        return Comparison()
    started = time.perf_counter()
    project, env = planned.project.name, settings.run.env
    comparison = Comparison(report=f"{planned.store.url}/{store.report_key(project, env)}")
    folder = planned.run_dir / "history"
    try:
        read = store.download(planned.store, project, env, folder, window=settings.history.window)
        had, comparison.compaction_due = read.found, read.compaction_due
        comparison.tables, comparison.since = folder, read.since
        rules = Rules(
            min_runs=settings.history.min_runs,
            window=settings.history.window,
            regression_factor=settings.history.regression_factor,
            regression_floor_s=settings.history.regression_floor_s,
            volume_deviation=settings.history.volume_deviation,
        )
        if had:
            comparison.signals = find(folder, nodes, project=project, env=env, rules=rules)
    except Exception as exc:
        log.warning("could not read the run history (no comparison this run): %s", exc)
        comparison.report = None
    if command is DbtCommand.SOURCE_FRESHNESS:
        try:
            found = staleness.advance(planned.store, project, env, nodes, datetime.now(UTC))
            comparison.newly_stale = found.new
        except Exception as exc:  # unknown: every stale source is alerted, as without history
            log.warning("could not read the stale sources of earlier runs: %s", exc)
    comparison.seconds = time.perf_counter() - started
    for regression in comparison.signals.regressions:
        log.warning("timing regression: %s", regression.describe())
    for anomaly in comparison.signals.anomalies:
        log.warning("volume anomaly: %s", anomaly.describe())
    return comparison


def usual_seconds(planned: RunPlan, nodes: list[str], log: Log) -> dict[str, float]:
    """Each node's usual time in this environment, from its history; empty when there is none
    (a fanned-out run then counts every node the same). Never raises."""
    settings = planned.settings
    if not settings.history.enabled or not nodes:
        return {}
    project, env = planned.project.name, settings.run.env
    folder = planned.run_dir / "history"
    try:
        read = store.download(planned.store, project, env, folder, window=settings.history.window)
        if not read.found:
            return {}
        return signals.usual_seconds(folder, set(nodes), project, env, settings.history.window)
    except Exception as exc:
        log.warning("could not read the nodes' usual times (parts balanced by count): %s", exc)
        return {}


def record(
    summary: RunSummary,
    planned: RunPlan,
    nodes: list[NodeResult],
    comparison: Comparison,
    stored: StoredRun,
    log: Log,
) -> float:
    """Adds the stored run to the history and refreshes the report; its seconds. Never raises.

    Skipped when the history could not be read (the report would show this run alone) or the
    run's artifacts did not reach the store (the index lacks it too).
    """
    if comparison.tables is None or stored.errors:
        return 0.0
    started = time.perf_counter()
    settings = planned.settings
    project, env = planned.project.name, settings.run.env
    try:
        results = [_result(n) for n in nodes]
        entry = record_of(summary, results)
        keep_since = datetime.now(UTC) - timedelta(days=settings.history.days)
        store.add_run(planned.store, project, env, comparison.tables, entry, keep_since=keep_since)
    except Exception as exc:
        log.warning("could not add this run to the history: %s", exc)
        return time.perf_counter() - started
    try:
        from flows.report.render import report
        from flows.report.site import publish

        page = report(
            comparison.tables,
            env=env,
            project=project,
            store_url=planned.store.url,
            since=comparison.since,
        ).html
        wrote = publish(planned.store, store.report_key(project, env), page)
        log.info("report refreshed: %s (wrote %s)", comparison.report, wrote.describe())
    except Exception as exc:
        log.warning("could not refresh the report: %s", exc)
    if comparison.compaction_due:
        try:
            work = planned.run_dir / "history-compact"
            done = store.compact(planned.store, project, env, work, keep_since=keep_since)
            log.info("history compacted: %s", done.keys[0] if done else "nothing to fold")
        except Exception as exc:  # the parts stay and are read; the next run tries again
            log.warning("could not compact the history: %s", exc)
    return time.perf_counter() - started


def _result(node: NodeResult) -> dict[str, Any]:
    """A node as run_results.json has it, the fields a history record keeps."""
    return {
        "unique_id": node.unique_id,
        "status": node.status.value,
        "execution_time": node.execution_time,
        "adapter_response": {} if node.rows is None else {"rows_affected": node.rows},
    }


def record_of_stored(summary_json: bytes, results: list[dict[str, Any]]) -> dict[str, Any]:
    """A stored summary.json (of any schema version) as history's record (flows.history.fetch
    .RecordOf). Raises ValueError when it is not a run's summary."""
    return record_of(RunSummary.read(summary_json), results)


_FAILED = {"error", "fail", "runtime error"}


def record_of(summary: RunSummary, results: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The record history keeps of a run (flows/history/): the fields it shows, from the run's
    summary and its run_results.json's `results`."""
    return {
        "v": RECORD_VERSION,
        "run_id": summary.run_id,
        "flow_run_id": summary.flow_run_id,
        "project": summary.project,
        "env": summary.env,
        "deployment": summary.deployment,
        "command": summary.request.command.value,
        "selection": summary.request.describe(),
        "target": summary.target,
        "outcome": summary.outcome.value,
        "verdict": summary.verdict,
        "started_at": summary.started_at.isoformat(),
        "finished_at": summary.finished_at.isoformat(),
        "duration_s": summary.duration_s,
        "git_sha": summary.git_sha,
        "image_digest": summary.image_digest,
        "nodes_total": summary.nodes_total,
        "failed": [n.unique_id for n in summary.failed],
        "nodes": [_node(r) for r in results if "unique_id" in r],
        # What the run's signals found against the history before it (flows.history.signals).
        "regressions": [r.model_dump(mode="json") for r in summary.regressions],
        "anomalies": [a.model_dump(mode="json") for a in summary.anomalies],
    }


def _node(result: dict[str, Any]) -> dict[str, Any]:
    """A node of dbt's run_results.json (dbt's format, read as it is)."""
    status = str(result.get("status") or "")
    rows = (result.get("adapter_response") or {}).get("rows_affected")
    return {
        "id": result["unique_id"],
        "status": status,
        "s": result.get("execution_time"),
        "rows": rows if isinstance(rows, int) and rows >= 0 else None,
        "failed": status in _FAILED,
        "warned": status == "warn",
    }
