"""One build split into parts that build independently, for several tasks at once (`fan_out`).

A part is a set of connected parts of the selected graph: no node of one part reads a node of
another, so the parts need no order between them, and each can hold its own nodes while the
others hold theirs (flows/run/holds.py). The connected parts are packed into at most N parts by
expected time - each node's usual time from the run history, longest first onto the part with
the least so far - so the parts end at about the same time. A selection that is one connected
part (one dominant chain) stays one part: fanning it out would not make it faster.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from statistics import median
from typing import Any

from pydantic import BaseModel, ConfigDict

from flows.artifacts import ArtifactStore, index_key
from flows.dbt.nodes import NodeResult, results_of_json
from flows.run.request import RunRequest

UNKNOWN_S = 1.0
"""A node's expected time when no run of it is known, nor of any other node."""


@dataclass(frozen=True)
class Part:
    """The nodes one part builds."""

    index: int
    """1, 2, ...: how logs and verdicts name it (`part 2 of 4`)."""
    nodes: tuple[str, ...]
    expected_s: float
    """The sum of its nodes' usual times: what the packing balanced."""


def split(
    nodes: Iterable[str],
    inputs: Callable[[str], Iterable[str]],
    expected_s: Mapping[str, float],
    most: int,
) -> list[Part]:
    """The selection's nodes in at most `most` parts, none of which reads another.

    Args:
        nodes: The nodes the run executes (its selection).
        inputs: A node's inputs (ephemeral models read through): the graph's edges.
        expected_s: Each node's usual time; a node without one counts as the median of the
            others (`UNKNOWN_S` when none has one).
        most: The most parts wanted (N of `fan_out`).

    Returns:
        The parts, largest expected time first; one part when the selection is connected.
    """
    selected = list(dict.fromkeys(nodes))
    if not selected:
        return []
    groups = _connected(selected, inputs)
    known = [expected_s[n] for n in selected if n in expected_s]
    default = median(known) if known else UNKNOWN_S
    times = {n: expected_s.get(n, default) for n in selected}
    order = {n: i for i, n in enumerate(selected)}
    weighted = sorted(groups, key=lambda g: (-sum(times[n] for n in g), min(order[n] for n in g)))
    bins: list[tuple[float, int, list[str]]] = [(0.0, i, []) for i in range(max(1, most))]
    heapq.heapify(bins)
    for group in weighted:
        total, index, members = heapq.heappop(bins)
        members.extend(group)
        heapq.heappush(bins, (total + sum(times[n] for n in group), index, members))
    filled = sorted((b for b in bins if b[2]), key=lambda b: (-b[0], b[1]))
    return [
        Part(i, tuple(sorted(members, key=order.__getitem__)), round(total, 3))
        for i, (total, _, members) in enumerate(filled, start=1)
    ]


def _connected(nodes: list[str], inputs: Callable[[str], Iterable[str]]) -> list[list[str]]:
    """The connected parts of the graph the nodes and their edges among them make."""
    parent = {n: n for n in nodes}

    def root(n: str) -> str:
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    for node in nodes:
        for read in inputs(node):
            if read in parent:
                a, b = root(node), root(read)
                if a != b:
                    parent[max(a, b)] = min(a, b)
    groups: dict[str, list[str]] = {}
    for node in nodes:
        groups.setdefault(root(node), []).append(node)
    return list(groups.values())


@dataclass(frozen=True)
class PartRun:
    """How one part's flow run ended."""

    part: Part
    run_id: str
    """Its flow run id: its artifacts' run id in the store."""
    name: str
    """Its flow run's name, as the Prefect UI shows it."""
    state: str
    """Its final state's name: Completed, Failed, Crashed, Cancelled, TimedOut..."""
    state_type: str
    message: str | None = None

    def describe(self, of: int) -> str:
        """`part 2 of 4 (flow run 'crimson-fox') crashed: <message>`."""
        said = f"part {self.part.index} of {of} (flow run {self.name!r}) {self.state.lower()}"
        return f"{said}: {self.message}" if self.message else said


