"""Running dbt in this process with `dbtRunner`, and hearing about every node as it runs.

One process, one parse: the project is parsed once and the same manifest serves the selection
check (`dbt ls`, which opens no connection) and the run. Starting dbt in a second process would
cost its ~4 s import again and double the memory (see docs/architecture.md, "Per-node
visibility").
"""

from __future__ import annotations

import functools
import json
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Protocol

from flows.dbt.args import DbtArgs
from flows.dbt.commands import DbtCommand
from flows.dbt.docs import STATIC_FLAG, Documented, documented
from flows.dbt.errors import InvalidDbtInput
from flows.dbt.nodes import NodeResult, NodeStarted, NodeStatus, aware, dbt_time, rows_affected
from flows.dbt.profiles import DbtProject

logger = logging.getLogger(__name__)

#: dbt's own name for the artifacts a run writes into its target path.
ARTIFACT_FILES = ("manifest.json", "run_results.json", "sources.json", "catalog.json")


def dbt_runner() -> Any:
    """dbt's `dbtRunner`, imported on first use (dbt's import costs seconds), with dbt's
    behavior-flag bookkeeping made cheap (`_name_flag_sources_cheaply`)."""
    from dbt.cli.main import dbtRunner

    _name_flag_sources_cheaply()
    return dbtRunner


@functools.cache
def _name_flag_sources_cheaply() -> None:
    """dbt creates its adapter's behavior flags, and each names its source by walking
    `inspect.stack()`, which reads the source lines of every frame on the stack: 6 lookups per
    `ferry run`, ~15 ms each there and ~80 ms under a deeper stack (a test runner). The same
    name (the first module on the stack other than dbt's behavior_flags) is read from the
    frames' globals instead (docs/architecture.md, "Where we go around dbt-core").
    """
    from dbt_common import behavior_flags

    rendered = getattr(behavior_flags, "BehaviorFlagRendered", None)
    if rendered is None or not hasattr(rendered, "_default_source"):
        return  # another dbt-common: its own way stays

    def _default_source() -> str:
        frame = sys._getframe(1)
        while frame is not None:
            name = frame.f_globals.get("__name__")
            if name and name != behavior_flags.__name__:
                return str(name)
            frame = frame.f_back  # type: ignore[assignment]
        return "Unknown"

    rendered._default_source = staticmethod(_default_source)


class NodeListener(Protocol):
    """Receives nodes as dbt starts and finishes them (called from dbt's worker threads)."""

    def node_started(self, node: NodeStarted) -> None: ...

    def node_finished(self, node: NodeResult) -> None: ...


class DbtProjectError(RuntimeError):
    """dbt could not parse or load the project: a failure of the run, not of its input."""


@dataclass
class DbtOutcome:
    """What dbt did in one invocation."""

    success: bool
    nodes: list[NodeResult]
    error: str | None
    elapsed: float
    target_path: Path
    log_path: Path
    documented: Documented | None = None
    """`docs generate`: what its catalog and page hold."""


@dataclass(frozen=True)
class ParseReport:
    """How dbt parsed: from its saved state (partially) or from scratch, and why."""

    partial: bool
    """dbt re-used saved parse state, re-parsing only the files that changed (if any)."""
    reason: str | None = None
    """Why dbt parsed from scratch, in dbt's words (e.g. "profile has changed")."""
    changed_files: int = 0
    """Files dbt parsed again on top of the saved state (added, changed or deleted)."""
    elapsed_s: float = 0.0
    baked: str | None = None
    """The baked parse state the run started from (`<env>/<target>`), if any."""

    def describe(self) -> str:
        if self.partial:
            source = f"baked state {self.baked}" if self.baked else "saved state"
            return f"from {source} in {self.elapsed_s:.1f} s ({self.changed_files} files re-parsed)"
        refused = f", not from the baked parse state {self.baked}" if self.baked else ""
        return f"in full in {self.elapsed_s:.1f} s{refused}: {self.reason}"


