"""A local Prefect server for the demo, the tests and the benchmarks.

Started on 127.0.0.1 with its own PREFECT_HOME and SQLite file, recorded in a pid file, and
stopped by that pid only - never by process name, so nothing else on the machine is touched.

A new SQLite file starts as a copy of a migrated one when there is one: Prefect's 114 SQLite
migrations are half of a fresh server's start (about 8 s of a core of 16). The first server of a
Prefect version keeps its database, as it is once the server is ready and before anyone used
it, in the user's cache (`$XDG_CACHE_HOME/ferry`, else `~/.cache/ferry`); later servers of that
version copy it. The server still checks its migrations at every start, so a copy never
replaces them: it only finds them done.

The template also holds every block type of the installed Prefect collections, which its first
server registered. A server started from a copy registers none: registering would first import
every collection (prefect-aws imports boto3, prefect-dbt imports dbt) to write what the copy
holds already: 9.7 -> 5.7 CPU seconds, 11.6 -> 7.1 s to ready (`make bench-server-start`). The
template is kept per set of installed collections, so a collection installed later gets a
template of its own, whose first server registers it. A block saved later registers its own
type anyway (Prefect's `Block.save`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib.metadata import entry_points, version
from pathlib import Path

import httpx

logger = logging.getLogger(__name__)

STARTUP_TIMEOUT_S = 120.0

BATCHING = {
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "200",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_READ_BATCH_SIZE": "200",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_FLUSH_INTERVAL": "1",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_BATCH_SIZE": "200",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_READ_BATCH_SIZE": "200",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_FLUSH_INTERVAL": "1",
}
"""The server records task runs and events in batches: a dbt build reports hundreds of nodes in
seconds, and Prefect's defaults insert task runs one row at a time (docs/operations.md,
"Self-hosted Prefect server"). At most a second's delay before the UI shows them. A value
set in the environment wins."""


@dataclass(frozen=True)
class LocalServer:
    """A running server: its API URL and the pid that stops it."""

    pid: int
    port: int
    home: Path

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


# A server on SQLite answers 503 while its database is locked by another write (it asks clients
# to retry, as Prefect's own client does for 429, 502 and 503): the REST calls below do the same.
_RETRY_STATUS = frozenset({429, 502, 503})
_RETRIES = 6


class _RetryingTransport(httpx.HTTPTransport):
    def handle_request(self, request: httpx.Request) -> httpx.Response:
        for attempt in range(_RETRIES):
            response = super().handle_request(request)
            if response.status_code not in _RETRY_STATUS or attempt == _RETRIES - 1:
                return response
            response.read()
            response.close()
            time.sleep(float(response.headers.get("Retry-After") or 0.25 * 2**attempt))
        raise AssertionError("unreachable")


def api_client(api_url: str, timeout: float = 10.0) -> httpx.Client:
    """An HTTP client of a Prefect API that retries what the server asks to be retried."""
    return httpx.Client(base_url=api_url, timeout=timeout, transport=_RetryingTransport())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def healthy(api_url: str) -> bool:
    """True once the server answers and its database is ready (`/ready`, not just `/health`)."""
    try:
        return httpx.get(f"{api_url}/ready", timeout=5.0).status_code == 200
    except httpx.HTTPError:
        return False


def start(home: Path, port: int | None = None, *, ui: bool = False) -> LocalServer:
    """Starts `prefect server start` in the background and waits until it answers.

    Raises:
        RuntimeError: the server did not become healthy; its log is quoted.
    """
    home.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    database = home / "prefect.db"
    template = migrated_template()
    new = not database.exists()
    copied = new and copy_migrated(template, database)
    env = {
        **BATCHING,
        **(_FROM_THE_TEMPLATE if copied else {}),
        # The UI's pages call the API at this address (Prefect's default is port 4200's).
        "PREFECT_UI_API_URL": f"http://127.0.0.1:{port}/api",
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{database}",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "true" if ui else "false",
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
    }
    env.pop("PREFECT_API_URL", None)
    prefect = Path(sys.executable).with_name("prefect")
    log_file = (home / "server.log").open("ab")
    proc = subprocess.Popen(
        [str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, so stop() reaches its children
    )
    server = LocalServer(pid=proc.pid, port=port, home=home)
    (home / "server.pid").write_text(f"{proc.pid} {port}\n")
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            if healthy(server.api_url):
                if new and not copied:
                    keep_migrated(database, template)
                return server
            time.sleep(0.5)
    except BaseException:  # interrupted: the caller never got the server to stop it
        stop(server.pid)
        raise
    stop(server.pid)
    tail = (home / "server.log").read_text(errors="replace")[-2000:]
    raise RuntimeError(f"Prefect server on port {port} did not start:\n{tail}")


# A server whose database is a copy of the template: its block types are there already.
_FROM_THE_TEMPLATE = {
    "PREFECT_SERVER_REGISTER_BLOCKS_ON_START": "false",
    "PREFECT_SERVER_MEMOIZE_BLOCK_AUTO_REGISTRATION": "false",  # else it imports them to compare
}


def migrated_template() -> Path:
    """Where a migrated database of this Prefect (this environment, these collections) is kept."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ferry"
    collections = sorted(
        f"{ep.dist.name}=={ep.dist.version}" if ep.dist else ep.value
        for ep in entry_points(group="prefect.collections")
    )
    environment = hashlib.sha256("\n".join([sys.prefix, *collections]).encode()).hexdigest()[:12]
    return cache / f"prefect-{version('prefect')}-{environment}.db"


