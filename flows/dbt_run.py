"""One dbt run from request to stored artifacts: the steps the `dbt` flow and the tests share.

validate -> (retry: fetch the failed run's state) -> parse -> check the selection -> execute ->
judge -> copy artifacts locally -> publish to the store. Every step before `execute` is free of
warehouse connections, so bad input is refused before anything is touched.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flows.artifacts import (
    Publication,
    RunLayout,
    fetch_failed_run,
    fetch_state_manifest,
    mark_retried,
    open_store,
    publish_run,
)
from flows.dbt.bake import seed as seed_parse_state
from flows.dbt.deadline import Deadline, TimeUp
from flows.dbt.invoke import ARTIFACT_FILES, DbtInvocation, DbtProjectError, NodeListener
from flows.dbt.nodes import NodeResult, NodeStarted
from flows.dbt.profiles import DbtProject
from flows.dbt.request import DbtCommand, InvalidRunRequest, RunRequest
from flows.dbt.transient import execute_with_retries
from flows.settings import FerrySettings
from flows.summary import Outcome, ParseLine, RunSummary, judge, summarize


class NullListener:
    """Hears nodes and does nothing (no Prefect run to report to)."""

    def node_started(self, node: NodeStarted) -> None:
        pass

    def node_finished(self, node: NodeResult) -> None:
        pass


WriterSlot = Callable[[DbtCommand, str | None], AbstractContextManager[Any]]
"""Given the command and the warehouse's adapter type, what to hold while dbt executes."""


@dataclass
class RunReport:
    """A finished run: its summary and the nodes behind it."""

    summary: RunSummary
    nodes: list[NodeResult]
    publication: Publication | None = None


def execute(
    params: dict[str, Any],
    settings: FerrySettings,
    *,
    run_id: str | None = None,
    flow_run_id: str | None = None,
    listener: NodeListener | None = None,
    log: logging.Logger | logging.LoggerAdapter[Any] | None = None,
    writer_slot: WriterSlot | None = None,
) -> RunReport:
    """Runs dbt once as `params` ask and stores its artifacts. Raises only for bad input.

    Args:
        params: the `dbt` flow's parameters (command, select, exclude, selector, vars,
            full_refresh, target, threads, fail_fast, retry_of).
        run_id: names the run in the artifact store; the flow run id when there is one.
        writer_slot: held around dbt's execution (not its parse), so one invocation at a time
            writes to the environment's warehouse (flows.writer_slot); none without Prefect.

    Raises:
        InvalidRunRequest: the request cannot run; nothing was executed or stored.
    """
    log = log or logging.getLogger(__name__)
    listener = listener or NullListener()
    started_at = datetime.now(UTC)
    run_id = run_id or flow_run_id or str(uuid.uuid4())

    request = RunRequest.build(**params)
    if request.target is None and settings.target:
        request = request.model_copy(update={"target": settings.target})
    project = DbtProject.load(settings.project_dir, settings.profiles_dir)
    target = project.check_target(request.target)
    if request.target is None and target and request.command is not DbtCommand.RETRY:
        # dbt hashes whether --target was given into its parse state: always naming it (as
        # `ferry bake` does) lets the default and an explicit target share the baked state.
        request = request.model_copy(update={"target": target})
    try:
        store = open_store(settings.artifacts, settings.s3_endpoint_url)
        if settings.state_from:  # checked whether or not this run reads it
            open_store(settings.state_from, settings.s3_endpoint_url)
    except ValueError as exc:
        raise InvalidRunRequest(str(exc)) from None

    with Deadline(_remaining(settings.flow_timeout_s, started_at), log) as deadline:
        run = _run_dbt(
            request, project, target, store, run_id, settings, listener, log, writer_slot, deadline
        )
        request, nodes = run.request, run.nodes
        result, verdict = judge(request, nodes, run.dbt_ok, run.error)
        if run.attempts > 1:
            verdict += f" (after {run.attempts} attempts: transient failures were retried)"
        timed_out = deadline.expired
        if timed_out:
            said = verdict if nodes or run.error else None
            result, verdict = Outcome.FAILED, _timed_out(settings, deadline, nodes, said)
        layout = RunLayout(project.name, settings.env, run_id, started_at)
        summary = summarize(
            run_id=run_id,
            flow_run_id=flow_run_id,
            project=project.name,
            env=settings.env,
            request=request,
            target=target,
            nodes=nodes,
            outcome=result,
            verdict=verdict,
            started_at=started_at,
            finished_at=datetime.now(UTC),
            dbt_elapsed_s=run.dbt_elapsed,
            parse=run.parse,
            dbt_version=_dbt_version(),
            git_sha=settings.git_sha,
            image_digest=settings.image_digest,
            error=run.error,
            timed_out=timed_out,
            attempts=run.attempts,
            artifacts=f"{store.url}/{layout.run_prefix}",
        )
        with deadline.shielded("storing the artifacts"):  # never lost to the time limit
            publication = _store_artifacts(
                summary, layout, store, run.target_path, run.run_dir, settings, log
            )
            if deadline.expired and not timed_out:  # the limit passed while they were stored
                summary.timed_out = True
                summary.outcome = Outcome.FAILED
                summary.verdict = _timed_out(settings, deadline, nodes, summary.verdict)
                _restore_summary(summary, layout, store, run.run_dir, log)
    if request.command is DbtCommand.RETRY and request.retry_of and result is not Outcome.FAILED:
        try:
            mark_retried(store, project.name, settings.env, request.retry_of, run_id)
        except Exception as exc:  # the retry's own verdict stands
            log.warning("could not mark run %s as retried: %s", request.retry_of, exc)
    return RunReport(summary=summary, nodes=nodes, publication=publication)


