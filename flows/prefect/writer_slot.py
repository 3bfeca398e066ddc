"""One dbt invocation writing to an environment's warehouse at a time, across its deployments.

Prefect's per-deployment concurrency limits (prefect.yaml) queue the runs of one deployment, but
build-prod, run-prod and retry-prod are three deployments writing the same tables. Their shared
queue is a Prefect global concurrency limit per environment, `ferry-writer-<env>` with one slot:
the `dbt` flow holds it around dbt's execution only (flows.run.execute), so a run parses and
checks its selection while another writes, and waits only for the warehouse.

- Which commands: those that may write (`takes_slot`); on DuckDB, a file one process at a time
  may open, every command - and the slot goes only once dbt's hold on the file is closed.
- Waiting: without a time limit, in line; the run logs when it starts waiting (and for whom,
  when Prefect's events tell) and when it gets the slot.
- No limit on the server (a user's own server, `ferry run` outside deployments): a warning and
  the run goes on unqueued. The limit is configuration, created by `ferry alerts automations
  apply` and `ferry release deploy` (`apply_limits`) with the deploy role's rights; a run
  creating it would need those rights too, and would undo an operator's decision to delete it.
- The API gone while the slot is held: Prefect's lease renewal fails, logs a warning and the
  run carries on; the release at the end is bounded (`RELEASE_WAIT_S`) and never raises. The
  server frees the slot when the lease expires (`LEASE_S`).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from uuid import UUID

from flows.dbt.commands import DbtCommand
from flows.dbt.connections import close_local_databases
from flows.notify.changes import Change, ChangeKind

if TYPE_CHECKING:
    from prefect.client.orchestration import PrefectClient, SyncPrefectClient
    from prefect.client.schemas.responses import GlobalConcurrencyLimitResponse

logger = logging.getLogger(__name__)

WRITERS = 1
"""Slots of each environment's limit: one writer at a time."""

LEASE_S = 300.0
"""How long the server keeps a slot whose holder stopped renewing it (Prefect's default). A run
killed while writing blocks its environment this long; renewals go every 75 % of it."""

RELEASE_WAIT_S = 10.0
"""The longest a run waits for the Prefect API to take the slot back once dbt has ended."""

_RETRY_BASE_S, _RETRY_MAX_S = 2.0, 60.0  # asking again after an API error while waiting
_ACQUIRED = "prefect.concurrency-limit.acquired"
_RELEASED = "prefect.concurrency-limit.released"

# Commands that may write to the warehouse. `test` too: `store_failures` writes audit tables.
# `retry` re-runs any of the others, and its adapter is not known before it starts.
_WRITING = frozenset(
    {
        DbtCommand.BUILD,
        DbtCommand.RUN,
        DbtCommand.SEED,
        DbtCommand.SNAPSHOT,
        DbtCommand.TEST,
        DbtCommand.RETRY,
    }
)
# Adapters whose database is a file that one process at a time may open, even to read it.
SINGLE_PROCESS_ADAPTERS = frozenset({"duckdb"})


def limit_name(env: str) -> str:
    """The global concurrency limit shared by every deployment of `env`."""
    return f"ferry-writer-{env}"


def takes_slot(command: DbtCommand, adapter_type: str | None) -> bool:
    """Whether `command` on this adapter holds its environment's writer slot.

    Args:
        command: The dbt command about to execute.
        adapter_type: The manifest's `metadata.adapter_type`; None when unknown (`retry`).
    """
    return command in _WRITING or adapter_type in SINGLE_PROCESS_ADAPTERS


def writer_slot(
    env: str, command: DbtCommand, adapter_type: str | None
) -> AbstractContextManager[None]:
    """Held around every dbt invocation that may write to `env`'s warehouse (see the module).

    Entering waits, without a time limit, until no other run of `env` writes; leaving never
    raises and never waits on the Prefect API longer than `RELEASE_WAIT_S`.
    """
    if not takes_slot(command, adapter_type):
        return contextlib.nullcontext()
    return _held(limit_name(env))


@contextlib.contextmanager
def _held(name: str) -> Iterator[None]:
    log = _logger()
    slot = _enter(name, log)
    try:
        yield
    finally:
        # The slot goes only once this process no longer holds the warehouse's file.
        close_local_databases()
        if slot is not None:
            _release(slot, name, log)


