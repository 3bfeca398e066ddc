"""Measure what ferry adds to a plain `dbt build`: wall time and peak memory, side by side.

ferry promises to cost little on top of dbt (targets: wall <= 1.10x, memory <= 1.25x, its own
CPU <= 1.05x of a raw `dbt build`). This CLI checks that promise on a generated project of
realistic size, against a Prefect server that is already running, as it is in production.

Usage:
    python bench/overhead.py [--models 300] [--rounds 1] [--pin-server] [--keep]
                             [--variants raw,ferry,ferry-off,ferry-final]
                             [--variant NAME=ENVVAR=VALUE,ENVVAR=VALUE ...]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness
from synthetic_project import DUCKDB_FILE_NAME, TARGET, generate

from flows.prefect import server as local_prefect

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
WALL_TARGET = 1.10
MEMORY_TARGET = 1.25
CPU_TARGET = 1.05  # ferry's own processes' CPU: what an ECS task pays
# Inherited settings with these prefixes could point a run at another server, database or
# configuration; every run gets only what this script sets.
_SCRUBBED_PREFIXES = ("PREFECT_", "FERRY_", "DBT_", "SYNTH_")
_SAMPLE_INTERVAL_S = 0.1
_FULL_PARSE_MARK = "Unable to do partial parsing"
_STOP_GRACE_S = 20.0


@dataclass(frozen=True)
class Variant:
    """One way of running the build: raw dbt, or ferry with some extra environment."""

    name: str
    kind: str  # "raw" or "ferry"
    env: tuple[tuple[str, str], ...] = ()


BUILTIN_VARIANTS: dict[str, Variant] = {
    "raw": Variant("raw", "raw"),
    "ferry": Variant("ferry", "ferry"),  # default per-node reporting: live
    "ferry-off": Variant("ferry-off", "ferry", (("FERRY_NODE_REPORTING", "off"),)),
    "ferry-final": Variant("ferry-final", "ferry", (("FERRY_NODE_REPORTING", "final"),)),
}


@dataclass(frozen=True)
class RunResult:
    """One timed run. Peak memory is the larger of the two measures, see `peak_mb`."""

    variant: str
    sequence: int
    wall_s: float
    maxrss_mb: float  # os.wait4: the largest single process in the tree
    tree_rss_mb: float  # sampled every 0.1 s: the sum over the whole tree
    full_parse: bool  # dbt said it could not parse partially: the run parsed from scratch
    cpu_s: float = 0.0  # os.wait4: user + system CPU of the run's process tree
    server_cpu_s: float = 0.0  # CPU the co-located Prefect server spent on this run

    @property
    def peak_mb(self) -> float:
        """Largest of both: wait4 sees short peaks, the sampled sum sees helper processes."""
        return max(self.maxrss_mb, self.tree_rss_mb)


@dataclass
class VariantSummary:
    """Medians and ratios of one variant against raw."""

    variant: str
    env: dict[str, str]
    runs: list[dict[str, float | bool]] = field(default_factory=list)
    median_wall_s: float = 0.0
    median_peak_mb: float = 0.0
    median_cpu_s: float = 0.0
    median_server_cpu_s: float = 0.0
    wall_ratio: float | None = None
    memory_ratio: float | None = None
    cpu_ratio: float | None = None
    verdict: str = "n/a"


class BenchError(RuntimeError):
    """A step of the benchmark failed; the message says which and what it printed."""


def parse_variant(spec: str) -> Variant:
    """Parse `NAME=ENVVAR=VALUE,ENVVAR=VALUE` into a ferry variant run with that environment."""
    name, sep, rest = spec.partition("=")
    pairs = [pair for pair in rest.split(",") if pair]
    if not name or not sep or not pairs or any("=" not in pair for pair in pairs):
        raise ValueError(f"--variant wants NAME=ENVVAR=VALUE[,ENVVAR=VALUE...], got {spec!r}")
    env = tuple((key, value) for key, _, value in (pair.partition("=") for pair in pairs))
    return Variant(name, "ferry", env)


def run_order(names: list[str], rounds: int) -> list[str]:
    """A B B A per round (A B C C B A for three): drift over time hits every variant alike."""
    return (names + names[::-1]) * rounds


# --- processes -------------------------------------------------------------------------------


def _parent_map() -> dict[int, int]:
    """pid -> ppid for every process; /proc/<pid>/task/*/children is not in every kernel."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses; the fields after the last ")" don't.
        parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


def descendants(pid: int) -> list[int]:
    """Every live process below `pid`, children first."""
    children: dict[int, list[int]] = {}
    for child, parent in _parent_map().items():
        children.setdefault(parent, []).append(child)
    found: list[int] = []
    queue = list(children.get(pid, []))
    while queue:
        current = queue.pop(0)
        found.append(current)
        queue.extend(children.get(current, []))
    return found


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process and everything below it."""
    total = 0
    for each in [pid, *descendants(pid)]:
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _CLOCK_TICKS


def writer_limit(api_url: str) -> None:
    """The environment's writer limit, as `ferry release deploy` leaves it: each ferry run
    takes and gives back its slot, as it does in production (without it, it only warns)."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.prefect.holds import apply_limits
    from flows.settings import RunSettings

    async def apply() -> None:
        async with get_client() as client:
            await apply_limits(
                [RunSettings.model_fields["env"].default], client
            )  # runs: no FERRY_ENV

    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        asyncio.run(apply())


def pin_tree(pid: int, cpus: set[int]) -> None:
    """Every thread of `pid` and of its descendants on `cpus` (threads started later inherit
    it from the thread that starts them)."""
    for process in (pid, *descendants(pid)):
        with suppress(FileNotFoundError):
            for task in Path(f"/proc/{process}/task").iterdir():
                with suppress(ProcessLookupError):
                    os.sched_setaffinity(int(task.name), cpus)


def split_cpus() -> tuple[set[int], set[int]]:
    """(the runs' CPUs, the server's CPU): the last CPU for the server, the rest for the runs."""
    cpus = sorted(os.sched_getaffinity(0))
    return set(cpus[:-1]), {cpus[-1]}


def settle_server(pid: int, timeout_s: float = 60.0) -> float:
    """Waits until the server stops working on the last run's events; returns its CPU so far.

    The server records task runs from events after the client has exited; without this, one
    run's events would be processed during (and slow down) the next run.
    """
    last = tree_cpu_s(pid)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = tree_cpu_s(pid)
        if now - last < 0.05:
            return now
        last = now
    return last


class _TreeRssSampler(threading.Thread):
    """Samples the summed RSS of a process tree, which wait4's ru_maxrss cannot give."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self._pid = pid
        self._done = threading.Event()
        self.peak_kb = 0

    def run(self) -> None:
        while not self._done.is_set():
            total = sum(_rss_kb(pid) for pid in [self._pid, *descendants(self._pid)])
            self.peak_kb = max(self.peak_kb, total)
            self._done.wait(_SAMPLE_INTERVAL_S)

    def stop(self) -> None:
        self._done.set()
        self.join()


def _stop_pid(pid: int, grace_s: float = _STOP_GRACE_S) -> None:
    """SIGTERM one process we started, then SIGKILL if it outlives the grace period."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists() or _is_zombie(pid):
            return
        time.sleep(0.2)
    with suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _clean_env(extra: Mapping[str, str]) -> dict[str, str]:
    return harness.clean_env(_SCRUBBED_PREFIXES, extra)


# --- Prefect server --------------------------------------------------------------------------


@contextmanager
def prefect_server(work_dir: Path, cpus: set[int] | None) -> Iterator[local_prefect.LocalServer]:
    """A throwaway Prefect server on a free port (ferry's own helper); always stopped by pid.
    With `cpus`, the server and every thread and process of it run on those CPUs only."""
    try:
        server = local_prefect.start(work_dir / "prefect-server")
    except RuntimeError as exc:
        raise BenchError(str(exc)) from exc
    where = ""
    if cpus is not None:
        pin_tree(server.pid, cpus)
        where = f", pinned to CPU {','.join(map(str, sorted(cpus)))}"
    print(f"prefect server: pid {server.pid}, {server.api_url}{where}")
    writer_limit(server.api_url)
    try:
        yield server
    finally:
        local_prefect.stop(server.pid)
        print("prefect server: stopped")


# --- runs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Context:
    """What every run needs: where things are and how to reach the server."""

    bin_dir: Path
    project: Path
    runs_dir: Path
    api_url: str
    client_home: Path
    db_dir: Path
    server_pid: int
    cpus: set[int] | None = None  # the runs' CPUs, when the server has its own

    @property
    def db_path(self) -> Path:
        return self.db_dir / DUCKDB_FILE_NAME

    def fresh_db(self) -> Path:
        """Empty the database folder: a new file each run, at the same path every run.

        The path must not change: dbt hashes the profile's connection values, path included,
        into its partial-parse state, so a new path per run would make every run parse the
        project from scratch, which production (with a parsed manifest) never does.
        """
        shutil.rmtree(self.db_dir, ignore_errors=True)
        self.db_dir.mkdir(parents=True)
        return self.db_path


def _dbt(ctx: _Context, command: str) -> list[str]:
    """A raw dbt command on the project, naming its target as ferry does."""
    where = ["--project-dir", str(ctx.project), "--profiles-dir", str(ctx.project)]
    return [str(ctx.bin_dir / "dbt"), command, *where, "--target", TARGET]


def _command(variant: Variant, ctx: _Context, artifacts: Path) -> list[str]:
    project = str(ctx.project)
    if variant.kind == "raw":
        return _dbt(ctx, "build")
    return [
        str(ctx.bin_dir / "ferry"),
        "run",
        "--project-dir",
        project,
        "--profiles-dir",
        project,
        "--artifacts",
        str(artifacts),
    ]


def _command_template(variant: Variant) -> str:
    """The command with placeholders, fit for the results file (no paths of this machine)."""
    if variant.kind == "raw":
        return f"dbt build --project-dir <project> --profiles-dir <project> --target {TARGET}"
    return "ferry run --project-dir <project> --profiles-dir <project> --artifacts <tmp>"


def run_once(variant: Variant, ctx: _Context, sequence: int) -> RunResult:
    """Run one variant on a fresh DuckDB file; time it and take its peak memory."""
    run_dir = ctx.runs_dir / f"{sequence:02d}-{variant.name}"
    artifacts = run_dir / "artifacts"
    artifacts.mkdir(parents=True)
    extra = {"SYNTH_DUCKDB_PATH": str(ctx.fresh_db())}
    if variant.kind == "ferry":
        extra |= {"PREFECT_API_URL": ctx.api_url, "PREFECT_HOME": str(ctx.client_home)}
    extra |= dict(variant.env)
    stdout_path, stderr_path = run_dir / "stdout.log", run_dir / "stderr.log"
    server_cpu_before = settle_server(ctx.server_pid)
    with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
        start = time.perf_counter()
        process = subprocess.Popen(
            _command(variant, ctx, artifacts),
            cwd=run_dir,
            env=_clean_env(extra),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            # Set in the child before it runs dbt or ferry; its threads and processes inherit it.
            preexec_fn=None
            if ctx.cpus is None
            else functools.partial(os.sched_setaffinity, 0, ctx.cpus),
        )
        sampler = _TreeRssSampler(process.pid)
        sampler.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        except BaseException:
            _stop_pid(process.pid)
            raise
        finally:
            sampler.stop()
        wall_s = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, so tell Popen
    if process.returncode != 0:
        raise BenchError(
            f"{variant.name} exited {process.returncode}\n"
            f"--- stderr (tail) ---\n{harness.tail(stderr_path)}\n"
            f"--- stdout (tail) ---\n{harness.tail(stdout_path)}"
        )
    # ru_maxrss is KiB on Linux, bytes on macOS.
    maxrss_kb = usage.ru_maxrss / 1024 if sys.platform == "darwin" else usage.ru_maxrss
    server_cpu = settle_server(ctx.server_pid) - server_cpu_before
    return RunResult(
        variant.name,
        sequence,
        wall_s,
        maxrss_kb / 1024,
        sampler.peak_kb / 1024,
        _parsed_from_scratch(run_dir),
        cpu_s=usage.ru_utime + usage.ru_stime,
        server_cpu_s=server_cpu,
    )


def _parsed_from_scratch(run_dir: Path) -> bool:
    """Whether any log of this run (its output, dbt.log among the artifacts) shows a full parse.

    A variant that parses from scratch pays seconds the other does not; the table flags it so
    the ratio is read for what it is.
    """
    for path in run_dir.rglob("*.log"):
        with path.open(errors="replace") as log:
            if any(_FULL_PARSE_MARK in line for line in log):
                return True
    return False


def warm_parse(ctx: _Context) -> dict[str, int]:
    """Parse once, untimed, so every timed run starts from the same partial-parse state."""
    warm_dir = ctx.runs_dir / "00-warm-parse"
    warm_dir.mkdir(parents=True)
    completed = subprocess.run(
        _dbt(ctx, "parse"),
        cwd=warm_dir,
        env=_clean_env({"SYNTH_DUCKDB_PATH": str(ctx.fresh_db())}),
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise BenchError(f"dbt parse failed:\n{completed.stdout[-4000:]}{completed.stderr[-4000:]}")
    manifest = json.loads((ctx.project / "target" / "manifest.json").read_text())
    counts: dict[str, int] = {}
    for node in manifest["nodes"].values():
        counts[node["resource_type"]] = counts.get(node["resource_type"], 0) + 1
    return counts


def check_ferry(bin_dir: Path) -> None:
    """Fail before the long part if the ferry CLI cannot even start."""
    ferry = bin_dir / "ferry"
    if not ferry.exists():
        raise BenchError(f"{ferry} not found; install the project (uv sync) or drop ferry variants")
    completed = subprocess.run(
        [str(ferry), "run", "--help"],
        env=_clean_env({}),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if completed.returncode != 0:
        raise BenchError(
            f"`ferry run --help` exited {completed.returncode}; is the CLI in place?\n"
            f"{completed.stderr[-2000:]}"
        )


# --- report ----------------------------------------------------------------------------------


def summarize(variants: list[Variant], results: list[RunResult]) -> list[VariantSummary]:
    """Medians per variant and their ratios to raw's medians, with a PASS/MISS verdict."""
    summaries: list[VariantSummary] = []
    for variant in variants:
        runs = [r for r in results if r.variant == variant.name]
        summary = VariantSummary(variant.name, dict(variant.env))
        summary.runs = [
            {
                "sequence": r.sequence,
                "wall_s": round(r.wall_s, 3),
                "peak_mb": round(r.peak_mb, 1),
                "maxrss_mb": round(r.maxrss_mb, 1),
                "tree_rss_mb": round(r.tree_rss_mb, 1),
                "full_parse": r.full_parse,
                "cpu_s": round(r.cpu_s, 2),
                "server_cpu_s": round(r.server_cpu_s, 2),
            }
            for r in runs
        ]
        summary.median_cpu_s = round(statistics.median(r.cpu_s for r in runs), 2)
        summary.median_server_cpu_s = round(statistics.median(r.server_cpu_s for r in runs), 2)
        summary.median_wall_s = round(statistics.median(r.wall_s for r in runs), 3)
        summary.median_peak_mb = round(statistics.median(r.peak_mb for r in runs), 1)
        summaries.append(summary)
    raw = next((s for s in summaries if s.variant == "raw"), None)
    for summary in summaries:
        if raw is None:
            continue
        summary.wall_ratio = round(summary.median_wall_s / raw.median_wall_s, 3)
        summary.memory_ratio = round(summary.median_peak_mb / raw.median_peak_mb, 3)
        summary.cpu_ratio = round(summary.median_cpu_s / raw.median_cpu_s, 3)
        if summary is raw:
            summary.verdict = "baseline"
        else:
            ok = (
                summary.wall_ratio <= WALL_TARGET
                and summary.memory_ratio <= MEMORY_TARGET
                and summary.cpu_ratio <= CPU_TARGET
            )
            summary.verdict = "PASS" if ok else "MISS"
    return summaries


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}x"


def _runs_cell(summary: VariantSummary) -> str:
    return "  ".join(
        f"{r['wall_s']:.2f}/{r['peak_mb']:.0f}" + ("*" if r["full_parse"] else "")
        for r in summary.runs
    )


def print_table(summaries: list[VariantSummary]) -> None:
    """One line per variant: each run, the medians, the ratios to raw and the verdict."""
    name_width = max(len("variant"), *(len(s.variant) for s in summaries))
    runs_width = max(
        len("runs: wall s / peak MB"),
        *(len(_runs_cell(s)) for s in summaries),
    )
    header = (
        f"{'variant':<{name_width}}  {'runs: wall s / peak MB':<{runs_width}}  "
        f"{'median s':>9}  {'median MB':>9}  {'wall':>7}  {'memory':>7}  "
        f"{'cpu':>7}  {'srv cpu s':>9}  verdict"
    )
    print()
    print(header)
    print("-" * len(header))
    for s in summaries:
        runs = _runs_cell(s)
        print(
            f"{s.variant:<{name_width}}  {runs:<{runs_width}}  {s.median_wall_s:>9.2f}  "
            f"{s.median_peak_mb:>9.1f}  {_ratio(s.wall_ratio):>7}  {_ratio(s.memory_ratio):>7}  "
            f"{_ratio(s.cpu_ratio):>7}  {s.median_server_cpu_s:>9.1f}  {s.verdict}"
        )
    print(
        f"targets vs raw: wall <= {WALL_TARGET:.2f}x, memory <= {MEMORY_TARGET:.2f}x, "
        f"cpu <= {CPU_TARGET:.2f}x (medians)"
    )
    print(
        "cpu: user+system CPU of the run's own processes vs raw (what an ECS task pays); "
        "srv cpu s: CPU the co-located Prefect server spent recording the run"
    )
    if any(r["full_parse"] for s in summaries for r in s.runs):
        print("* this run parsed the project from scratch (dbt could not parse partially)")


def _warn_if_busy(load: list[float]) -> None:
    """Say so when the machine is already busy: the spread of the runs will show it."""
    cpus = os.cpu_count() or 1
    if load[0] > cpus / 2:
        print(f"note: load average {load[0]} on {cpus} CPUs before starting; expect noise")


def write_results(
    results_dir: Path,
    started: datetime,
    args: argparse.Namespace,
    variants: list[Variant],
    order: list[str],
    node_counts: dict[str, int],
    summaries: list[VariantSummary],
    load: dict[str, list[float]],
) -> Path:
    """Write the run as JSON; only relative facts, never a path of this machine."""
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"overhead-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    payload = {
        "started_at": started.isoformat(),
        "models": args.models,
        "seed": args.seed,
        "rounds": args.rounds,
        "pin_server": args.pin_server,
        "nodes": node_counts,
        "order": order,
        "targets": {
            "wall_ratio_max": WALL_TARGET,
            "memory_ratio_max": MEMORY_TARGET,
            "cpu_ratio_max": CPU_TARGET,
        },
        "commands": {v.name: _command_template(v) for v in variants},
        "variants": [asdict(s) for s in summaries],
        "environment": harness.environment("dbt-core", "dbt-duckdb", "prefect"),
        "load_average": load,
    }
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return path


# --- CLI -------------------------------------------------------------------------------------


def _select_variants(names: str, custom: list[Variant]) -> list[Variant]:
    known = BUILTIN_VARIANTS | {v.name: v for v in custom}
    selected = [name.strip() for name in names.split(",") if name.strip()]
    # A variant defined with --variant runs even when --variants does not name it.
    selected += [v.name for v in custom if v.name not in selected]
    unknown = [name for name in selected if name not in known]
    if unknown:
        raise ValueError(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(known)}")
    if len(set(selected)) != len(selected):
        raise ValueError(f"variant listed twice in {selected}")
    return [known[name] for name in selected]


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=300, help="models in the synthetic project")
    parser.add_argument("--seed", type=int, default=0, help="synthetic project seed")
    parser.add_argument("--rounds", type=int, default=1, help="repeats of the A B B A pattern")
    parser.add_argument(
        "--variants",
        default="raw,ferry",
        help=f"comma-separated, from {', '.join(BUILTIN_VARIANTS)} (default raw,ferry)",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=ENVVAR=VALUE,...",
        help="an extra ferry variant with this environment (repeatable)",
    )
    parser.add_argument(
        "--pin-server",
        action="store_true",
        help="the server on the last CPU, the runs on the others: the ECS task's view, where "
        "the server is not in the task (needs 2 CPUs or more)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir and print it")
    parser.add_argument(
        "--bin-dir",
        type=Path,
        default=REPO_ROOT / ".venv" / "bin",
        help="where dbt, prefect and ferry live (default: the repo's .venv/bin)",
    )
    parser.add_argument("--results-dir", type=Path, default=BENCH_DIR / "results")
    args = parser.parse_args(argv)
    if args.models < 1 or args.rounds < 1:
        parser.error("--models and --rounds must be at least 1")
    if args.pin_server and len(os.sched_getaffinity(0)) < 2:
        parser.error("--pin-server needs at least 2 CPUs")
    try:
        args.selected = _select_variants(args.variants, [parse_variant(s) for s in args.variant])
    except ValueError as error:
        parser.error(str(error))
    return args


def main(argv: list[str] | None = None) -> int:
    """Generate, warm, start the server, run the variants A B B A, report, clean up."""
    args = _parse_args(argv)
    variants: list[Variant] = args.selected
    started = datetime.now(UTC)
    load = {"start": harness.load_average()}
    _warn_if_busy(load["start"])
    work_dir = Path(tempfile.mkdtemp(prefix="ferry-bench-"))
    try:
        with harness.terminated_as_exit():  # a SIGTERM still stops the server and the run
            return _bench(args, variants, started, load, work_dir)
    except BenchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"kept: {work_dir}")
        else:
            shutil.rmtree(work_dir, ignore_errors=True)


def _bench(
    args: argparse.Namespace,
    variants: list[Variant],
    started: datetime,
    load: dict[str, list[float]],
    work_dir: Path,
) -> int:
    """The benchmark itself, in `work_dir`; `main` cleans up however it ends."""
    if any(v.kind == "ferry" for v in variants):
        check_ferry(args.bin_dir)
    project = generate(work_dir / "project", models=args.models, seed=args.seed)
    client_home = work_dir / "prefect-client"
    client_home.mkdir()
    run_cpus, server_cpus = split_cpus() if args.pin_server else (None, None)
    with prefect_server(work_dir, server_cpus) as server:
        ctx = _Context(
            args.bin_dir,
            project,
            work_dir / "runs",
            server.api_url,
            client_home,
            work_dir / "db",
            server.pid,
            run_cpus,
        )
        node_counts = warm_parse(ctx)
        print(f"project: {args.models} models, nodes {node_counts} (warm parse done)")
        order = run_order([v.name for v in variants], args.rounds)
        by_name = {v.name: v for v in variants}
        results: list[RunResult] = []
        for sequence, name in enumerate(order, start=1):
            result = run_once(by_name[name], ctx, sequence)
            results.append(result)
            print(
                f"[{sequence}/{len(order)}] {name}: {result.wall_s:.2f} s, "
                f"{result.peak_mb:.0f} MB (maxrss {result.maxrss_mb:.0f}, "
                f"tree {result.tree_rss_mb:.0f})"
                + (" [parsed from scratch]" if result.full_parse else ""),
                flush=True,
            )
    load["end"] = harness.load_average()
    summaries = summarize(variants, results)
    print_table(summaries)
    path = write_results(
        args.results_dir, started, args, variants, order, node_counts, summaries, load
    )
    print(f"results: {os.path.relpath(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
