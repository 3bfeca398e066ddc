"""Where ferry's time goes on top of dbt: a raw `dbt build` and a `ferry run` of the same
project, each profiled by py-spy, side by side, against a Prefect server on the same machine.

The synthetic project (bench/synthetic_project.py) is generated once and parsed once (so both
start from the same partial parse), a local server is started with ferry's batching settings,
then each round profiles raw then ferry, then ferry then raw (A B B A), each on a fresh DuckDB
file. py-spy samples every thread of the process; samples whose innermost frame is a wait
(a condition, a selector, a sleep, a pool's idle loop) are left out, because py-spy's
non-idle mode still counts some of them. Each remaining sample is charged to the innermost
frame that belongs to a known owner: ferry (`flows/`), Prefect (`prefect/`, `prefect_dbt/`),
dbt (dbt-core, dbt-common, the adapter, DuckDB, Jinja, agate, mashumaro) or another library
by name; a stack of the standard library only goes to its outermost owner.

It prints, per owner, the active samples of each side (the medians over rounds) and what ferry
adds as a share of raw dbt's active samples; then the innermost frames ferry adds the most
samples to; the wall times and the server's CPU during the ferry runs. Results go to
bench/results/profile-<UTC timestamp>.json.

py-spy is a benchmark's tool, never ferry's dependency: install it where you like, e.g.
`python3 -m pip install --target .ferry/tools py-spy`, then pass `--py-spy
.ferry/tools/bin/py-spy` (default: `py-spy` on PATH).

Usage:
    python bench/profile_run.py [--models 300] [--rounds 1] [--rate 100] [--py-spy PATH] [--keep]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness
from overhead import settle_server
from synthetic_project import DUCKDB_FILE_NAME, TARGET, generate

from flows.prefect import server as local_prefect

BENCH_DIR = Path(__file__).resolve().parent
_SCRUBBED_PREFIXES = ("PREFECT_", "FERRY_", "DBT_", "SYNTH_")
_QUIET_ENV = {"DO_NOT_TRACK": "1", "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
_WAITS = re.compile(
    r"^(Condition\.wait|Event\.wait|Thread\.join|Queue\.get|SimpleQueue\.get|sleep|wait"
    r"|EpollSelector\.select|_PollLikeSelector\.select|_wait_for_tstate_lock"
    r"|_send_heartbeats\.<locals>\.heartbeat_loop"
    r"|Pool\._handle_workers|Pool\._handle_tasks|Pool\._handle_results) "
)
_DBT = {
    "dbt", "dbt_common", "dbt_duckdb", "dbt_adapters", "dbt_semantic_interfaces", "duckdb",
    "jinja2", "agate", "mashumaro", "networkx", "sqlparse",
}  # fmt: skip
_STDLIB = set(sys.stdlib_module_names)


def owner(frame: str) -> str | None:
    """Who a py-spy frame (`function (path:line)`) belongs to; None: the standard library or
    the interpreter."""
    found = re.search(r"\(([^():]+)(?::\d+)?\)$", frame)
    if not found:
        return None
    path = found.group(1).split("site-packages/")[-1]
    top = path.split("/")[0]
    if top == "flows":
        return "ferry"
    if top in ("prefect", "prefect_dbt", "prefect_aws"):
        return "prefect"
    if top in _DBT:
        return "dbt"
    if "/" not in path or top.startswith("<") or top.removesuffix(".py") in _STDLIB:
        return None
    return f"lib:{top}"


@dataclass
class Profile:
    wall_s: float
    waits: int
    by_owner: dict[str, int]
    by_leaf: dict[str, int]
    server_cpu_s: float = 0.0

    @property
    def active(self) -> int:
        return sum(self.by_owner.values())


def read_profile(raw: Path) -> tuple[int, dict[str, int], dict[str, int]]:
    """py-spy's raw (collapsed) output: the waits, then active samples by owner and by
    (owner, innermost frame)."""
    waits = 0
    by_owner: collections.Counter[str] = collections.Counter()
    by_leaf: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames, n = stack.split(";"), int(count)
        if _WAITS.match(frames[-1]):
            waits += n
            continue
        who = next((o for o in map(owner, reversed(frames)) if o), None)
        who = who or next((o for o in map(owner, frames) if o), None) or "python"
        by_owner[who] += n
        by_leaf[f"{who}: {frames[-1]}"] += n
    return waits, dict(by_owner), dict(by_leaf)


def profiled(py_spy: str, rate: int, command: list[str], env: dict[str, str], out: Path) -> float:
    """The command under `py-spy record`; its wall time."""
    log = out.with_suffix(".log")
    with log.open("wb") as stderr:
        started = time.perf_counter()
        proc = subprocess.Popen(
            # --nonblocking: py-spy does not pause the process for each sample; pausing slows a
            # process by how many threads it has, ferry's more than raw dbt's.
            [py_spy, "record", "--nonblocking", "--rate", str(rate), "--format", "raw",
             "--output", str(out), "--", *command],
            env=env, stdout=subprocess.DEVNULL, stderr=stderr,
        )  # fmt: skip
        proc.wait()
        wall = time.perf_counter() - started
    if proc.returncode != 0 or not out.is_file():
        tail = log.read_text(errors="replace")[-2000:]
        raise SystemExit(f"profile_run: {command[0]} failed ({proc.returncode}):\n{tail}")
    return wall


@dataclass
class Side:
    name: str
    runs: list[Profile] = field(default_factory=list)

    def median(self, pick: Callable[[Profile], float]) -> float:
        return statistics.median(pick(p) for p in self.runs)

    def owned(self, who: str) -> float:
        """The median of the active samples charged to `who`."""
        return statistics.median(p.by_owner.get(who, 0) for p in self.runs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=300, help="models in the synthetic project")
    parser.add_argument("--rounds", type=int, default=1, help="repeats of raw ferry ferry raw")
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    parser.add_argument("--py-spy", default="py-spy", help="the py-spy executable")
    parser.add_argument("--keep", action="store_true", help="keep the profiles; print where")
    args = parser.parse_args(argv)
    py_spy = shutil.which(args.py_spy)
    if py_spy is None:
        print(
            f"profile_run: {args.py_spy} not found. Install py-spy for the bench, e.g. "
            "`python3 -m pip install --target .ferry/tools py-spy`, then pass "
            "--py-spy .ferry/tools/bin/py-spy",
            file=sys.stderr,
        )
        return 2
    bin_dir = Path(sys.executable).parent
    work = Path(tempfile.mkdtemp(prefix="ferry-profile-"))
    server = None
    with harness.terminated_as_exit():
        try:
            project = generate(work / "project", models=args.models)
            server = local_prefect.start(work / "server")
            base = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED_PREFIXES)}
            base |= _QUIET_ENV | {"PREFECT_HOME": str(work / "client")}
            where = ["--project-dir", str(project), "--profiles-dir", str(project)]
            commands = {
                "raw": [str(bin_dir / "dbt"), "build", *where, "--target", TARGET],
                "ferry": [str(bin_dir / "ferry"), "run", *where, "--artifacts", str(work / "a")],
            }
            parse = [str(bin_dir / "dbt"), "parse", *where, "--target", TARGET, "--quiet"]
            subprocess.run(parse, env=base, check=True, stdout=subprocess.DEVNULL)
            sides = {name: Side(name) for name in commands}
            order = [n for _ in range(args.rounds) for n in ("raw", "ferry", "ferry", "raw")]
            for i, name in enumerate(order):
                env = base | {"SYNTH_DUCKDB_PATH": str(work / f"{i}-{DUCKDB_FILE_NAME}")}
                if name == "ferry":
                    env |= {"PREFECT_API_URL": server.api_url}
                before = settle_server(server.pid)
                out = work / f"{i}-{name}.txt"
                wall = profiled(py_spy, args.rate, commands[name], env, out)
                after = settle_server(server.pid)
                waits, by_owner, by_leaf = read_profile(out)
                run = Profile(wall, waits, by_owner, by_leaf, after - before)
                sides[name].runs.append(run)
                print(
                    f"  {i + 1:2}  {name:5}  {wall:6.1f} s wall  "
                    f"{run.active:6} active samples  server {run.server_cpu_s:5.1f} s CPU"
                )
        finally:
            if server is not None:
                local_prefect.stop(server.pid)
    raw, ferry = sides["raw"], sides["ferry"]
    print_table(args, raw, ferry)
    results = BENCH_DIR / "results"
    results.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = results / f"profile-{stamp}.json"
    out.write_text(
        json.dumps(
            {
                "models": args.models,
                "rounds": args.rounds,
                "rate": args.rate,
                "environment": harness.environment("dbt-core", "dbt-duckdb", "prefect"),
                "raw": [asdict(p) for p in raw.runs],
                "ferry": [asdict(p) for p in ferry.runs],
            },
            indent=2,
        )
    )
    print(f"results: {out.relative_to(BENCH_DIR.parent)}")
    if args.keep:
        print(f"profiles (py-spy's raw format, one per run): {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def print_table(args: argparse.Namespace, raw: Side, ferry: Side) -> None:
    base = raw.median(lambda p: p.active)
    owners = sorted(
        {o for side in (raw, ferry) for p in side.runs for o in p.by_owner},
        key=lambda o: -ferry.owned(o),
    )
    print(
        f"\n{args.models} models, py-spy at {args.rate} Hz, medians of {len(raw.runs)} run(s) "
        "each; active samples (waits left out), by owner:"
    )
    print(f"  {'owner':22} {'raw':>8} {'ferry':>8} {'added':>8} {'of raw':>8}")
    for who in owners:
        a, b = raw.owned(who), ferry.owned(who)
        if max(a, b) >= base * 0.002:
            print(f"  {who:22} {a:8.0f} {b:8.0f} {b - a:+8.0f} {(b - a) / base:+8.1%}")
    b = ferry.median(lambda p: p.active)
    print(f"  {'all':22} {base:8.0f} {b:8.0f} {b - base:+8.0f} {(b - base) / base:+8.1%}")
    leaves = {leaf for side in (raw, ferry) for p in side.runs for leaf in p.by_leaf}
    added = {
        leaf: statistics.median(p.by_leaf.get(leaf, 0) for p in ferry.runs)
        - statistics.median(p.by_leaf.get(leaf, 0) for p in raw.runs)
        for leaf in leaves
    }
    print("\nthe innermost frames ferry adds the most samples to (ferry's median - raw's):")
    for leaf, n in sorted(added.items(), key=lambda item: -item[1])[:20]:
        print(f"  {n:+7.0f}  {leaf[:110]}")
    wall = ferry.median(lambda p: p.wall_s) / raw.median(lambda p: p.wall_s)
    print(
        f"\nwall: raw {raw.median(lambda p: p.wall_s):.1f} s, ferry "
        f"{ferry.median(lambda p: p.wall_s):.1f} s ({wall:.3f}x), both under py-spy: compare "
        "ratios, not seconds, with bench/overhead.py; active samples / rate ~ the Python "
        f"threads' CPU seconds; the server's CPU during a ferry run "
        f"{ferry.median(lambda p: p.server_cpu_s):.1f} s"
    )


if __name__ == "__main__":
    raise SystemExit(main())