def _enter(name: str, log: Any) -> AbstractContextManager[None] | None:
    """The slot, entered; None when there is no queue to wait in."""
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import get_current_settings

    if not get_current_settings().api.url:
        # A temporary server lives and dies with this one run: no other writer can queue on it.
        log.info("no Prefect API configured: %s is not used", name)
        return None
    try:
        limit: GlobalConcurrencyLimitResponse | None = _read_limit(name)
    except ObjectNotFound:
        log.warning(
            "no global concurrency limit %r on this Prefect server: this run does not wait for "
            "other writers of its environment (create it with `ferry alerts automations apply` "
            "or `ferry release deploy`)",
            name,
        )
        return None
    except Exception as exc:  # asking for the slot retries until the API answers
        log.warning("could not read global concurrency limit %r: %s", name, exc)
        limit = None
    if limit is not None and not limit.active:
        log.warning("global concurrency limit %r is inactive: not waiting for it", name)
        return None
    return _acquire(name, limit.id if limit is not None else None, log)


def _acquire(name: str, limit_id: UUID | None, log: Any) -> AbstractContextManager[None]:
    """Enters Prefect's `concurrency` for `name`; returns it entered.

    The first attempt does not wait, so the run can say it is waiting, and for whom. An API error
    (not the slot being taken) is retried: a queued run never jumps the line, nor fails for it.
    """
    from prefect.concurrency.asyncio import ConcurrencySlotAcquisitionError
    from prefect.concurrency.sync import concurrency

    holder = _this_flow_run()
    waiting_since: float | None = None
    failures = 0
    while True:
        slot = concurrency(
            name,
            occupy=1,
            timeout_seconds=None,  # queued, never dropped
            max_retries=0 if waiting_since is None else None,
            lease_duration=LEASE_S,
            strict=False,
            holder=holder,
            raise_on_lease_renewal_failure=False,  # dbt finishes; the verdict stands
        )
        try:
            slot.__enter__()
        except ConcurrencySlotAcquisitionError as exc:
            if _slot_taken(exc) and waiting_since is None:
                waiting_since = time.monotonic()
                log.info("waiting for %s, held by %s", name, _holder_of(limit_id) or "another run")
                continue
            failures += 1
            delay = min(_RETRY_BASE_S * 2 ** (failures - 1), _RETRY_MAX_S)
            log.warning("could not ask for %s (%s); asking again in %.0f s", name, exc, delay)
            time.sleep(delay)
            continue
        if waiting_since is None:
            log.info("holding %s", name)
        else:
            log.info("got %s after waiting %.0f s", name, time.monotonic() - waiting_since)
        return slot


def _release(slot: AbstractContextManager[None], name: str, log: Any) -> None:
    """Leaves Prefect's `concurrency` in a thread of its own, waiting at most `RELEASE_WAIT_S`.

    Prefect's client retries an unreachable API for about a minute per call; the run's verdict
    does not wait for that. A slot not given back is freed by the server when its lease expires.
    """
    failed: list[BaseException] = []
    context = contextvars.copy_context()  # the flow run's, for Prefect's logs and events

    def leave() -> None:
        try:
            context.run(slot.__exit__, None, None, None)
        except BaseException as exc:  # reported below, never raised into the run
            failed.append(exc)

    thread = threading.Thread(target=leave, name=f"release-{name}", daemon=True)
    thread.start()
    thread.join(RELEASE_WAIT_S)
    if thread.is_alive() or failed:
        why = f"{failed[0]!r}" if failed else f"no answer within {RELEASE_WAIT_S:g} s"
        log.warning(
            "could not give %s back to the Prefect API (%s); the server frees it when its "
            "lease expires, within %g s",
            name,
            why,
            LEASE_S,
        )
    else:
        log.info("released %s", name)


def _slot_taken(exc: BaseException) -> bool:
    """Whether Prefect refused the slot because it is held (HTTP 423), not for an error."""
    import httpx

    cause = exc.__cause__
    return isinstance(cause, httpx.HTTPStatusError) and cause.response.status_code == 423


def _read_limit(name: str) -> GlobalConcurrencyLimitResponse:
    """The limit as the server has it.

    Raises:
        ObjectNotFound: there is no such limit.
    """
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_global_concurrency_limit_by_name(name)


