"""Blue-green publishing vs a direct build: the wall time it adds and the storage it keeps.

For each project (the example project with its raw data at `--scale`, the synthetic project of
`--models` tables) and each warehouse (DuckDB, PostgreSQL), two sides start from the same data:
two DuckDB files, or two PostgreSQL schemas (`bench_pub_<hex>_direct`, `..._bg`). Each side has
its own copy of the project (its own partial-parse state), work folder and artifact store.

  direct      `ferry run --no-prefect --command build`             (dbt's usual behaviour)
  blue-green  the same with `--publish blue-green`, FERRY_KEEP_VERSIONS=2

Both sides build once (the first build: nothing to copy yet, reported apart), then each round
loads the same late batch into both sides' raw data (the generator's `--late-batch`; the
synthetic project has no sources, it is rebuilt as it is) and times one run of each, interleaved
A B, B A. Every run is its own process (this file with `--child`), which times the blue-green
steps where they happen: `prepare` (the version named, the manifest repointed, incrementals and
snapshots copied) and inside it `publisher.continue_from` (the copy); `publish_version` and
inside it `publisher.publish` (the switch: catalog reads and one transaction) and
`publisher.drop_unkept` (versions beyond the kept ones dropped). Wall time is the parent's, from
just before the process starts to its exit; dbt's own time is the summary's `dbt_elapsed_s`.

After the last round: the bytes each side keeps for its models (raw data left out): PostgreSQL's
`pg_total_relation_size` summed per schema; on DuckDB the used blocks (`pragma database_size`) a
copy of the file frees when the tables of each group of schemas are dropped. Then every table
consumers read on the direct side must equal, row for row, what they read on the blue-green side.

Results go to bench/results/publish-<UTC timestamp>.json. The PostgreSQL schemas are dropped at
the end, however the run ends (an error, Ctrl-C or SIGTERM).

Usage:
    python bench/publish.py [--projects example,synthetic] [--warehouses duckdb,postgres]
                            [--rounds 2] [--scale 1] [--models 300]
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import duckdb
import harness

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
EXAMPLE = REPO / "dbt_project"
GENERATOR = EXAMPLE / "scripts" / "generate_raw_data.py"
KEEP_VERSIONS = 2
SIDES = ("direct", "blue-green")
_CHILD = "--child"
_SCRUBBED_PREFIXES = ("PREFECT_", "FERRY_", "DBT_", "SYNTH_")
_VERSIONED = re.compile(r"__r[0-9a-z]+$")
# The steps timed in each run's process, (module, attribute, key): blue-green's, then those
# that place them in the run (on both sides).
_TIMED = (
    ("flows.run.execute", "prepare", "prepare"),
    ("flows.publish.publisher", "continue_from", "copy"),
    ("flows.run.owner", "publish_version", "publish"),
    ("flows.publish.publisher", "publish", "switch"),
    ("flows.publish.publisher", "drop_unkept", "drop"),
    ("flows.run.execute", "restore_consumer_names", "restore"),
    ("flows.run.owner", "execute", "execute"),
    ("flows.run.owner", "store", "store"),
)

_SYNTH_PROFILES = """\
# Written by bench/publish.py: the synthetic project on DuckDB or PostgreSQL.
synthetic:
  target: duckdb
  outputs:
    duckdb:
      type: duckdb
      path: "{{ env_var('SYNTH_DUCKDB_PATH') }}"
      threads: 4
    postgres:
      type: postgres
      host: 127.0.0.1
      port: 5432
      user: postgres
      password: ""
      dbname: test
      schema: "{{ env_var('SYNTH_PG_SCHEMA') }}"
      threads: 4
