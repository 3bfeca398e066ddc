"""Measure the image's start-up: process start to the first dbt node, baked parse vs cold parse.

A run in a fresh container pays, before its first node: Python's imports, the Prefect flow run,
dbt's parse, the selection check. The image bakes dbt's parse state at build time
(`ferry release bake`, docs/image.md), so the parse only checks what changed. This CLI measures
both ways side by side on the synthetic project, with the image's own venv: docker/Dockerfile's
install steps are performed first (docker/image_recipe.py, no Docker engine needed), which also
gives the size of the runtime dependency closure, compared with the full development venv.

Usage:
    python bench/startup.py [--models 300] [--rounds 2] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(0, str(REPO_ROOT / "docker"))
from image_recipe import Recipe, RecipeError, install_uv  # noqa: E402
from overhead import BenchError, prefect_server, run_order  # noqa: E402
from synthetic_project import DUCKDB_FILE_NAME, generate  # noqa: E402

DOCKERFILE = REPO_ROOT / "docker" / "Dockerfile"
ENV_NAME = "bench"
TARGET = "duckdb"
VARIANTS = ("baked", "cold")
_SCRUBBED = ("PREFECT_", "FERRY_", "DBT_", "SYNTH_", "VIRTUAL_ENV")
_POLL_S = 0.02
_RUN_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class StartupRun:
    """One run, stopped once its first node started. Times are from the process's start."""

    variant: str
    sequence: int
    dbt_started_s: float  # dbt's first event (its parse begins): imports and the flow run
    first_node_s: float  # dbt's first NodeStart
    full_parse: bool  # dbt said it could not parse partially


@dataclass(frozen=True)
class Closure:
    """A venv on disk."""

    name: str
    distributions: int
    files: int
    size_mb: float
    size_without_bytecode_mb: float


# --- the image's venv and its size -------------------------------------------------------------


def build_image(root: Path, log: Path) -> Path:
    """Performs the Dockerfile's builder stage into `root`; returns the venv's bin folder."""
    recipe = Recipe.load(DOCKERFILE)
    tools = root / "tools"
    install_uv(tools, recipe.uv_version())
    host = {**os.environ, "PATH": f"{tools}:{os.environ['PATH']}"}
    roots = {"/app": root / "app", "/tmp": root / "tmp"}
    started = time.perf_counter()
    recipe.replay("builder", REPO_ROOT, roots, host_env=host, log=log)
    elapsed = time.perf_counter() - started
    print(f"image recipe performed in {elapsed:.0f} s (uv {recipe.uv_version()})")
    return root / "app" / ".venv" / "bin"


def measure_closure(name: str, venv: Path) -> Closure:
    """Distributions, files and size on disk (each inode once) of a venv."""
    seen: set[int] = set()
    files = total = bytecode = 0
    for folder, _, names in os.walk(venv):
        for file_name in names:
            stat = os.lstat(os.path.join(folder, file_name))
            if stat.st_ino in seen:
                continue
            seen.add(stat.st_ino)
            files += 1
            size = stat.st_blocks * 512
            total += size
            if file_name.endswith(".pyc"):
                bytecode += size
    site = next((venv / "lib").glob("python3*/site-packages"))
    dists = len(list(site.glob("*.dist-info")))
    return Closure(
        name, dists, files, round(total / 2**20, 1), round((total - bytecode) / 2**20, 1)
    )


# --- runs --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Context:
    bin_dir: Path
    project: Path
    baked_dir: Path
    runs_dir: Path
    db_dir: Path
    api_url: str
    client_home: Path


def _env(extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED)}
    env.update({"DO_NOT_TRACK": "1", "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"})
    env.update(extra)
    return env


