"""Executing a planned run: the project's packages, parse, the selection, then dbt with retries.

Installing packages, parsing and checking the selection open no warehouse connection, so
packages that cannot be installed and a selection dbt refuses are still refused before the
warehouse is touched. The run's holds (flows/run/holds.py) are taken from dbt's execution on,
on what it is about to write (a blue-green run's caller keeps them until it has published);
waiting for them is not counted against the run's time limit, and a hold that lapses stops dbt.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from typing import Any

from flows.dbt import packages
from flows.dbt.bake import keep as keep_parse_state
from flows.dbt.bake import reuse as reuse_parse_state
from flows.dbt.bake import seed as seed_parse_state
from flows.dbt.commands import DbtCommand
from flows.dbt.connections import close_local_databases, local_database
from flows.dbt.deadline import Deadline, TimeUp
from flows.dbt.docs import STATIC_PAGE, Documented
from flows.dbt.invoke import (
    ARTIFACT_FILES,
    DbtInvocation,
    DbtProjectError,
    NodeListener,
    ParseReport,
)
from flows.dbt.lineage import Lineage, effective_vars, sources_read
from flows.dbt.nodes import NodeResult
from flows.dbt.transient import execute_with_retries
from flows.publish.build import restore_consumer_names
from flows.run import changes, history, parts
from flows.run.blue_green import BlueGreen, PrepareFailed, prepare
from flows.run.file_hold import file_hold
from flows.run.holds import NotStarted, Writes
from flows.run.parts import PartRecord, PartsRunner
from flows.run.plan import Log, RunPlan
from flows.run.request import InvalidRunRequest, PublishMode, RunRequest, refused_as_request

Holds = Callable[[Writes, Callable[[str], None]], AbstractContextManager[Any]]
"""Given what the run is about to write, and what to call (with why) if the holds lapse while
dbt writes, what to hold while dbt executes (flows/prefect/holds.py)."""

_HOLD_ATTEMPTS = 3
"""An only-changed run decides what changed, holds that, and decides again under its holds:
when another writer changed what it reads meanwhile, it lets go and holds the new set, at most
this many times before it holds its whole selection."""


@dataclass
class Execution:
    """What dbt did in one run, before judging."""

    nodes: list[NodeResult] = field(default_factory=list)
    dbt_ok: bool = False
    error: str | None = None
    attempts: int = 1
    dbt_elapsed_s: float | None = None
    parse: ParseReport | None = None
    changes: changes.ChangeReport | None = None
    """An only-changed run's decision: what ran and why, what was skipped as unchanged."""
    tracking: Tracking | None = None
    """What the environment's marks are advanced from after the run (when it keeps them)."""
    documented: Documented | None = None
    """`docs generate`: what its catalog and page hold."""
    blue_green: BlueGreen | None = None
    """A blue-green run's version, prepared before dbt built it (flows/run/blue_green.py)."""
    parts: list[PartRecord] | None = None
    """A fanned-out run: its parts, each a flow run of its own (flows/run/parts.py)."""
    lost_parts: list[str] = field(default_factory=list)
    """Parts that ended without a verdict of their own (crashed, cancelled), described."""


@dataclass(frozen=True)
class Tracking:
    marks: changes.Marks | None
    lineage: Lineage
    sources: dict[str, str | None]