"""


# --- one run, in a process of its own ----------------------------------------------------------


def _child(argv: list[str]) -> int:
    """`ferry <argv[1:]>` in this process with the blue-green steps timed into argv[0] (JSON).

    The wrappers replace module attributes the run looks up when it calls them (execute.py and
    owner.py call `prepare` and `publish_version` by their module's name, blue_green.py calls
    `publisher.<step>`), so they time the very calls of a production run."""
    timings_path, *ferry_args = argv
    timings: dict[str, float] = {}

    def timed(module: ModuleType, name: str, key: str) -> None:
        original = getattr(module, name)

        @functools.wraps(original)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                timings[key] = timings.get(key, 0.0) + time.perf_counter() - started

        setattr(module, name, wrapper)

    for module_name, attribute, key in _TIMED:
        timed(importlib.import_module(module_name), attribute, key)
    from flows.cli import main as ferry

    try:
        return ferry(ferry_args)
    finally:
        Path(timings_path).write_text(json.dumps(timings), encoding="utf-8")


# --- the sides ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Side:
    """One side of a case: its project copy, where its data lives, its scratch and store."""

    name: str  # direct or blue-green
    project: Path
    location: str  # a DuckDB file, or a PostgreSQL schema
    raw_schema: str | None  # None: the project has no raw data
    ledger_schema: str
    work: Path

    @property
    def blue_green(self) -> bool:
        return self.name == "blue-green"


@dataclass(frozen=True)
class Case:
    project: str  # example or synthetic
    warehouse: str  # duckdb or postgres
    sides: tuple[Side, Side]  # direct, blue-green


@dataclass
class Run:
    project: str
    warehouse: str
    side: str
    round: int  # 0: the first build
    wall_s: float
    duration_s: float
    dbt_s: float
    parse_s: float
    full_parse: bool
    nodes: int
    steps: dict[str, float] = field(default_factory=dict)
    continued: int = 0
    switched: int = 0
    dropped: int = 0


def _scrubbed_env(side: Side, case: Case) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED_PREFIXES)}
    where = {
        ("example", "duckdb"): "FERRY_DUCKDB_PATH",
        ("example", "postgres"): "FERRY_PG_SCHEMA",
        ("synthetic", "duckdb"): "SYNTH_DUCKDB_PATH",
        ("synthetic", "postgres"): "SYNTH_PG_SCHEMA",
    }[(case.project, case.warehouse)]
    env.update(
        {
            where: side.location,
            # This checkout's ferry, however the venv's editable install points.
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
            "DO_NOT_TRACK": "1",
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
            "FERRY_WORK_DIR": str(side.work / "runs"),
            "FERRY_HISTORY": "false",  # the history step is the same on both sides
            "FERRY_KEEP_VERSIONS": str(KEEP_VERSIONS),
            "FERRY_PUBLISH_LEDGER_SCHEMA": side.ledger_schema,
        }
    )
    return env


def ferry_build(case: Case, side: Side, round_: int) -> Run:
    """One `ferry run --no-prefect --command build` of one side, timed from outside and in."""
    timings = side.work / f"steps-{round_}.json"
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        _CHILD,
        str(timings),
        "run",
        "--no-prefect",
        "--json",
        "--command",
        "build",
        "--target",
        case.warehouse,
        "--project-dir",
        str(side.project),
        "--profiles-dir",
        str(side.project),
        "--artifacts",
        str(side.work / "store"),
        "--env",
        "bench",
    ]
    if side.blue_green:
        command += ["--publish", "blue-green"]
    env = _scrubbed_env(side, case)
    started = time.perf_counter()
    done = subprocess.run(
        command, env=env, cwd=side.project, capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - started
    log = side.work / f"run-{round_}.log"
    log.write_text(f"$ {' '.join(command)}\n{done.stdout}\n--- stderr\n{done.stderr}")
    if done.returncode != 0:
        raise SystemExit(
            f"{case.project}/{case.warehouse} {side.name}: ferry run failed "
            f"({done.returncode}), see {log}:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
        )
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    published = summary.get("published") or {}
    if side.blue_green and not published.get("published"):
        raise SystemExit(f"{side.name} run did not publish: {summary['verdict']} (see {log})")
    parse = summary.get("parse") or {}
    return Run(
        project=case.project,
        warehouse=case.warehouse,
        side=side.name,
        round=round_,
        wall_s=wall,
        duration_s=summary["duration_s"],
        dbt_s=summary.get("dbt_elapsed_s") or 0.0,
        parse_s=parse.get("elapsed_s") or 0.0,
        full_parse=not parse.get("partial", True),
        nodes=summary["nodes_total"],
        steps=json.loads(timings.read_text(encoding="utf-8")) if timings.exists() else {},
        continued=len(published.get("continued", [])),
        switched=len(published.get("relations", [])),
        dropped=len(published.get("dropped", [])),
    )


# --- the data ----------------------------------------------------------------------------------


def _generator() -> ModuleType:
    """The example project's raw-data generator, loaded by path (it is no package)."""
    name = "bench_publish_generate_raw_data"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, GENERATOR)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # its dataclasses look their module up there
        spec.loader.exec_module(module)
    return sys.modules[name]