def bake(ctx: _Context) -> None:
    """`ferry release bake` of the synthetic project, as the image's build does for its own."""
    started = time.perf_counter()
    done = subprocess.run(
        [
            str(ctx.bin_dir / "ferry"),
            "release",
            "bake",
            "--env",
            ENV_NAME,
            "--target",
            TARGET,
            "--baked-dir",
            str(ctx.baked_dir),
            "--project-dir",
            str(ctx.project),
            "--profiles-dir",
            str(ctx.project),
        ],
        env=_env({"SYNTH_DUCKDB_PATH": str(ctx.db_dir / DUCKDB_FILE_NAME)}),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        output = f"{done.stdout[-3000:]}{done.stderr[-3000:]}"
        raise BenchError(f"ferry release bake failed:\n{output}")
    print(f"{done.stdout.strip()} ({time.perf_counter() - started:.0f} s)")


def run_once(variant: str, ctx: _Context, sequence: int) -> StartupRun:
    """Starts `ferry run` as a new container would (empty target path) and stops it once dbt
    starts its first node; the times come from dbt's own JSON log."""
    run_dir = ctx.runs_dir / f"{sequence:02d}-{variant}"
    run_dir.mkdir(parents=True)
    shutil.rmtree(ctx.db_dir, ignore_errors=True)  # a new file, at the path the bake hashed
    ctx.db_dir.mkdir(parents=True)
    extra = {
        "SYNTH_DUCKDB_PATH": str(ctx.db_dir / DUCKDB_FILE_NAME),
        "PREFECT_API_URL": ctx.api_url,
        "PREFECT_HOME": str(ctx.client_home),
        "FERRY_ENV": ENV_NAME,
        "FERRY_TARGET": TARGET,
        "FERRY_PROJECT_DIR": str(ctx.project),
        "FERRY_PROFILES_DIR": str(ctx.project),
        "FERRY_TARGET_PATH": str(run_dir / "target"),
        "FERRY_WORK_DIR": str(run_dir / "work"),
        "FERRY_ARTIFACTS": str(run_dir / "artifacts"),
        "DBT_LOG_FORMAT_FILE": "json",  # timestamps in microseconds, events by name
    }
    if variant == "baked":
        extra["FERRY_BAKED_DIR"] = str(ctx.baked_dir)
    with (run_dir / "output.log").open("wb") as out:
        started = time.time()  # wall clock: compared with dbt's UTC timestamps
        process = subprocess.Popen(
            [str(ctx.bin_dir / "ferry"), "run"],
            cwd=run_dir,
            env=_env(extra),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            events = _wait_for_first_node(process, run_dir / "work")
        finally:
            _stop(process)
    first_ts = events[0]["info"]["ts"]
    node_ts = next(e["info"]["ts"] for e in events if e["info"]["name"] == "NodeStart")
    return StartupRun(
        variant,
        sequence,
        dbt_started_s=round(_epoch(first_ts) - started, 3),
        first_node_s=round(_epoch(node_ts) - started, 3),
        full_parse=any(e["info"]["name"] == "UnableToPartialParse" for e in events),
    )


def _wait_for_first_node(process: subprocess.Popen[bytes], work_dir: Path) -> list[dict]:
    """dbt's log events up to its first NodeStart, read as dbt writes them."""
    deadline = time.monotonic() + _RUN_TIMEOUT_S
    offset, events, pending = 0, [], ""
    log: Path | None = None
    while time.monotonic() < deadline:
        if log is None:
            log = next(work_dir.glob("*/dbt.log"), None)
        if log is not None:
            with log.open() as handle:
                handle.seek(offset)
                pending += handle.read()
                offset = handle.tell()
            *lines, pending = pending.split("\n")
            for line in lines:
                if line.strip():
                    events.append(json.loads(line))
                    if events[-1]["info"]["name"] == "NodeStart":
                        return events
        if process.poll() is not None:
            raise BenchError(f"ferry run exited {process.returncode} before any dbt node started")
        time.sleep(_POLL_S)
    raise BenchError(f"no dbt node started within {_RUN_TIMEOUT_S:.0f} s")


def _epoch(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stops the run we started (by its pid): SIGTERM, then SIGKILL after 20 s."""
    if process.poll() is not None:
        return
    with suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)
        process.wait()


# --- report ------------------------------------------------------------------------------------


def report(runs: list[StartupRun], closures: list[Closure]) -> dict[str, object]:
    """Medians per variant, their ratio, and the venvs side by side."""
    medians: dict[str, dict[str, float]] = {}
    print()
    print(
        f"{'variant':<8}  {'runs: first node s (dbt started s)':<56}  {'median':>7}  "
        f"{'dbt at':>7}  {'dbt to node':>11}"
    )
    for variant in VARIANTS:
        mine = [r for r in runs if r.variant == variant]
        cells = "  ".join(
            f"{r.first_node_s:.2f} ({r.dbt_started_s:.2f})" + ("*" if r.full_parse else "")
            for r in mine
        )
        first = statistics.median(r.first_node_s for r in mine)
        dbt_at = statistics.median(r.dbt_started_s for r in mine)
        in_dbt = statistics.median(r.first_node_s - r.dbt_started_s for r in mine)
        medians[variant] = {
            "first_node_s": round(first, 3),
            "dbt_started_s": round(dbt_at, 3),
            "dbt_to_first_node_s": round(in_dbt, 3),
        }
        print(f"{variant:<8}  {cells:<56}  {first:>7.2f}  {dbt_at:>7.2f}  {in_dbt:>11.2f}")
    baked, cold = medians["baked"], medians["cold"]
    ratio = round(baked["first_node_s"] / cold["first_node_s"], 3)
    in_dbt_ratio = round(baked["dbt_to_first_node_s"] / cold["dbt_to_first_node_s"], 3)
    print(
        f"baked / cold: {ratio:.2f}x from process start "
        f"({cold['first_node_s'] - baked['first_node_s']:.1f} s sooner); {in_dbt_ratio:.2f}x "
        "from dbt's start (parse, selection check, first node). * = dbt parsed from scratch"
    )
    print()
    print(
        f"{'venv':<28}  {'distributions':>13}  {'files':>7}  {'size MB':>8}  {'without .pyc':>12}"
    )
    for c in closures:
        print(
            f"{c.name:<28}  {c.distributions:>13}  {c.files:>7}  {c.size_mb:>8.1f}  "
            f"{c.size_without_bytecode_mb:>12.1f}"
        )
    return {
        "medians": medians,
        "baked_over_cold": ratio,
        "baked_over_cold_from_dbt_start": in_dbt_ratio,
    }


def write_results(results_dir: Path, started: datetime, payload: dict[str, object]) -> Path:
    """The run as JSON; relative facts only, never a path of this machine."""
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"startup-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return path


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=300, help="models in the synthetic project")
    parser.add_argument("--seed", type=int, default=0, help="synthetic project seed")
    parser.add_argument("--rounds", type=int, default=2, help="repeats of baked cold cold baked")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir and print it")
    parser.add_argument(
        "--dev-venv",
        type=Path,
        default=REPO_ROOT / ".venv",
        help="the full development venv to compare the closure with (default: the repo's)",
    )
    parser.add_argument("--results-dir", type=Path, default=BENCH_DIR / "results")
    args = parser.parse_args(argv)
    if args.models < 1 or args.rounds < 1:
        parser.error("--models and --rounds must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Perform the image recipe, bake, start a server, run baked/cold A B B A, report."""
    args = _parse_args(argv)
    started = datetime.now(UTC)
    work = Path(tempfile.mkdtemp(prefix="ferry-startup-"))
    try:
        bin_dir = build_image(work / "image", work / "image-build.log")
        closures = [measure_closure("image (--no-default-groups)", bin_dir.parent)]
        if args.dev_venv.is_dir():
            closures.append(measure_closure("development (dev + infra)", args.dev_venv))
        project = generate(work / "project", models=args.models, seed=args.seed)
        client_home = work / "prefect-client"
        client_home.mkdir()
        with prefect_server(work) as server:
            ctx = _Context(
                bin_dir,
                project,
                work / "baked",
                work / "runs",
                work / "db",
                server.api_url,
                client_home,
            )
            ctx.db_dir.mkdir()
            bake(ctx)
            runs: list[StartupRun] = []
            order = run_order(list(VARIANTS), args.rounds)
            for sequence, variant in enumerate(order, start=1):
                run = run_once(variant, ctx, sequence)
                runs.append(run)
                print(
                    f"[{sequence}/{len(order)}] {variant}: first node at {run.first_node_s:.2f} s "
                    f"(dbt started at {run.dbt_started_s:.2f} s)"
                    + (" [parsed from scratch]" if run.full_parse else ""),
                    flush=True,
                )
        summary = report(runs, closures)
        path = write_results(
            args.results_dir,
            started,
            {
                "started_at": started.isoformat(),
                "models": args.models,
                "seed": args.seed,
                "rounds": args.rounds,
                "order": order,
                "command": "ferry run (FERRY_BAKED_DIR set for baked), stopped at the first node",
                "runs": [asdict(r) for r in runs],
                **summary,
                "closures": [asdict(c) for c in closures],
                "environment": {
                    "python": platform.python_version(),
                    "platform": platform.platform(),
                    "cpu_count": os.cpu_count(),
                    "load_average": [round(v, 2) for v in os.getloadavg()],
                },
            },
        )
        print(f"results: {os.path.relpath(path)}")
    except (BenchError, RecipeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