def copy_migrated(template: Path, database: Path) -> bool:
    """The new database as a copy of the template; False (and nothing copied) without one."""
    partial = database.with_name(f".{database.name}.{os.getpid()}")
    try:
        partial.write_bytes(template.read_bytes())
        partial.replace(database)
        return True
    except OSError:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        return False


def keep_migrated(database: Path, template: Path) -> None:
    """A consistent copy of the just-migrated database as the template. Best effort: a cache
    that cannot be written costs the next server its migrations, never this one its start."""
    partial = template.with_name(f".{template.name}.{os.getpid()}")
    try:
        template.parent.mkdir(parents=True, exist_ok=True)
        source = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10)
        try:
            target = sqlite3.connect(partial)
            try:
                source.backup(target)  # consistent while the server writes (SQLite's backup API)
            finally:
                target.close()
        finally:
            source.close()
        partial.replace(template)  # atomic: a server starting now reads the old or the new one
    except (OSError, sqlite3.Error) as exc:
        logger.debug("the migrated database was not kept for later servers: %s", exc)
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)


def stop(pid: int, timeout: float = 15.0) -> None:
    """Stops the server's process group by pid: SIGTERM, then SIGKILL after `timeout`."""
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return
    if pgid != pid:  # not a group leader we started: signal the process alone
        _signal(pid, signal.SIGTERM, group=False)
    else:
        _signal(pid, signal.SIGTERM, group=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return
        time.sleep(0.2)
    _signal(pid, signal.SIGKILL, group=pgid == pid)


def running(home: Path) -> LocalServer | None:
    """The server recorded in `home`, if it is still up."""
    pid_file = home / "server.pid"
    if not pid_file.is_file():
        return None
    pid_text, port_text = pid_file.read_text().split()
    server = LocalServer(pid=int(pid_text), port=int(port_text), home=home)
    if alive(server.pid) and healthy(server.api_url):
        return server
    return None


def stop_recorded(home: Path) -> bool:
    """Stops the server recorded in `home`; True if one was running."""
    pid_file = home / "server.pid"
    if not pid_file.is_file():
        return False
    pid = int(pid_file.read_text().split()[0])
    was_alive = alive(pid)
    if was_alive:
        stop(pid)
    pid_file.unlink(missing_ok=True)
    return was_alive


def alive(pid: int) -> bool:
    """Whether the process runs (reaping it first if it is our exited child)."""
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _signal(pid: int, sig: signal.Signals, *, group: bool) -> None:
    try:
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass
