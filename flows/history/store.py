"""The history an environment keeps in its artifact store, for the runs themselves.

Each run of an environment compares itself with the runs before it and then adds itself, in an
ephemeral container that has no cache: so the store keeps the history ready as the two tables
flows.history.query builds (runs and nodes), under `<project>/<env>/history/`:

    parts/<YYYY-MM-DD>/<stamp>-<run_id>.nodes.parquet   one run, written by that run: nodes
    parts/<YYYY-MM-DD>/<stamp>-<run_id>.runs.parquet    first, then runs (the commit marker)
    base/<gen>.runs.parquet, base/<gen>.nodes.parquet   a compaction: every run up to a moment
    base/<gen>.recent.runs.parquet, ...nodes.parquet    the same compaction's recent runs
    current.json                                        which base, and from when parts count

A run reads current.json, its base (two objects) and the parts after its watermark, and writes
only its own part (two small objects, ~15 kB for 600 nodes): nothing it writes grows with the
history, and nothing another run writes is overwritten, so two runs recording at once both stay.
`<stamp>` is when the part is written (UTC, to the microsecond, so names sort by time).

A run reads the recent base, not the whole one, so its step costs the same at 200 stored runs
and at 2,000: the newest RECENT_RUNS runs whole (the report each run refreshes draws them and
the parts since), and each node's newest RECENT_PER_NODE successful results however old they
are (a node that runs once a week is still judged against its own last runs). Its signals are
exactly the whole base's whenever FERRY_HISTORY_WINDOW is at most RECENT_PER_NODE; a larger
window reads the whole base. `ferry history` and `ferry report` read the run index, as before.

A compaction at time T lists the parts after the previous watermark and writes a new base (the
previous one and those parts, a run kept once, runs older than `history_days` dropped) under a
name of its own, then current.json: watermark W = T - MARGIN, and the parts named at or after W
that the base holds. Why nothing is lost: a part is written right after the moment in its name
(`add_run` writes it again under a new name if that took longer than LATE), so any part named
before W was in the store before T and the listing saw it: the new base holds every part named
before W, and readers read every part named from W on that it does not hold. Two compactions at
once each write their own base, each correct by itself (parts are never deleted, and every base
stays): whichever current.json lands last is the one read. Clocks of the writers must agree
within MARGIN - LATE (NTP keeps ECS tasks within milliseconds).

Listing stays bounded although nothing is ever deleted (the task role may not delete) and the
store exposes no StartAfter: parts sit in one folder per day, and a reader lists only the days
from its watermark's on (one list of the day folders, then one page per day).

Before current.json existed the store held the whole tables at `history/runs.parquet` and
`nodes.parquet`; without current.json they are the base (generation "0", watermark at the
beginning), and the first compaction folds them in. They are left where they are.

The run index stays the record of every run: `ferry history` and `ferry report` rebuild the
same tables from it, so a run whose history step failed is still found there.
"""

from __future__ import annotations

import json
import logging
import shutil
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from flows.artifacts import ArtifactStore, ArtifactStoreError
from flows.history.query import NODES_TABLE, RUNS_TABLE, build_tables
from flows.history.signals import JUDGED_SQL

logger = logging.getLogger(__name__)

_TABLES = (RUNS_TABLE, NODES_TABLE)
COMPACT_AFTER = 50
"""A run compacts when it finds more parts than this after the watermark. Each run reads every
such part (two small GETs each, fetched 16 at a time), while a compaction rewrites the whole base
(11 MB at 2,000 runs x 600 nodes): 50 keeps a run's reads to ~100 small objects and spreads a
compaction's bytes over 50 runs (~0.23 MB a run, beside a part of ~15 kB)."""
RECENT_RUNS = 200
"""The recent base's newest runs, kept whole: what the report a run refreshes draws."""
RECENT_PER_NODE = 50
"""Each node's newest successful results the recent base keeps (flows.history.signals reads a
node's last FERRY_HISTORY_WINDOW of them, 20 by default)."""
MARGIN = timedelta(minutes=5)
"""How far the watermark trails the compaction's listing: a part named before it was listed."""
LATE = timedelta(minutes=1)
"""A part whose write ended later than this after the time in its name is written again."""
LEGACY = "0"
"""The base generation of the tables kept before parts: `history/runs.parquet`, `nodes.parquet`."""
_STAMP = "%Y%m%dT%H%M%S%fZ"  # 20261206T201200123456Z: fixed width, sorts as time does
_STAMP_LEN = 22
_RUNS, _NODES = ".runs.parquet", ".nodes.parquet"
_RECENT = ".recent"
_FETCHERS = 16


def history_prefix(project: str, env: str) -> str:
    return f"{project}/{env}/history"


def report_key(project: str, env: str) -> str:
    """Where the environment's report is refreshed after each run."""
    return f"{project}/{env}/report/index.html"


