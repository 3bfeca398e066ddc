"""The answers of `ferry history`, asked with an embedded DuckDB of the cached run records.

The records (flows.history.fetch) are folded into two Parquet tables, runs and nodes, whenever
their number changed; a query with nothing new reads only those.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

_DURATION = re.compile(r"^(\d+)\s*([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_TABLES = "tables.json"
# The two tables every reader of history shares (`ferry history`, `ferry report`, the signals
# of a run): one row per run (its record without the nodes), one row per node of a run; they
# join on `record`.
RUNS_TABLE = "runs.parquet"
NODES_TABLE = "nodes.parquet"


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """`7d`, `12h`, `30m`, `2w` (back from now), or a date / ISO time (UTC unless it says).

    Raises:
        ValueError: neither; the message shows what is accepted.
    """
    value = text.strip()
    if match := _DURATION.match(value.lower()):
        amount, unit = int(match[1]), match[2]
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[unit]: amount})
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"--since {text!r} is neither a duration (30m, 12h, 7d, 2w) nor a date "
            "(2026-12-01) or time (2026-12-01T08:00)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class History:
    """The runs since a moment (newest first) and the stats of each node over them."""

    runs: list[dict[str, Any]]
    nodes: list[dict[str, Any]]
    runs_total: int


def ask(
    folder: Path, since: datetime | None = None, limit: int = 20, project: str | None = None
) -> History:
    """Runs and per-node stats from the records in `folder` (flows.history.fetch.sync's).

    Args:
        since: only runs started at or after it; None for all.
        limit: the most recent runs shown, and the nodes shown (slowest by p95 first).
        project: only this dbt project's runs; None for every project's.
    """
    import duckdb

    has_runs = refresh_tables(folder)
    con = duckdb.connect()
    try:
        con.execute("set timezone = 'UTC'")
        if not has_runs:
            return History(runs=[], nodes=[], runs_total=0)
        runs_file, nodes_file = (str(folder / name) for name in (RUNS_TABLE, NODES_TABLE))
        where = ["started_at >= ?"] * bool(since) + ["project = ?"] * bool(project)
        window = ("where " + " and ".join(where)) if where else ""
        params = [p for p in (since, project) if p]
        con.execute(
            f"create temp table picked as select * from read_parquet(?) {window}",
            [runs_file, *params],
        )
        total = con.execute("select count(*) from picked").fetchone()
        runs = _rows(
            con,
            """
            select started_at, project, deployment, selection, target, outcome, duration_s,
                failed, git_sha, image_digest, run_id, flow_run_id, verdict,
                -- a record without them (none was kept) found none
                coalesce(regressions, []) as regressions, coalesce(anomalies, []) as anomalies
            from picked order by started_at desc, run_id limit ?
            """,
            [limit],
        )
        nodes = _rows(
            con,
            """
            with timed as (
                select n.*, p.started_at
                from read_parquet(?) as n
                inner join picked as p on n.record = p.record
            )
            select
                id as node,
                count(*) as runs,
                round(median(s) filter (where status != 'skipped'), 3) as median_s,
                round(quantile_cont(s, 0.95) filter (where status != 'skipped'), 3) as p95_s,
                round(arg_max(s, started_at) filter (where status != 'skipped'), 3) as last_s,
                round(avg(failed::int), 4) as failure_rate,
                round(avg(warned::int), 4) as warning_rate,
                arg_max(rows, started_at) filter (where rows is not null) as last_rows,
                median(rows) as median_rows
            from timed
            group by id
            order by p95_s desc nulls last, node
            limit ?
            """,
            [nodes_file, limit],
        )
        return History(runs=runs, nodes=nodes, runs_total=int(total[0]) if total else 0)
    finally:
        con.close()


def _rows(con: Any, sql: str, params: list[Any]) -> list[dict[str, Any]]:
    cursor = con.execute(sql, params)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def refresh_tables(folder: Path) -> bool:
    """Rebuilds `folder`'s RUNS_TABLE and NODES_TABLE when its records changed; False when it
    holds no record (and so no tables)."""
    records = sorted(e.name for e in os.scandir(folder) if e.name.endswith(".json"))
    if _TABLES in records:
        records.remove(_TABLES)
    if not records:
        return False
    marker = folder / _TABLES
    seen = json.loads(marker.read_text()) if marker.is_file() else {}
    if seen.get("records") == len(records) and seen.get("last") == records[-1]:
        return True
    build_tables(str(folder / "*__*.json"), folder)
    marker.write_text(json.dumps({"records": len(records), "last": records[-1]}))
    return True


_RECORD_COLUMNS = {
    "run_id": "varchar",
    "flow_run_id": "varchar",
    "project": "varchar",
    "env": "varchar",
    "deployment": "varchar",
    "command": "varchar",
    "selection": "varchar",
    "target": "varchar",
    "outcome": "varchar",
    "verdict": "varchar",
    "started_at": "timestamptz",
    "finished_at": "timestamptz",
    "duration_s": "double",
    "git_sha": "varchar",
    "image_digest": "varchar",
    "nodes_total": "integer",
    "failed": "varchar[]",
    "nodes": "struct(id varchar, status varchar, s double, rows bigint, failed boolean, "
    "warned boolean)[]",
    "regressions": "struct(unique_id varchar, s double, usual_s double, runs integer)[]",
    "anomalies": "struct(unique_id varchar, kind varchar, rows bigint, usual_rows double, "
    "deviation double, runs integer)[]",
}


def build_tables(records: str, into: Path) -> None:
    """Folds the records `records` matches (a file or a glob) into `into`'s two tables
    (written beside, then moved into place). A run is known by its record's file name
    (`record`), never by where this machine keeps it: the tables travel to the store."""
    import duckdb

    columns = "{" + ", ".join(f"'{k}': '{v}'" for k, v in _RECORD_COLUMNS.items()) + "}"
    con = duckdb.connect()
    try:
        con.execute("set timezone = 'UTC'")
        con.execute(
            f"""
            create temp table records as
            select * exclude (filename), regexp_extract(filename, '[^/]+$') as record
            from read_json(?, columns = {columns}, filename = true, format = 'auto')
            """,
            [records],
        )
        runs = into / RUNS_TABLE
        nodes = into / NODES_TABLE
        con.execute(
            f"copy (select * exclude (nodes) from records) to '{runs}.tmp' (format parquet)"
        )
        con.execute(
            f"""
            copy (
                select record, unnest(nodes, recursive := true) from records
            ) to '{nodes}.tmp' (format parquet)
            """
        )
        Path(f"{runs}.tmp").replace(runs)
        Path(f"{nodes}.tmp").replace(nodes)
    finally:
        con.close()
