"""Where run artifacts go (S3 or a local folder) and how they are laid out.

Layout under the store's root, per dbt project and environment::

    <project>/<env>/runs/<YYYY-MM-DD>/<run_id>/   manifest.json, run_results.json, sources.json,
                                                  catalog.json, dbt.log, summary.json
    <project>/<env>/index/<run_id>.json           pointer to a run's folder (lookup by run id)
    <project>/<env>/state/last-failure.json       pointer to the latest failed run (for retry)
    <project>/<env>/state/last-success.json       pointer to the latest successful build/run
    <project>/<env>/state/manifest.json           that run's manifest: the state Slim CI and
                                                  `--defer` compare against
    <project>/<env>/docs/index.html               the environment's docs site: dbt's one
                                                  self-contained page, from its latest
                                                  `docs generate` (a run's own copy is in its
                                                  folder, as docs/index.html)

Containers are ephemeral, so everything a later run needs (retry, deferral) is here, not on a
disk. A store that fails never changes a run's verdict: the caller keeps the local copy.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

logger = logging.getLogger(__name__)


class ArtifactStoreError(RuntimeError):
    """The store could not be read or written."""


class ArtifactStore(Protocol):
    """A flat key/value space of files under one root."""

    @property
    def url(self) -> str: ...

    def put_file(self, key: str, path: Path) -> None: ...

    def get_bytes(self, key: str) -> bytes | None:
        """The object at `key`, or None when there is none."""
        ...

    def put_bytes(self, key: str, data: bytes) -> None: ...

    def list_keys(self, prefix: str) -> Iterator[str]:
        """Every key under `prefix` (a folder's path ending in '/', or ''), in no set order."""
        ...

    def list_folders(self, prefix: str) -> list[str]:
        """The names of the folders directly under `prefix` (ending in '/', or ''), sorted."""
        ...


class LocalStore:
    """A folder on disk: the default for a laptop."""

    def __init__(self, root: Path):
        self.root = root.expanduser().resolve()

    @property
    def url(self) -> str:
        return str(self.root)

    def put_file(self, key: str, path: Path) -> None:
        dest = self.root / key
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)

    def put_bytes(self, key: str, data: bytes) -> None:
        dest = self.root / key
        dest.parent.mkdir(parents=True, exist_ok=True)
        # Each writer its own temporary file: two compactions at once must not rename each
        # other's. The pointer is replaced atomically: a reader never sees half a file.
        tmp = dest.with_name(f"{dest.name}.{uuid.uuid4().hex}.tmp")
        try:
            tmp.write_bytes(data)
            tmp.replace(dest)
        finally:
            tmp.unlink(missing_ok=True)

    def get_bytes(self, key: str) -> bytes | None:
        path = self.root / key
        return path.read_bytes() if path.is_file() else None

    def list_keys(self, prefix: str) -> Iterator[str]:
        top = self.root / prefix if prefix else self.root
        if not top.is_dir():
            return
        for folder, _, names in os.walk(top):
            base = Path(folder).relative_to(self.root).as_posix()
            for name in names:
                if not name.endswith(".tmp"):  # a pointer half-written by put_bytes
                    yield name if base == "." else f"{base}/{name}"

    def list_folders(self, prefix: str) -> list[str]:
        top = self.root / prefix if prefix else self.root
        return sorted(p.name for p in top.iterdir() if p.is_dir()) if top.is_dir() else []