@refused_as_request()
def execute(
    plan: RunPlan,
    *,
    deadline: Deadline,
    listener: NodeListener,
    log: Log,
    holds: Holds | None = None,
    holding: contextlib.ExitStack | None = None,
    parts_runner: PartsRunner | None = None,
) -> Execution:
    """Parses, checks the selection and executes; ends early, keeping what it has, at the limit.

    Raises:
        InvalidRunRequest: the packages could not be installed, or dbt refused the project's
            configuration or the selection; nothing was executed.
    """
    request, settings = plan.request, plan.settings
    plan.run_dir.mkdir(parents=True, exist_ok=True)
    for name in (*ARTIFACT_FILES, STATIC_PAGE):  # never ship a previous run's as this run's
        (plan.target_path / name).unlink(missing_ok=True)
    reuse_parse_state(plan.parse_cache, plan.target_path)
    seeded = seed_parse_state(
        settings.run.baked_dir, settings.run.env, plan.target, plan.target_path
    )
    if settings.run.baked_dir is not None:
        log.info("%s", seeded.note)

    state_path = None
    if plan.failed_run is not None:
        state_path = plan.failed_run.write(plan.run_dir / "retry-state")
        log.info(
            "retrying failed run %s (%s)", plan.failed_run.run_id, plan.failed_run.pointer["prefix"]
        )
    elif plan.state_manifest is not None:
        state_path = plan.run_dir / "state"
        state_path.mkdir(exist_ok=True)
        (state_path / "manifest.json").write_bytes(plan.state_manifest)
        log.info("comparing with / deferring to %s state (%s)", settings.run.state_env, state_path)

    run = Execution()
    schema = settings.run.target_schema
    with plan.project.rendered_profiles_dir(plan.target, schema) as profiles_dir:
        invocation = DbtInvocation(
            project=plan.project,
            args=request.dbt_args(),
            profiles_dir=profiles_dir,
            target_path=plan.target_path,
            log_path=plan.run_dir,
            state_path=state_path,
        )
        try:
            manifest, selected = None, None
            with deadline.dbt("installing the dbt packages"):
                installed = packages.ensure(
                    plan.project.project_dir, log_path=plan.run_dir, vars=request.vars
                )
            if line := installed.describe():
                log.info("%s", line)
            fans_out = request.fan_out > 1 and parts_runner is not None
            if request.fan_out > 1 and parts_runner is None:
                log.warning(
                    "fan_out %d starts its parts as Prefect flow runs, and this run has no "
                    "Prefect API: it runs as one task",
                    request.fan_out,
                )
            # retry parses with the old run's flags - unless it fans out: its parts build
            if request.command is not DbtCommand.RETRY or fans_out:
                with deadline.dbt("dbt parse"):
                    parsed = invocation.parse()
                keep_parse_state(plan.target_path, plan.parse_cache)
                manifest = parsed.manifest
                run.parse = replace(parsed.report, baked=seeded.name)
                _log_parse(run.parse, log)
                if request.has_selection:
                    with deadline.dbt("checking the selection"):
                        selected = invocation.check_selection(manifest)
                    log.info("selection matches %d node(s)", len(selected))
            if selected == []:  # a state: selection with nothing modified: success, nothing run
                run.dbt_ok = True
                return run
            if (
                parts_runner is not None
                and fans_out
                and manifest is not None
                and _fan_out(plan, manifest, selected, parts_runner, run, deadline, log)
            ):
                return run
            adapter_type = _adapter_type(plan, manifest)
            with contextlib.ExitStack() as own:
                held = holding if holding is not None else own  # whose exit releases the holds
                narrowed = _hold_and_decide(
                    plan, invocation, manifest, selected, run, adapter_type,
                    holds=holds, held=held, deadline=deadline, log=log,
                )  # fmt: skip
                if narrowed is None:  # nothing changed: success, nothing run
                    run.dbt_ok = True
                    return run
                if request.publish is PublishMode.BLUE_GREEN and manifest is not None:
                    with deadline.dbt("preparing the version"):
                        executing = _executing(manifest, request.command, selected, run)
                        run.blue_green = prepare(plan, manifest, executing, log)
                outcome, run.attempts = execute_with_retries(
                    narrowed,
                    manifest,
                    listener,
                    retries=settings.run.transient_retries,
                    delay_s=settings.run.transient_retry_delay_s,
                    deadline=deadline,
                    log=log,
                )
            if run.blue_green is not None:
                restore_consumer_names(plan.target_path / "manifest.json", run.blue_green.nodes)
            run.nodes, run.error, run.dbt_ok = outcome.nodes, outcome.error, outcome.success
            run.documented = outcome.documented
            if deadline.expired and run.error == "KeyboardInterrupt":
                run.error = deadline.stopped_for  # the limit's own interrupt: said in words
            run.dbt_elapsed_s = round(outcome.elapsed, 3)
        except (DbtProjectError, PrepareFailed) as exc:
            run.error = str(exc)
        except TimeUp:
            run.error = deadline.stopped_for  # else the verdict says where the time ran out
        except NotStarted as exc:
            run.error = str(exc)
    return run


