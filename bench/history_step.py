"""What a run's history step costs: on the example project, and at the scale of a big history.

A. The example project (`dbt_project/`, copied to a temp dir, its raw data generated there) built
   in process on DuckDB with `flows.run.owner.run(build --selector daily)`, with
   FERRY_HISTORY on and off in the order on off on off ... (after one warm-up of each), so drift
   on a busy machine hits both alike; the medians, the seconds added and the ratio, and the step
   itself (flows.run.history's compare + record, timed inside the runs with history on). With
   history on, the store gains one run per round, as it does in production.
B. The step's parts for one new run of M nodes against two stores side by side, one whose
   history holds 200 runs x M nodes and one 2,000 (--runs; built from synthetic records, folded
   into a base by a compaction, with COMPACT_AFTER / 2 parts on top, as mid-way between two
   compactions): download (current.json, the base, the parts), signals, record (the run's part
   written, the local tables for the report), report (render + put); the two stores
   interleaved round by round, medians, and their ratio; the bytes a run writes to the history,
   and a compaction's seconds and bytes at each size (interleaved too), spread over the runs
   between two compactions. With --s3, against S3 on moto in-process instead of a folder.

Usage:
    python bench/history_step.py [--rounds N] [--runs 200,2000] [--nodes 600] [--s3]
                                 [--skip-project]

--rounds sets the rounds of both parts; without it A runs 5 and B 5.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from flows.artifacts import ArtifactStore, LocalStore, open_store
from flows.dbt.nodes import NodeResult, NodeStatus
from flows.history import store as history_store
from flows.history.query import NODES_TABLE, RUNS_TABLE, build_tables
from flows.history.signals import Rules, find
from flows.report.render import report
from flows.run.history import record_of
from flows.run.summary import RunSummary

REPO = Path(__file__).resolve().parents[1]
PROJECT, ENV = "bench", "prod"
PARTS = ("download", "signals", "record", "report")
_IGNORE = shutil.ignore_patterns("target", "logs", "dbt_packages", "*.duckdb*", "__pycache__")
# Settings inherited from the shell could point the runs elsewhere; part A sets its own.
_SCRUBBED_PREFIXES = ("FERRY_", "DBT_")


# --- A: the example project, history on vs off -----------------------------------------------


def _project(work: Path) -> Path:
    """A copy of the example project with its raw data in a DuckDB file beside it."""
    project = work / "shop"
    shutil.copytree(REPO / "dbt_project", project, ignore=_IGNORE)
    database = work / "shop.duckdb"
    generator = project / "scripts" / "generate_raw_data.py"
    subprocess.run(
        [sys.executable, str(generator), "--target", "duckdb", "--duckdb-path", str(database)],
        check=True,
        cwd=project,
        stdout=subprocess.DEVNULL,
    )
    for name in [n for n in os.environ if n.startswith(_SCRUBBED_PREFIXES)]:
        del os.environ[name]
    os.environ.update(
        FERRY_DUCKDB_PATH=str(database),
        DO_NOT_TRACK="1",
        DBT_SEND_ANONYMOUS_USAGE_STATS="false",
    )
    return project


class _StepClock:
    """Times flows.run.history's compare and record inside the owner's runs (seconds per run)."""

    def __init__(self) -> None:
        from flows.run import history

        self.seconds = 0.0
        self._history = history
        self._originals = (history.compare, history.record)
        history.compare = self._timed(history.compare)
        history.record = self._timed(history.record)

    def _timed(self, step: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return step(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started

        return timed

    def restore(self) -> None:
        self._history.compare, self._history.record = self._originals


def project_runs(work: Path, rounds: int) -> None:
    from flows.run.owner import run
    from flows.run.request import RunRequest
    from flows.run.verdict import Outcome
    from flows.settings import FerrySettings

    started = time.perf_counter()
    project = _project(work)
    print(f"A. example project copied, raw data generated in {time.perf_counter() - started:.0f} s")
    request = RunRequest.build(command="build", selector="daily")
    walls: dict[bool, list[float]] = {True: [], False: []}
    step: list[float] = []
    clock = _StepClock()
    # dbt's console lines would bury the figures; a run's summary says what it needs to.
    quiet = open(os.devnull, "w")  # noqa: SIM115 - held for every run: dbt keeps its stream
    try:
        for sequence in range(rounds + 1):  # round 0: the warm-up of each, not counted
            for history in (True, False):
                settings = FerrySettings.from_env(
                    project_dir=project,
                    profiles_dir=project,
                    artifacts=str(work / "store"),
                    work_dir=work / "runs",
                    env=ENV,
                    history=history,
                )
                clock.seconds = 0.0
                began = time.perf_counter()
                with contextlib.redirect_stdout(quiet):
                    summary = run(request, settings).summary
                wall = time.perf_counter() - began
                # The example project warns on purpose (assert_orders_are_paid_in_full).
                if summary.outcome not in (Outcome.SUCCESS, Outcome.WARNINGS):
                    raise RuntimeError(f"the build did not succeed: {summary.verdict}")
                label = "warm-up" if sequence == 0 else f"round {sequence}"
                print(
                    f"  {label}: history {'on ' if history else 'off'} {wall:6.2f} s"
                    + (f" (step {clock.seconds:.2f} s)" if history else "")
                )
                if sequence:
                    walls[history].append(wall)
                    if history:
                        step.append(clock.seconds)
    finally:
        clock.restore()
        quiet.close()
    on, off = (statistics.median(walls[h]) for h in (True, False))
    nodes = summary.nodes_total
    print(
        f"A. build --selector daily ({nodes} nodes, DuckDB, folder store), medians of {rounds}: "
        f"history on {on:.2f} s, off {off:.2f} s, added {on - off:+.2f} s, ratio {on / off:.3f}x; "
        f"the step itself (compare + record, timed inside the on runs) "
        f"{statistics.median(step):.2f} s"
    )


# --- B: the step's parts against a large history ---------------------------------------------


def _node_ids(count: int) -> list[tuple[str, str]]:
    """(unique_id, resource_type): a third models, the rest tests, as a real project's mix."""
    models = count // 3
    ids = [(f"model.{PROJECT}.model_{i:04d}", "model") for i in range(models)]
    ids += [(f"test.{PROJECT}.not_null_model_{i:04d}_id", "test") for i in range(count - models)]
    return ids