class S3Store:
    """`s3://bucket/prefix`; the endpoint is overridable (moto, MinIO)."""

    list_page_size = 1000  # S3's own maximum; a test lowers it to see several pages

    def __init__(self, bucket: str, prefix: str, endpoint_url: str | None = None):
        import boto3

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._s3 = boto3.client("s3", endpoint_url=endpoint_url)

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def put_file(self, key: str, path: Path) -> None:
        try:
            self._s3.upload_file(str(path), self.bucket, self._key(key))
        except Exception as exc:
            raise ArtifactStoreError(f"cannot write {self.url}/{key}: {exc}") from exc

    def put_bytes(self, key: str, data: bytes) -> None:
        try:
            self._s3.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)
        except Exception as exc:
            raise ArtifactStoreError(f"cannot write {self.url}/{key}: {exc}") from exc

    def get_bytes(self, key: str) -> bytes | None:
        try:
            obj = self._s3.get_object(Bucket=self.bucket, Key=self._key(key))
        except self._s3.exceptions.NoSuchKey:
            return None
        except Exception as exc:
            raise ArtifactStoreError(f"cannot read {self.url}/{key}: {exc}") from exc
        data: bytes = obj["Body"].read()
        return data

    def list_keys(self, prefix: str) -> Iterator[str]:
        start = self._key(prefix) if prefix else (f"{self.prefix}/" if self.prefix else "")
        cut = len(f"{self.prefix}/") if self.prefix else 0
        try:
            pages = self._s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=start, PaginationConfig={"PageSize": self.list_page_size}
            )
            for page in pages:
                for obj in page.get("Contents", ()):
                    yield obj["Key"][cut:]
        except Exception as exc:
            raise ArtifactStoreError(f"cannot list {self.url}/{prefix}: {exc}") from exc

    def list_folders(self, prefix: str) -> list[str]:
        start = self._key(prefix) if prefix else (f"{self.prefix}/" if self.prefix else "")
        try:
            pages = self._s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket,
                Prefix=start,
                Delimiter="/",
                PaginationConfig={"PageSize": self.list_page_size},
            )
            found = [p["Prefix"] for page in pages for p in page.get("CommonPrefixes", ())]
        except Exception as exc:
            raise ArtifactStoreError(f"cannot list {self.url}/{prefix}: {exc}") from exc
        return sorted(name[len(start) :].rstrip("/") for name in found)


def open_store(url: str, endpoint_url: str | None = None) -> ArtifactStore:
    """An S3 store for `s3://bucket/prefix`, else a local folder; checked, never touched.

    Everything that can be judged from the location alone is judged here, so a run never
    builds the warehouse only to find that its artifacts have nowhere to go.

    Raises:
        ValueError: the location cannot be a store; the message says what to pass instead.
    """
    location = url.strip()
    if not location:
        raise ValueError(
            "the artifact location is empty; pass s3://bucket/prefix or a folder "
            "(--artifacts / FERRY_ARTIFACTS)"
        )
    scheme = _scheme(location)
    if scheme == "s3" and location.startswith("s3://"):
        bucket, _, prefix = location.removeprefix("s3://").partition("/")
        if not bucket:
            raise ValueError(f"artifact URL {url!r} has no bucket; use s3://bucket/prefix")
        if not _BUCKET_NAME.match(bucket):
            raise ValueError(
                f"artifact URL {url!r}: {bucket!r} is not an S3 bucket name (lowercase letters, "
                "digits, '.' and '-'); use s3://bucket/prefix"
            )
        return S3Store(bucket, prefix, endpoint_url=_checked_endpoint(endpoint_url))
    if scheme == "s3":  # s3:/x, s3:bucket/x, S3://bucket: a typo of an S3 URL, not a folder
        raise ValueError(
            f"artifact URL {url!r} is not an S3 URL; write it as s3://bucket/prefix (lowercase)"
        )
    if scheme is not None:
        raise ValueError(
            f"artifact location {url!r}: {scheme}:// is not supported; only s3:// URLs and "
            "local folders work (pass a folder as a plain path)"
        )
    root = Path(location).expanduser()
    blocker = file_in_the_way(root)
    if blocker is not None:
        raise ValueError(
            f"artifact folder {location!r} cannot be created: {blocker} is a file; pass a folder"
        )
    return LocalStore(root)


# boto3's own check (legacy us-east-1 buckets may hold capitals and '_'); anything else fails
# only when the first artifact is written, after the warehouse was built.
_BUCKET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")
# `scheme:` then a slash (`http://x`, `file:/x`), or `s3:` in any form. One letter would be a
# Windows drive; a folder named `a:b` stays a folder.
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):(?=/)|^(s3):", re.IGNORECASE)