def _fan_out(
    plan: RunPlan,
    manifest: Any,
    selected: list[str] | None,
    parts_runner: PartsRunner,
    run: Execution,
    deadline: Deadline,
    log: Log,
) -> bool:
    """Runs the selection as parts, each its own flow run, and gathers them as this run's
    nodes; False when it is one connected part, which then runs here as usual."""
    request = plan.request
    known = {*manifest.nodes, *manifest.unit_tests}
    nodes = [n for n in _nodes_it_writes(plan, manifest, selected) or () if n in known]
    lineage = Lineage(manifest)
    usual = history.usual_seconds(plan, nodes, log)
    split = parts.split(nodes, lineage.inputs, usual, request.fan_out)
    if len(split) < 2 and plan.failed_run is None:  # a retry reruns in parts, even one
        log.info(
            "fan_out %d: the selection is one connected part (%d node(s)): it runs here, as "
            "one task",
            request.fan_out,
            len(nodes),
        )
        return False
    log.info(
        "fan_out %d: %d node(s) in %d parts that build independently (%s node-seconds each, "
        "from the nodes' usual times)",
        request.fan_out,
        len(nodes),
        len(split),
        ", ".join(f"{p.expected_s:.0f}" for p in split),
    )
    command = _command_of_parts(plan)

    def request_of(part: parts.Part) -> RunRequest:
        return request.model_copy(
            update={
                "command": command,
                "select": lineage.selection(part.nodes),
                "exclude": (),
                "selector": None,
                "retry_of": None,
                "fan_out": 0,
                "part_of": plan.run_id,
            }
        )

    started = time.monotonic()
    try:
        ran = parts_runner(split, request_of, deadline.wait)
    except LookupError as exc:  # no deployment to start the parts on: nothing was started
        raise InvalidRunRequest(str(exc)) from None
    names = {n: lineage.node(n).name for n in nodes}
    gathered = parts.gather(plan.store, plan.project.name, plan.settings.run.env, ran, names)
    document = parts.merged_run_results(
        gathered,
        command=command.value,
        started_at=plan.started_at,
        elapsed_s=time.monotonic() - started,
    )
    (plan.target_path / "run_results.json").write_text(json.dumps(document, indent=1))
    run.nodes, run.parts, run.lost_parts = gathered.nodes, gathered.parts, gathered.lost
    run.dbt_ok = not gathered.lost and all(r.state_type == "COMPLETED" for r in ran)
    run.dbt_elapsed_s = round(time.monotonic() - started, 3)
    return True


def _command_of_parts(plan: RunPlan) -> DbtCommand:
    """What each part runs: the request's command; for a retry, the failed run's own command
    on what did not pass (each part is a fresh run of it, not a `dbt retry`)."""
    if plan.failed_run is None:
        return plan.request.command
    try:
        return DbtCommand(plan.failed_run.command)
    except ValueError:
        return DbtCommand.BUILD


def _hold_and_decide(
    plan: RunPlan,
    invocation: DbtInvocation,
    manifest: Any,
    selected: list[str] | None,
    run: Execution,
    adapter_type: str | None,
    *,
    holds: Holds | None,
    held: contextlib.ExitStack,
    deadline: Deadline,
    log: Log,
) -> DbtInvocation | None:
    """Takes the run's holds on what it will write, then decides what changed under them (the
    marks are those the previous writer of those nodes left); the invocation to execute, None
    when nothing changed.

    Raises:
        NotStarted: the holds were not given in time; nothing was written.
    """
    request = plan.request
    whole = request.publish is PublishMode.BLUE_GREEN  # one version of the whole environment
    known = _nodes_it_writes(plan, manifest, selected)
    if holds is None or whole or known is None or not request.only_changed:
        writes = Writes(request.command, adapter_type, known, whole)
        _take(plan, writes, holds, held, deadline, log)
        with deadline.dbt("deciding what changed"):
            return _what_changed(plan, invocation, manifest, selected, run, log)
    # Only what changed is written: hold that, not the whole selection.
    with deadline.dbt("deciding what changed"):
        narrowed = _what_changed(plan, invocation, manifest, selected, run, log)
    for _ in range(_HOLD_ATTEMPTS):
        wanted = tuple(run.changes.ran) if run.changes is not None else known
        attempt = contextlib.ExitStack()
        _take(plan, Writes(request.command, adapter_type, wanted), holds, attempt, deadline, log)
        with deadline.dbt("deciding what changed"):
            narrowed = _what_changed(plan, invocation, manifest, selected, run, log)
        now = set(run.changes.ran) if run.changes is not None else set(known)
        if now <= set(wanted):
            held.enter_context(attempt.pop_all())
            return narrowed
        log.info("what changed grew while this run waited: holding %d node(s) again", len(now))
        attempt.close()
    _take(plan, Writes(request.command, adapter_type, known), holds, held, deadline, log)
    with deadline.dbt("deciding what changed"):
        return _what_changed(plan, invocation, manifest, selected, run, log)


