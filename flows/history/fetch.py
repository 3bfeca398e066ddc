"""The local cache of an artifact store's runs: one compact record per run, fetched once.

A run's files never change once its index entry is written (flows.artifacts.store_run writes
files first, pointers last), so a run already in the cache is never fetched again: a warm
`ferry history` lists the index and reads nothing else from the store.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flows.artifacts import ArtifactStore

logger = logging.getLogger(__name__)

DEFAULT_CACHE = Path(".ferry/history")
# Bumped when a record's shape changes: the records live under v<N>/, so all are fetched again.
# 3: `deployment` is the Prefect deployment (it was the request), `selection` the request as
# RunRequest.describe() says it.
RECORD_VERSION = 3

RecordOf = Callable[[bytes, list[dict[str, Any]]], dict[str, Any]]
"""How a stored run becomes the record history keeps: its summary.json and its run_results'
`results` in, the record out (flows.run.history.record_of_stored); ValueError, KeyError or
TypeError when the summary is not a run's. The history reads records, never the run's types."""
_INDEX_KEY = re.compile(r"^(?P<project>[^/]+)/(?P<env>[^/]+)/index/(?P<run_id>[^/]+)\.json$")
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
    store: ArtifactStore,
    env: str,
    cache_root: Path = DEFAULT_CACHE,
    project: str | None = None,
    *,
    record_of: RecordOf,
) -> Sync:
    """Brings the cache of `env` (all projects, or one) up to date with the store.

    Lists the index (one key per run) and fetches only the runs whose record is missing;
    `record_of` turns each into the record kept.

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
        stored = list(
            pool.map(lambda key: _store_record(store, key, missing[key][1], record_of), missing)
        )
    unreadable = [
        run_id for (run_id, _), ok in zip(missing.values(), stored, strict=True) if not ok
    ]
    fetched = len(stored) - len(unreadable)
    if unreadable:
        logger.warning("runs without a readable summary.json: %s", ", ".join(unreadable))
    return Sync(folder=folder, known=known, fetched=fetched, unreadable=unreadable)


def _store_record(store: ArtifactStore, index_key: str, record: Path, record_of: RecordOf) -> bool:
    """Fetches one run into `record`; False when it has no readable summary yet."""
    body = _record(store, index_key, record_of)
    if body is None:
        return False
    tmp = record.with_suffix(".tmp")
    tmp.write_text(json.dumps(body))
    tmp.replace(record)
    return True


def _record(store: ArtifactStore, index_key: str, record_of: RecordOf) -> dict[str, Any] | None:
    """One run's compact record, or None when its summary is missing or unreadable (a run whose
    store failed part-way: asked again next time)."""
    try:
        pointer = json.loads(store.get_bytes(index_key) or b"null")
        raw = store.get_bytes(f"{pointer['prefix']}/summary.json")
    except (ValueError, KeyError, TypeError):
        return None
    if raw is None:
        return None
    results_raw = store.get_bytes(f"{pointer['prefix']}/run_results.json")
    try:
        results = json.loads(results_raw)["results"] if results_raw else []
    except (ValueError, KeyError, TypeError):
        results = []
    try:
        return record_of(raw, results)
    except (ValueError, KeyError, TypeError):
        return None