def _generate(case: Case, side: Side, *args: str) -> Any:
    assert side.raw_schema is not None
    argv = ["--target", case.warehouse, "--raw-schema", side.raw_schema, *args]
    if case.warehouse == "duckdb":
        argv += ["--duckdb-path", side.location]
    return _generator().run(argv)


def load_first(case: Case, scale: int) -> dict[str, int]:
    """The same raw data on both sides (untimed): generated into the direct side, copied to the
    other (a file copy on DuckDB; `create table as` and `analyze` on PostgreSQL)."""
    direct, other = case.sides
    loaded = _generate(case, direct, "--scale", str(scale))
    if case.warehouse == "duckdb":
        shutil.copyfile(direct.location, other.location)
    else:
        harness.pg(f'create schema "{other.raw_schema}"')
        for table in loaded.rows:
            harness.pg(
                f'create table "{other.raw_schema}"."{table}" as '
                f'select * from "{direct.raw_schema}"."{table}"'
            )
        for side in case.sides:  # the same statistics, so the same plans
            for table in loaded.rows:
                harness.pg(f'analyze "{side.raw_schema}"."{table}"')
    return dict(loaded.rows)


def load_late_batch(case: Case) -> None:
    """The generator's `--late-batch` on each side: the same rows (it is seeded by the data)."""
    for side in case.sides:
        _generate(case, side, "--late-batch")


# --- storage -----------------------------------------------------------------------------------


def _group(schema: str, side: Side) -> str | None:
    """What a schema holds for the bench: consumer, version, ledger; None for raw data."""
    if schema == side.raw_schema:
        return None
    if schema == side.ledger_schema:
        return "ledger"
    return "versions" if _VERSIONED.search(schema) else "consumer"


def storage(case: Case, side: Side) -> dict[str, int]:
    """Bytes the side keeps for its models, by group, and how many versioned schemas."""
    out = {"consumer": 0, "versions": 0, "ledger": 0, "versioned_schemas": 0, "versions_kept": 0}
    if case.warehouse == "postgres":
        rows = harness.pg(
            "select n.nspname, coalesce(sum(pg_total_relation_size(c.oid)), 0)"
            " from pg_namespace as n left join pg_class as c"
            " on c.relnamespace = n.oid and c.relkind in ('r', 'm', 'p')"
            " where n.nspname like %s group by 1",
            (harness.like_prefix(side.location),),
        )
        for schema, size in rows:
            if group := _group(schema, side):
                out[group] += int(size)
        _count_versions(out, [schema for schema, _ in rows], side)
        return out
    # DuckDB: what a copy of the file frees when a group's tables are dropped (used blocks).
    scratch = side.work / "storage.duckdb"
    shutil.copyfile(side.location, scratch)
    try:
        with duckdb.connect(str(scratch)) as conn:
            tables = conn.execute(
                "select schema_name, table_name from duckdb_tables()"
                " where database_name = current_database()"
            ).fetchall()
            schemas = conn.execute(
                "select schema_name from information_schema.schemata"
                " where catalog_name = current_database()"
            ).fetchall()
            _count_versions(out, [s for (s,) in schemas], side)
            used = _duckdb_used(conn)
            for group in ("versions", "ledger", "consumer"):
                for schema, table in tables:
                    if _group(schema, side) == group:
                        conn.execute(f'drop table "{schema}"."{table}" cascade')
                conn.execute("checkpoint")
                now = _duckdb_used(conn)
                out[group], used = used - now, now
    finally:
        scratch.unlink(missing_ok=True)
    out["file"] = Path(side.location).stat().st_size
    return out


