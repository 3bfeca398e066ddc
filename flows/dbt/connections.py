"""The database dbt opens in this process, and keeps open after an invocation has ended.

dbt runs in the flow's own process (flows.dbt.invoke), and dbt-duckdb keeps its DuckDB database
open at class level until the interpreter exits - and with it the file's lock, which admits one
process at a time. A run that let go of its holds (flows/run/holds.py) while still
holding the file would hand the next run an "IO Error: Could not set lock on file".
`close_local_databases` closes it; the next dbt invocation of this process opens it again.
`local_database` names the file the current invocation opens, for a hold on it taken beforehand
(flows.run.file_hold).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from urllib.parse import urlparse

logger = logging.getLogger(__name__)

# Imported only if dbt has loaded it already: nothing is open (or registered) otherwise.
_DUCKDB_CONNECTIONS = "dbt.adapters.duckdb.connections"
_ADAPTER_FACTORY = "dbt.adapters.factory"
_IN_MEMORY = ":memory:"  # DuckDB also reads ":memory:<name>" as an in-memory database


def local_database() -> Path | None:
    """The DuckDB file dbt-duckdb opens in this process for the current dbt invocation.

    Known once dbt has loaded the profile in this process (`DbtInvocation.parse`): dbt registers
    the target's adapter at every invocation, replacing the previous invocation's. Never raises.

    Returns:
        The file, absolute and resolved as DuckDB will open it (a relative profile path is
        relative to the working directory, not the project); None when the adapter is not
        dbt-duckdb, or its database is no local file (in memory, MotherDuck, a URL, a remote
        server).
    """
    factory = getattr(sys.modules.get(_ADAPTER_FACTORY), "FACTORY", None)
    if factory is None:
        return None
    try:
        # dbt-core 1.x: `FACTORY.adapters` maps the adapter type to the adapter registered for
        # the current invocation (cleared at each invocation's start); dbt-duckdb's credentials
        # carry the `path` it passes to `duckdb.connect` (tests/integration/test_duckdb_lock.py).
        adapter = factory.adapters.get("duckdb")
        if adapter is None:
            return None
        credentials = adapter.config.credentials
        if getattr(credentials, "remote", None):  # a Buena Vista server opens the file
            return None
        return _local_file(credentials.path)
    except Exception as exc:
        logger.debug("could not tell dbt-duckdb's database file: %r", exc)
        return None


def _local_file(path: object) -> Path | None:
    """The file DuckDB opens for `path`, as `duckdb.connect(path)` reads it; None if none."""
    if not isinstance(path, str) or not path or path.startswith(_IN_MEMORY):
        return None
    # DuckDB drops a `file:` prefix; any other scheme is an extension's (md:, motherduck:,
    # ducklake:, s3://, http://...). A local file name with a colon in it is read as one too:
    # no hold then, which leaves such a file as it was (DuckDB's own lock).
    path = path.removeprefix("file://").removeprefix("file:")
    if urlparse(path).scheme:
        return None
    return Path(os.path.expanduser(path)).resolve()  # DuckDB expands `~` too


def close_local_databases() -> bool:
    """Closes the DuckDB database dbt-duckdb holds in this process, if any. Never raises.

    Returns:
        Whether a database was open (and is now closed).
    """
    module = sys.modules.get(_DUCKDB_CONNECTIONS)
    manager = getattr(module, "DuckDBConnectionManager", None)
    if manager is None:
        return False
    try:
        # dbt-duckdb 1.x: `_ENV` is the open environment, `_LOCK` guards it; `open` makes a new
        # environment when it finds none (tests/integration/test_duckdb_lock.py pins this).
        with manager._LOCK:
            environment, manager._ENV = manager._ENV, None
        if environment is None:
            return False
        environment.close()
    except Exception as exc:  # a failure to close leaves the lock to the process's exit
        logger.warning("could not close dbt-duckdb's database: %s", exc)
        return False
    return True
