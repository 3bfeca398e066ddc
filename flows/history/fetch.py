"""The local cache of an artifact store's runs: one compact record per run, fetched once.

A run's files never change once its index entry is written (flows.artifacts.publish_run writes
files first, pointers last), so a run already in the cache is never fetched again: a warm
`ferry history` lists the index and reads nothing else from the store.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flows.artifacts import ArtifactStore
from flows.run.summary import RunSummary

logger = logging.getLogger(__name__)

DEFAULT_CACHE = Path(".ferry/history")
# Bumped when a record's shape changes: the records live under v<N>/, so all are fetched again.
# 3: `deployment` is the Prefect deployment (it was the request), `selection` the request as
# RunRequest.describe() says it.
RECORD_VERSION = 3
_INDEX_KEY = re.compile(r"^(?P<project>[^/]+)/(?P<env>[^/]+)/index/(?P<run_id>[^/]+)\.json$")
_FAILED = {"error", "fail", "runtime error"}
_FETCHERS = 16


@dataclass(frozen=True)
class Sync:
    """What one fetch did: the folder of records, and how many runs it read from the store."""

    folder: Path
    known: int
    fetched: int
    unreadable: list[str]


def cache_folder(cache_root: Path, store_url: str) -> Path:
    """`<cache_root>/<hash of the store's URL>`: two stores never share records."""
    digest = hashlib.sha256(store_url.encode()).hexdigest()[:16]
    return cache_root / digest


def sync(
    store: ArtifactStore, env: str, cache_root: Path = DEFAULT_CACHE, project: str | None = None
) -> Sync:
    """Brings the cache of `env` (all projects, or one) up to date with the store.

    Lists the index (one key per run) and fetches only the runs whose record is missing.

    Raises:
        flows.artifacts.ArtifactStoreError: the store could not be listed or read.
    """
    root = cache_folder(cache_root, store.url)
    folder = root / f"v{RECORD_VERSION}" / env
    folder.mkdir(parents=True, exist_ok=True)
    (root / "store.txt").write_text(store.url + "\n")
    # Only the index is listed: one key per run, never the files of every run of every env.
    projects = [project] if project else store.list_folders("")
    keys = (key for name in projects for key in store.list_keys(f"{name}/{env}/index/"))
    known = 0
    missing: dict[str, tuple[str, Path]] = {}  # index key: run id, its record
    for key in keys:
        match = _INDEX_KEY.match(key)
        if match is None or match["env"] != env:
            continue
        known += 1
        record = folder / f"{match['project']}__{match['run_id']}.json"
        if not record.is_file():
            missing[key] = (match["run_id"], record)
    # A run is three small reads; S3 answers each in tens of milliseconds, so they overlap.
    # Each record is written as soon as it is built: memory holds a few runs, not all of them.
    with ThreadPoolExecutor(max_workers=_FETCHERS) as pool:
        stored = list(pool.map(lambda key: _store_record(store, key, missing[key][1]), missing))
    unreadable = [
        run_id for (run_id, _), ok in zip(missing.values(), stored, strict=True) if not ok
    ]
    fetched = len(stored) - len(unreadable)
    if unreadable:
        logger.warning("runs without a readable summary.json: %s", ", ".join(unreadable))
    return Sync(folder=folder, known=known, fetched=fetched, unreadable=unreadable)


def _store_record(store: ArtifactStore, index_key: str, record: Path) -> bool:
    """Fetches one run into `record`; False when it has no readable summary yet."""
    body = _record(store, index_key)
    if body is None:
        return False
    tmp = record.with_suffix(".tmp")
    tmp.write_text(json.dumps(body))
    tmp.replace(record)
    return True


def _record(store: ArtifactStore, index_key: str) -> dict[str, Any] | None:
    """One run's compact record, or None when its summary is missing or unreadable (a run whose
    store failed part-way: asked again next time)."""
    try:
        pointer = json.loads(store.get_bytes(index_key) or b"null")
        raw = store.get_bytes(f"{pointer['prefix']}/summary.json")
        if raw is None:
            return None
        summary = RunSummary.read(raw)
    except (ValueError, KeyError, TypeError):
        return None
    results_raw = store.get_bytes(f"{pointer['prefix']}/run_results.json")
    try:
        results = json.loads(results_raw)["results"] if results_raw else []
    except (ValueError, KeyError, TypeError):
        results = []
    return compact(summary, results)


def compact(summary: RunSummary, results: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The fields history shows, from a stored run and its run_results.json's `results`."""
    return {
        "v": RECORD_VERSION,
        "run_id": summary.run_id,
        "flow_run_id": summary.flow_run_id,
        "project": summary.project,
        "env": summary.env,
        "deployment": summary.deployment,
        "command": summary.request.command.value,
        "selection": summary.request.describe(),
        "target": summary.target,
        "outcome": summary.outcome.value,
        "verdict": summary.verdict,
        "started_at": summary.started_at.isoformat(),
        "finished_at": summary.finished_at.isoformat(),
        "duration_s": summary.duration_s,
        "git_sha": summary.git_sha,
        "image_digest": summary.image_digest,
        "nodes_total": summary.nodes_total,
        "failed": [n.unique_id for n in summary.failed],
        "nodes": [_node(r) for r in results if "unique_id" in r],
        # What the run's signals found against the history before it (flows.history.signals).
        "regressions": [r.model_dump(mode="json") for r in summary.regressions],
        "anomalies": [a.model_dump(mode="json") for a in summary.anomalies],
    }


def _node(result: dict[str, Any]) -> dict[str, Any]:
    """A node of dbt's run_results.json (dbt's format, read as it is)."""
    status = str(result.get("status") or "")
    rows = (result.get("adapter_response") or {}).get("rows_affected")
    return {
        "id": result["unique_id"],
        "status": status,
        "s": result.get("execution_time"),
        "rows": rows if isinstance(rows, int) and rows >= 0 else None,
        "failed": status in _FAILED,
        "warned": status == "warn",
    }