def _holder_of(limit_id: UUID | None) -> str | None:
    """The flow run that holds the limit, from Prefect's acquired/released events; None if
    they do not tell (yet): events land asynchronously, and the server keeps no holder list
    for a global limit that its API would show."""
    if limit_id is None:
        return None
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            return _holder_in_events(client, limit_id)
    except Exception:  # a nicety of the log line, never the run's concern
        return None


def _holder_in_events(client: SyncPrefectClient, limit_id: UUID) -> str | None:
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    page = client.read_events(
        EventFilter(
            event=EventNameFilter(name=[_ACQUIRED, _RELEASED]),
            resource=EventResourceFilter(id=[f"prefect.concurrency-limit.{limit_id}"]),
        ),
        limit=50,
    )
    released = {event.follows for event in page.events if event.event == _RELEASED}
    for event in page.events:  # newest first
        if event.event == _ACQUIRED and event.id not in released:
            related = {r.role: r.get("prefect.resource.name") for r in event.related}
            run = related.get("flow-run")
            if not run:
                return None
            deployment = related.get("deployment")
            return f"flow run {run!r}" + (f" of {deployment}" if deployment else "")
    return None


def _this_flow_run() -> Any:
    """The lease's holder: this flow run, when there is one."""
    from prefect.client.schemas.objects import ConcurrencyLeaseHolder
    from prefect.runtime import flow_run

    run_id = flow_run.get_id()
    return ConcurrencyLeaseHolder(type="flow_run", id=UUID(run_id)) if run_id else None


def _logger() -> Any:
    from prefect import get_run_logger
    from prefect.exceptions import MissingContextError

    try:
        return get_run_logger()
    except MissingContextError:
        return logger


# --- the limits on the server: `ferry alerts automations apply`, `ferry release deploy` -------


@dataclass(frozen=True)
class WriterLimit:
    """What `ferry-writer-<env>` must be on the server."""

    env: str

    @property
    def name(self) -> str:
        return limit_name(self.env)

    @property
    def change_name(self) -> str:
        """How an apply's report names it: `created: concurrency limit ferry-writer-prod`."""
        return f"concurrency limit {self.name}"

    def matches(self, existing: GlobalConcurrencyLimitResponse) -> bool:
        # Never the active slots: they are the runs holding it right now.
        return (
            existing.limit == WRITERS
            and existing.active
            and not existing.slot_decay_per_second  # a concurrency limit, not a rate limit
        )


async def apply_limits(
    envs: Iterable[str], client: PrefectClient, *, dry_run: bool = False
) -> list[Change]:
    """Creates each environment's writer limit, or puts it back to one active slot.

    Idempotent: a limit as it should be is left alone (`unchanged`). Changed by hand - another
    limit, made inactive - it is updated, as `ferry alerts automations apply` does with
    automations.

    Args:
        envs: Environment names (FERRY_ENV of the deployments); repeats are applied once.
        client: A client of the Prefect API to change.
        dry_run: Compare only; change nothing.

    Returns:
        One change per environment, in the order given.
    """
    from prefect.exceptions import ObjectNotFound

    changes: list[Change] = []
    for env in dict.fromkeys(envs):
        spec = WriterLimit(env)
        try:
            existing = await client.read_global_concurrency_limit_by_name(spec.name)
        except ObjectNotFound:
            existing = None
        if existing is not None and spec.matches(existing):
            changes.append(Change(ChangeKind.UNCHANGED, spec.change_name))
            continue
        kind = ChangeKind.CREATED if existing is None else ChangeKind.UPDATED
        if not dry_run:
            await _put(spec, client, create=existing is None)
        changes.append(Change(kind, spec.change_name))
    return changes


async def _put(spec: WriterLimit, client: PrefectClient, *, create: bool) -> None:
    from prefect.client.schemas.actions import (
        GlobalConcurrencyLimitCreate,
        GlobalConcurrencyLimitUpdate,
    )
    from prefect.exceptions import ObjectAlreadyExists

    if create:
        try:
            await client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(
                    name=spec.name, limit=WRITERS, active=True, slot_decay_per_second=0.0
                )
            )
            return
        except ObjectAlreadyExists:  # created meanwhile by another apply: update it instead
            pass
    await client.update_global_concurrency_limit(
        spec.name,
        GlobalConcurrencyLimitUpdate(limit=WRITERS, active=True, slot_decay_per_second=0.0),
    )
