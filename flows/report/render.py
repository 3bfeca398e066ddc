"""The report's page: a header, five sections, and the data of its four figures.

DuckDB reduces the runs and nodes tables to what each figure draws (at most `_BUCKETS` points
per line, one point per run for the durations), so the page's size follows the number of runs,
never runs x nodes. The page carries that data as JSON and draws it in the browser (figures.js
with plotly.js): no figure is built in Python, so a run pays for its queries alone. Every string
that comes from the data is HTML-escaped, in the page and in the figures' labels (plotly.js
renders a subset of HTML in them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flows.artifacts import console_url, docs_key
from flows.history.query import NODES_TABLE, RUNS_TABLE
from flows.report.page import esc, figure, label, no_runs, note, page, section

_TOP = 10
# A trend line is the median per time window, at most this many windows over the runs shown.
_BUCKETS = 200
# The durations plot shows one point per run, the newest this many.
_MAX_RUNS_PLOTTED = 5000
_MATERIALIZED = ("model", "snapshot", "seed")
_OUTCOME_COLOURS = {
    "success": "#2e7d32",
    "warnings": "#f9a825",
    "failed": "#c62828",
    "invalid": "#6a1b9a",
}
_OTHER_COLOUR = "#757575"
_FAILED_OUTCOMES = ("failed", "invalid")
_SIGNAL_NAMES = {"regression": "slower", "unusual": "unusual volume", "nothing_new": "nothing new"}
# What a run was: its deployment (or ad-hoc) and its request, e.g. `dbt/build-prod: build`.
_RUN_LABEL = "coalesce(deployment, '?') || ': ' || coalesce(selection, '?')"


@dataclass(frozen=True)
class _Part:
    """A section of the page, and the data of the figure it places (None: it places none)."""

    html: str
    figure: dict[str, Any] | None = None


@dataclass(frozen=True)
class Report:
    """The page, and how many runs it shows."""

    html: str
    runs: int


def report(
    folder: Path,
    *,
    env: str,
    project: str | None,
    store_url: str,
    now: datetime | None = None,
    since: datetime | None = None,
) -> Report:
    """The report of the runs in `folder` (flows.history.fetch.sync's): one HTML page, and the
    number of runs it shows.

    Args:
        env: the environment the runs belong to (shown in the header).
        project: only this dbt project's runs; None for every project's.
        store_url: the artifact store the runs were read from (shown in the header).
        now: the moment the page says it was generated (tests pin it).
        since: only runs started at or after it; None for all.
    """
    import duckdb

    generated = (now or datetime.now(UTC)).astimezone(UTC)
    facts = {
        "environment": env,
        "project": project or "every project",
        "store": store_url,
        "generated": f"{generated:%Y-%m-%d %H:%M} UTC",
    }
    if since:
        facts["since"] = f"{since.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
    empty = Report(page(env, facts | {"runs": "0"}, [no_runs(env)]), 0)
    if not (folder / RUNS_TABLE).is_file():
        return empty
    con = duckdb.connect()
    try:
        con.execute("set timezone = 'UTC'")
        _pick(con, folder, project, since)
        summary = _summary(con)
        if summary is None:
            return empty
        width_s = max(1, math.ceil(summary.span_s / _BUCKETS))
        docs = _docs_links(con, store_url, env)
        parts = [
            _durations(con, summary.runs),
            _slowest(con, width_s),
            _Part(_signals(con)),
            _failure_rate(con),
            _rows(con, width_s),
        ]
    finally:
        con.close()
    facts |= {
        "runs": f"{summary.runs:,} ({summary.first} to {summary.last} UTC)",
        "latest run": summary.latest,
    }
    figures = [part.figure for part in parts if part.figure is not None]
    html = page(env, facts, [part.html for part in parts], figures=figures, links={"docs": docs})
    return Report(html, summary.runs)


def _pick(con: Any, folder: Path, project: str | None, since: datetime | None) -> None:
    """`runs`: the runs shown; `nodes`: their nodes, each with its run's start."""
    where = ["started_at >= ?"] * bool(since) + ["project = ?"] * bool(project)
    window = ("where " + " and ".join(where)) if where else ""
    params = [p for p in (since, project) if p]
    con.execute(
        f"create temp table runs as select * from read_parquet(?) {window}",
        [str(folder / RUNS_TABLE), *params],
    )
    nodes = str(folder / NODES_TABLE).replace("'", "''")
    con.execute(
        f"""
        create temp view nodes as
        select n.id, n.status, n.s, n.rows, n.failed, n.warned, r.started_at
        from read_parquet('{nodes}') as n
        inner join runs as r on n.record = r.record
        """
    )


@dataclass(frozen=True)
class _Summary:
    runs: int
    first: str
    last: str
    span_s: float
    latest: str


def _summary(con: Any) -> _Summary | None:
    row = con.execute(
        f"""
        select count(*), min(started_at), max(started_at),
            epoch(max(started_at)) - epoch(min(started_at)),
            arg_max(outcome, started_at), arg_max(verdict, started_at),
            arg_max({_RUN_LABEL}, started_at)
        from runs
        """
    ).fetchone()
    if not row or not row[0]:
        return None
    runs, first, last, span, outcome, verdict, label = row
    when = f"{last:%Y-%m-%d %H:%M} UTC"
    latest = f"{outcome or '?'}: {verdict or '(no verdict)'} ({label}, {when})"
    return _Summary(
        runs=int(runs),
        first=f"{first:%Y-%m-%d %H:%M}",
        last=f"{last:%Y-%m-%d %H:%M}",
        span_s=float(span or 0),
        latest=latest,
    )


def _docs_links(con: Any, store_url: str, env: str) -> list[tuple[str, str]]:
    """The docs site of each project shown (published by its `docs generate`): the S3
    console's page of an object, a folder's file as a file:// URL."""
    projects = [
        p for (p,) in con.execute("select distinct project from runs order by 1").fetchall()
    ]
    links = []
    for project in filter(None, projects):
        location = f"{store_url}/{docs_key(project, env)}"
        href = console_url(location) or _file_url(location)
        links.append((location if len(projects) == 1 else f"{project}: {location}", href))
    return links


def _file_url(location: str) -> str:
    path = Path(location)
    return path.as_uri() if path.is_absolute() else location


def _durations(con: Any, runs: int) -> _Part:
    """(a) Each run's duration, coloured by outcome."""
    rows = con.execute(
        f"""
        select * from (
            select strftime(started_at, '%Y-%m-%d %H:%M:%S') as x_at, duration_s,
                coalesce(outcome, '?') as outcome, {_RUN_LABEL}, run_id, started_at
            from runs
            order by started_at desc
            limit ?
        ) order by started_at
        """,
        [_MAX_RUNS_PLOTTED],
    ).fetchall()
    by_outcome: dict[str, list[tuple[Any, ...]]] = {}
    for row in rows:
        by_outcome.setdefault(row[2], []).append(row)
    # A few deployments and requests over thousands of runs: each point names its own by index.
    requests = sorted({row[3] for row in rows})
    index = {request: i for i, request in enumerate(requests)}
    series = [
        {
            "name": label(outcome),
            "colour": _OUTCOME_COLOURS.get(outcome, _OTHER_COLOUR),
            "x": [p[0] for p in points],
            "y": [_number(p[1]) for p in points],
            "request": [index[p[3]] for p in points],
            "run": [label(p[4]) for p in points],
        }
        for outcome, points in sorted(by_outcome.items(), key=lambda o: _outcome_order(o[0]))
    ]
    capped = runs > _MAX_RUNS_PLOTTED
    shown = f"The newest {_MAX_RUNS_PLOTTED:,} of {runs:,} runs." if capped else ""
    div = "plot-durations"
    return _Part(
        section(
            "Run duration",
            "How long each run took, from start to verdict; colour is its outcome.",
            figure(div) + note(shown),
        ),
        {
            "id": div,
            "kind": "durations",
            "requests": [label(r) for r in requests],
            "series": series,
        },
    )


def _slowest(con: Any, width_s: int) -> _Part:
    """(b) The slowest models by p95, and their duration over the runs."""
    rows = con.execute(
        f"""
        with timed as (
            select * from nodes
            where status != 'skipped' and s is not null
                and split_part(id, '.', 1) in {_MATERIALIZED}
        ),
        top as (
            select id, quantile_cont(s, 0.95) as p95 from timed
            group by id order by p95 desc, id limit {_TOP}
        )
        select t.id, t.p95, strftime({_bucket(width_s)}, '%Y-%m-%d %H:%M:%S') as x_at, median(n.s)
        from timed as n
        inner join top as t on n.id = t.id
        group by t.id, t.p95, x_at
        order by t.p95 desc, t.id, x_at
        """
    ).fetchall()
    if not rows:
        return _Part(section("The slowest models", "", note("No model, snapshot or seed ran yet.")))
    series = [_line(f"{label(uid)} (p95 {p95:.1f} s)", points) for uid, p95, points in _lines(rows)]
    div = "plot-slowest"
    return _Part(
        section(
            "The slowest models",
            f"The {_TOP} models, snapshots and seeds slowest at the 95th percentile, and their "
            f"duration over the runs{_window_text(width_s)}.",
            figure(div),
        ),
        {"id": div, "kind": "slowest", "series": series},
    )


def _signals(con: Any) -> str:
    """(c) The regressions and anomalies the latest run of each deployment and request found
    (ad-hoc runs of different requests are different runs)."""
    rows = con.execute(
        """
        with latest as (
            select * from runs
            qualify row_number() over (
                partition by deployment, selection order by started_at desc, run_id desc
            ) = 1
        ),
        slower as (
            select deployment, selection, started_at, run_id,
                unnest(regressions, recursive := true)
            from latest
        ),
        volume as (
            select deployment, selection, started_at, run_id,
                unnest(anomalies, recursive := true)
            from latest
        )
        select deployment, selection, started_at, run_id, 'regression' as kind, unique_id,
            s, usual_s, null::bigint as rows, null::double as usual_rows, null::double, runs
        from slower
        union all
        select deployment, selection, started_at, run_id, kind, unique_id,
            null, null, rows, usual_rows, deviation, runs
        from volume
        order by deployment, selection, kind, unique_id
        """
    ).fetchall()
    intro = "What the latest run of each deployment found against the runs before it."
    columns = ("deployment", "request", "run (UTC)", "signal", "node", "what")
    head = "".join(f"<th>{c}</th>" for c in columns)
    if not rows:
        body = (
            f'<tr><td colspan="{len(columns)}" class="none">none: the latest run of each '
            "deployment found no timing regression and no volume anomaly</td></tr>"
        )
    else:
        body = "".join(_signal_row(*row) for row in rows)
    table = f'<table id="signals"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
    return section("Regressions and anomalies", intro, table)


def _signal_row(
    deployment: str | None,
    selection: str | None,
    started: datetime,
    run_id: str,
    kind: str,
    uid: str,
    *what: Any,
) -> str:
    cells = (
        esc(deployment),
        esc(selection),
        f"{started:%Y-%m-%d %H:%M}",
        esc(_SIGNAL_NAMES.get(kind, kind)),
        esc(uid),
        esc(_what(kind, *what)),
    )
    title = f' title="run {esc(run_id)}"'
    return f"<tr{title}>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>"


def _what(
    kind: str,
    s: float | None,
    usual_s: float | None,
    rows: int | None,
    usual_rows: float | None,
    deviation: float | None,
    runs: int | None,
) -> str:
    over = f" (the median of {runs} runs)" if runs else ""
    if kind == "regression":
        return f"{s or 0:.1f} s, usually {usual_s or 0:.1f} s{over}"
    usual = f"usually {usual_rows or 0:,.0f}{over}"
    if kind == "nothing_new":
        return f"0 rows, {usual}: did its sources deliver nothing new?"
    return f"{rows or 0:,} rows, {usual}, {deviation or 0:.1f} sd away"


def _failure_rate(con: Any) -> _Part:
    """(d) Per day: the share of nodes failed and warned, and the runs failed."""
    failed_runs = ", ".join(f"'{o}'" for o in _FAILED_OUTCOMES)
    rows = con.execute(
        f"""
        with per_run as (
            select strftime(started_at, '%Y-%m-%d') as day, count(*) as runs,
                count(*) filter (where outcome in ({failed_runs})) as failed
            from runs group by day
        ),
        per_start as (
            select started_at, count(*) as nodes, count(*) filter (where failed) as failed,
                count(*) filter (where warned) as warned
            from nodes group by started_at
        ),
        per_node as (
            select strftime(started_at, '%Y-%m-%d') as day,
                sum(failed) * 100 / sum(nodes) as failed_pct,
                sum(warned) * 100 / sum(nodes) as warned_pct
            from per_start group by day
        )
        select r.day, r.runs, r.failed, coalesce(n.failed_pct, 0), coalesce(n.warned_pct, 0)
        from per_run as r left join per_node as n on r.day = n.day
        order by r.day
        """
    ).fetchall()
    div = "plot-failure-rate"
    return _Part(
        section(
            "Failures and warnings by day",
            "Lines: the share of the day's nodes that failed or warned. Bars: the day's runs "
            "that failed (right axis).",
            figure(div),
        ),
        {
            "id": div,
            "kind": "failures",
            "days": [r[0] for r in rows],
            "runs": [r[1] for r in rows],
            "runs_failed": [r[2] for r in rows],
            "failed_pct": [_number(r[3]) for r in rows],
            "warned_pct": [_number(r[4]) for r in rows],
        },
    )


def _rows(con: Any, width_s: int) -> _Part:
    """(e) Rows affected per model over the runs, the models with the most rows."""
    rows = con.execute(
        f"""
        with counted as (select * from nodes where rows is not null),
        top as (
            select id, sum(rows) as total from counted
            group by id order by total desc, id limit {_TOP}
        )
        select t.id, t.total, strftime({_bucket(width_s)}, '%Y-%m-%d %H:%M:%S') as x_at,
            median(n.rows)
        from counted as n
        inner join top as t on n.id = t.id
        group by t.id, t.total, x_at
        order by t.total desc, t.id, x_at
        """
    ).fetchall()
    title = "Rows affected"
    if not rows:
        return _Part(
            section(
                title,
                "",
                note(
                    "No rows affected were reported for these runs: the adapter does not count "
                    "them (DuckDB's does not; PostgreSQL's and Redshift's do), so there is "
                    "nothing to plot."
                ),
                section_id="rows-none",
            )
        )
    series = [_line(label(uid), points) for uid, _, points in _lines(rows)]
    div = "plot-rows"
    return _Part(
        section(
            title,
            f"The rows each of the {_TOP} models with the most rows wrote, as the adapter "
            f"reported them{_window_text(width_s)}.",
            figure(div),
        ),
        {"id": div, "kind": "rows", "series": series},
    )


def _lines(rows: list[tuple[Any, ...]]) -> list[tuple[str, Any, list[tuple[str, float]]]]:
    """(key, its measure, [(x, y), ...]) from rows ordered by key: one line per key."""
    lines: list[tuple[str, Any, list[tuple[str, float]]]] = []
    for key, measure, x, y in rows:
        if not lines or lines[-1][0] != key:
            lines.append((key, measure, []))
        lines[-1][2].append((x, y))
    return lines


def _bucket(width_s: int) -> str:
    """The start of a run's time window, `width_s` seconds wide (an int: safe to inline)."""
    return f"to_timestamp(floor(epoch(n.started_at) / {int(width_s)}) * {int(width_s)})"


def _window_text(width_s: int) -> str:
    if width_s <= 60:
        return ""
    hours = width_s / 3600
    span = f"{hours:.1f} hours" if hours >= 1 else f"{width_s / 60:.0f} minutes"
    return f" (each point: the median over {span})"


def _outcome_order(outcome: str) -> int:
    order = list(_OUTCOME_COLOURS)
    return order.index(outcome) if outcome in order else len(order)


def _line(name: str, points: list[tuple[str, float]]) -> dict[str, Any]:
    return {"name": name, "x": [p[0] for p in points], "y": [_number(p[1]) for p in points]}


def _number(value: Any) -> float | None:
    """A measure as JSON has it: a missing or non-finite one (NaN) is null, a gap in a line."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None