def _count_versions(out: dict[str, int], schemas: list[str], side: Side) -> None:
    versioned = [s for s in schemas if _group(s, side) == "versions"]
    out["versioned_schemas"] = len(versioned)
    out["versions_kept"] = len({s.rsplit("__", 1)[1] for s in versioned})


def _duckdb_used(conn: duckdb.DuckDBPyConnection) -> int:
    row = conn.execute("select block_size, used_blocks from pragma_database_size()").fetchone()
    assert row is not None
    return int(row[0]) * int(row[1])


def differing(case: Case) -> tuple[int, list[str]]:
    """How many tables consumers read on the direct side, and those whose rows differ on the
    blue-green side (a view there), both ways (`except all`)."""
    direct, bg = case.sides
    if case.warehouse == "duckdb":
        conn = duckdb.connect()
        a, b = Path(direct.location).stem, Path(bg.location).stem
        conn.execute(f"attach '{direct.location}' (read_only)")
        conn.execute(f"attach '{bg.location}' (read_only)")
        found = conn.execute(
            "select schema_name, table_name from duckdb_tables() where database_name = ?", [a]
        ).fetchall()
        names = [
            (f'"{a}"."{s}"."{t}"', f'"{b}"."{s}"."{t}"')
            for s, t in found
            if _group(s, direct) == "consumer"
        ]

        def count(sql: str) -> int:
            row = conn.execute(sql).fetchone()
            return int(row[0]) if row else 0
    else:
        found = harness.pg(
            "select table_schema, table_name from information_schema.tables"
            " where table_type = 'BASE TABLE' and table_schema like %s",
            (harness.like_prefix(direct.location),),
        )
        names = [
            (f'"{s}"."{t}"', f'"{bg.location}{s[len(direct.location) :]}"."{t}"')
            for s, t in found
            if _group(s, direct) == "consumer"
        ]

        def count(sql: str) -> int:
            return int(harness.pg(sql)[0][0])

    try:
        bad = [
            left
            for left, right in sorted(names)
            if count(
                f"select (select count(*) from (select * from {left}"
                f" except all select * from {right}) as x)"
                f" + (select count(*) from (select * from {right}"
                f" except all select * from {left}) as y)"
            )
        ]
    finally:
        if case.warehouse == "duckdb":
            conn.close()
    return len(names), bad


# --- the cases ---------------------------------------------------------------------------------

_IGNORE = shutil.ignore_patterns("target", "logs", "dbt_packages", "*.duckdb*", "__pycache__")
_RANGE = re.compile(r"\brange\((\d+)\)")


def _synthetic_project(out: Path, models: int, warehouse: str) -> None:
    """The synthetic project with a profile for both warehouses; on PostgreSQL its roots
    generate rows with generate_series (the same ids as DuckDB's range)."""
    sys.path.insert(0, str(BENCH_DIR))
    from synthetic_project import generate

    generate(out, models=models)
    (out / "profiles.yml").write_text(_SYNTH_PROFILES, encoding="utf-8")
    if warehouse == "postgres":
        for sql in (out / "models").rglob("*.sql"):
            text = sql.read_text(encoding="utf-8")
            sql.write_text(
                _RANGE.sub(lambda m: f"generate_series(0, {int(m[1]) - 1})", text),
                encoding="utf-8",
            )


