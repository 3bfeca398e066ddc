"""What a run's holds cost: taking and giving back N node limits on a real Prefect server.

A run of N nodes asks Prefect for one slot of its environment's limit and of each node's limit,
in one request (flows/prefect/holds.py). This measures that request against a local server
(SQLite, as `make demo` runs it), side by side with the environment's limit alone - what a run
took before it held its nodes - interleaved, medians:

- `first`: the node limits do not exist yet: the request, their creation, the request again;
- `held`: they exist (every later run): take, then give back;
- `environment`: the environment's limit alone (DuckDB, a blue-green build).

Usage:
    python bench/holds.py [--nodes 600 3000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flows.dbt.commands import DbtCommand
from flows.prefect import holds
from flows.prefect import server as prefect_server
from flows.run.holds import Writes


def _never(why: str) -> None:
    raise RuntimeError(f"holds lost during the bench: {why}")


def _timed(env: str, writes: Writes) -> float:
    started = time.perf_counter()
    with holds.holds(env, writes, _never, wait_s=60):
        pass
    return time.perf_counter() - started


def _apply(env: str) -> None:
    from prefect.client.orchestration import get_client

    async def apply() -> None:
        async with get_client() as client:
            await holds.apply_limits([env], client)

    asyncio.run(apply())


def measure(nodes: int, rounds: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"first": [], "held": [], "environment": []}
    for _ in range(rounds):
        env = f"bench-{uuid.uuid4().hex[:8]}"
        _apply(env)
        ids = tuple(f"model.bench.m_{i:05d}" for i in range(nodes))
        times["first"].append(_timed(env, Writes(DbtCommand.BUILD, "postgres", ids)))
        # interleaved: A B B A, so a server that warms up or slows down favours neither
        times["held"].append(_timed(env, Writes(DbtCommand.BUILD, "postgres", ids)))
        times["environment"].append(_timed(env, Writes(DbtCommand.BUILD, "postgres", None)))
        times["environment"].append(_timed(env, Writes(DbtCommand.BUILD, "postgres", None)))
        times["held"].append(_timed(env, Writes(DbtCommand.BUILD, "postgres", ids)))
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[600, 3000])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)

    from prefect.settings import PREFECT_API_URL, temporary_settings

    with tempfile.TemporaryDirectory() as home:
        server = prefect_server.start(Path(home))
        try:
            with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
                print(f"{'nodes':>6} {'first (s)':>10} {'held (s)':>9} {'env (s)':>8} held/env")
                for nodes in args.nodes:
                    times = measure(nodes, args.rounds)
                    first, held, env = (statistics.median(times[k]) for k in times)
                    print(f"{nodes:>6} {first:>10.2f} {held:>9.3f} {env:>8.3f} {held / env:>7.1f}x")
        finally:
            prefect_server.stop(server.pid)
    return 0


if __name__ == "__main__":
    sys.exit(main())