def _take(
    plan: RunPlan,
    writes: Writes,
    holds: Holds | None,
    held: contextlib.ExitStack,
    deadline: Deadline,
    log: Log,
) -> None:
    """Enters the run's holds into `held`: Prefect's, then, on DuckDB, the database file's.
    Waiting in line for them is not the run's own time."""
    database = local_database() if writes.single_process else None
    with deadline.paused():
        if holds is not None:
            held.enter_context(holds(writes, deadline.stop))
        # Before the holds go: dbt-duckdb keeps its file open, and locked, until it is closed.
        held.callback(close_local_databases)
        if database is not None:
            held.enter_context(file_hold(database, wait_s=plan.settings.run.wait_s, log=log))


def _nodes_it_writes(
    plan: RunPlan, manifest: Any, selected: list[str] | None
) -> tuple[str, ...] | None:
    """The nodes dbt will execute (before only-changed narrows them); None when unknown."""
    if plan.failed_run is not None:  # what `dbt retry` runs again
        return plan.failed_run.not_passed
    if manifest is None:
        return None
    return tuple(_selected_or_all(manifest, plan.request.command, selected))


def _adapter_type(plan: RunPlan, manifest: Any) -> str | None:
    """The warehouse's adapter: the parsed manifest's, or for a retry the failed run's."""
    if manifest is not None:
        return getattr(getattr(manifest, "metadata", None), "adapter_type", None)
    if plan.failed_run is not None:
        return plan.failed_run.adapter_type
    return None


_TRACKED = (DbtCommand.BUILD, DbtCommand.RUN)


def _what_changed(
    plan: RunPlan,
    invocation: DbtInvocation,
    manifest: Any,
    selected: list[str] | None,
    run: Execution,
    log: Log,
) -> DbtInvocation | None:
    """The invocation to execute: narrowed to what changed for an only-changed run (None when
    nothing did). Every build or run reads its sources' freshness first, so the marks of what
    it builds can advance after: the first only-changed run after a full build has nothing to
    do."""
    request = plan.request
    if request.command not in _TRACKED or manifest is None:
        return invocation
    started = time.perf_counter()
    project, env = plan.project.name, plan.settings.run.env
    try:
        marks = changes.load(plan.store, project, env)
    except Exception as exc:
        if request.only_changed:  # unknown marks: everything is news, as on the first run
            log.warning("could not read the environment's marks (everything runs): %s", exc)
            marks = None
        else:
            log.warning("could not read the environment's marks (not advanced): %s", exc)
            return invocation
    project_vars = effective_vars(plan.project.vars, plan.project.name, request.vars)
    lineage = Lineage(manifest, vars=project_vars, env=os.environ)
    universe = _universe(manifest, request.command, selected, lineage)
    lineage.fingerprint_all(universe)  # now: dbt adds to its nodes' configs as it executes
    sources = invocation.newest_loaded_at(manifest, sources_read(lineage, universe))
    run.tracking = Tracking(marks=marks, lineage=lineage, sources=sources)
    if not request.only_changed:
        return invocation
    decided = changes.decide(lineage, universe, marks, sources)
    run.changes = decided.model_copy(update={"fixed_s": round(time.perf_counter() - started, 3)})
    log.info("only changed: %s (decided in %.1f s)", decided.describe(), run.changes.fixed_s)
    if not decided.ran:
        return None
    narrowed = replace(
        invocation.args,
        select=lineage.selection(decided.ran),
        selector=None,
    )
    return replace(invocation, args=narrowed)


def _executing(
    manifest: Any, command: DbtCommand, selected: list[str] | None, run: Execution
) -> list[str]:
    """The nodes dbt is about to execute: what only-changed kept, or the selection's, or the
    whole project's."""
    if run.changes is not None:
        return list(run.changes.ran)
    return _selected_or_all(manifest, command, selected)


def _universe(
    manifest: Any, command: DbtCommand, selected: list[str] | None, lineage: Lineage
) -> list[str]:
    """The nodes the command would execute, ephemeral models aside."""
    selected = _selected_or_all(manifest, command, selected)
    return [n for n in selected if not lineage.is_ephemeral(n)]


def _selected_or_all(manifest: Any, command: DbtCommand, selected: list[str] | None) -> list[str]:
    """The selection's nodes, or every node (unit tests included) of the command's types."""
    if selected is not None:
        return selected
    wanted = set(command.resource_types)
    return [
        uid
        for uid, node in [*manifest.nodes.items(), *manifest.unit_tests.items()]
        if str(getattr(node.resource_type, "value", node.resource_type)) in wanted
    ]


def _log_parse(parse: ParseReport, log: Log) -> None:
    # The image's state was there and dbt refused it: say why, loudly.
    refused = parse.baked is not None and not parse.partial
    log.log(logging.WARNING if refused else logging.INFO, "dbt parsed %s", parse.describe())