def make_case(project: str, warehouse: str, work: Path, pg_prefix: str, models: int) -> Case:
    root = work / f"{project}-{warehouse}"
    sides = []
    for name in SIDES:
        short = "direct" if name == "direct" else "bg"
        side_work = root / short
        side_work.mkdir(parents=True)
        project_dir = side_work / "project"
        if project == "example":
            shutil.copytree(EXAMPLE, project_dir, ignore=_IGNORE)
        else:
            _synthetic_project(project_dir, models, warehouse)
        if warehouse == "duckdb":
            location, raw, ledger = str(root / f"{short}.duckdb"), "main_raw", "ferry_publish"
        else:
            location = f"{pg_prefix}{short}"
            raw, ledger = f"{location}_raw", f"{location}_ledger"
        sides.append(
            Side(
                name,
                project_dir,
                location,
                raw if project == "example" else None,
                ledger,
                side_work,
            )
        )
    return Case(project, warehouse, (sides[0], sides[1]))


@dataclass
class CaseResult:
    project: str
    warehouse: str
    data: str
    runs: list[Run]
    storage: dict[str, dict[str, int]]
    tables_compared: int
    tables_differing: list[str]

    def timed(self, side: str) -> list[Run]:
        return [r for r in self.runs if r.side == side and r.round > 0]

    def median(self, side: str, what: Callable[[Run], float]) -> float:
        return statistics.median(what(r) for r in self.timed(side))


def _print_run(run: Run) -> None:
    steps = run.steps
    copy = f"{steps['copy']:6.2f}" if "copy" in steps else "     -"
    bg = (
        f"  {steps.get('prepare', 0):6.2f} ({copy})  {steps.get('publish', 0):6.2f}"
        f" ({steps.get('switch', 0):5.2f}, {steps.get('drop', 0):5.2f})"
        f"  {run.continued:3}/{run.switched:3}/{run.dropped:2}"
        if run.side == "blue-green"
        else ""
    )
    round_ = "first" if run.round == 0 else str(run.round)
    star = "*" if run.full_parse else " "
    print(
        f"{round_:>5}  {run.side:10}  {run.wall_s:7.1f}  {run.dbt_s:7.1f}  {run.parse_s:5.1f}"
        f"{star}  {run.nodes:5}{bg}",
        flush=True,
    )


def bench_case(case: Case, args: argparse.Namespace) -> CaseResult:
    if case.project == "example":
        rows = load_first(case, args.scale)
        data = (
            f"scale {args.scale}: {rows['order_items']:,} order items, {rows['orders']:,} orders, "
            f"{sum(rows.values()):,} raw rows; +1 late batch per round"
        )
    else:
        data = f"{args.models} tables, no sources (rebuilt as they are each round)"
    print(f"\n== {case.project} on {case.warehouse} ({data})", flush=True)
    print(
        "round  side           wall s    dbt s  parse  nodes  prepare (copy)  publish"
        " (switch, drop)  continued/switched/dropped"
    )
    runs = [ferry_build(case, side, 0) for side in case.sides]
    for run in runs:
        _print_run(run)
    for r in range(1, args.rounds + 1):
        if case.project == "example":
            load_late_batch(case)
        for side in case.sides if r % 2 else reversed(case.sides):
            runs.append(ferry_build(case, side, r))
            _print_run(runs[-1])
    kept = {side.name: storage(case, side) for side in case.sides}
    compared, bad = differing(case)
    print(
        "consumers read the same rows on both sides: "
        + ("yes" if not bad else f"NO, {len(bad)} of {compared} differ: {', '.join(bad)}")
        + f" ({compared} tables compared)"
    )
    return CaseResult(case.project, case.warehouse, data, runs, kept, compared, bad)


# --- the report --------------------------------------------------------------------------------


def time_parts(res: CaseResult) -> dict[str, float | None]:
    """Medians over the rounds: wall of each side, and what blue-green adds, split by where
    it was measured; `rest` is what no step accounts for (start-up, parse, noise)."""
    wall = {side: res.median(side, lambda r: r.wall_s) for side in SIDES}
    dbt = {side: res.median(side, lambda r: r.dbt_s) for side in SIDES}
    bg = res.timed("blue-green")
    step: dict[str, float | None] = {
        key: statistics.median(r.steps.get(key, 0.0) for r in bg)
        if any(key in r.steps for r in bg)
        else None
        for _, _, key in _TIMED
    }
    added = wall["blue-green"] - wall["direct"]
    accounted = dbt["blue-green"] - dbt["direct"] + (step["prepare"] or 0) + (step["publish"] or 0)
    return {
        "direct_wall_s": wall["direct"],
        "blue_green_wall_s": wall["blue-green"],
        "ratio": wall["blue-green"] / wall["direct"],
        "added_s": added,
        "dbt_direct_s": dbt["direct"],
        "dbt_blue_green_s": dbt["blue-green"],
        "dbt_added_s": dbt["blue-green"] - dbt["direct"],
        **{f"{key}_s": value for key, value in step.items()},
        "rest_s": added - accounted,
    }