def _summary(run_id: str, started: datetime, seconds: float, nodes: int) -> RunSummary:
    finished = started + timedelta(seconds=seconds)
    document = {
        "schema_version": 2,
        "run_id": run_id,
        "flow_run_id": run_id,
        "project": PROJECT,
        "env": ENV,
        "request": {"command": "build", "select": [], "exclude": [], "selector": "daily"},
        "target": "prod",
        "outcome": "success",
        "verdict": f"{nodes} passed",
        "started_at": started.isoformat(),
        "finished_at": finished.isoformat(),
        "duration_s": round(seconds, 3),
        "git_sha": f"{random.getrandbits(160):040x}",
        "image_digest": f"sha256:{random.getrandbits(256):064x}",
        "nodes_total": nodes,
        "failed": [],
    }
    return RunSummary.read(document)


def _results(ids: list[tuple[str, str]], base: dict[str, float]) -> list[dict[str, Any]]:
    """run_results.json's `results`, the fields a record keeps; models report rows (as on
    PostgreSQL and Redshift), so the volume signal has work to do."""
    return [
        {
            "unique_id": uid,
            "status": "success" if kind == "model" else "pass",
            "execution_time": base[uid] * random.uniform(0.7, 1.6),
            "adapter_response": (
                {"rows_affected": random.randint(40_000, 50_000)} if kind == "model" else {}
            ),
        }
        for uid, kind in ids
    ]


def seed_history(store: ArtifactStore, work: Path, runs: int, nodes: int) -> dict[str, float]:
    """The store's history tables: `runs` runs of `nodes` nodes, one every 30 minutes back from
    an hour ago (inside history_days' 90). Returns each node's base seconds."""
    random.seed(7)
    ids = _node_ids(nodes)
    base = {uid: random.uniform(0.05, 20.0) for uid, _ in ids}
    records = work / "records"
    records.mkdir()
    now = datetime.now(UTC)
    for r in range(runs):
        started = now - timedelta(hours=1, minutes=30 * (runs - r))
        run_id = f"{r:08d}-0000-4000-8000-{random.getrandbits(48):012x}"
        results = _results(ids, base)
        seconds = sum(x["execution_time"] for x in results) / 4
        record = record_of(_summary(run_id, started, seconds, nodes), results)
        (records / f"{PROJECT}__{run_id}.json").write_text(json.dumps(record))
    tables = work / "tables"
    tables.mkdir()
    build_tables(str(records / "*__*.json"), tables)
    shutil.rmtree(records)
    for name in (RUNS_TABLE, NODES_TABLE):
        store.put_file(f"{history_store.history_prefix(PROJECT, ENV)}/{name}", tables / name)
    shutil.rmtree(tables)
    return base