@dataclass
class _DbtRun:
    """What dbt did in one run, before judging."""

    request: RunRequest
    run_dir: Path
    target_path: Path
    nodes: list[NodeResult] = field(default_factory=list)
    dbt_ok: bool = False
    error: str | None = None
    attempts: int = 1
    dbt_elapsed: float | None = None
    parse: ParseLine | None = None


def _run_dbt(
    request: RunRequest,
    project: DbtProject,
    target: str | None,
    store: Any,
    run_id: str,
    settings: FerrySettings,
    listener: NodeListener,
    log: logging.Logger | logging.LoggerAdapter[Any],
    writer_slot: WriterSlot | None,
    deadline: Deadline,
) -> _DbtRun:
    """Parses, checks the selection and executes; ends early, keeping what it has, at the limit.

    Raises:
        InvalidRunRequest: the request cannot run; nothing was executed.
    """
    run_dir = (settings.work_dir / run_id).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    target_path = (settings.target_path or project.project_dir / "target").resolve()
    for name in ARTIFACT_FILES:  # never ship a previous run's results as this run's
        (target_path / name).unlink(missing_ok=True)
    seeded = seed_parse_state(settings.baked_dir, settings.env, target, target_path)
    if settings.baked_dir is not None:
        log.info("%s", seeded.note)

    state_path = None
    if request.command is DbtCommand.RETRY:
        try:
            fetched = fetch_failed_run(
                store, project.name, settings.env, request.retry_of, run_dir / "retry-state"
            )
        except LookupError as exc:
            raise InvalidRunRequest(str(exc)) from None
        request = request.model_copy(update={"retry_of": fetched.run_id})
        state_path = fetched.state_dir
        log.info("retrying failed run %s (%s)", fetched.run_id, fetched.pointer.get("prefix"))
    elif request.needs_state:
        state_path = _fetch_state(project.name, run_dir, settings, store)
        log.info("comparing with / deferring to %s state (%s)", settings.state_env, state_path)

    run = _DbtRun(request=request, run_dir=run_dir, target_path=target_path)
    with project.rendered_profiles_dir(target, settings.target_schema) as profiles_dir:
        invocation = DbtInvocation(
            project=project,
            request=request,
            profiles_dir=profiles_dir,
            target_path=target_path,
            log_path=run_dir,
            state_path=state_path,
        )
        try:
            manifest, selected = None, None
            if request.command is not DbtCommand.RETRY:  # retry parses with the old run's flags
                with deadline.dbt("dbt parse"):
                    parsed = invocation.parse()
                manifest = parsed.manifest
                run.parse = ParseLine.of(parsed.report, seeded.name)
                _log_parse(run.parse, log)
                if request.has_selection:
                    with deadline.dbt("checking the selection"):
                        selected = invocation.check_selection(manifest)
                    log.info("selection matches %d node(s)", len(selected))
            if selected == []:  # a state: selection with nothing modified: success, nothing run
                run.dbt_ok = True
                return run
            adapter_type = getattr(getattr(manifest, "metadata", None), "adapter_type", None)
            with contextlib.ExitStack() as held:
                if writer_slot is not None:  # waiting in line is not the run's own time
                    with deadline.paused():
                        held.enter_context(writer_slot(request.command, adapter_type))
                outcome, run.attempts = execute_with_retries(
                    invocation,
                    manifest,
                    listener,
                    retries=settings.transient_retries,
                    delay_s=settings.transient_retry_delay_s,
                    deadline=deadline,
                    log=log,
                )
            run.nodes, run.error, run.dbt_ok = outcome.nodes, outcome.error, outcome.success
            if deadline.expired and run.error == "KeyboardInterrupt":
                run.error = None  # the limit's own interrupt: the verdict says so in words
            run.dbt_elapsed = round(outcome.elapsed, 3)
        except DbtProjectError as exc:
            run.error = str(exc)
        except TimeUp:
            run.error = None  # the verdict says where the time ran out
    return run