_PARTS = (
    "start-up",
    "parse",
    "dbt",
    "prepare",
    "restore",
    "execute other",
    "publish",
    "store",
    "other",
)


def parts(run: Run) -> dict[str, float]:
    """A run's wall time split: outside ferry's duration_s (start-up, imports, exit); inside
    execute: parse, dbt, prepare (blue-green), restoring the consumers' names in the manifest
    (blue-green), the rest of execute; then publish (blue-green), storing the artifacts, and
    the rest (judging, summarizing)."""
    step = run.steps
    execute = step.get("execute", 0.0)
    inside = run.parse_s + run.dbt_s + step.get("prepare", 0.0) + step.get("restore", 0.0)
    return {
        "start-up": run.wall_s - run.duration_s,
        "parse": run.parse_s,
        "dbt": run.dbt_s,
        "prepare": step.get("prepare", 0.0),
        "restore": step.get("restore", 0.0),
        "execute other": execute - inside,
        "publish": step.get("publish", 0.0),
        "store": step.get("store", 0.0),
        "other": run.duration_s - execute - step.get("publish", 0.0) - step.get("store", 0.0),
    }


def _s(value: float | None, sign: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.2f}" if sign else f"{value:.2f}"


def _bytes(n: float) -> str:
    return f"{n / 1e6:,.1f} MB" if abs(n) >= 1e5 else f"{n / 1e3:,.0f} kB"