def _scheme(location: str) -> str | None:
    match = _SCHEME.match(location)
    if match is None:
        return None
    return (match.group(1) or match.group(2)).lower()


def _checked_endpoint(endpoint_url: str | None) -> str | None:
    if not endpoint_url:
        return None
    parsed = urlparse(endpoint_url)
    if parsed.scheme not in {"http", "https"} or not parsed.netloc:
        raise ValueError(
            f"S3 endpoint {endpoint_url!r} is not an http(s) URL; set FERRY_S3_ENDPOINT_URL to "
            "e.g. http://127.0.0.1:9000, or unset it for AWS"
        )
    return endpoint_url


def file_in_the_way(folder: Path) -> Path | None:
    """The file that would stop `folder` from being created (itself or a parent), if any."""
    for path in (folder, *folder.parents):
        if path.exists():
            return None if path.is_dir() else path
    return None


@dataclass(frozen=True)
class RunLayout:
    """The keys of one run and of its project/environment's state."""

    project: str
    env: str
    run_id: str
    started_at: datetime

    @property
    def base(self) -> str:
        return f"{self.project}/{self.env}"

    @property
    def run_prefix(self) -> str:
        return f"{self.base}/runs/{self.started_at:%Y-%m-%d}/{self.run_id}"

    @property
    def index_key(self) -> str:
        return index_key(self.project, self.env, self.run_id)


def index_key(project: str, env: str, run_id: str) -> str:
    return f"{project}/{env}/index/{run_id}.json"


def state_key(project: str, env: str, name: str) -> str:
    return f"{project}/{env}/state/{name}"


DOCS_PAGE = "docs/index.html"
"""The docs site's page, under a run's folder and under its environment's."""


def docs_key(project: str, env: str) -> str:
    """Where an environment's docs site is published (by its latest `docs generate`)."""
    return f"{project}/{env}/{DOCS_PAGE}"


def console_url(location: str) -> str | None:
    """The AWS console's page of an `s3://` object, which a browser opens; None for a folder's
    file (its path is already what a browser opens)."""
    if not location.startswith("s3://"):
        return None
    bucket, _, key = location.removeprefix("s3://").partition("/")
    return f"https://s3.console.aws.amazon.com/s3/object/{bucket}?prefix={key}"


@dataclass
class StoredRun:
    """Where a run's artifacts ended up; `errors` lists what the store refused."""

    location: str
    local_copy: Path
    stored: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.errors


def store_run(
    store: ArtifactStore,
    layout: RunLayout,
    files: dict[str, Path],
    local_copy: Path,
    *,
    failed: bool,
    update_state: bool,
    pointer: dict[str, Any],
) -> StoredRun:
    """Stores a run's files, then moves the pointers; never raises.

    Files go first and pointers last, so a pointer never names a run whose files are missing.
    """
    pub = StoredRun(location=f"{store.url}/{layout.run_prefix}", local_copy=local_copy)
    for name, path in files.items():
        try:
            store.put_file(f"{layout.run_prefix}/{name}", path)
            pub.stored.append(name)
        except Exception as exc:
            pub.errors.append(f"{name}: {exc}")
    if pub.errors:
        return pub  # leave the pointers on the last complete run

    body = json.dumps({**pointer, "prefix": layout.run_prefix}, indent=2).encode()
    writes: list[tuple[str, bytes | Path]] = [(layout.index_key, body)]
    if failed:
        writes.append((state_key(layout.project, layout.env, "last-failure.json"), body))
    if update_state and "manifest.json" in files:
        writes.append(
            (state_key(layout.project, layout.env, "manifest.json"), files["manifest.json"])
        )
        writes.append((state_key(layout.project, layout.env, "last-success.json"), body))
    for key, data in writes:
        try:
            if isinstance(data, Path):
                store.put_file(key, data)
            else:
                store.put_bytes(key, data)
        except Exception as exc:
            pub.errors.append(f"{key}: {exc}")
    return pub


