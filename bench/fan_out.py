"""One build as one task vs fanned out over 2 and 4 parts, each its own flow run, on PostgreSQL.

A project of K independent domains (bench/domains_project.py) whose every model sleeps in the
warehouse (`pg_sleep`), built with `ferry run --json --select tag:domain_0 ... tag:domain_K-1`:

  one task    fan_out 0: dbt's 4 threads in one process
  fan-out N   `--fan-out N`: the parent parses, splits the selection into at most N parts that
              need nothing of each other, starts each as a flow run of `part-<env>` (a process
              work pool and its worker here, an ECS task each in AWS) and gathers their results

interleaved A B C C B A over `--rounds`, each run into an empty schema dropped after it. Wall
time is from process start to exit. For each part, the time from its flow run's creation (the
parent's "part i of n: flow run ..." line) to its first dbt node (its run_results.json), split
at the flow run's start (worker and process start-up, then ferry's own: plan, parse, holds);
for the parent, its fixed cost: before its first part exists (start-up, parse, split) and after
its last part ended (the poll, gathering, storing). A small case (`--small-models`, no sleep)
shows where fan-out does not pay: start-up and parse dominate.

On one machine the parts compete for its CPUs; only the warehouse's time fans out. ECS task
start-up is not measured: FARGATE_START_S below is an assumption, with its source.

Usage:
    python bench/fan_out.py [--models 600] [--domains 4] [--sleep-ms 300] [--rounds 1]
                            [--fan-outs 2,4] [--small-models 60] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg2

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness
from domains_project import DEFAULT_TARGET, generate
from overhead import descendants, run_order, tree_cpu_s

from flows.prefect import server as local_prefect

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
BIN = Path(sys.executable).parent
FARGATE_START_S = 30.0
FARGATE_SOURCE = {
    "assumed_s": FARGATE_START_S,
    "url": "https://docs.aws.amazon.com/batch/latest/userguide/when-to-use-fargate.html",
    "says": "jobs that run on Fargate can be provisioned in about 30 seconds; the exact time "
    "depends on the container image size and the number of jobs (AWS Batch User Guide)",
    "also": "https://www.repost.aws/ja/questions/QUjZAzJd27SZWxXM7MgyxOZw/how-to-speed-up-"
    "provisioning-of-ecs-fargate-task (AWS re:Post: 'normal for new AWS Fargate tasks to take "
    "30-45 seconds or longer to start')",
}
_SCRUBBED_PREFIXES = ("PREFECT_", "FERRY_", "DBT_", "DOMAINS_")
# The worker asks for new flow runs every second, as the e2e tests run it (Prefect's default is
# 10 s: up to that much more per part; an ECS push pool does not poll).
_WORKER_QUERY_S = "1"
_RUN_TIMEOUT_S = 1800


class BenchError(RuntimeError):
    """A step of the benchmark failed; the message says which and what it printed."""


@dataclass(frozen=True)
class Case:
    """One project, its environment (and `part-<env>` deployment) and its schema."""

    name: str
    models: int
    domains: int
    sleep_ms: int
    project: Path
    env: str
    schema: str
    home: Path

    def env_vars(self) -> dict[str, str]:
        """What the parent and its parts run with (the deployment's job variables too)."""
        return {
            "FERRY_ENV": self.env,
            "FERRY_WORK_DIR": str(self.home / "runs"),
            "FERRY_PROJECT_DIR": str(self.project),
            "FERRY_PROFILES_DIR": str(self.project),
            "FERRY_ARTIFACTS": str(self.home / "artifacts"),
            "DOMAINS_PG_SCHEMA": self.schema,
        }


@dataclass
class PartTiming:
    """One part of a fanned-out run, from the API and its own artifacts."""

    index: int
    nodes: int
    domains: list[str]
    created_s: float  # the parent's process start -> this part's flow run created
    queued_s: float  # flow run created -> Running: worker poll, process, Prefect's engine
    in_flow_s: float  # Running -> first dbt node: ferry's plan, parse, holds
    dbt_s: float  # first node start -> last node end
    parse_s: float | None
    partial_parse: bool | None

    @property
    def start_s(self) -> float:
        return self.queued_s + self.in_flow_s


@dataclass
class Run:
    """One timed `ferry run`."""

    case: str
    variant: str
    fan_out: int
    sequence: int
    load_1m: float  # the machine's load average as the run started: others' work shows here
    wall_s: float
    own_cpu_s: float  # the parent, the worker with its parts, the server; not PostgreSQL's
    machine_cpu_s: float  # every process of the machine, others' included
    nodes: int
    parse_s: float | None
    partial_parse: bool | None
    before_s: float  # process start -> first part created (one task: -> first dbt node)
    after_s: float  # last part ended -> exit (one task: last dbt node -> exit)
    dbt_s: float  # one task: its dbt span; fanned out: first part created -> last part ended
    parts: list[PartTiming] = field(default_factory=list)

    @property
    def busy(self) -> float:
        """The machine's CPUs' busy share during the run."""
        return self.machine_cpu_s / (self.wall_s * (os.cpu_count() or 1))


# --- the machine ------------------------------------------------------------------------------


def _machine_cpu_s() -> float:
    """CPU seconds the whole machine has spent not idle since boot (/proc/stat)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_cpu_s(pids: tuple[int, ...]) -> float:
    """CPU seconds of this script's reaped children (the parent `ferry run` and its own) and
    of `pids` with the children they reaped (the worker's parts once they exited)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = children.ru_utime + children.ru_stime
    for pid in pids:
        with suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    return total


def _parts_exited(worker_pid: int, timeout_s: float = 60.0) -> None:
    """Waits until the worker has reaped every part's process: a part's flow run is final a
    little before its process exits, and only a reaped process's CPU counts as the worker's."""
    deadline = time.monotonic() + timeout_s
    while descendants(worker_pid) and time.monotonic() < deadline:
        time.sleep(0.2)


def _settle(server_pid: int, worker_pid: int, timeout_s: float = 60.0) -> None:
    """Waits until the last run's parts have exited and the server is nearly idle again (the
    worker's polls keep it a little busy), so one run's tail never slows the next."""
    deadline = time.monotonic() + timeout_s
    last = tree_cpu_s(server_pid)
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = tree_cpu_s(server_pid)
        if now - last < 0.15 and not descendants(worker_pid):
            return
        last = now


def _clean_env(extra: dict[str, str]) -> dict[str, str]:
    return harness.clean_env(_SCRUBBED_PREFIXES, extra)


# --- Prefect: the parts' pool, worker and deployments -----------------------------------------


def _deploy(api_url: str, pool: str, cases: list[Case]) -> None:
    """The process pool, each case's `part-<env>` deployment and writer limit, as
    tests/e2e/test_fan_out.py makes them."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.prefect.holds import apply_limits
    from flows.prefect.parts import PART_FLOW

    async def create() -> None:
        async with get_client() as client:
            await client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
            flow_id = await client.create_flow_from_name(PART_FLOW)
            for case in cases:
                await client.create_deployment(
                    flow_id=flow_id,
                    name=f"part-{case.env}",
                    entrypoint="flows/dbt_flow.py:dbt_part_flow",
                    work_pool_name=pool,
                    pull_steps=[
                        {
                            "prefect.deployments.steps.set_working_directory": {
                                "directory": str(REPO)
                            }
                        }
                    ],
                    job_variables={"env": case.env_vars()},
                )
            await apply_limits([case.env for case in cases], client)

    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        asyncio.run(create())


def _start_worker(api_url: str, pool: str, work: Path) -> subprocess.Popen[bytes]:
    log = (work / "worker.log").open("ab")
    return subprocess.Popen(
        [str(BIN / "prefect"), "worker", "start", "--pool", pool, "--prefetch-seconds", "5"],
        cwd=REPO,
        env=_clean_env(
            {
                "PREFECT_API_URL": api_url,
                "PREFECT_HOME": str(work / "prefect-client"),
                "PREFECT_WORKER_QUERY_SECONDS": _WORKER_QUERY_S,
            }
        ),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its group holds the parts' processes: stopped whole
    )


# --- one run ------------------------------------------------------------------------------------


def _when(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _dbt_span(folder: str) -> tuple[datetime, datetime, list[dict[str, Any]]]:
    """The first node's start and the last node's end in a run_results.json, and its results."""
    results = json.loads(Path(folder, "run_results.json").read_text())["results"]
    times = [
        (_when(t["started_at"]), _when(t["completed_at"])) for r in results for t in r["timing"]
    ]
    if not times:
        raise BenchError(f"no node ran in {folder}")
    return min(s for s, _ in times), max(e for _, e in times), results


def _part_timing(
    api: Any, record: dict[str, Any], began: datetime
) -> tuple[PartTiming, datetime, datetime]:
    flow_run = api.get(f"/flow_runs/{record['flow_run_id']}").raise_for_status().json()
    created, running = _when(flow_run["created"]), _when(flow_run["start_time"])
    first, last, results = _dbt_span(record["artifacts"])
    summary = json.loads(Path(record["artifacts"], "summary.json").read_text())
    parse = summary.get("parse") or {}
    domains = sorted(
        {
            r["unique_id"].split(".")[-1].split("_")[0]
            for r in results
            if r["unique_id"].startswith("model.")
        }
    )
    timing = PartTiming(
        index=record["index"],
        nodes=record["nodes"],
        domains=domains,
        created_s=(created - began).total_seconds(),
        queued_s=(running - created).total_seconds(),
        in_flow_s=(first - running).total_seconds(),
        dbt_s=(last - first).total_seconds(),
        parse_s=parse.get("elapsed_s"),
        partial_parse=parse.get("partial"),
    )
    return timing, created, _when(flow_run["end_time"])


def run_once(
    case: Case, fan_out: int, sequence: int, api_url: str, work: Path, watched: tuple[int, ...]
) -> Run:
    """One `ferry run` of the case's whole selection, timed from process start to exit;
    `watched`: the worker's and the server's pids, whose CPU counts as the run's."""
    variant = _variant(fan_out)
    run_dir = work / "logs" / f"{sequence:02d}-{case.name}-{variant.replace(' ', '-')}"
    run_dir.mkdir(parents=True)
    select = [f"tag:domain_{d}" for d in range(case.domains)]
    command = [str(BIN / "ferry"), "run", "--json", "--select", *select]
    if fan_out:
        command += ["--fan-out", str(fan_out)]
    env = _clean_env(
        {
            "PREFECT_API_URL": api_url,
            "PREFECT_HOME": str(work / "prefect-client"),
            **case.env_vars(),
        }
    )
    out_path, err_path = run_dir / "stdout.json", run_dir / "stderr.log"
    load_1m = round(os.getloadavg()[0], 2)
    cpu_before, own_before = _machine_cpu_s(), _own_cpu_s(watched)
    with out_path.open("wb") as out, err_path.open("wb") as err:
        began = datetime.now(UTC)
        start = time.perf_counter()
        process = subprocess.Popen(
            command, cwd=run_dir, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err
        )
        try:
            returncode = process.wait(timeout=_RUN_TIMEOUT_S)
        except BaseException:
            process.terminate()
            process.wait(timeout=30)
            raise
        wall_s = time.perf_counter() - start
        ended = datetime.now(UTC)
    machine_cpu_s = _machine_cpu_s() - cpu_before
    _parts_exited(watched[0])
    own_cpu_s = _own_cpu_s(watched) - own_before
    if returncode != 0:
        raise BenchError(
            f"{case.name} {variant} exited {returncode}\n--- stderr (tail) ---\n"
            f"{harness.tail(err_path)}\n--- stdout (tail) ---\n{harness.tail(out_path)}"
        )
    summary = json.loads(out_path.read_text())
    expected = 2 * case.models  # every model and its one test
    if summary["nodes_total"] != expected:
        raise BenchError(f"{case.name} {variant}: {summary['verdict']} (expected {expected} nodes)")
    parse = summary.get("parse") or {}
    result = Run(
        case=case.name,
        variant=variant,
        fan_out=fan_out,
        sequence=sequence,
        load_1m=load_1m,
        wall_s=wall_s,
        own_cpu_s=own_cpu_s,
        machine_cpu_s=machine_cpu_s,
        nodes=summary["nodes_total"],
        parse_s=parse.get("elapsed_s"),
        partial_parse=parse.get("partial"),
        before_s=0.0,
        after_s=0.0,
        dbt_s=0.0,
    )
    if not summary.get("parts"):
        if fan_out:
            raise BenchError(f"{case.name} {variant} ran as one task: {summary['verdict']}")
        first, last, _ = _dbt_span(summary["artifacts"])
        result.before_s = (first - began).total_seconds()
        result.after_s = (ended - last).total_seconds()
        result.dbt_s = (last - first).total_seconds()
        return result
    api = local_prefect.api_client(api_url)
    created, finished = [], []
    for record in summary["parts"]:
        if record["state"] != "Completed":
            raise BenchError(f"{case.name} {variant}: part {record['index']} {record['state']}")
        timing, made, done = _part_timing(api, record, began)
        result.parts.append(timing)
        created.append(made)
        finished.append(done)
    result.before_s = (min(created) - began).total_seconds()
    result.after_s = (ended - max(finished)).total_seconds()
    result.dbt_s = (max(finished) - min(created)).total_seconds()
    return result


def _variant(fan_out: int) -> str:
    return f"fan-out {fan_out}" if fan_out else "one task"


def warm_up(case: Case, api_url: str) -> None:
    """Parse once, untimed, so every timed run (and every part) parses from the saved state;
    then hold every node once, so that the node limits exist (a run creates those it lacks,
    one request each: 8 s for 1,200 nodes here, once per environment, not per run).

    Each run builds into the same schema, emptied after it: dbt hashes the profile's connection
    values, schema included, into its parse state, so a schema per run would parse 600 models
    from scratch in the parent and again in every part, which a deployed image (with its baked
    manifest) never does.
    """
    completed = subprocess.run(
        [str(BIN / "dbt"), "parse", "--project-dir", str(case.project), "--profiles-dir",
         str(case.project), "--target", DEFAULT_TARGET],
        cwd=case.home, env=_clean_env({"DOMAINS_PG_SCHEMA": case.schema}),
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if completed.returncode != 0:
        raise BenchError(f"dbt parse failed:\n{completed.stdout[-3000:]}{completed.stderr[-3000:]}")
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.dbt.commands import DbtCommand
    from flows.prefect import holds
    from flows.run.holds import Writes

    def lost(why: str) -> None:
        raise BenchError(f"the warm-up's holds were lost: {why}")

    nodes = tuple(json.loads((case.project / "target" / "manifest.json").read_text())["nodes"])
    writes = Writes(DbtCommand.BUILD, "postgres", nodes)
    with (
        temporary_settings(updates={PREFECT_API_URL: api_url}),
        holds.holds(case.env, writes, lost, wait_s=300),
    ):
        pass


# --- report ---------------------------------------------------------------------------------------


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _spread(values: list[float]) -> float:
    return max(values) - min(values)


def summarize(runs: list[Run], ecs_start_s: float) -> list[dict[str, Any]]:
    """Per case and variant: median wall, ratio to one task, the parts' start, the parent's cost."""
    rows: list[dict[str, Any]] = []
    for case in dict.fromkeys(r.case for r in runs):
        of_case = [r for r in runs if r.case == case]
        one = _median([r.wall_s for r in of_case if r.fan_out == 0])
        for variant in dict.fromkeys(r.variant for r in of_case):
            mine = [r for r in of_case if r.variant == variant]
            wall = _median([r.wall_s for r in mine])
            parts = [p for r in mine for p in r.parts]
            row: dict[str, Any] = {
                "case": case,
                "variant": variant,
                "fan_out": mine[0].fan_out,
                "walls_s": [round(r.wall_s, 2) for r in mine],
                "median_wall_s": round(wall, 2),
                "ratio": round(wall / one, 3),
                "median_own_cpu_s": round(_median([r.own_cpu_s for r in mine]), 1),
                "median_machine_cpu_s": round(_median([r.machine_cpu_s for r in mine]), 1),
                "median_busy": round(_median([r.busy for r in mine]), 3),
                "parts": _median([len(r.parts) for r in mine]) if parts else 0,
                "median_before_s": round(_median([r.before_s for r in mine]), 2),
                "median_after_s": round(_median([r.after_s for r in mine]), 2),
                "median_dbt_s": round(_median([r.dbt_s for r in mine]), 2),
                "median_parse_s": round(_median([r.parse_s or 0.0 for r in mine]), 2),
                "full_parse": any(r.partial_parse is False for r in mine)
                or any(p.partial_parse is False for p in parts),
            }
            if parts:
                row |= {
                    "median_part_start_s": round(_median([p.start_s for p in parts]), 2),
                    # the parts are created one after the other: the last this much after the first
                    "median_creation_spread_s": round(
                        _median([_spread([p.created_s for p in r.parts]) for r in mine]), 2
                    ),
                    "median_part_queued_s": round(_median([p.queued_s for p in parts]), 2),
                    "median_part_in_flow_s": round(_median([p.in_flow_s for p in parts]), 2),
                    "median_part_parse_s": round(_median([p.parse_s or 0.0 for p in parts]), 2),
                    "median_part_dbt_s": round(_median([p.dbt_s for p in parts]), 2),
                    "ecs_estimate_s": round(wall + ecs_start_s, 1),
                    "ecs_estimate_ratio": round((wall + ecs_start_s) / one, 3),
                }
            rows.append(row)
    return rows


def print_report(rows: list[dict[str, Any]], cases: dict[str, Case]) -> None:
    print()
    header = (
        f"{'case':<18} {'variant':<10} {'runs: wall s':<22} {'median s':>8} {'vs one':>7} "
        f"{'own cpu s':>9} {'machine':>7} {'parts':>5}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        case = cases[row["case"]]
        label = f"{case.models}m/{case.domains}d/{case.sleep_ms}ms"
        walls = "  ".join(f"{w:.1f}" for w in row["walls_s"]) + (" *" if row["full_parse"] else "")
        print(
            f"{label:<18} {row['variant']:<10} {walls:<22} {row['median_wall_s']:>8.1f} "
            f"{row['ratio']:>6.2f}x {row['median_own_cpu_s']:>9.0f} "
            f"{row['median_busy']:>7.0%} {row['parts']:>5g}"
        )
    print(
        "own cpu s: CPU of the parent, the parts, the worker and the Prefect server (not "
        f"PostgreSQL's); machine: how busy the machine's {os.cpu_count()} CPUs were, every "
        "process counted (others' too)"
    )
    if any(row["full_parse"] for row in rows):
        print("* a process of this run parsed the project from scratch")
    print()
    print("fixed costs, medians (s):")
    for row in rows:
        case = cases[row["case"]]
        label = f"{case.models}m {row['variant']}"
        if row["fan_out"] == 0:
            print(
                f"  {label:<18} before the first node {row['median_before_s']:.1f} (parse "
                f"{row['median_parse_s']:.1f}), dbt {row['median_dbt_s']:.1f}, after the last "
                f"node {row['median_after_s']:.1f}"
            )
            continue
        print(
            f"  {label:<18} parent: before its first part {row['median_before_s']:.1f} (parse "
            f"{row['median_parse_s']:.1f}; the last part created "
            f"{row['median_creation_spread_s']:.1f} after the first), after its last part "
            f"{row['median_after_s']:.1f}; parts span {row['median_dbt_s']:.1f}"
        )
        print(
            f"  {'':<18} a part's start (created -> first dbt node) "
            f"{row['median_part_start_s']:.1f} = queued {row['median_part_queued_s']:.1f} "
            f"(worker, process, Prefect) + in flow {row['median_part_in_flow_s']:.1f} (parse "
            f"{row['median_part_parse_s']:.1f}); a part's dbt {row['median_part_dbt_s']:.1f}"
        )
    print()
    print(
        f"On this machine ({os.cpu_count()} CPUs) the parts compete for the same CPUs; what fans "
        "out is the warehouse's time (pg_sleep). On ECS each part is its own task, with CPUs of "
        "its own, but it first waits for Fargate to start it, which is not measured here."
    )
    print(
        f"Assumed Fargate task start: ~{FARGATE_START_S:.0f} s ({FARGATE_SOURCE['url']}: "
        f"{FARGATE_SOURCE['says']}; 30-45 s per AWS re:Post). The parts start at once, so a "
        "fanned-out run pays it about once; a pessimistic estimate adds it to the wall measured "
        "here (whose local process start and CPU contention stay counted):"
    )
    for row in rows:
        if row["fan_out"]:
            case = cases[row["case"]]
            verdict = "pays" if row["ecs_estimate_ratio"] < 1 else "does not pay"
            print(
                f"  {case.models}m {row['variant']}: {row['median_wall_s']:.1f} + "
                f"{FARGATE_START_S:.0f} = ~{row['ecs_estimate_s']:.0f} s, "
                f"{row['ecs_estimate_ratio']:.2f}x one task: {verdict}"
            )


def write_results(
    results_dir: Path,
    started: datetime,
    args: argparse.Namespace,
    order: list[str],
    runs: list[Run],
    rows: list[dict[str, Any]],
    load: dict[str, list[float]],
) -> Path:
    """The runs and medians as JSON; no path of this machine."""
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"fan_out-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    payload = {
        "started_at": started.isoformat(),
        "models": args.models,
        "domains": args.domains,
        "sleep_ms": args.sleep_ms,
        "small_models": args.small_models,
        "rounds": args.rounds,
        "fan_outs": args.fan_outs,
        "order": order,
        "command": "ferry run --json --select tag:domain_0 ... [--fan-out N]",
        "worker_query_seconds": float(_WORKER_QUERY_S),
        "fargate_start": FARGATE_SOURCE,
        "summary": rows,
        "runs": [asdict(r) for r in runs],
        "environment": harness.environment("dbt-core", "dbt-postgres", "prefect"),
        "load_average": load,
    }
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return path


# --- CLI ------------------------------------------------------------------------------------------


def _fan_outs(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError("comma-separated whole numbers, e.g. 2,4") from None
    if not values or any(v < 2 for v in values) or len(set(values)) != len(values):
        raise argparse.ArgumentTypeError("distinct numbers of 2 or more, e.g. 2,4")
    return values


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=600, help="models in all (default 600)")
    parser.add_argument("--domains", type=int, default=4, help="independent domains (default 4)")
    parser.add_argument(
        "--sleep-ms",
        type=int,
        default=300,
        help="each model's time in PostgreSQL (default 300: a domain of 150 models takes ~11 s "
        "of warehouse time with 4 threads, the whole project ~45 s)",
    )
    parser.add_argument("--rounds", type=int, default=1, help="repeats of A B C C B A (default 1)")
    parser.add_argument("--fan-outs", type=_fan_outs, default=[2, 4], help="default 2,4")
    parser.add_argument(
        "--small-models",
        type=int,
        default=60,
        help="the case where fan-out does not pay: this many models in the same domains, no "
        "sleep (default 60; 0 leaves it out)",
    )
    parser.add_argument("--seed", type=int, default=0, help="layout seed (default 0)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder, print it")
    parser.add_argument("--results-dir", type=Path, default=BENCH_DIR / "results")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.domains < 1 or args.sleep_ms < 0 or args.small_models < 0:
        parser.error("--rounds and --domains must be 1 or more, --sleep-ms and --small-models 0+")
    for models in (args.models, args.small_models):
        if models and models % args.domains:
            parser.error(f"{models} models do not split evenly over {args.domains} domains")
    return args


def _make_case(name: str, models: int, sleep_ms: int, args: argparse.Namespace, work: Path,
               token: str) -> Case:  # fmt: skip
    home = work / name
    project = generate(
        home / "project",
        domains=args.domains,
        models_per_domain=models // args.domains,
        sleep_ms=sleep_ms,
        seed=args.seed,
    )
    env = f"fan-{token}-{name}"
    schema = f"bench_fan_{token}_{name}"
    return Case(name, models, args.domains, sleep_ms, project, env, schema, home)


def main(argv: list[str] | None = None) -> int:
    """Generate, deploy the parts, run every case A B C C B A, report, clean up."""
    args = _parse_args(argv)
    started = datetime.now(UTC)
    load = {"start": [round(v, 2) for v in os.getloadavg()]}
    if load["start"][0] > (os.cpu_count() or 1) / 2:
        print(f"note: load average {load['start'][0]} on {os.cpu_count()} CPUs; expect noise")
    token = secrets.token_hex(3)
    work = Path(tempfile.mkdtemp(prefix="ferry-bench-fan-out-"))
    try:
        with harness.terminated_as_exit():  # a SIGTERM still stops the server and the worker
            return _bench(args, started, load, work, token)
    except BenchError as error:
        print(f"error: {error}", file=sys.stderr)
        args.keep = True  # every run's output, the worker's (the parts') and the server's log
        return 1
    finally:
        harness.clean_up_pg_schemas(f"bench_fan_{token}_")
        if args.keep:
            print(f"kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def _bench(
    args: argparse.Namespace,
    started: datetime,
    load: dict[str, list[float]],
    work: Path,
    token: str,
) -> int:
    try:
        harness.pg("select 1")
    except psycopg2.Error as exc:
        raise BenchError(f"PostgreSQL at {harness.PG_DSN} is needed: {exc}") from None
    cases = [_make_case("main", args.models, args.sleep_ms, args, work, token)]
    if args.small_models:
        cases.append(_make_case("small", args.small_models, 0, args, work, token))
    fan_outs = [0, *args.fan_outs]
    order = run_order([_variant(n) for n in fan_outs], args.rounds)
    by_name = {_variant(n): n for n in fan_outs}
    (work / "prefect-client").mkdir()
    try:
        server = local_prefect.start(work / "prefect-server")
    except RuntimeError as exc:
        raise BenchError(str(exc)) from exc
    worker = None
    runs: list[Run] = []
    try:
        pool = f"bench-fan-{token}"
        _deploy(server.api_url, pool, cases)
        worker = _start_worker(server.api_url, pool, work)
        print(f"prefect server {server.api_url}, process pool {pool} with a worker")
        sequence = 0
        for case in cases:
            warm_up(case, server.api_url)
            print(
                f"{case.name}: {case.models} models in {case.domains} domains, "
                f"{case.sleep_ms} ms each in PostgreSQL (parsed, node limits made)"
            )
            for name in order:
                sequence += 1
                _settle(server.pid, worker.pid)
                try:
                    watched = (worker.pid, server.pid)
                    run = run_once(case, by_name[name], sequence, server.api_url, work, watched)
                finally:
                    harness.drop_pg_schemas(case.schema)
                runs.append(run)
                starts = ", ".join(f"{p.start_s:.1f}" for p in run.parts)
                print(
                    f"[{sequence}] {case.name} {name}: {run.wall_s:.1f} s"
                    + (f" (parts started in {starts} s)" if run.parts else ""),
                    flush=True,
                )
    finally:
        if worker is not None:
            local_prefect.stop(worker.pid)
        local_prefect.stop(server.pid)
    load["end"] = [round(v, 2) for v in os.getloadavg()]
    rows = summarize(runs, FARGATE_START_S)
    print_report(rows, {c.name: c for c in cases})
    path = write_results(args.results_dir, started, args, order, runs, rows, load)
    print(f"results: {os.path.relpath(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
