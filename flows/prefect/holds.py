"""A run's holds, kept by Prefect: one global concurrency limit per node it writes, and its
environment's, taken together under one lease.

- The environment's limit, `ferry-writer-<env>` with `WRITERS` slots, is configuration
  (`ferry alerts automations apply`, `ferry release deploy`): it says the environment's writers
  queue at all, and how many write at once. A run writing some nodes takes one slot of it and
  the nodes' own limits (`ferry-writer-<env>:<unique id>`, one slot each, created by the first
  run that needs one); a run writing the whole environment (DuckDB's file, a blue-green
  version) takes every slot. Prefect takes all the names of one request in one database
  transaction, or none: a run never holds half of what it needs, so two runs cannot deadlock.
- Waiting: in line, asking again every `POLL_S`, logging once who holds what it needs (from
  ferry's `ferry.holds.taken` events); past `wait_s` the run ends, nothing run (`NotStarted`).
  A Prefect API that does not answer while the run waits ends the wait sooner (`API_GONE_S`).
- The lease: the server frees a hold whose holder stopped renewing it `lease_s` after the last
  renewal (a killed run). ferry renews it itself, every sixth of the lease, and when it could not
  renew it for `FENCE_FRACTION` of the lease (the API gone, or the server forgot it) the run is
  told to stop writing (`on_lost`) before the server can give its nodes to another run. So a
  lease never lets a second writer in while the first still writes.
- Leaving never raises and waits at most `RELEASE_WAIT_S` for the API.
- No limit on the server (a user's own server): a warning, and the run goes on unqueued.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from uuid import UUID

from flows.dbt.commands import DbtCommand
from flows.notify.changes import Change, ChangeKind
from flows.run.holds import SINGLE_PROCESS_ADAPTERS, NotStarted, Writes

if TYPE_CHECKING:
    from prefect.client.orchestration import PrefectClient, SyncPrefectClient
    from prefect.client.schemas.responses import GlobalConcurrencyLimitResponse

logger = logging.getLogger(__name__)

WRITERS = 10
"""Slots of each environment's limit: how many runs write to it at once, on their own nodes."""

LEASE_S = 300.0
"""How long the server keeps a hold whose holder stopped renewing it (at least 60 s, Prefect's
floor): a run killed while writing keeps its nodes this long."""

FENCE_FRACTION = 0.8
"""A hold not renewed for this share of its lease stops the run's dbt: the rest of the lease is
the time dbt has to cancel its queries before the server could give its nodes to another run."""

RELEASE_WAIT_S = 10.0
"""The longest a run waits for the Prefect API to take its holds back once dbt has ended."""

POLL_S = 2.0
"""How often a waiting run asks again."""

API_GONE_S = 120.0
"""A waiting run whose Prefect API has not answered for this long (or for its whole wait
limit, when shorter) ends: it could never be given its holds."""

_REQUEST_TIMEOUT_S = 10.0  # one call to the API, so a silent API never stalls a loop
_TAKEN_EVENT, _RELEASED_EVENT = "ferry.holds.taken", "ferry.holds.released"
_NAMED = 3  # nodes named in a log line before "and N more"

# Commands that may write to the warehouse. `test` too: `store_failures` writes audit tables.
# `retry` re-runs any of the others.
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

LostHold = Callable[[str], None]
"""Told why, when the run's holds could not be kept: the run must stop writing at once."""


def limit_name(env: str) -> str:
    """The global concurrency limit shared by every deployment of `env`."""
    return f"ferry-writer-{env}"


def node_limit_name(env: str, unique_id: str) -> str:
    """A node's own limit in `env`: one writer of it at a time."""
    return f"{limit_name(env)}:{unique_id}"


def takes_holds(command: DbtCommand, adapter_type: str | None) -> bool:
    """Whether `command` on this adapter holds anything at all."""
    return command in _WRITING or adapter_type in SINGLE_PROCESS_ADAPTERS


def holds(
    env: str,
    writes: Writes,
    on_lost: LostHold,
    *,
    wait_s: float,
    lease_s: float = LEASE_S,
) -> AbstractContextManager[None]:
    """Held around every dbt invocation that may write to `env`'s warehouse (see the module).

    Raises:
        NotStarted: on entering, when the holds were not given within `wait_s` (or the API
            could not be asked); nothing was written.
    """
    if not takes_holds(writes.command, writes.adapter_type):
        return contextlib.nullcontext()
    if not writes.holds_environment and not writes.nodes:
        return contextlib.nullcontext()  # nothing to write
    return _held(env, writes, on_lost, wait_s=wait_s, lease_s=lease_s)


