"""Databases dbt keeps open in this process after an invocation has ended.

dbt runs in the flow's own process (flows.dbt.invoke), and dbt-duckdb keeps its DuckDB database
open at class level until the interpreter exits - and with it the file's lock, which admits one
process at a time. A run that let go of its writer slot (flows.prefect.writer_slot) while still
holding the file would hand the next run an "IO Error: Could not set lock on file".
`close_local_databases` closes it; the next dbt invocation of this process opens it again.
"""

from __future__ import annotations

import logging
import sys

logger = logging.getLogger(__name__)

# Imported only if dbt has loaded it already: nothing is open otherwise.
_DUCKDB_CONNECTIONS = "dbt.adapters.duckdb.connections"


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
