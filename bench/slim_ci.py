"""Slim CI vs a full build, on the synthetic project: what a pull request saves.

Production builds once and keeps its manifest (the state). One leaf model is then changed, as a
pull request would, and two CI strategies run side by side, in the order A B B A (so drift
on a busy machine hits both alike):

  full  ferry run --no-prefect                                   (every node, own schema)
  slim  ferry run --no-prefect --select state:modified+ --defer  (what changed, own schema)

Both are the same `ferry` process CI runs, on DuckDB; wall time from process start to exit.

Usage:
    python bench/slim_ci.py [--models 300] [--rounds 1]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synthetic_project import DUCKDB_FILE_NAME, generate

REPO = Path(__file__).resolve().parents[1]
FERRY = str(Path(sys.executable).with_name("ferry"))


def leaf_model(project: Path) -> Path:
    """A model no other model refs: the cheapest change a pull request can make."""
    models = sorted(project.glob("models/**/*.sql"))
    referenced = {m for path in models for m in re.findall(r"ref\('([^']+)'\)", path.read_text())}
    leaves = [path for path in models if path.stem not in referenced]
    return leaves[-1]


def ferry(project: Path, db: Path, *args: str) -> tuple[float, dict]:
    env = {**os.environ, "SYNTH_DUCKDB_PATH": str(db)}
    env.pop("PREFECT_API_URL", None)
    started = time.perf_counter()
    done = subprocess.run(
        [
            FERRY,
            "run",
            "--no-prefect",
            "--json",
            "--project-dir",
            str(project),
            "--profiles-dir",
            str(project),
            *args,
        ],
        env=env,
        capture_output=True,
        text=True,
        cwd=project.parent,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(
            f"ferry {' '.join(args)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
        )
    return elapsed, json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=1, help="A B B A repeated this often")
    parser.add_argument("--work", type=Path, default=REPO / ".ferry" / "bench" / "slim-ci")
    args = parser.parse_args(argv)

    shutil.rmtree(args.work, ignore_errors=True)
    project = generate(args.work / "project", models=args.models)
    db = args.work / DUCKDB_FILE_NAME
    store = args.work / "prod-store"
    prod_s, prod = ferry(project, db, "--env", "prod", "--artifacts", str(store))
    print(f"production build: {prod['nodes_total']} nodes in {prod_s:.1f} s (state kept)")

    leaf = leaf_model(project)
    leaf.write_text(leaf.read_text() + "\n-- changed by a pull request\n")
    print(f"changed one leaf model: {leaf.stem}")

    strategies = {
        "full": ["--env", "ci-full", "--target-schema", "ci_full"],
        "slim": [
            "--env",
            "ci-pr-1",
            "--target-schema",
            "ci_pr_1",
            "--select",
            "state:modified+",
            "--defer",
            "--state-from",
            str(store),
        ],
    }
    times: dict[str, list[float]] = {"full": [], "slim": []}
    nodes: dict[str, int] = {}
    for name in ["full", "slim", "slim", "full"] * args.rounds:
        elapsed, summary = ferry(
            project, db, "--artifacts", str(args.work / "ci"), *strategies[name]
        )
        times[name].append(elapsed)
        nodes[name] = summary["nodes_total"]
        print(
            f"  {name:4}  {elapsed:6.1f} s  {summary['nodes_total']:4} nodes  "
            f"{summary['verdict'][:60]}"
        )

    full, slim = statistics.median(times["full"]), statistics.median(times["slim"])
    print()
    print(f"| CI strategy ({args.models} models) | nodes | wall (median) | ratio |")
    print("|---|---:|---:|---:|")
    print(f"| full build | {nodes['full']} | {full:.1f} s | 1.00x |")
    print(
        f"| Slim CI (state:modified+ --defer) | {nodes['slim']} | {slim:.1f} s "
        f"| {slim / full:.2f}x |"
    )
    print(
        f"\nSlim CI took {slim / full:.2f}x the time of a full build ({full / slim:.1f}x faster)."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