class PartRecord(BaseModel):
    """One part of a fanned-out run, as its parent's summary lists it."""

    model_config = ConfigDict(frozen=True)

    index: int
    flow_run_id: str
    name: str
    state: str
    nodes: int
    artifacts: str | None = None


PartsRunner = Callable[
    [list[Part], Callable[[Part], RunRequest], Callable[[float], bool]], list[PartRun]
]
"""Starts the parts (each with the request `request_of(part)`) and waits for them all, pausing
with `wait(seconds)` between polls (False: the parent's time is up); their runs, as they ended
(flows/prefect/parts.py)."""


@dataclass
class Gathered:
    """The parts' nodes as one run's, and what the parts themselves left unsaid."""

    nodes: list[NodeResult] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)
    """Every part's run_results.json results, one document's worth."""
    lost: list[str] = field(default_factory=list)
    """Parts that ended without a verdict of their own (crashed, cancelled), described."""
    parts: list[PartRecord] = field(default_factory=list)
    """Each part as the parent's summary lists it."""


def gather(
    store: ArtifactStore,
    project: str,
    env: str,
    runs: list[PartRun],
    names: dict[str, str],
) -> Gathered:
    """Reads every part's stored run_results.json back as one run's. A part that stored none
    (it crashed, or was cancelled) has its nodes skipped, with why, so `retry` runs them again.
    """
    gathered = Gathered()
    for run in runs:
        document, prefix = _stored_results(store, project, env, run.run_id)
        gathered.parts.append(
            PartRecord(
                index=run.part.index,
                flow_run_id=run.run_id,
                name=run.name,
                state=run.state,
                nodes=len(run.part.nodes),
                artifacts=f"{store.url}/{prefix}" if prefix else None,
            )
        )
        if document is not None:
            gathered.results.extend(document.get("results") or [])
            gathered.nodes.extend(results_of_json(document, names))
            if run.state_type in ("COMPLETED", "FAILED"):
                continue
        said = run.describe(len(runs))
        gathered.lost.append(said)
        done = {n.unique_id for n in gathered.nodes}
        for unique_id in run.part.nodes:
            if unique_id in done:
                continue
            gathered.results.append(_skipped(unique_id, said))
            gathered.nodes.extend(results_of_json({"results": [gathered.results[-1]]}, names))
    return gathered


def merged_run_results(
    gathered: Gathered, *, command: str, started_at: datetime, elapsed_s: float
) -> dict[str, Any]:
    """One run_results.json for the parent: what `retry` of the parent reads."""
    return {
        "metadata": {
            "dbt_schema_version": "https://schemas.getdbt.com/dbt/run-results/v6.json",
            "generated_at": datetime.now(UTC).isoformat(),
            "invocation_started_at": started_at.isoformat(),
        },
        "results": gathered.results,
        "elapsed_time": round(elapsed_s, 3),
        "args": {"which": command, "fan_out_parts": len(gathered.parts)},
    }


def _skipped(unique_id: str, why: str) -> dict[str, Any]:
    return {
        "unique_id": unique_id,
        "status": "skipped",
        "message": f"not run: {why}",
        "timing": [],
        "execution_time": 0.0,
        "failures": None,
        "adapter_response": {},
        "thread_id": None,
    }


def _stored_results(
    store: ArtifactStore, project: str, env: str, run_id: str
) -> tuple[dict[str, Any] | None, str | None]:
    """A part's run_results.json as stored, and its folder; None for what it did not store."""
    try:
        raw = store.get_bytes(index_key(project, env, run_id))
        pointer = json.loads(raw) if raw else {}
    except Exception:
        return None, None
    prefix = str(pointer.get("prefix") or "") or None
    if prefix is None:
        return None, None
    try:
        raw = store.get_bytes(f"{prefix}/run_results.json")
        return (json.loads(raw) if raw else None), prefix
    except Exception:
        return None, prefix