def _new_run(
    ids: list[tuple[str, str]], base: dict[str, float]
) -> tuple[list[NodeResult], dict[str, Any]]:
    """One new run: its nodes (what signals judge) and its record (what append adds)."""
    now = datetime.now(UTC)
    run_id = f"new-{random.getrandbits(64):016x}"
    results = _results(ids, base)
    nodes = [
        NodeResult(
            unique_id=r["unique_id"],
            resource_type=kind,
            name=r["unique_id"].split(".")[-1],
            status=NodeStatus(r["status"]),
            message=None,
            started_at=now,
            finished_at=now,
            execution_time=r["execution_time"],
            rows=r["adapter_response"].get("rows_affected"),
        )
        for r, (_, kind) in zip(results, ids, strict=True)
    ]
    seconds = sum(r["execution_time"] for r in results) / 4
    return nodes, record_of(_summary(run_id, now, seconds, len(ids)), results)


def step_parts(
    store: ArtifactStore, folder: Path, nodes: list[NodeResult], record: dict[str, Any]
) -> tuple[dict[str, float], int, int, bool]:
    """flows.run.history's compare + record, part by part: the seconds of each, the bytes the
    run wrote to the history, the runs the report shows, and whether a compaction was due."""
    keep_since = datetime.now(UTC) - timedelta(days=90)
    seconds: dict[str, float] = {}
    mark = time.perf_counter()

    def lap(part: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        seconds[part] = now - mark
        mark = now

    read = history_store.download(store, PROJECT, ENV, folder, window=Rules().window)
    if not read.found:
        raise RuntimeError("the store holds no history")
    lap("download")
    find(folder, nodes, project=PROJECT, env=ENV, rules=Rules())
    lap("signals")
    written = history_store.add_run(store, PROJECT, ENV, folder, record, keep_since=keep_since)
    lap("record")
    # render() is report().html; report() also says how many runs the page shows.
    made = report(folder, env=ENV, project=PROJECT, store_url=store.url, since=read.since)
    store.put_bytes(history_store.report_key(PROJECT, ENV), made.html.encode())
    lap("report")
    return seconds, written.bytes, made.runs, read.compaction_due


def _seeded(store: ArtifactStore, work: Path, runs: int, node_count: int) -> dict[str, float]:
    """A store as production has it mid-way between compactions: a base of `runs` runs (the
    legacy tables, folded by one compaction) and half COMPACT_AFTER parts on top."""
    base = seed_history(store, work, runs, node_count)
    history_store.compact(store, PROJECT, ENV, work / "compact", keep_since=_keep_since())
    ids = _node_ids(node_count)
    for n in range(history_store.COMPACT_AFTER // 2):
        _, record = _new_run(ids, base)
        history_store.add_run(
            store, PROJECT, ENV, work / f"seed-part-{n}", record, keep_since=_keep_since()
        )
    shutil.rmtree(work / "compact", ignore_errors=True)
    return base


def _keep_since() -> datetime:
    """history_days' 90, as a run computes it."""
    return datetime.now(UTC) - timedelta(days=90)


def scale_parts(
    stores: dict[int, ArtifactStore], work: Path, node_count: int, rounds: int, where: str
) -> None:
    """The step against each store, interleaved round by round (the smaller history first in
    odd rounds, the larger first in even ones), then a compaction of each, interleaved too."""
    bases: dict[int, dict[str, float]] = {}
    for runs, store in stores.items():
        started = time.perf_counter()
        (work / str(runs)).mkdir()
        bases[runs] = _seeded(store, work / str(runs), runs, node_count)
        print(
            f"B. a base of {runs} runs x {node_count} nodes and "
            f"{history_store.COMPACT_AFTER // 2} parts put in {where} "
            f"in {time.perf_counter() - started:.0f} s"
        )
    ids = _node_ids(node_count)
    sizes = list(stores)
    laps = {runs: {part: [] for part in PARTS} for runs in sizes}
    totals: dict[int, list[float]] = {runs: [] for runs in sizes}
    written: dict[int, list[int]] = {runs: [] for runs in sizes}
    shown: dict[int, int] = {}
    for round_ in range(rounds):
        order = sizes if round_ % 2 == 0 else sizes[::-1]
        for runs in order:
            folder = work / f"run-{runs}-{round_}" / "history"  # no local copy, as in a task
            nodes, record = _new_run(ids, bases[runs])
            seconds, wrote, shown[runs], due = step_parts(stores[runs], folder, nodes, record)
            for part in PARTS:
                laps[runs][part].append(seconds[part])
            totals[runs].append(sum(seconds.values()))
            written[runs].append(wrote)
            print(
                f"  round {round_ + 1}, {runs:>5} runs: "
                + ", ".join(f"{p} {seconds[p]:.3f}" for p in PARTS)
                + f", total {totals[runs][-1]:.3f} s, wrote {wrote / 1e3:.1f} kB"
                + (" (compaction due)" if due else "")
            )
            shutil.rmtree(folder.parent)
    compactions: dict[int, list[float]] = {runs: [] for runs in sizes}
    compacted: dict[int, list[int]] = {runs: [] for runs in sizes}
    for round_ in range(rounds):
        order = sizes if round_ % 2 == 0 else sizes[::-1]
        for runs in order:
            one = work / f"one-{runs}-{round_}"
            _, record = _new_run(ids, bases[runs])  # one new part, so there is a part to fold
            history_store.add_run(stores[runs], PROJECT, ENV, one, record, keep_since=_keep_since())
            began = time.perf_counter()
            done = history_store.compact(
                stores[runs], PROJECT, ENV, work / f"c-{runs}-{round_}", keep_since=_keep_since()
            )
            compactions[runs].append(time.perf_counter() - began)
            compacted[runs].append(done.bytes if done else 0)
            shutil.rmtree(one)
            shutil.rmtree(work / f"c-{runs}-{round_}")
    med = statistics.median
    small, large = sizes[0], sizes[-1]
    print(
        f"B. one run's history step in {where}, {node_count} nodes a run, "
        f"medians of {rounds} interleaved rounds (s):"
    )
    print(f"  {'part':<10} {small:>7} runs {large:>7} runs   ratio")
    for part in (*PARTS, "total"):
        a, b = (med(totals[r]) if part == "total" else med(laps[r][part]) for r in (small, large))
        print(f"  {part:<10} {a:12.3f} {b:12.3f}  {b / a:6.2f}x")
    every = history_store.COMPACT_AFTER
    for runs in sizes:
        part, fold = med(written[runs]), med(compacted[runs])
        print(
            f"  {runs} runs: a run writes {part / 1e3:.1f} kB of history (its part); a "
            f"compaction {med(compactions[runs]):.2f} s and {fold / 1e6:.2f} MB, once per "
            f"{every} runs: {(part + fold / every) / 1e3:.1f} kB a run in all "
            f"(was: both whole tables rewritten by every run); the report shows {shown[runs]} runs"
        )


@contextlib.contextmanager
def _s3() -> Iterator[ArtifactStore]:
    import boto3
    from moto import mock_aws

    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="bench-history")
        yield open_store("s3://bench-history/dbt")


def _s3_store(runs: int) -> ArtifactStore:
    """One prefix of the bench's bucket per history size (inside `_s3()`)."""
    return open_store(f"s3://bench-history/h{runs}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, help="rounds of each part (A: 5, B: 3)")
    parser.add_argument(
        "--runs", default="200,2000", help="B: runs in each store's history (default 200,2000)"
    )
    parser.add_argument("--nodes", type=int, default=600, help="B: nodes of each run")
    parser.add_argument("--s3", action="store_true", help="B on S3 (moto, in-process)")
    parser.add_argument("--skip-project", action="store_true", help="B only")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="ferry-bench-history-step-"))
    try:
        if not args.skip_project:
            project_runs(work / "a", args.rounds or 5)
        (work / "b").mkdir()
        sizes = sorted(int(n) for n in args.runs.split(","))
        if args.s3:
            with _s3():
                stores = {n: _s3_store(n) for n in sizes}
                scale_parts(stores, work / "b", args.nodes, args.rounds or 5, "S3 (moto)")
        else:
            stores = {n: LocalStore(work / "b" / f"store-{n}") for n in sizes}
            scale_parts(stores, work / "b", args.nodes, args.rounds or 5, "a folder")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
