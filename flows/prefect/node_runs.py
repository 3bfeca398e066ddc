"""dbt nodes as Prefect task runs: the one place ferry maps a node to a Prefect object.

Each node becomes a task run of the flow run, recorded by the Prefect server from task-run state
events - the same events Prefect's own task engine emits (see
`prefect.utilities.engine.emit_task_run_state_change_event`) - instead of a `create_task_run` and
`set_task_run_state` API round trip per state. dbt's threads only append a plain dict to a list;
one thread sends what has gathered every half second in one request (`POST /events`, the API's
batch of events), where Prefect's events worker would wake two threads and send one websocket
message per event. If the API refuses the batch, the events go through Prefect's events worker
after all. Measured in bench/overhead.py; the choice is argued in docs/architecture.md.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from flows.dbt.nodes import NodeResult, NodeStarted, NodeStatus
from flows.settings import NodeReporting

logger = logging.getLogger(__name__)

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

BATCH_INTERVAL_S = 0.5
"""How often the events gathered are sent: the UI shows a node's state at most this much (plus
the server's own recording delay) after dbt reports it."""
_BATCH_MAX = 500
_LAST_SEND_S = 3.0
"""How long the end of a run waits for the last batch. Past it (an API that stopped
answering), the run goes on to its verdict and the batch is left to Prefect's events worker,
which the process's end bounds (flows.prefect.process_end)."""
_EVENTS_ROUTE = "/events"  # the API's batch of events (Prefect server and Cloud)
_FOLLOWS_WITHIN = timedelta(minutes=5)  # as Prefect's emit_event: older is no ordering hint


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
        self._last_event: dict[str, tuple[str, datetime]] = {}  # (id, occurred)
        self._pending: dict[str, tuple[NodeStarted, float]] = {}
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._batches = EventBatches(self._flow_run)
        self.emitted = 0

    def __enter__(self) -> PrefectNodeReporter:
        if self._mode is NodeReporting.OFF:
            return self
        self._batches.start()
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
        self._batches.close()

    @property
    def batches(self) -> int:
        """Requests that carried this reporter's events to the API."""
        return self._batches.sent

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
        event_id = str(uuid.uuid4())
        with self._lock:
            task_run_id = self._task_run_ids.setdefault(unique_id, uuid.uuid4())
            follows = self._last_event.get(unique_id)
            self._last_event[unique_id] = (event_id, occurred)
            self.emitted += 1
        message = (message or "")[:_MESSAGE_LIMIT]
        state: dict[str, Any] = {
            "type": state_type,
            "name": state_name,
            "message": message,
            "state_details": {},
            "data": None,
        }
        event: dict[str, Any] = {
            "id": event_id,
            "event": f"prefect.task-run.{state_name}",
            "occurred": occurred.isoformat(),
            "resource": {
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
            "payload": {
                "intended": {"from": None, "to": state_type},
                "initial_state": None,
                "validated_state": state,
                "task_run": task_run,
            },
        }
        if follows is not None and abs(occurred - follows[1]) < _FOLLOWS_WITHIN:
            event["follows"] = follows[0]
        self._batches.add(event)


class EventBatches:
    """Sends events to the Prefect API in batches, from a thread of its own (thread-safe `add`).

    Every event is related to the flow run and to the `dbt` tag, and to what Prefect relates
    its own task-run events to (the flow, the deployment, its work queue and pool, the run's
    tags), read once from the run context when it starts.
    """

    def __init__(self, flow_run: dict[str, str], interval_s: float = BATCH_INTERVAL_S):
        self._related = [
            flow_run,
            {"prefect.resource.id": "prefect.tag.dbt", "prefect.resource.role": "tag"},
        ]
        self._interval_s = interval_s
        self._events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._refused = False
        self.sent = 0

    def start(self) -> None:
        # The sender uses the flow's Prefect settings and run context.
        context = contextvars.copy_context()
        self._thread = threading.Thread(
            target=context.run, args=(self._send_loop,), name="ferry-node-events", daemon=True
        )
        self._thread.start()

    def add(self, event: dict[str, Any]) -> None:
        with self._lock:
            self._events.append(event)

    def close(self) -> None:
        """Sends what is left; waits for it at most `_LAST_SEND_S`."""
        self._closing.set()
        if self._thread is None:  # never started: nothing was reported (mode `off`)
            return
        self._thread.join(timeout=_LAST_SEND_S)
        if self._thread.is_alive():
            logger.warning(
                "the Prefect API did not take the last task-run events within %g s: "
                "they are left to Prefect's events worker",
                _LAST_SEND_S,
            )

    def _take(self, most: int) -> list[dict[str, Any]]:
        with self._lock:
            taken, self._events = self._events[:most], self._events[most:]
        return taken

    def _send_loop(self) -> None:
        from prefect.client.orchestration import get_client

        self._related = self._with_run_context(self._related)
        try:
            with get_client(sync_client=True) as client:
                self._pump(lambda batch: self._send(client, batch))
        except Exception as exc:  # no client: the events go on through Prefect's worker
            self._refused = True
            logger.warning(
                "could not send task-run events to the Prefect API (%s): sending them one by "
                "one through Prefect's events worker",
                exc,
            )
            self._pump(self._through_events_worker)

    def _pump(self, send: Callable[[list[dict[str, Any]]], None]) -> None:
        """Every `_interval_s`, what has gathered goes to `send`; at close, the rest."""
        while True:
            closing = self._closing.wait(self._interval_s)
            while batch := self._take(_BATCH_MAX):
                for event in batch:
                    event["related"] = self._related
                send(batch)
            if closing:
                return

    def _send(self, client: Any, batch: list[dict[str, Any]]) -> None:
        if not self._refused:
            try:
                client.request("POST", _EVENTS_ROUTE, json=batch).raise_for_status()
                self.sent += 1
                return
            except Exception as exc:  # e.g. an API without the batch endpoint: events go on
                self._refused = True
                logger.warning(
                    "the Prefect API did not take a batch of task-run events (%s): sending "
                    "them one by one through Prefect's events worker",
                    exc,
                )
        self._through_events_worker(batch)

    @staticmethod
    def _through_events_worker(batch: list[dict[str, Any]]) -> None:
        from prefect.events.schemas.events import Event
        from prefect.events.worker import EventsWorker, should_emit_events

        if not batch or not should_emit_events():
            return
        worker = EventsWorker.instance()
        for event in batch:
            worker.send(Event.model_validate(event))

    @staticmethod
    def _with_run_context(related: list[dict[str, str]]) -> list[dict[str, str]]:
        """`related` and what the run context relates a task run's events to, as Prefect's own
        events worker finds it (a few API reads, once)."""
        from prefect.client.orchestration import get_client
        from prefect.events.related import related_resources_from_run_context

        async def read() -> list[dict[str, str]]:
            async with get_client() as client:
                found = await related_resources_from_run_context(client)
            return [dict(r.root) for r in found]

        try:
            found = asyncio.run(read())
        except Exception as exc:  # the events still name the flow run: the UI shows them
            logger.debug("could not read the run's related resources: %s", exc)
            return related
        known = {r["prefect.resource.id"] for r in found}  # the flow run, with its name
        return found + [r for r in related if r["prefect.resource.id"] not in known]