@dataclass(frozen=True)
class _Request:
    env: str
    names: list[str]
    slots: int
    nodes: frozenset[str]
    what: str
    """How the log names it: the environment's limit, or its nodes."""


@dataclass(frozen=True)
class _Lease:
    id: UUID
    asked_at: float
    """When the request that got it was sent (monotonic): the lease lasts from later on."""


@contextlib.contextmanager
def _held(
    env: str, writes: Writes, on_lost: LostHold, *, wait_s: float, lease_s: float
) -> Iterator[None]:
    from prefect.settings import get_current_settings

    log = _logger()
    if not get_current_settings().api.url:
        # A temporary server lives and dies with this one run: no other writer can queue on it.
        log.info("no Prefect API configured: %s is not used", limit_name(env))
        yield
        return
    with _bounded_client() as client:
        request = _request(client, env, writes, log)
        if request is None:
            yield
            return
        lease = _acquire(client, request, wait_s, lease_s, log)
    _emit(_TAKEN_EVENT, request, lease.id)
    keeper = _Keeper(lease, lease_s, on_lost, request.what, log)
    keeper.start()
    try:
        yield
    finally:
        keeper.stop()
        _release(lease.id, request, log)


@contextlib.contextmanager
def _bounded_client() -> Iterator[SyncPrefectClient]:
    """Prefect's client, each call of which ends in `_REQUEST_TIMEOUT_S`, never retried by the
    client itself: the loops here decide when to ask again."""
    from prefect.client.orchestration import get_client
    from prefect.settings import (
        PREFECT_API_REQUEST_TIMEOUT,
        PREFECT_CLIENT_MAX_RETRIES,
        temporary_settings,
    )

    bounded = {PREFECT_CLIENT_MAX_RETRIES: 0, PREFECT_API_REQUEST_TIMEOUT: _REQUEST_TIMEOUT_S}
    with temporary_settings(updates=bounded), get_client(sync_client=True) as client:
        yield client


def _request(client: SyncPrefectClient, env: str, writes: Writes, log: Any) -> _Request | None:
    """What to ask for; None when there is no queue to wait in (no limit, or inactive)."""
    from prefect.exceptions import ObjectNotFound

    name = limit_name(env)
    slots = WRITERS
    try:
        limit = client.read_global_concurrency_limit_by_name(name)
    except ObjectNotFound:
        log.warning(
            "no global concurrency limit %r on this Prefect server: this run does not wait for "
            "other writers of its environment (create it with `ferry alerts automations apply` "
            "or `ferry release deploy`)",
            name,
        )
        return None
    except Exception as exc:  # asking for the holds retries until the API answers
        log.warning("could not read global concurrency limit %r: %s", name, exc)
    else:
        if not limit.active:
            log.warning("global concurrency limit %r is inactive: not waiting for it", name)
            return None
        slots = limit.limit
    if writes.holds_environment:
        return _Request(env, [name], slots, frozenset(), name)
    nodes = sorted(set(writes.nodes or ()))
    names = [name, *(node_limit_name(env, n) for n in nodes)]
    return _Request(env, names, 1, frozenset(nodes), f"{len(nodes)} node(s) of {name}")


