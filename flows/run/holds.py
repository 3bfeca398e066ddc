"""What a run holds while it writes, so that two runs never write the same models at once.

A run holds what it is about to write, and nothing else: on a warehouse with concurrent
writers (Redshift, PostgreSQL) the nodes it executes - its selection once `state:` and
only-changed have narrowed it - so runs of disjoint models run side by side and a run that
shares one waits for it; on DuckDB, a file one process at a time may open, the whole
environment. Where the holds are kept:

- with a Prefect API: Prefect's global concurrency limits, one per node and one for the
  environment, taken at once under one lease (flows/prefect/holds.py);
- on DuckDB, also without Prefect: a lock on the database file (flows/run/file_hold.py), so two
  runs on one file wait for each other instead of failing on DuckDB's "Could not set lock".

A run never waits forever: past `FERRY_WAIT_S` it ends, nothing run, with a verdict naming what
it waited for (`NotStarted`).
"""

from __future__ import annotations

from dataclasses import dataclass

from flows.dbt.commands import DbtCommand

SINGLE_PROCESS_ADAPTERS = frozenset({"duckdb"})
"""Adapters whose database is a file that one process at a time may open, even to read it."""


class NotStarted(Exception):
    """The run could not take its holds (it waited past FERRY_WAIT_S, or could not ask for
    them): nothing was run. The message is the reason, as its verdict says it."""


@dataclass(frozen=True)
class Writes:
    """What a run is about to write: what its holds cover."""

    command: DbtCommand
    adapter_type: str | None
    """The warehouse's dbt adapter (`duckdb`, `postgres`, `redshift`); None when unknown."""
    nodes: tuple[str, ...] | None
    """The unique ids dbt will execute; None when they are not known (the whole environment)."""
    whole_environment: bool = False
    """The run writes the environment as a whole (a blue-green version): it holds every
    writer's place, not only its nodes."""

    @property
    def single_process(self) -> bool:
        """The warehouse is a file one process at a time may open (DuckDB)."""
        return self.adapter_type in SINGLE_PROCESS_ADAPTERS

    @property
    def holds_environment(self) -> bool:
        """Whether the run holds every writer's place of its environment, not only its nodes:
        it writes it whole, its nodes are not known, or only one process may open it."""
        return self.whole_environment or self.nodes is None or self.single_process