@dataclass(frozen=True)
class Parsed:
    """dbt's manifest and how it was made."""

    manifest: Any
    report: ParseReport


@dataclass(frozen=True)
class DbtInvocation:
    """The paths and flags shared by every dbt call of one run."""

    project: DbtProject
    args: DbtArgs
    profiles_dir: Path
    target_path: Path
    log_path: Path
    state_path: Path | None = None

    def common_args(self) -> list[str]:
        args = [
            "--project-dir",
            str(self.project.project_dir),
            "--profiles-dir",
            str(self.profiles_dir),
            "--target-path",
            str(self.target_path),
            "--log-path",
            str(self.log_path),
        ]
        if self.args.target:
            args += ["--target", self.args.target]
        if self.args.vars and self.args.command is not DbtCommand.RETRY:
            args += ["--vars", json.dumps(self.args.vars)]
        return args

    def run_args(self) -> list[str]:
        asked = self.args
        args = [*asked.command.argv, *self.common_args(), *asked.selection_args()]
        if asked.command is DbtCommand.RETRY:
            assert self.state_path is not None, "retry needs the failed run's state"
            args += ["--state", str(self.state_path)]
            if asked.vars:  # retry re-uses the failed run's vars unless told otherwise
                args += ["--vars", json.dumps(asked.vars)]
        elif self.state_path is not None:  # production state: to compare and/or to defer to
            args += ["--state", str(self.state_path)]
            if asked.defer:
                args.append("--defer")
        if asked.command is DbtCommand.DOCS_GENERATE:  # the page with its data inlined: one file
            args.append(STATIC_FLAG)
        return args + list(asked.flags)

    def parse(self) -> Parsed:
        """Parses the project once, returning dbt's manifest and how dbt went about it.

        Partial parsing applies: when the target path holds dbt's saved state
        (partial_parse.msgpack, e.g. the image's baked one) and dbt's state check accepts it,
        only changed files are parsed. The report says which happened and, if dbt parsed in
        full, dbt's reason.

        Raises:
            InvalidDbtInput: the profile or project configuration cannot load (a missing
                env var, a bad target): the caller's input, refused before any connection.
            DbtProjectError: the project itself does not parse.
        """
        dbtRunner = dbt_runner()
        from dbt.exceptions import DbtProfileError
        from dbt.exceptions import DbtProjectError as DbtProjectConfigError

        watcher = _ParseStateCallback()
        started = time.perf_counter()
        result = dbtRunner(callbacks=[watcher]).invoke(["parse", *self.common_args(), "--quiet"])
        if result.success:
            return Parsed(result.result, watcher.report(time.perf_counter() - started))
        exc = result.exception
        message = _exception_message(exc)
        if isinstance(exc, DbtProfileError | DbtProjectConfigError) or "Env var required" in (
            message
        ):
            raise InvalidDbtInput(f"dbt cannot load the project or profile: {message}")
        raise DbtProjectError(f"dbt could not parse the project: {message}")

    def check_selection(self, manifest: Any) -> list[str]:
        """Resolves the selection as `dbt ls` does, without a connection.

        Returns:
            The unique ids the command will execute.

        Raises:
            InvalidDbtInput: the selection is malformed, names an unknown selector, or
                matches no node the command executes.
        """
        dbtRunner = dbt_runner()

        asked = self.args
        args = [
            "ls",
            *self.common_args(),
            *asked.selection_args(),
            *(
                ["--state", str(self.state_path)]
                if self.state_path and asked.compares_state
                else []
            ),
            "--output",
            "json",
            "--output-keys",
            "unique_id",
            "resource_type",
            "--log-level",
            "none",
        ]
        result = dbtRunner(manifest=manifest).invoke(args)
        if not result.success:
            raise InvalidDbtInput(
                f"invalid selection {' '.join(asked.selection_args())!r}: "
                f"{_exception_message(result.exception)}"
            )
        lines: list[str] = result.result if isinstance(result.result, list) else []
        listed = [json.loads(line) for line in lines]
        wanted = set(asked.command.resource_types)
        matched = [n["unique_id"] for n in listed if n["resource_type"] in wanted]
        if asked.has_selection and not matched and asked.compares_state and not listed:
            return []  # nothing differs from the compared state: a valid, empty run
        if asked.has_selection and not matched:
            what = " ".join(asked.selection_args())
            if listed:
                types = sorted({n["resource_type"] for n in listed})
                raise InvalidDbtInput(
                    f"selection {what!r} matches {len(listed)} node(s) of type "
                    f"{', '.join(types)}, but {asked.command.value!r} runs only "
                    f"{', '.join(sorted(wanted))}; widen the selection or change the command"
                )
            raise InvalidDbtInput(
                f"selection {what!r} matches no node in project {self.project.name!r}; check "
                "the names (dbt ls --select ... lists what a selector matches)"
            )
        return matched

    def newest_loaded_at(self, manifest: Any, sources: list[str]) -> dict[str, str | None]:
        """Each source's newest `loaded_at`, by `dbt source freshness` (ISO text, UTC).

        A source whose query failed, or that has no freshness to check, maps to None (unknown).
        Its results go to a folder of their own: never the run's sources.json.
        """
        dbtRunner = dbt_runner()

        found: dict[str, str | None] = dict.fromkeys(sources)
        checked = [s for s in sources if _has_freshness(manifest.sources.get(s))]
        if not checked:
            return found
        folder = self.log_path / "only-changed"
        folder.mkdir(parents=True, exist_ok=True)
        args = [
            "source",
            "freshness",
            *self.common_args(),
            "--target-path",
            str(folder),
            "--select",
            *(f"source:{s.removeprefix('source.').split('.', 1)[1]}" for s in checked),
            "--log-level",
            "none",
        ]
        result = dbtRunner(manifest=manifest).invoke(args)
        for r in _results_of(result.result):
            at = getattr(r, "max_loaded_at", None)
            unique_id = getattr(getattr(r, "node", None), "unique_id", None)
            if unique_id in found and isinstance(at, datetime):
                found[unique_id] = at.replace(tzinfo=at.tzinfo or UTC).isoformat()
        return found

    def execute(self, manifest: Any | None, listener: NodeListener) -> DbtOutcome:
        """Runs the command, telling `listener` about every node; never raises for dbt errors."""
        dbtRunner = dbt_runner()

        callback = _NodeEventCallback(listener)
        runner = dbtRunner(manifest=manifest, callbacks=[callback])
        started = time.perf_counter()
        result = runner.invoke(self.run_args())
        elapsed = time.perf_counter() - started

        nodes = [_node_result(r) for r in _results_of(result.result)]
        for node in nodes:  # nodes dbt never announced (skips, fail-fast) still get reported
            if node.unique_id not in callback.finished:
                callback.safe(listener.node_finished, node)
        error = None if result.exception is None else _exception_message(result.exception)
        docs = self.args.command is DbtCommand.DOCS_GENERATE
        return DbtOutcome(
            success=bool(result.success),
            nodes=nodes,
            error=error,
            elapsed=elapsed,
            target_path=self.target_path,
            log_path=self.log_path,
            documented=documented(manifest, result.result) if docs else None,
        )