def _acquire(
    client: SyncPrefectClient, request: _Request, wait_s: float, lease_s: float, log: Any
) -> _Lease:
    """Takes every name of `request` under one lease, waiting in line up to `wait_s`.

    Raises:
        NotStarted: not given within `wait_s`, or the API did not answer long enough.
    """
    started = time.monotonic()
    waiting = False
    holder: str | None = None
    unanswered_since: float | None = None
    last_error = ""
    gone_after = min(API_GONE_S, wait_s)
    while True:
        asked_at = time.monotonic()
        try:
            lease_id = _take(client, request, lease_s)
        except Exception as exc:
            now = time.monotonic()
            unanswered_since = unanswered_since if unanswered_since is not None else now
            last_error = f"{type(exc).__name__}: {exc}".strip(": ")
            if now - unanswered_since >= gone_after or now - started >= wait_s:
                raise NotStarted(
                    f"the Prefect API did not answer for {now - unanswered_since:.0f} s while "
                    f"this run asked for {request.what} ({last_error}); nothing was run"
                ) from None
            log.warning("could not ask for %s (%s); asking again", request.what, last_error)
        else:
            unanswered_since = None
            if lease_id is not None:
                if waiting:
                    log.info(
                        "got %s after waiting %.0f s", request.what, time.monotonic() - started
                    )
                else:
                    log.info("holding %s", request.what)
                return _Lease(lease_id, asked_at)
            if holder is None:
                holder = _holders(client, request)
                if holder is not None or not waiting:
                    log.info("waiting for %s, held by %s", request.what, holder or "another run")
            waiting = True
        waited = time.monotonic() - started
        if waited >= wait_s:
            who = f", held by {holder}" if holder else ""
            raise NotStarted(
                f"waited {waited:.0f} s (FERRY_WAIT_S) for {request.what}{who}; nothing was run"
            )
        time.sleep(min(POLL_S, max(wait_s - waited, 0.0)))


def _take(client: SyncPrefectClient, request: _Request, lease_s: float) -> UUID | None:
    """One request for every name at once: the lease, or None when any is taken. Node limits
    that do not exist yet are created, and the request made again."""
    import httpx

    for _ in range(2):
        try:
            response = client.increment_concurrency_slots_with_lease(
                names=request.names,
                slots=request.slots,
                mode="concurrency",
                lease_duration=lease_s,
                holder=_this_flow_run(),
            )
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code == 423:  # taken, by another run
                return None
            raise
        body = response.json()
        lease_id = UUID(body["lease_id"])
        missing = set(request.names) - {limit["name"] for limit in body["limits"]}
        if not missing:
            return lease_id
        # Prefect skips names it does not know: give back what was taken, create, ask again.
        client.release_concurrency_slots_with_lease(lease_id)
        _create_node_limits(client, sorted(missing))
    raise RuntimeError(f"{len(missing)} node limit(s) could not be created")


def _create_node_limits(client: SyncPrefectClient, names: list[str]) -> None:
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists

    for name in names:
        with contextlib.suppress(ObjectAlreadyExists):  # created meanwhile by another run
            client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(
                    name=name, limit=1, active=True, slot_decay_per_second=0.0
                )
            )