def current_key(project: str, env: str) -> str:
    return f"{history_prefix(project, env)}/current.json"


def stamp(moment: datetime) -> str:
    """A moment as parts and watermarks name it: UTC, to the microsecond, sortable."""
    return moment.astimezone(UTC).strftime(_STAMP)


class Current(BaseModel):
    """current.json: the base every reader starts from, and which parts count on top of it."""

    model_config = ConfigDict(frozen=True)

    v: int = 1
    base: str
    """The base's generation (`base/<gen>.*.parquet`); LEGACY: the tables kept before parts."""
    watermark: str
    """A stamp: parts named from it on are read besides the base; "" reads every part."""
    included_after_watermark: list[str] = []
    """Parts (`<day>/<stamp>-<run_id>`) named from the watermark on that the base already holds."""
    recent_since: datetime | None = None
    """When the recent base's newest runs begin; None: the base has no recent tables."""
    recent_per_node: int = 0
    """How many successful results of each node the recent base keeps."""


@dataclass(frozen=True)
class Snapshot:
    """What `download` read."""

    found: bool
    """The folder holds the history tables (False: the environment has no history yet)."""
    current: Current
    parts: list[str]
    """The parts read besides the base, oldest first."""
    listed_at: datetime
    """When the parts were listed (after current.json was read)."""
    since: datetime | None = None
    """The tables hold every run from this moment on, and older ones only in part (the recent
    base was read); None: every run kept."""

    @property
    def compaction_due(self) -> bool:
        return len(self.parts) > COMPACT_AFTER


@dataclass(frozen=True)
class Written:
    """What `add_run` or `compact` put in the store."""

    keys: list[str]
    bytes: int


def download(
    store: ArtifactStore, project: str, env: str, folder: Path, *, window: int | None = None
) -> Snapshot:
    """The environment's tables (its base and every part after the watermark) into `folder`.

    Args:
        window: the successful results of each node the caller reads (its signals' window):
            the recent base is read instead of the whole one when it keeps that many.

    Raises:
        flows.artifacts.ArtifactStoreError (or OSError): the store could not be read, or
            current.json names a base that is not there; a caller must then not compact, or
            the new base would lack runs.
    """
    return _read(store, project, env, folder, keep_since=None, window=window)


