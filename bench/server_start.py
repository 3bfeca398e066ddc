"""Measure a local Prefect server's start from the kept database: registering block types or not.

`flows/prefect/server.py` starts a server with a new home from a copy of the first server's
migrated database, which holds every block type already, and tells it to register none:
registering first imports every installed Prefect collection (prefect-aws, prefect-dbt) to
compare them with the database. This CLI starts servers both ways, interleaved (A B B A), each
with a new home copied from the same kept database, and prints the medians: the CPU of the
server's processes and the wall time until its API answers.

Usage:
    python bench/server_start.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from unittest.mock import patch

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR.parent))
sys.path.insert(0, str(BENCH_DIR))
from harness import cpu_seconds_below, load_average  # noqa: E402

from flows.prefect import server  # noqa: E402

VARIANTS = ("register", "from-the-copy")
# What a server registering its block types at every start is told (Prefect's defaults).
_REGISTER = {
    "PREFECT_SERVER_REGISTER_BLOCKS_ON_START": "true",
    "PREFECT_SERVER_MEMOIZE_BLOCK_AUTO_REGISTRATION": "true",
}


def one_start(home: Path, variant: str) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one server's start until its API answers."""
    # The environment wins over what start() sets: told to register, the server does.
    with patch.dict(os.environ, _REGISTER if variant == "register" else {}):
        before = cpu_seconds_below(os.getpid())
        began = time.monotonic()
        started = server.start(home)
        wall = time.monotonic() - began
        cpu = cpu_seconds_below(os.getpid()) - before
        server.stop(started.pid)
    return cpu, wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds of A B B A (default 3)")
    args = parser.parse_args(argv)
    results: dict[str, list[tuple[float, float]]] = {v: [] for v in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="ferry-bench-server-") as tmp:
        os.environ["XDG_CACHE_HOME"] = str(Path(tmp) / "cache")  # a kept database of its own
        first = server.start(Path(tmp) / "first")  # migrates, registers, keeps the database
        server.stop(first.pid)
        order = [*VARIANTS, *reversed(VARIANTS)] * args.rounds
        for n, variant in enumerate(order):
            cpu, wall = one_start(Path(tmp) / f"{n}-{variant}", variant)
            results[variant].append((cpu, wall))
            print(f"{variant:>14}: {cpu:5.1f} CPU s, {wall:5.1f} s to ready", flush=True)
    medians = {
        v: (statistics.median(c for c, _ in r), statistics.median(w for _, w in r))
        for v, r in results.items()
    }
    print(f"\nmedians of {args.rounds * 2} starts each (load average {load_average()}):")
    for variant, (cpu, wall) in medians.items():
        print(f"{variant:>14}: {cpu:5.2f} CPU s, {wall:5.2f} s to ready")
    (cpu_a, wall_a), (cpu_b, wall_b) = medians["register"], medians["from-the-copy"]
    print(f"from the copy / registering: CPU {cpu_b / cpu_a:.2f}x, wall {wall_b / wall_a:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