class _Keeper:
    """Renews a lease until stopped; tells `on_lost` when it could not, in time for the run to
    stop writing before the server would free what it holds."""

    def __init__(
        self,
        lease: _Lease,
        lease_s: float,
        on_lost: LostHold,
        what: str,
        log: Any,
        *,
        connect: Callable[[], AbstractContextManager[Any]] | None = None,
        clock: Callable[[], float] = time.monotonic,
        pause: Callable[[float], bool] | None = None,
    ) -> None:
        self._lease_id, self._asked_at = lease.id, lease.asked_at
        self._lease_s, self._on_lost = lease_s, on_lost
        self._what, self._log = what, log
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        # The API's client, the clock and the pause between renewals (True: stopped meanwhile).
        self._connect = connect or _bounded_client
        self._clock = clock
        self._pause = pause or self._stopped.wait

    def start(self) -> None:
        context = contextvars.copy_context()  # the flow run's, for its log
        self._thread = threading.Thread(
            target=context.run, args=(self._keep,), name="ferry-holds-lease", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(_REQUEST_TIMEOUT_S + 1)

    def _keep(self) -> None:
        import httpx

        every, fence_after = self._lease_s / 6, self._lease_s * FENCE_FRACTION
        renewed_at = self._asked_at  # the lease was granted after this, so lasts until later
        next_at, error = renewed_at + every, ""
        with self._connect() as client:
            while not self._pause(max(next_at - self._clock(), 0.0)):
                asked_at = self._clock()
                try:
                    client.renew_concurrency_lease(self._lease_id, self._lease_s)
                except httpx.HTTPStatusError as exc:
                    status = exc.response.status_code
                    if status in (404, 410):  # the server freed it already (or forgot it)
                        self._lose(f"the Prefect server no longer has its hold on {self._what}")
                        return
                    error = f"HTTP {status}"
                except Exception as exc:
                    error = f"{type(exc).__name__}: {exc}".strip(": ")
                else:
                    renewed_at, next_at = asked_at, asked_at + every
                    continue
                unrenewed = self._clock() - renewed_at
                if unrenewed >= fence_after:
                    self._lose(
                        f"its hold on {self._what} could not be renewed for {unrenewed:.0f} s "
                        f"({error}): dbt was stopped before the hold's {self._lease_s:g} s lease "
                        "could lapse, so that no other run writes the same nodes at once"
                    )
                    return
                self._log.warning(
                    "could not renew the hold on %s (%s); %.0f s left to renew it",
                    self._what,
                    error,
                    fence_after - unrenewed,
                )
                next_at = self._clock() + min(POLL_S, fence_after - unrenewed)

    def _lose(self, why: str) -> None:
        if self._stopped.is_set():  # dbt has ended already: nothing to stop
            return
        self._log.error("%s", why)
        self._on_lost(why)


def _release(lease_id: UUID, request: _Request, log: Any) -> None:
    """Gives the lease back in a thread of its own, waiting at most `RELEASE_WAIT_S`; a lease
    not given back is freed by the server when it expires."""
    failed: list[BaseException] = []
    context = contextvars.copy_context()  # the flow run's, for Prefect's logs and events

    def leave() -> None:
        try:
            with _bounded_client() as client:
                client.release_concurrency_slots_with_lease(lease_id)
        except BaseException as exc:  # reported below, never raised into the run
            failed.append(exc)

    thread = threading.Thread(
        target=context.run, args=(leave,), name="ferry-holds-release", daemon=True
    )
    thread.start()
    thread.join(RELEASE_WAIT_S)
    if thread.is_alive() or failed:
        why = f"{failed[0]!r}" if failed else f"no answer within {RELEASE_WAIT_S:g} s"
        log.warning(
            "could not give %s back to the Prefect API (%s); the server frees it when its "
            "lease expires",
            request.what,
            why,
        )
        return
    _emit(_RELEASED_EVENT, request, lease_id)
    log.info("released %s", request.what)


# --- who holds what: ferry's own events, read by a run that waits -------------------------


def _emit(event: str, request: _Request, lease_id: UUID) -> None:
    """Says what this run holds (or gave back), for a run that waits to name it."""
    from prefect.events import emit_event

    with contextlib.suppress(Exception):  # a nicety of the log, never the run's concern
        emit_event(
            event=event,
            resource={
                "prefect.resource.id": f"ferry.environment.{request.env}",
                "prefect.resource.name": request.env,
            },
            payload={
                "lease": str(lease_id),
                "nodes": sorted(request.nodes),
                "whole_environment": not request.nodes,
            },
        )


def _holders(client: SyncPrefectClient, request: _Request) -> str | None:
    """Who holds what `request` needs, from ferry's events; None if they do not tell (yet):
    events land asynchronously."""
    try:
        return _holders_in_events(client, request)
    except Exception:  # a nicety of the log line, never the run's concern
        return None


def _holders_in_events(client: SyncPrefectClient, request: _Request) -> str | None:
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    page = client.read_events(
        EventFilter(
            event=EventNameFilter(name=[_TAKEN_EVENT, _RELEASED_EVENT]),
            resource=EventResourceFilter(id=[f"ferry.environment.{request.env}"]),
        ),
        limit=50,
    )
    released = {e.payload.get("lease") for e in page.events if e.event == _RELEASED_EVENT}
    said: list[str] = []
    for event in page.events:  # newest first
        if event.event != _TAKEN_EVENT or event.payload.get("lease") in released:
            continue
        theirs = set(event.payload.get("nodes") or ())
        shared = sorted(theirs & request.nodes)
        if request.nodes and theirs and not shared:
            continue  # holds of other nodes
        related = {r.role: r.get("prefect.resource.name") for r in event.related}
        run = related.get("flow-run")
        if not run:
            continue
        who = f"flow run {run!r}"
        if deployment := related.get("deployment"):
            who += f" of {deployment}"
        if shared:
            named = ", ".join(shared[:_NAMED])
            more = f" and {len(shared) - _NAMED} more" if len(shared) > _NAMED else ""
            who += f" ({named}{more})"
        said.append(who)
    return "; ".join(said) or None


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
    """Creates each environment's writer limit, or puts it back to `WRITERS` active slots.

    Idempotent: a limit as it should be is left alone (`unchanged`). Changed by hand - another
    limit, made inactive - it is updated, as `ferry alerts automations apply` does with
    automations. The nodes' own limits are not configuration: runs create them as they need.

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
