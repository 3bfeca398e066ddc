"""Measure what naming a part's nodes costs dbt: one `fqn:` per node vs a folder's `path:`.

A fanned-out part, and an only-changed run, hands dbt the exact nodes it must run. dbt matches
every selector against the whole graph, so hundreds of `fqn:` selectors cost seconds before the
first node runs; `Lineage.selection` names a folder whose every resource is wanted once, as
`path:`. On a project of K independent domains, each in a folder of its own
(bench/domains_project.py), this CLI times `dbt ls` of one part (1, 2, ... domains) both ways,
interleaved (A B B A), and prints the medians. `dbt ls` parses (partially, from the first
parse's state) and selects, as a part does before its first node; no warehouse is opened.

Usage:
    python bench/part_selection.py [--models 600] [--domains 4] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR.parent))
sys.path.insert(0, str(BENCH_DIR))
from domains_project import generate  # noqa: E402
from harness import load_average  # noqa: E402

from flows.dbt.lineage import Lineage  # noqa: E402

DBT = Path(sys.executable).with_name("dbt")
VARIANTS = ("fqn", "path")


def _dbt(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(DBT), *args, "--project-dir", str(project), "--profiles-dir", str(project),
         "--target", "duckdb", "--quiet"],
        capture_output=True, text=True, check=True, timeout=600,
    )  # fmt: skip


def _manifest(project: Path) -> object:
    from dbt.cli.main import dbtRunner

    result = dbtRunner().invoke(
        ["parse", "--project-dir", str(project), "--profiles-dir", str(project),
         "--target", "duckdb", "--quiet"]
    )  # fmt: skip
    if not result.success:
        raise SystemExit(f"dbt parse failed: {result.exception}")
    return result.result


def timed_ls(project: Path, selectors: tuple[str, ...], expect: int) -> float:
    started = time.perf_counter()
    listed = _dbt(project, "ls", "--select", *selectors, "--indirect-selection", "empty")
    elapsed = time.perf_counter() - started
    count = len(listed.stdout.split())
    if count != expect:
        raise SystemExit(f"dbt ls listed {count} nodes, not {expect}: {selectors[:3]}...")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=600, help="models in all (default 600)")
    parser.add_argument("--domains", type=int, default=4, help="independent domains (default 4)")
    parser.add_argument("--rounds", type=int, default=2, help="repeats of A B B A (default 2)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="ferry-part-selection-") as work:
        project = generate(
            Path(work) / "domains", domains=args.domains,
            models_per_domain=args.models // args.domains,
        )  # fmt: skip
        os.environ["DOMAINS_DUCKDB_PATH"] = str(project / "bench.duckdb")  # never opened
        manifest = _manifest(project)
        lineage = Lineage(manifest)
        nodes = manifest.nodes  # type: ignore[attr-defined]
        print(f"{args.models} models in {args.domains} domains ({len(nodes)} nodes), load "
              f"{load_average()}; dbt ls of one part, {args.rounds} x A B B A")  # fmt: skip
        print(f"{'part':>22} {'fqn: each':>10} {'path:':>8} {'path/fqn':>9}  selectors")
        for size in range(1, args.domains):
            part = {
                uid for uid, node in nodes.items()
                if any(node.original_file_path.startswith(f"models/domain_{d}/")
                       for d in range(size))
            }  # fmt: skip
            ways = {
                "fqn": tuple(lineage.fqn_selector(n) for n in sorted(part)),
                "path": lineage.selection(part),
            }
            times: dict[str, list[float]] = {v: [] for v in VARIANTS}
            for _ in range(args.rounds):
                for variant in (*VARIANTS, *reversed(VARIANTS)):
                    times[variant].append(timed_ls(project, ways[variant], len(part)))
            fqn, path = (statistics.median(times[v]) for v in VARIANTS)
            print(
                f"{f'{size} domain(s), {len(part)} nodes':>22} {fqn:9.2f}s {path:7.2f}s "
                f"{path / fqn:8.2f}x  {len(ways['fqn'])} vs {len(ways['path'])}"
            )


if __name__ == "__main__":
    main()