class _ParseStateCallback:
    """dbt event callback: hears whether dbt accepted its saved parse state, and if not, why.

    dbt decides silently (its reasons are info/debug events, and ferry parses with --quiet);
    callbacks receive every event whatever the log level.
    """

    def __init__(self) -> None:
        self.reused = False
        self.changed_files = 0
        self.reasons: list[str] = []

    def __call__(self, msg: Any) -> None:
        name = msg.info.name
        if name == "PartialParsingEnabled":  # the saved state passed dbt's state check
            self.reused = True
            data = msg.data
            self.changed_files = int(data.deleted) + int(data.added) + int(data.changed)
        elif name == "PartialParsingSkipParsing":  # ... and no file changed
            self.reused = True
        elif name == "UnableToPartialParse":
            self.reasons.append(str(msg.data.reason))
        elif name == "ParsedFileLoadFailed":
            self.reasons.append(f"the saved state could not be read ({msg.data.exc})")
        elif name == "PartialParsingNotEnabled":
            self.reasons.append(
                "partial parsing is off (--no-partial-parse, DBT_PARTIAL_PARSE or the "
                "project's flags)"
            )

    def report(self, elapsed_s: float) -> ParseReport:
        reason = "; ".join(dict.fromkeys(self.reasons)) or None
        if not self.reused and reason is None:
            reason = "dbt did not say"
        return ParseReport(
            partial=self.reused and not self.reasons,
            reason=reason,
            changed_files=self.changed_files,
            elapsed_s=round(elapsed_s, 3),
        )


