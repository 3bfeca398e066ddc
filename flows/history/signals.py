"""A run compared with its environment's history: timing regressions and volume anomalies.

Each node of the run is judged against its own last successful runs (`history_window` of them,
at least `history_min_runs`), with the median as its usual value, so one slow night or one
big load does not move the bar:

- a **timing regression**: it took more than `regression_factor` x its usual time, and more
  than `regression_floor_s` seconds;
- a **volume anomaly** (models and snapshots whose adapter reports rows, e.g. PostgreSQL and
  Redshift): 0 rows where it usually has some (`nothing_new`: its sources likely delivered
  nothing), or rows more than `volume_deviation` robust standard deviations from the usual
  count (`unusual`). The spread is 1.4826 x the median absolute deviation, at least 5% of the
  median, so a count that never moved does not turn every change into an alarm.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Literal

from pydantic import BaseModel, ConfigDict

from flows.dbt.nodes import NodeResult, NodeStatus
from flows.history.query import NODES_TABLE, RUNS_TABLE

_JUDGED = (NodeStatus.SUCCESS, NodeStatus.PASS, NodeStatus.WARN)
JUDGED_SQL = "(" + ", ".join(f"'{status.value}'" for status in _JUDGED) + ")"
"""The statuses a node's earlier results are judged against, as an SQL list."""
_COUNTED = {"model", "snapshot"}
_MAD_TO_SD = 1.4826
_RELATIVE_SPREAD = 0.05


class Regression(BaseModel):
    """A node that took much longer than it usually does."""

    model_config = ConfigDict(frozen=True)

    unique_id: str
    s: float
    usual_s: float
    runs: int
    """How many earlier runs its usual time is the median of."""

    def describe(self) -> str:
        return f"{self.unique_id}: {self.s:.1f} s, usually {self.usual_s:.1f} s"


class VolumeAnomaly(BaseModel):
    """A model whose rows affected are far from what it usually has."""

    model_config = ConfigDict(frozen=True)

    unique_id: str
    kind: Literal["nothing_new", "unusual"]
    rows: int
    usual_rows: float
    deviation: float
    """Robust standard deviations from the usual count."""
    runs: int

    def describe(self) -> str:
        usual = f"usually {self.usual_rows:,.0f}"
        if self.kind == "nothing_new":
            return f"{self.unique_id}: 0 rows, {usual} (did its sources deliver nothing new?)"
        return f"{self.unique_id}: {self.rows:,} rows, {usual} ({self.deviation:.1f} sd)"


@dataclass(frozen=True)
class Rules:
    """What counts as a regression or an anomaly (FerrySettings' history_* fields)."""

    min_runs: int = 5
    window: int = 20
    regression_factor: float = 2.0
    regression_floor_s: float = 10.0
    volume_deviation: float = 5.0


@dataclass(frozen=True)
class Signals:
    regressions: list[Regression] = field(default_factory=list)
    anomalies: list[VolumeAnomaly] = field(default_factory=list)


@dataclass(frozen=True)
class _Usual:
    runs: int
    s: float | None
    rows: list[int]


def find(
    tables: Path | None, nodes: list[NodeResult], *, project: str, env: str, rules: Rules
) -> Signals:
    """The run's `nodes` judged against the runs in `tables` (a folder holding RUNS_TABLE and
    NODES_TABLE; None or empty: no history, nothing found)."""
    judged = [n for n in nodes if n.status in _JUDGED]
    if tables is None or not judged or not (tables / RUNS_TABLE).is_file():
        return Signals()
    usual = _usual(tables, {n.unique_id for n in judged}, project, env, rules.window)
    regressions: list[Regression] = []
    anomalies: list[VolumeAnomaly] = []
    for node in judged:
        before = usual.get(node.unique_id)
        if before is None:
            continue
        if (
            before.runs >= rules.min_runs
            and before.s is not None
            and node.execution_time > rules.regression_factor * before.s
            and node.execution_time > rules.regression_floor_s
        ):
            regressions.append(
                Regression(
                    unique_id=node.unique_id,
                    s=round(node.execution_time, 3),
                    usual_s=round(before.s, 3),
                    runs=before.runs,
                )
            )
        if node.rows is not None and node.resource_type in _COUNTED:
            anomaly = _volume(node.unique_id, node.rows, before.rows, rules)
            if anomaly is not None:
                anomalies.append(anomaly)
    regressions.sort(key=lambda r: r.s / max(r.usual_s, 1e-3), reverse=True)
    anomalies.sort(key=lambda a: (a.kind != "nothing_new", -a.deviation))
    return Signals(regressions=regressions, anomalies=anomalies)


def _volume(unique_id: str, rows: int, before: list[int], rules: Rules) -> VolumeAnomaly | None:
    if len(before) < rules.min_runs:
        return None
    usual = median(before)
    spread = max(
        _MAD_TO_SD * median(abs(r - usual) for r in before), _RELATIVE_SPREAD * abs(usual), 1.0
    )
    deviation = abs(rows - usual) / spread
    if rows == 0 and usual > 0:
        kind: Literal["nothing_new", "unusual"] = "nothing_new"
    elif deviation > rules.volume_deviation:
        kind = "unusual"
    else:
        return None
    return VolumeAnomaly(
        unique_id=unique_id,
        kind=kind,
        rows=rows,
        usual_rows=float(usual),
        deviation=round(deviation, 2),
        runs=len(before),
    )


def usual_seconds(
    tables: Path, ids: set[str], project: str, env: str, window: int
) -> dict[str, float]:
    """Each node's usual time (the median of its last `window` successful runs), for those
    that have one: what a fanned-out run balances its parts by."""
    return {n: u.s for n, u in _usual(tables, ids, project, env, window).items() if u.s is not None}


def _usual(tables: Path, ids: set[str], project: str, env: str, window: int) -> dict[str, _Usual]:
    """Each node's last `window` successful runs of this project and environment."""
    import duckdb

    con = duckdb.connect()
    try:
        rows = con.execute(
            f"""
            with prior as (
                select n.id, n.s, n.rows,
                    row_number() over (partition by n.id order by r.started_at desc) as k
                from read_parquet(?) as n
                inner join read_parquet(?) as r on n.record = r.record
                where n.id in (select unnest(?::varchar[]))
                    and n.status in {JUDGED_SQL}
                    and r.project = ? and r.env = ?
            )
            select id, count(*), median(s), list(rows) filter (where rows is not null)
            from prior where k <= ? group by id
            """,
            [
                str(tables / NODES_TABLE),
                str(tables / RUNS_TABLE),
                sorted(ids),
                project,
                env,
                window,
            ],
        ).fetchall()
    finally:
        con.close()
    return {
        node: _Usual(runs=int(runs), s=float(s) if s is not None else None, rows=list(r or []))
        for node, runs, s, r in rows
    }