def _timed_out(
    settings: FerrySettings, deadline: Deadline, nodes: list[NodeResult], verdict: str | None
) -> str:
    """The verdict of a run past its limit: where the limit fired, then what dbt did."""
    where = deadline.fired_in or "the run"
    said = f"timed out after {settings.flow_timeout_s:g} s (FERRY_FLOW_TIMEOUT_S) during {where}"
    if where.startswith("dbt ") and where != "dbt parse":
        done = sum(1 for n in nodes if n.status.value != "skipped")
        said += f"; dbt cancelled its queries after {done} node(s) finished"
    return f"{said}; {verdict}" if verdict else said


def _restore_summary(
    summary: RunSummary,
    layout: RunLayout,
    store: Any,
    run_dir: Path,
    log: logging.Logger | logging.LoggerAdapter[Any],
) -> None:
    """Writes the timed-out summary again, locally and to the store, over the one just stored."""
    local = run_dir / "artifacts" / "summary.json"
    local.write_text(summary.model_dump_json(indent=2))
    try:
        store.put_file(f"{layout.run_prefix}/summary.json", local)
    except Exception as exc:  # the local copy holds it
        log.warning("could not store the timed-out summary: %s", exc)


def _fetch_state(project: str, run_dir: Path, settings: FerrySettings, store: Any) -> Path:
    """The state environment's manifest, for `--state` (Slim CI, `--defer`)."""
    try:
        if settings.state_from:
            store = open_store(settings.state_from, settings.s3_endpoint_url)
        return fetch_state_manifest(store, project, settings.state_env, run_dir / "state")
    except (LookupError, ValueError) as exc:
        raise InvalidRunRequest(str(exc)) from None


def _log_parse(parse: ParseLine, log: logging.Logger | logging.LoggerAdapter[Any]) -> None:
    # The image's state was there and dbt refused it: say why, loudly.
    refused = parse.baked is not None and not parse.partial
    log.log(logging.WARNING if refused else logging.INFO, "dbt parsed %s", parse.describe())


def _remaining(timeout_s: float | None, started_at: datetime) -> float | None:
    if timeout_s is None:
        return None
    return max(timeout_s - (datetime.now(UTC) - started_at).total_seconds(), 0.01)


def _store_artifacts(
    summary: RunSummary,
    layout: RunLayout,
    store: Any,
    target_path: Path,
    run_dir: Path,
    settings: FerrySettings,
    log: logging.Logger | logging.LoggerAdapter[Any],
) -> Publication:
    """Copies artifacts next to the run's log, then publishes them. Never raises."""
    local = run_dir / "artifacts"
    local.mkdir(exist_ok=True)
    files: dict[str, Path] = {}
    for name in ARTIFACT_FILES:
        if (target_path / name).is_file():
            files[name] = Path(shutil.copyfile(target_path / name, local / name))
    for earlier in sorted(run_dir.glob("attempt-*/run_results.json")):  # transient retries
        name = f"run_results.{earlier.parent.name}.json"
        files[name] = Path(shutil.copyfile(earlier, local / name))
    if (run_dir / "dbt.log").is_file():
        files["dbt.log"] = Path(shutil.copyfile(run_dir / "dbt.log", local / "dbt.log"))
    summary_file = local / "summary.json"
    summary_file.write_text(summary.model_dump_json(indent=2))
    files["summary.json"] = summary_file

    request = RunRequest.model_validate(summary.request)
    pointer = {
        "run_id": summary.run_id,
        "flow_run_id": summary.flow_run_id,
        "command": request.describe(),
        "outcome": summary.outcome.value,
        "finished_at": summary.finished_at.isoformat(),
        "git_sha": summary.git_sha,
    }
    publication = publish_run(
        store,
        layout,
        files,
        local,
        failed=summary.outcome is Outcome.FAILED,
        update_state=summary.outcome is not Outcome.FAILED and request.command.materializes,
        pointer=pointer,
    )
    if publication.errors:
        summary.artifact_errors = publication.errors
        summary.artifacts = f"{local} (local copy; the store at {store.url} failed)"
        summary_file.write_text(summary.model_dump_json(indent=2))
        log.warning(
            "artifact store failed (%s); artifacts kept at %s",
            "; ".join(publication.errors),
            local,
        )
    return publication


def _dbt_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dbt-core")
    except PackageNotFoundError:
        return None
