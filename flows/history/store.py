"""The history an environment keeps in its artifact store, for the runs themselves.

Each run of an environment compares itself with the runs before it and then adds itself, in an
ephemeral container that has no cache: so the store keeps the two history tables ready
(`<project>/<env>/history/runs.parquet` and `nodes.parquet`, the tables flows.history.query
builds), and a run reads two objects and writes two, whatever the number of runs. Runs older
than `history_days` drop out as new ones come in.

The run index stays the record of every run: `ferry history` and `ferry report` rebuild the
same tables from it, so a run whose history step failed is still found there.

Two runs of one environment that end at the same moment may each add themselves to the tables
they read, and the later write wins: the other run is missing from these tables (never from the
index). Builds of one environment never overlap (its writer limit), so this takes a `test` or
`source freshness` run ending within a second of a build.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from flows.artifacts import ArtifactStore
from flows.history.query import NODES_TABLE, RUNS_TABLE, build_tables

_TABLES = (RUNS_TABLE, NODES_TABLE)


def history_prefix(project: str, env: str) -> str:
    return f"{project}/{env}/history"


def report_key(project: str, env: str) -> str:
    """Where the environment's report is refreshed after each run."""
    return f"{project}/{env}/report/index.html"


def download(store: ArtifactStore, project: str, env: str, folder: Path) -> bool:
    """The environment's tables into `folder`; False when the store has none yet.

    Raises:
        flows.artifacts.ArtifactStoreError (or OSError): the store could not be read; a caller
            must then not upload, or it would replace the history with one run.
    """
    folder.mkdir(parents=True, exist_ok=True)
    found = 0
    for name in _TABLES:
        data = store.get_bytes(f"{history_prefix(project, env)}/{name}")
        if data is not None:
            (folder / name).write_bytes(data)
            found += 1
    if found == 1:  # one table without the other: a write that stopped half-way
        for name in _TABLES:
            (folder / name).unlink(missing_ok=True)
    return found == len(_TABLES)


def append(folder: Path, record: dict[str, Any], *, keep_since: datetime) -> None:
    """Adds one run's record (flows.run.history.record_of) to `folder`'s tables, dropping runs
    that started before `keep_since` (and a run already there with the same id)."""
    import duckdb

    new = folder / "new"
    new.mkdir(exist_ok=True)
    name = f"{record['project']}__{record['run_id']}.json"
    (new / name).write_text(json.dumps(record))
    build_tables(str(new / name), new)
    if not (folder / RUNS_TABLE).is_file():
        for table in _TABLES:
            (new / table).replace(folder / table)
        return
    runs, nodes = (str(folder / t) for t in _TABLES)
    new_runs, new_nodes = (str(new / t) for t in _TABLES)
    con = duckdb.connect()
    try:
        con.execute("set timezone = 'UTC'")
        # Tables written before the store kept no local path have a `filename` column: dropped.
        con.execute(
            """
            create temp table kept as
            select columns(lambda c: c != 'filename') from read_parquet(?)
            where started_at >= ? and record != ?
            union all by name
            select * from read_parquet(?)
            """,
            [runs, keep_since, name, new_runs],
        )
        con.execute(f"copy kept to '{runs}.tmp' (format parquet)")
        con.execute(
            f"""
            copy (
                select * from read_parquet(?) where record in (select record from kept)
                    and record != ?
                union all by name
                select * from read_parquet(?)
            ) to '{nodes}.tmp' (format parquet)
            """,
            [nodes, name, new_nodes],
        )
    finally:
        con.close()
    for table in _TABLES:
        Path(f"{folder / table}.tmp").replace(folder / table)


def upload(store: ArtifactStore, project: str, env: str, folder: Path) -> None:
    """The tables back to the store: nodes first, so a reader never sees runs without them."""
    for name in reversed(_TABLES):
        store.put_file(f"{history_prefix(project, env)}/{name}", folder / name)