def print_report(results: list[CaseResult]) -> None:
    print(
        "\n| project | warehouse | direct s | blue-green s | ratio | added s | dbt s (direct,"
        " blue-green) | prepare s (copy) | publish s (switch, drop) | rest s |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for res in results:
        t = time_parts(res)
        print(
            f"| {res.project} | {res.warehouse} | {_s(t['direct_wall_s'])}"
            f" | {_s(t['blue_green_wall_s'])} | {t['ratio']:.2f}x | {_s(t['added_s'], True)}"
            f" | {_s(t['dbt_added_s'], True)}"
            f" ({_s(t['dbt_direct_s'])}, {_s(t['dbt_blue_green_s'])})"
            f" | {_s(t['prepare_s'])} ({_s(t['copy_s'])})"
            f" | {_s(t['publish_s'])} ({_s(t['switch_s'])}, {_s(t['drop_s'])})"
            f" | {_s(t['rest_s'], True)} |"
        )
    print(
        "\n| project | warehouse | direct: models | blue-green: versions kept"
        " (how many) | consumer schemas | ledger | blue-green total | ratio |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for res in results:
        direct, bg = res.storage["direct"], res.storage["blue-green"]
        direct_total = direct["consumer"] + direct["versions"] + direct["ledger"]
        bg_total = bg["consumer"] + bg["versions"] + bg["ledger"]
        ratio = f"{bg_total / direct_total:.2f}x" if direct_total else "-"
        print(
            f"| {res.project} | {res.warehouse} | {_bytes(direct_total)}"
            f" | {_bytes(bg['versions'])} ({bg['versions_kept']}) | {_bytes(bg['consumer'])}"
            f" | {_bytes(bg['ledger'])} | {_bytes(bg_total)} | {ratio} |"
        )
    print("\nwhere the wall time goes (medians, s):")
    for res in results:
        for side in SIDES:
            medians = {
                part: statistics.median(parts(r)[part] for r in res.timed(side)) for part in _PARTS
            }
            print(
                f"  {res.project}/{res.warehouse} {side:10} "
                + ", ".join(f"{part} {value:.2f}" for part, value in medians.items())
            )
    for res in results:
        if res.warehouse == "duckdb":
            print(
                f"{res.project} on duckdb, file size on disk: direct "
                f"{_bytes(res.storage['direct']['file'])}, blue-green "
                f"{_bytes(res.storage['blue-green']['file'])} (raw data included; DuckDB reuses"
                " freed blocks but never shrinks a file)"
            )
    slow = [
        f"{r.project}/{r.warehouse} {r.side} round {r.round}"
        for res in results
        for r in res.runs
        if r.round > 0 and r.full_parse
    ]
    if slow:
        print(f"* parsed in full (not from saved state): {', '.join(slow)}")


def write_results(
    args: argparse.Namespace, started: datetime, results: list[CaseResult], load: list[float]
) -> Path:
    """The runs as JSON; relative facts only, never a path of this machine."""
    args.results_dir.mkdir(parents=True, exist_ok=True)
    path = args.results_dir / f"publish-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    payload = {
        "started_at": started.isoformat(),
        "projects": args.projects,
        "warehouses": args.warehouses,
        "rounds": args.rounds,
        "scale": args.scale,
        "models": args.models,
        "keep_versions": KEEP_VERSIONS,
        "cases": [{**asdict(res), "medians": time_parts(res)} for res in results],
        "environment": harness.environment("dbt-core", "dbt-duckdb", "dbt-postgres", "duckdb"),
        "load_average": {"start": load, "end": [round(v, 2) for v in os.getloadavg()]},
    }
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return path


# --- the command line --------------------------------------------------------------------------


def _listed(allowed: tuple[str, ...]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        items = [part.strip() for part in text.split(",") if part.strip()]
        if not items or set(items) - set(allowed):
            raise argparse.ArgumentTypeError(f"one or more of {', '.join(allowed)}")
        return items

    return parse


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--projects",
        type=_listed(("example", "synthetic")),
        default=["example", "synthetic"],
        help="example and/or synthetic (default both)",
    )
    parser.add_argument(
        "--warehouses",
        type=_listed(("duckdb", "postgres")),
        default=["duckdb", "postgres"],
        help="duckdb and/or postgres (default both)",
    )
    parser.add_argument(
        "--rounds", type=int, default=2, help="timed runs per side after the first (default 2)"
    )
    parser.add_argument(
        "--scale",
        type=int,
        choices=(1, 10, 100),
        default=1,
        help="the example project's raw data: the generator's --scale (1: ~10k order items, "
        "100: ~1M; default 1)",
    )
    parser.add_argument(
        "--models", type=int, default=300, help="the synthetic project's models (default 300)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder, print it")
    parser.add_argument("--results-dir", type=Path, default=BENCH_DIR / "results")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [_CHILD]:
        return _child(argv[1:])
    args = _parse_args(argv)
    started = datetime.now(UTC)
    load = [round(v, 2) for v in os.getloadavg()]
    if load[0] > (os.cpu_count() or 1) / 2:
        print(f"note: load average {load[0]} on {os.cpu_count()} CPUs; expect noise")
    pg_prefix = f"bench_pub_{secrets.token_hex(3)}_"
    work = Path(tempfile.mkdtemp(prefix="ferry-bench-publish-"))
    results: list[CaseResult] = []
    try:
        with harness.terminated_as_exit():
            for project in args.projects:
                for warehouse in args.warehouses:
                    case = make_case(project, warehouse, work, pg_prefix, args.models)
                    try:
                        results.append(bench_case(case, args))
                    finally:  # free the disk before the next case
                        if warehouse == "postgres":
                            harness.drop_pg_schemas(pg_prefix)
                        elif not args.keep:
                            for side in case.sides:
                                Path(side.location).unlink(missing_ok=True)
    finally:
        if "postgres" in args.warehouses:
            harness.clean_up_pg_schemas(pg_prefix)
        if args.keep:
            print(f"\nkept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print_report(results)
    path = write_results(args, started, results, load)
    print(f"results: {os.path.relpath(path)}")
    return 1 if any(res.tables_differing for res in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