def mark_retried(store: ArtifactStore, project: str, env: str, failed_run: str, by: str) -> None:
    """Notes on the last-failure pointer that a retry fixed it, so it is not retried twice."""
    key = state_key(project, env, "last-failure.json")
    raw = store.get_bytes(key)
    if raw is None:
        return
    pointer = json.loads(raw)
    if pointer.get("run_id") == failed_run:
        pointer["retried_by"] = by
        store.put_bytes(key, json.dumps(pointer, indent=2).encode())


_PASSED = frozenset({"success", "pass", "warn"})


@dataclass(frozen=True)
class FailedRun:
    """A failed run to retry: its pointer and the two files `dbt retry --state` reads."""

    run_id: str
    pointer: dict[str, Any]
    files: dict[str, bytes]

    @property
    def command(self) -> str:
        """The dbt command it ran (`build`, `run`...), as its run_results.json records it."""
        args = self._document("run_results.json").get("args") or {}
        return str(args.get("which") or "build")

    @property
    def not_passed(self) -> tuple[str, ...]:
        """The nodes that did not pass: what `dbt retry` runs again."""
        results = self._document("run_results.json").get("results") or []
        return tuple(r["unique_id"] for r in results if r.get("status") not in _PASSED)

    @property
    def adapter_type(self) -> str | None:
        """The warehouse's adapter, as its manifest.json records it."""
        metadata = self._document("manifest.json").get("metadata") or {}
        return metadata.get("adapter_type")

    def _document(self, name: str) -> dict[str, Any]:
        return json.loads(self.files.get(name) or b"{}")

    def write(self, dest: Path) -> Path:
        """Writes the files into `dest` (created), for `--state`."""
        dest.mkdir(parents=True, exist_ok=True)
        for name, data in self.files.items():
            (dest / name).write_bytes(data)
        return dest


def find_failed_run(store: ArtifactStore, project: str, env: str, run_id: str | None) -> FailedRun:
    """Reads a failed run's run_results.json and manifest.json, changing nothing.

    Args:
        run_id: the failed run (Prefect flow-run id); None for the latest failure.

    Raises:
        LookupError: no such run, or nothing left to retry; the message says which.
    """
    if run_id:
        raw = store.get_bytes(index_key(project, env, run_id))
        if raw is None:
            raise LookupError(
                f"no run {run_id} of project {project!r} in environment {env!r} at {store.url}"
            )
    else:
        raw = store.get_bytes(state_key(project, env, "last-failure.json"))
        if raw is None:
            raise LookupError(
                f"no failed run of project {project!r} in environment {env!r} at {store.url}; "
                "nothing to retry"
            )
    pointer = json.loads(raw)
    if not run_id and pointer.get("retried_by"):
        raise LookupError(
            f"the latest failed run {pointer['run_id']} was already retried by run "
            f"{pointer['retried_by']}; pass a run id to retry it again"
        )
    files: dict[str, bytes] = {}
    for name in ("run_results.json", "manifest.json"):
        data = store.get_bytes(f"{pointer['prefix']}/{name}")
        if data is None:
            raise LookupError(f"run {pointer['run_id']} has no {name} at {store.url}")
        files[name] = data
    return FailedRun(run_id=str(pointer["run_id"]), pointer=pointer, files=files)


def read_state_manifest(store: ArtifactStore, project: str, env: str) -> bytes:
    """An environment's state manifest (its last successful build), for `--state`.

    Slim CI compares a pull request against it (`state:modified+`) and defers unbuilt refs to
    the tables it describes (`--defer`).

    Raises:
        LookupError: the environment has no state yet; the message says how to make one.
    """
    data = store.get_bytes(state_key(project, env, "manifest.json"))
    if data is None:
        raise LookupError(
            f"no state manifest of project {project!r} in environment {env!r} at {store.url} "
            f"({state_key(project, env, 'manifest.json')}); it is written by the first "
            f"successful build or run in {env!r}: run one, or drop --defer and state: selectors"
        )
    return data
