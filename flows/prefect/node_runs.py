"""dbt nodes as Prefect task runs: the one place ferry maps a node to a Prefect object.

Each node becomes a task run of the flow run, recorded by the Prefect server from task-run state
events - the same events Prefect's own task engine emits (see
`prefect.utilities.engine.emit_task_run_state_change_event`) - instead of a `create_task_run` and
`set_task_run_state` API round trip per state. Events are queued to Prefect's background events
worker, so dbt's threads never wait on the network. Measured in bench/overhead.py; the choice is
argued in docs/architecture.md.
"""

from __future__ import annotations

import contextvars
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from prefect.events import emit_event
from prefect.events.schemas.events import Event

from flows.dbt.nodes import NodeResult, NodeStarted, NodeStatus
from flows.settings import NodeReporting

# (Prefect state type, state name) per dbt status. Warnings stay COMPLETED but say so; a skipped
# node did not run, so it is not shown as a success.
_STATES: dict[NodeStatus, tuple[str, str]] = {
    NodeStatus.SUCCESS: ("COMPLETED", "Completed"),
    NodeStatus.PASS: ("COMPLETED", "Completed"),
    NodeStatus.NO_OP: ("COMPLETED", "Completed"),
    NodeStatus.WARN: ("COMPLETED", "Warned"),
    NodeStatus.ERROR: ("FAILED", "Failed"),
    NodeStatus.FAIL: ("FAILED", "Failed"),
    NodeStatus.RUNTIME_ERROR: ("FAILED", "Failed"),
    NodeStatus.PARTIAL_SUCCESS: ("FAILED", "Failed"),
    NodeStatus.SKIPPED: ("CANCELLED", "Skipped"),
}

_MESSAGE_LIMIT = 10_000


def prefect_state_of(status: NodeStatus) -> tuple[str, str]:
    """The Prefect (state type, state name) a node with this dbt status is shown in."""
    return _STATES[status]


class PrefectNodeReporter:
    """Records every dbt node of one flow run as a Prefect task run (thread-safe).

    In `live` mode a node is shown Running only once it has run for `running_after_s`: most
    nodes of a dbt project finish in well under a second, and a Running state nobody can see
    costs the server as much as one they can. Slow nodes - the ones worth watching - show up
    Running while they run. Use it as a context manager, so the watcher thread stops.
    """

    def __init__(
        self,
        flow_run_id: uuid.UUID | str,
        mode: NodeReporting,
        run_count: int = 1,
        running_after_s: float = 1.0,
    ):
        self._flow_run = {
            "prefect.resource.id": f"prefect.flow-run.{flow_run_id}",
            "prefect.resource.role": "flow-run",
        }
        self._mode = mode
        self._run_count = run_count
        self._running_after_s = running_after_s
        self._lock = threading.RLock()
        self._task_run_ids: dict[str, uuid.UUID] = {}
        self._last_event: dict[str, Event] = {}
        self._pending: dict[str, tuple[NodeStarted, float]] = {}
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self.emitted = 0

    def __enter__(self) -> PrefectNodeReporter:
        if self._mode is NodeReporting.LIVE and self._running_after_s > 0:
            # The watcher emits with the flow's Prefect settings and run context.
            context = contextvars.copy_context()
            self._watcher = threading.Thread(
                target=context.run, args=(self._watch,), name="ferry-node-watcher", daemon=True
            )
            self._watcher.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5)

    def node_started(self, node: NodeStarted) -> None:
        if self._mode is not NodeReporting.LIVE:
            return
        if self._running_after_s <= 0:
            self._announce(node)
            return
        with self._lock:
            self._pending[node.unique_id] = (node, time.monotonic())

    def _watch(self) -> None:
        interval = min(max(self._running_after_s / 2, 0.05), 0.5)
        while not self._stop.wait(interval):
            deadline = time.monotonic() - self._running_after_s
            # Announced under the lock, so a node's final state can never overtake its Running.
            with self._lock:
                due = [n for n, since in self._pending.values() if since <= deadline]
                for node in due:
                    del self._pending[node.unique_id]
                    self._announce(node)

    def _announce(self, node: NodeStarted) -> None:
        payload = self._task_run(node.unique_id, node.resource_type, node.started_at, None)
        self._emit(
            node.unique_id, node.resource_type, "RUNNING", "Running", None, payload, node.started_at
        )

    def node_finished(self, node: NodeResult) -> None:
        if self._mode is NodeReporting.OFF:
            return
        with self._lock:
            self._pending.pop(node.unique_id, None)
        state_type, state_name = prefect_state_of(node.status)
        finished = node.finished_at or datetime.now(UTC)
        payload = self._task_run(node.unique_id, node.resource_type, node.started_at, finished)
        message = node.message if node.status is not NodeStatus.SUCCESS else None
        self._emit(
            node.unique_id, node.resource_type, state_type, state_name, message, payload, finished
        )

    def _task_run(
        self,
        unique_id: str,
        resource_type: str,
        started: datetime | None,
        finished: datetime | None,
    ) -> dict[str, Any]:
        run: dict[str, Any] = {
            "name": unique_id,
            # task_key/dynamic_key identify the node within the flow run, so a late event for the
            # same node updates its task run rather than adding one.
            "task_key": f"dbt.{unique_id}",
            "dynamic_key": str(self._run_count - 1),
            "tags": ["dbt", f"dbt:{resource_type}"],
            "run_count": 1 if started else 0,
            "flow_run_run_count": self._run_count,
            "task_inputs": {},
        }
        if started:
            run["expected_start_time"] = run["start_time"] = started.isoformat()
        if started and finished:
            run["end_time"] = finished.isoformat()
            run["total_run_time"] = max((finished - started).total_seconds(), 0.0)
        return run

    def _emit(
        self,
        unique_id: str,
        resource_type: str,
        state_type: str,
        state_name: str,
        message: str | None,
        task_run: dict[str, Any],
        occurred: datetime,
    ) -> None:
        with self._lock:
            task_run_id = self._task_run_ids.setdefault(unique_id, uuid.uuid4())
            follows = self._last_event.get(unique_id)
        message = (message or "")[:_MESSAGE_LIMIT]
        state: dict[str, Any] = {
            "type": state_type,
            "name": state_name,
            "message": message,
            "state_details": {},
            "data": None,
        }
        event = emit_event(
            event=f"prefect.task-run.{state_name}",
            occurred=occurred,
            id=uuid.uuid4(),
            resource={
                "prefect.resource.id": f"prefect.task-run.{task_run_id}",
                "prefect.resource.name": unique_id,
                "prefect.run-count": str(task_run.get("run_count", 1)),
                "prefect.state-message": message,
                "prefect.state-name": state_name,
                "prefect.state-timestamp": occurred.isoformat(),
                "prefect.state-type": state_type,
                "prefect.orchestration": "client",
                "dbt.resource-type": resource_type,
            },
            related=[
                self._flow_run,
                {"prefect.resource.id": "prefect.tag.dbt", "prefect.resource.role": "tag"},
            ],
            payload={
                "intended": {"from": None, "to": state_type},
                "initial_state": None,
                "validated_state": state,
                "task_run": task_run,
            },
            follows=follows,
        )
        if event is not None:
            with self._lock:
                self._last_event[unique_id] = event
                self.emitted += 1
