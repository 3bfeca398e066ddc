"""`ferry history` on a large store: cold (empty cache) and warm (nothing new), side by side.

Writes synthetic artifacts of N runs x M nodes (summary.json, run_results.json and the index
entry of each run, shaped as ferry and dbt write them) into a folder store, or into S3 on moto
in-process with --s3, then times the function `ferry history` calls (fetch into the cache, then
ask DuckDB), in the order cold warm cold warm ... (so drift on a busy machine hits both alike);
prints the medians.

Usage:
    python bench/history.py [--runs 2000] [--nodes 600] [--rounds 3] [--s3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from flows.artifacts import ArtifactStore, LocalStore, index_key, open_store
from flows.history.fetch import sync
from flows.history.query import ask
from flows.run.history import record_of_stored
from flows.run.summary import RunSummary

PROJECT, ENV = "bench", "prod"


def _node_ids(count: int) -> list[tuple[str, str]]:
    """(unique_id, resource_type): a third models, the rest tests, as a real project's mix."""
    models = count // 3
    ids = [(f"model.{PROJECT}.model_{i:04d}", "model") for i in range(models)]
    ids += [
        (f"test.{PROJECT}.not_null_model_{i:04d}_id.{i:010x}", "test")
        for i in range(count - models)
    ]
    return ids


def _result(uid: str, kind: str, status: str, seconds: float, at: datetime) -> dict[str, object]:
    adapter: dict[str, object] = {"_message": "SELECT 1200", "code": "SELECT"}
    if kind == "model":
        adapter["rows_affected"] = random.randint(0, 50_000)
    return {
        "status": status,
        "timing": [
            {"name": "compile", "started_at": at.isoformat(), "completed_at": at.isoformat()},
            {"name": "execute", "started_at": at.isoformat(), "completed_at": at.isoformat()},
        ],
        "thread_id": "Thread-1 (worker)",
        "execution_time": seconds,
        "adapter_response": adapter,
        "message": "OK" if kind == "model" else None,
        "failures": 0 if kind == "test" else None,
        "unique_id": uid,
        "compiled": True,
        "compiled_code": f"select * from {uid} where id is null\n" * 4,
        "relation_name": f'"db"."analytics"."{uid.split(".")[-1]}"' if kind == "model" else None,
        "batch_results": None,
    }


def write_store(store: ArtifactStore, runs: int, nodes: int) -> None:
    """`runs` runs of `nodes` nodes, one every 30 minutes back from now, 3% of them failing."""
    random.seed(7)
    ids = _node_ids(nodes)
    base = {uid: random.uniform(0.05, 20.0) for uid, _ in ids}
    now = datetime.now(UTC)
    for r in range(runs):
        started = now - timedelta(minutes=30 * (runs - r))
        run_id = f"{r:08d}-0000-4000-8000-{random.getrandbits(48):012x}"
        failing = {ids[random.randrange(nodes)][0]} if random.random() < 0.03 else set()
        results = []
        for uid, kind in ids:
            status = "success" if kind == "model" else "pass"
            if uid in failing:
                status = "error" if kind == "model" else "fail"
            elif kind == "test" and random.random() < 0.01:
                status = "warn"
            results.append(
                _result(uid, kind, status, base[uid] * random.uniform(0.7, 1.6), started)
            )
        finished = started + timedelta(seconds=sum(r["execution_time"] for r in results) / 4)
        failed = [_failed(uid) for uid in sorted(failing)]
        summary = {
            "schema_version": 2,
            "run_id": run_id,
            "flow_run_id": run_id,
            "project": PROJECT,
            "env": ENV,
            "deployment": "dbt/build-prod",
            "request": {
                "command": "build",
                "select": ["tag:daily"],
                "exclude": [],
                "selector": None,
            },
            "target": "prod",
            "outcome": "failed" if failing else "success",
            "verdict": f"{len(failing)} of {nodes} nodes failed" if failing else f"{nodes} passed",
            "started_at": started.isoformat(),
            "finished_at": finished.isoformat(),
            "duration_s": round((finished - started).total_seconds(), 3),
            "git_sha": f"{random.getrandbits(160):040x}",
            "image_digest": f"sha256:{random.getrandbits(256):064x}",
            "counts": {},
            "nodes_total": nodes,
            "failed": failed,
            "warned": [],
            "slowest": [],
        }
        prefix = f"{PROJECT}/{ENV}/runs/{started:%Y-%m-%d}/{run_id}"
        run_results = {
            "metadata": {"dbt_version": "1.11.0"},
            "results": results,
            "elapsed_time": 1.0,
        }
        store.put_bytes(f"{prefix}/run_results.json", json.dumps(run_results).encode())
        stored = RunSummary.read(summary)  # as a run writes it
        store.put_bytes(f"{prefix}/summary.json", stored.model_dump_json().encode())
        pointer = {"run_id": run_id, "outcome": stored.outcome.value, "prefix": prefix}
        store.put_bytes(index_key(PROJECT, ENV, run_id), json.dumps(pointer).encode())


def _failed(uid: str) -> dict[str, Any]:
    """A failed node as the summary lists it (flows.dbt.nodes.NodeResult)."""
    return {
        "unique_id": uid,
        "resource_type": uid.split(".")[0],
        "name": uid.split(".")[-1],
        "status": "error",
        "message": "boom",
        "started_at": None,
        "finished_at": None,
        "execution_time": 1.0,
    }


def history(store: ArtifactStore, cache: Path) -> tuple[float, int]:
    """One `ferry history`: seconds, and the runs it found."""
    started = time.perf_counter()
    synced = sync(store, ENV, cache, record_of=record_of_stored)
    found = ask(synced.folder, limit=20)
    return time.perf_counter() - started, found.runs_total


@contextlib.contextmanager
def _s3(work: Path) -> Iterator[ArtifactStore]:
    import boto3
    from moto import mock_aws

    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="bench-history")
        yield open_store("s3://bench-history/dbt")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--nodes", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--s3", action="store_true", help="S3 on moto, in-process")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="ferry-bench-history-"))
    try:
        with _s3(work) if args.s3 else contextlib.nullcontext(LocalStore(work / "store")) as store:
            started = time.perf_counter()
            write_store(store, args.runs, args.nodes)
            where = "S3 (moto)" if args.s3 else "a folder"
            print(
                f"wrote {args.runs} runs x {args.nodes} nodes to {where} "
                f"in {time.perf_counter() - started:.0f} s"
            )
            cold, warm = [], []
            for round_ in range(args.rounds):
                cache = work / f"cache-{round_}"
                seconds, found = history(store, cache)
                cold.append(seconds)
                seconds, again = history(store, cache)
                warm.append(seconds)
                assert found == again == args.runs, (found, again)
                print(f"round {round_ + 1}: cold {cold[-1]:.2f} s, warm {warm[-1]:.2f} s")
                shutil.rmtree(cache)
        print(
            f"ferry history, {args.runs} runs x {args.nodes} nodes: "
            f"cold {statistics.median(cold):.2f} s, warm {statistics.median(warm):.2f} s "
            f"(medians of {args.rounds})"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