def add_run(
    store: ArtifactStore,
    project: str,
    env: str,
    folder: Path,
    record: dict[str, Any],
    *,
    keep_since: datetime,
) -> Written:
    """Writes the run's own part to the store, then adds the run to `folder`'s tables (what
    `download` read) for the report. Another run's part is never touched."""
    new = _built(folder, record)
    keys: list[str] = []
    for _ in range(3):
        recorded_at = datetime.now(UTC)
        name = f"{recorded_at:%Y-%m-%d}/{stamp(recorded_at)}-{record['run_id']}"
        key = f"{history_prefix(project, env)}/parts/{name}"
        store.put_file(key + _NODES, new / NODES_TABLE)
        store.put_file(key + _RUNS, new / RUNS_TABLE)  # last: a reader takes the part from now
        keys += [key + _NODES, key + _RUNS]
        if datetime.now(UTC) - recorded_at <= LATE:
            break
        # A compaction may have listed the parts before this one was complete and put its
        # watermark past its name: written again under a later name (the record dedupes).
        logger.warning("writing the history part %s took over %s: written again", key, LATE)
    else:
        raise ArtifactStoreError(f"the store took over {LATE} three times to write {key}")
    size = sum((new / t).stat().st_size for t in _TABLES) * (len(keys) // 2)
    _fold(folder, new, keep_since=keep_since)
    return Written(keys=keys, bytes=size)


def compact(
    store: ArtifactStore,
    project: str,
    env: str,
    work: Path,
    *,
    keep_since: datetime,
) -> Written | None:
    """Folds the parts after the watermark into a new base and points current.json at it; None
    when there is nothing to fold. Deletes nothing. Safe beside runs and other compactions (see
    the module's docstring).

    Raises:
        flows.artifacts.ArtifactStoreError (or OSError): the store could not be read or written;
            current.json then still names a complete base.
    """
    read = _read(store, project, env, work, keep_since=keep_since)
    if not read.found or (not read.parts and read.current.base != LEGACY):
        return None
    previous = read.current
    watermark = max(stamp(read.listed_at - MARGIN), previous.watermark)
    included = {p for p in read.parts if _stamp_of(p) >= watermark}
    # parts the previous base held past its watermark were not listed, and are held still
    included |= {p for p in previous.included_after_watermark if _stamp_of(p) >= watermark}
    recent = work / "recent"
    since = _recent(work, recent, runs=RECENT_RUNS, per_node=RECENT_PER_NODE)
    gen = f"{stamp(datetime.now(UTC))}-{uuid.uuid4().hex[:8]}"
    base = f"{history_prefix(project, env)}/base/{gen}"
    keys = [base + _NODES, base + _RUNS, base + _RECENT + _NODES, base + _RECENT + _RUNS]
    for key, table in zip(keys, [work, work, recent, recent], strict=True):
        store.put_file(key, table / (NODES_TABLE if key.endswith(_NODES) else RUNS_TABLE))
    pointer = Current(
        base=gen,
        watermark=watermark,
        included_after_watermark=sorted(included),
        recent_since=since,
        recent_per_node=RECENT_PER_NODE,
    )
    body = pointer.model_dump_json(indent=2).encode()
    store.put_bytes(current_key(project, env), body)  # last: readers move to the new base
    keys.append(current_key(project, env))
    size = sum((d / t).stat().st_size for d in (work, recent) for t in _TABLES) + len(body)
    return Written(keys=keys, bytes=size)


def read_current(store: ArtifactStore, project: str, env: str) -> Current:
    """current.json, or the legacy layout's (base LEGACY, every part) when there is none."""
    raw = store.get_bytes(current_key(project, env))
    if raw is None:
        return Current(base=LEGACY, watermark="")
    return Current.model_validate_json(raw)


def list_parts(store: ArtifactStore, project: str, env: str, current: Current) -> list[str]:
    """The complete parts (their runs file written) named from the watermark on that the base
    does not hold, oldest first: only the day folders from the watermark's day are listed."""
    top = f"{history_prefix(project, env)}/parts/"
    first_day = _day_of(current.watermark) if current.watermark else ""
    held = set(current.included_after_watermark)
    found: list[str] = []
    for day in store.list_folders(top):
        if day < first_day:
            continue
        for key in store.list_keys(f"{top}{day}/"):
            name = key.removeprefix(top).removesuffix(_RUNS)
            if key.endswith(_RUNS) and _stamp_of(name) >= current.watermark and name not in held:
                found.append(name)
    return sorted(found)


def append(folder: Path, record: dict[str, Any], *, keep_since: datetime) -> None:
    """Adds one run's record (flows.run.history.record_of) to `folder`'s tables, dropping runs
    that started before `keep_since` (and a run already there with the same id)."""
    _fold(folder, _built(folder, record), keep_since=keep_since)


def _record_name(record: dict[str, Any]) -> str:
    """The run's `record` in the tables, as flows.history.fetch names a cached record."""
    return f"{record['project']}__{record['run_id']}.json"


def _built(folder: Path, record: dict[str, Any]) -> Path:
    """The record alone as the two tables, in `folder`/new."""
    new = folder / "new"
    new.mkdir(parents=True, exist_ok=True)
    name = _record_name(record)
    (new / name).write_text(json.dumps(record))
    build_tables(str(new / name), new)
    return new


def _fold(folder: Path, new: Path, *, keep_since: datetime) -> None:
    """`new`'s tables into `folder`'s (moved there when it has none; its run replaces the same
    run there)."""
    if not (folder / RUNS_TABLE).is_file():
        for table in _TABLES:
            (new / table).replace(folder / table)
        return
    _merge([folder, new], folder, keep_since=keep_since)


def _read(
    store: ArtifactStore,
    project: str,
    env: str,
    folder: Path,
    *,
    keep_since: datetime | None,
    window: int | None = None,
) -> Snapshot:
    folder.mkdir(parents=True, exist_ok=True)
    for table in _TABLES:
        (folder / table).unlink(missing_ok=True)
    fetched = folder / "fetched"
    shutil.rmtree(fetched, ignore_errors=True)
    prefix = history_prefix(project, env)
    current = read_current(store, project, env)
    recent = (
        window is not None
        and current.recent_since is not None
        and window <= current.recent_per_node
    )
    if current.base == LEGACY:
        base_keys = [f"{prefix}/{t}" for t in _TABLES]
    else:
        which = _RECENT if recent else ""
        base_keys = [f"{prefix}/base/{current.base}{which}{s}" for s in (_RUNS, _NODES)]
    listed_at = datetime.now(UTC)  # before the listing: every part named before it - MARGIN
    parts = list_parts(store, project, env, current)
    part_keys = [f"{prefix}/parts/{p}{s}" for p in parts for s in (_RUNS, _NODES)]
    with ThreadPoolExecutor(_FETCHERS) as pool:
        blobs = list(pool.map(store.get_bytes, base_keys + part_keys))
    sources: list[Path] = []
    base, rest = blobs[:2], blobs[2:]
    if all(b is not None for b in base):
        sources.append(_written(fetched / "base", base))
    elif current.base != LEGACY:
        raise ArtifactStoreError(f"{store.url}/{prefix}/current.json names a missing base")
    # legacy: none, or one table without the other (a write that stopped half-way): no base
    for i, part in enumerate(parts):
        pair = rest[2 * i : 2 * i + 2]
        if any(b is None for b in pair):  # its runs file was listed: nodes were written first
            raise ArtifactStoreError(f"{store.url}/{prefix}/parts/{part} lost a table")
        sources.append(_written(fetched / f"part-{i:04d}", pair))
    if len(sources) == 1 and keep_since is None:
        for table in _TABLES:
            (sources[0] / table).replace(folder / table)
    elif sources:
        _merge(sources, folder, keep_since=keep_since)
    shutil.rmtree(fetched, ignore_errors=True)
    since = current.recent_since if recent else None
    return Snapshot(
        found=bool(sources), current=current, parts=parts, listed_at=listed_at, since=since
    )


def _recent(folder: Path, into: Path, *, runs: int, per_node: int) -> datetime | None:
    """The recent tables of `folder`'s in `into`: its newest `runs` runs whole, and each node's
    newest `per_node` successful results; the start of the oldest of those runs (None: no runs)."""
    import duckdb

    into.mkdir(parents=True, exist_ok=True)
    all_runs, all_nodes = (str(folder / t) for t in _TABLES)
    con = duckdb.connect()
    try:
        con.execute("set timezone = 'UTC'")
        con.execute(
            "create temp table newest as select record, started_at from read_parquet(?) "
            "order by started_at desc, record limit ?",
            [all_runs, runs],
        )
        con.execute(
            f"""
            create temp table kept as
            select n.* exclude (k) from (
                select n.*, case when n.status in {JUDGED_SQL} then row_number() over (
                    partition by n.id, n.status in {JUDGED_SQL}
                    order by r.started_at desc, n.record) end as k
                from read_parquet(?) as n
                inner join read_parquet(?) as r on n.record = r.record
            ) as n
            where k <= ? or n.record in (select record from newest)
            """,
            [all_nodes, all_runs, per_node],
        )
        con.execute(f"copy kept to '{into / NODES_TABLE}' (format parquet)")
        con.execute(
            f"copy (select * from read_parquet(?) where record in (select record from newest) "
            f"or record in (select record from kept)) to '{into / RUNS_TABLE}' (format parquet)",
            [all_runs],
        )
        row = con.execute("select min(started_at) from newest").fetchone()
    finally:
        con.close()
    return row[0] if row else None


def _written(into: Path, blobs: Iterable[bytes | None]) -> Path:
    into.mkdir(parents=True)
    for table, data in zip(_TABLES, blobs, strict=True):
        (into / table).write_bytes(data or b"")
    return into


def _merge(sources: list[Path], into: Path, *, keep_since: datetime | None) -> None:
    """The tables of `sources` as one pair in `into`: a run (its `record`) kept once, from the
    last source that has it, and runs started before `keep_since` left out."""
    import duckdb

    def union() -> str:
        # Tables written before the store kept no local path have a `filename` column: dropped.
        return " union all by name ".join(
            f"select columns(lambda c: c != 'filename'), {i} as _src from read_parquet(?)"
            for i in range(len(sources))
        )

    runs, nodes = (str(into / t) for t in _TABLES)
    con = duckdb.connect()
    try:
        con.execute("set timezone = 'UTC'")
        con.execute(
            f"""
            create temp table kept as
            select * from ({union()})
            where ? is null or started_at >= ?
            qualify row_number() over (partition by record order by _src desc) = 1
            """,
            [*(str(s / RUNS_TABLE) for s in sources), keep_since, keep_since],
        )
        con.execute(f"copy (select * exclude (_src) from kept) to '{runs}.tmp' (format parquet)")
        every = con.execute(
            f"select count(*) = (select count(*) from kept) from ({union()})",
            [str(s / RUNS_TABLE) for s in sources],
        ).fetchone()
        # Mostly every run is kept, and the nodes are the sources' as they are: no join.
        keep = (
            ""
            if every and every[0]
            else "semi join kept as k on n.record = k.record and n._src = k._src"
        )
        con.execute(
            f"copy (select n.* exclude (_src) from ({union()}) as n {keep}) "
            f"to '{nodes}.tmp' (format parquet)",
            [str(s / NODES_TABLE) for s in sources],
        )
    finally:
        con.close()
    for table in _TABLES:
        Path(f"{into / table}.tmp").replace(into / table)


def _stamp_of(part: str) -> str:
    """A part's stamp (`<day>/<stamp>-<run_id>`): the moment it was written."""
    return part.rsplit("/", 1)[-1][:_STAMP_LEN]


def _day_of(watermark: str) -> str:
    """The day folder of a stamp: 20261206T... is 2026-12-06."""
    return f"{watermark[:4]}-{watermark[4:6]}-{watermark[6:8]}"
