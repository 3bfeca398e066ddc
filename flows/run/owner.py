"""The owner of a run: plan, execute, judge, store - the steps the `dbt` flow, `ferry run`
and the tests share.

    request ─ plan ─ execute ─ judge ─ store ── history ─▶ RunReport (summary + nodes)
              │       │         │        │        └ flows/run/history.py: compared with the
              │       │         │        │          runs before, added to them, report refreshed
              │       │         │        └ flows/run/store.py: local copy, store, pointers
              │       │         └ flows/run/verdict.py: the only writer of the verdict; a
              │       │           blue-green run is published here (flows/run/blue_green.py)
              │       └ flows/run/execute.py: parse, selection, holds, dbt, retries
              └ flows/run/plan.py: every refusal, nothing changed

One time limit (FERRY_FLOW_TIMEOUT_S, flows/dbt/deadline.py) covers the steps after planning;
storing the artifacts always completes.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from flows.artifacts import StoredRun, docs_key
from flows.dbt.deadline import Deadline
from flows.dbt.invoke import NodeListener, dbt_version
from flows.dbt.nodes import NodeResult, NodeStarted, NodeStatus
from flows.run import changes, history
from flows.run.blue_green import PublishReport, publish_version
from flows.run.execute import Execution, Holds, execute
from flows.run.parts import PartsRunner
from flows.run.plan import Log, RunPlan, plan
from flows.run.request import RunRequest
from flows.run.store import rewrite_summary, store
from flows.run.summary import AD_HOC, RunSummary, summarize
from flows.run.verdict import (
    Outcome,
    TimeLimit,
    judge,
    judge_late,
    with_lost_parts,
    with_publication,
)
from flows.settings import FerrySettings


@dataclass(frozen=True)
class RunReport:
    """A finished run: its summary and the nodes behind it."""

    summary: RunSummary
    nodes: list[NodeResult]
    stored: StoredRun | None = None


class NullListener:
    """Hears nodes and does nothing (no Prefect run to report to)."""

    def node_started(self, node: NodeStarted) -> None:
        pass

    def node_finished(self, node: NodeResult) -> None:
        pass


def run(
    request: RunRequest,
    settings: FerrySettings,
    *,
    run_id: str | None = None,
    flow_run_id: str | None = None,
    listener: NodeListener | None = None,
    log: Log | None = None,
    holds: Holds | None = None,
    parts_runner: PartsRunner | None = None,
    deployment: str = AD_HOC,
) -> RunReport:
    """Runs dbt once as `request` asks and stores its artifacts. Raises only for bad input.

    Args:
        run_id: names the run in the artifact store; the flow run id when there is one.
        holds: held from dbt's execution (not its parse) until a blue-green run has published,
            on what the run writes, so no two runs write the same nodes at once and the next
            one continues from what this one published (flows.prefect.holds); none without
            Prefect (a DuckDB file is still held: flows/run/file_hold.py).
        parts_runner: starts a fanned-out run's parts and waits for them
            (flows.prefect.parts); none: a `fan_out` run runs as one task.
        deployment: the Prefect deployment that started the run, for its record.

    Raises:
        InvalidRunRequest: the request cannot run; nothing was executed or stored.
    """
    log = log or logging.getLogger(__name__)
    planned = plan(request, settings, run_id=run_id, flow_run_id=flow_run_id)
    limit = _remaining(settings.run.flow_timeout_s, planned)
    with Deadline(limit, log) as deadline, contextlib.ExitStack() as holding:
        done = execute(
            planned,
            deadline=deadline,
            listener=listener or NullListener(),
            log=log,
            holds=holds,
            holding=holding,  # the holds, kept until what consumers read is settled
            parts_runner=parts_runner,
        )
        time_limit = _time_limit(settings, deadline)
        verdict = judge(
            planned.request,
            done.nodes,
            dbt_ok=done.dbt_ok,
            error=done.error,
            attempts=done.attempts,
            time_limit=time_limit,
            unchanged=len(done.changes.unchanged) if done.changes else None,
            documented=done.documented,
        )
        verdict = with_lost_parts(verdict, done.lost_parts)
        published = None
        if done.blue_green is not None:
            with deadline.shielded("publishing the data"):  # one transaction: all or nothing
                published = publish_version(
                    planned,
                    done.blue_green,
                    done.nodes,
                    passed=verdict.outcome in (Outcome.SUCCESS, Outcome.WARNINGS),
                    log=log,
                )
            verdict = with_publication(verdict, published)
        holding.close()  # the holds: the next writer may start, and copy what we published
        summary = summarize(
            run_id=planned.run_id,
            flow_run_id=flow_run_id,
            deployment=deployment,
            project=planned.project.name,
            env=settings.run.env,
            request=planned.request,
            target=planned.target,
            nodes=done.nodes,
            verdict=verdict,
            started_at=planned.started_at,
            finished_at=datetime.now(UTC),
            dbt_elapsed_s=done.dbt_elapsed_s,
            parse=done.parse,
            dbt_version=dbt_version(),
            git_sha=settings.run.git_sha,
            image_digest=settings.run.image_digest,
            error=done.error,
            attempts=done.attempts,
            artifacts=f"{planned.store.url}/{planned.layout.run_prefix}",
            changes=done.changes,
            docs=f"{planned.store.url}/{docs_key(planned.project.name, settings.run.env)}",
            documented=done.documented,
            published=published,
            parts=done.parts,
        )
        with deadline.shielded("storing the artifacts"):  # never lost to the time limit
            # A part of a fanned-out run is compared and recorded as a node set of its parent.
            part = planned.request.part_of is not None
            comparison = history.Comparison() if part else history.compare(planned, done.nodes, log)
            summary = summary.model_copy(update=comparison.summary_fields())
            summary, stored = store(summary, planned, log)
            late = _time_limit(settings, deadline)
            if late is not None and time_limit is None:  # it passed while they were stored
                verdict = judge_late(verdict, late, done.nodes)
                summary = summary.model_copy(update=verdict.summary_fields())
                rewrite_summary(summary, planned, log)
            if not part:
                history.record(summary, planned, done.nodes, comparison, stored, log)
            _advance_marks(planned, done, stored, published, log)
    return RunReport(summary=summary, nodes=done.nodes, stored=stored)


def _advance_marks(
    planned: RunPlan,
    done: Execution,
    stored: StoredRun,
    published: PublishReport | None,
    log: Log,
) -> None:
    """The environment's marks after the run (flows/run/changes.py), once its artifacts are
    stored: a run whose store failed leaves them as they were, so its nodes run again. The
    marks say what consumers read: a blue-green run that published nothing marks only what
    failed, so what it built (never published) still counts as changed next time."""
    tracking = done.tracking
    if tracking is None or stored.errors:
        return
    nodes = done.nodes
    if published is not None and not published.published:
        nodes = [n for n in nodes if n.failed or n.status is NodeStatus.SKIPPED]
    project, env = planned.project.name, planned.settings.run.env
    try:  # as they are now: runs of other nodes may have advanced theirs since this one read
        current = changes.load(planned.store, project, env)
    except Exception:
        current = tracking.marks
    marks = changes.advance(
        tracking.marks, tracking.lineage, nodes, tracking.sources, planned.run_id, onto=current
    )
    try:
        planned.store.put_bytes(changes.marks_key(project, env), marks.dumps())
    except Exception as exc:  # the next run decides from the older marks: it runs more
        log.warning("could not store the environment's marks: %s", exc)


def _time_limit(settings: FerrySettings, deadline: Deadline) -> TimeLimit | None:
    if not deadline.timed_out or settings.run.flow_timeout_s is None:
        return None
    return TimeLimit(settings.run.flow_timeout_s, deadline.fired_in)


def _remaining(timeout_s: float | None, planned: RunPlan) -> float | None:
    if timeout_s is None:
        return None
    return max(timeout_s - (datetime.now(UTC) - planned.started_at).total_seconds(), 0.01)