class _NodeEventCallback:
    """dbt event callback: NodeStart/NodeFinished become ferry values for the listener."""

    def __init__(self, listener: NodeListener) -> None:
        self._listener = listener
        self.finished: set[str] = set()

    def __call__(self, msg: Any) -> None:
        name = msg.info.name
        if name == "NodeStart":
            info = msg.data.node_info
            started = dbt_time(info.node_started_at) or datetime.now(UTC)
            start = NodeStarted(info.unique_id, info.resource_type, info.node_name, started)
            self.safe(self._listener.node_started, start)
        elif name == "NodeFinished":
            info, rr = msg.data.node_info, msg.data.run_result
            node = NodeResult(
                unique_id=info.unique_id,
                resource_type=info.resource_type,
                name=info.node_name,
                status=NodeStatus.parse(rr.status),
                message=rr.message or None,
                started_at=dbt_time(info.node_started_at),
                finished_at=dbt_time(info.node_finished_at) or datetime.now(UTC),
                execution_time=float(rr.execution_time),
                failures=int(rr.num_failures) if rr.num_failures else None,
                relation=(info.node_relation.relation_name or None)
                if info.HasField("node_relation")
                else None,
            )
            self.finished.add(node.unique_id)
            self.safe(self._listener.node_finished, node)

    @staticmethod
    def safe(fn: Callable[[Any], None], node: Any) -> None:
        # A reporting hiccup must never change what dbt does.
        try:
            fn(node)
        except Exception:
            logger.warning("could not report dbt node %s", node.unique_id, exc_info=True)


def _results_of(result: Any) -> list[Any]:
    results = getattr(result, "results", None)
    return list(results) if results else []


def _node_result(r: Any) -> NodeResult:
    node = r.node
    timing = [t for t in (r.timing or []) if t.started_at]
    started = min((t.started_at for t in timing), default=None)
    finished = max((t.completed_at for t in timing if t.completed_at), default=None)
    return NodeResult(
        unique_id=node.unique_id,
        resource_type=str(getattr(node.resource_type, "value", node.resource_type)),
        name=node.name,
        status=NodeStatus.parse(getattr(r.status, "value", r.status)),
        message=r.message,
        started_at=aware(started),
        finished_at=aware(finished),
        execution_time=float(r.execution_time or 0.0),
        failures=r.failures or None,
        relation=getattr(node, "relation_name", None),
        rows=rows_affected(getattr(r, "adapter_response", None)),
    )


def _has_freshness(source: Any) -> bool:
    """Whether dbt can tell the source's newest load: a loaded_at field or query, and a
    freshness threshold (dbt checks only sources that have one)."""
    if source is None:
        return False
    freshness = getattr(source, "freshness", None)
    has_threshold = freshness is not None and any(
        getattr(after, "count", None) for after in (freshness.warn_after, freshness.error_after)
    )
    field = getattr(source, "loaded_at_field", None) or getattr(source, "loaded_at_query", None)
    return bool(has_threshold and field)


def _exception_message(exc: BaseException | None) -> str:
    if exc is None:
        return "dbt failed without an error message (see dbt.log)"
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


@functools.cache
def dbt_version() -> str | None:
    """The installed dbt-core's version (what a summary, a bake and the packages' record note)."""
    try:
        return version("dbt-core")
    except PackageNotFoundError:
        return None
