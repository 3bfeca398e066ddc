"""The history in the store as parts and a compacted base: every run recorded stays, whether runs
record at once, a part lands during a compaction, or the store still has the legacy tables.
Real stores (a folder, S3 on moto), real DuckDB, real records made by `record_of`."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import duckdb
import pytest
from moto import mock_aws

from flows.artifacts import ArtifactStore, ArtifactStoreError, LocalStore, StoredRun, open_store
from flows.cli import main as ferry
from flows.dbt.nodes import NodeResult, NodeStatus
from flows.exit_codes import ExitCode
from flows.history import store
from flows.history.query import NODES_TABLE, RUNS_TABLE
from flows.history.signals import Rules, find
from flows.report.render import report
from flows.run import history
from flows.run.plan import plan
from flows.run.request import RunRequest
from tests.conftest import make_settings
from tests.stored_runs import stored_run
from tests.unit.test_history_signals import T0, record, result

SINCE = T0 - timedelta(days=1)
PREFIX = store.history_prefix("shop", "prod")


@pytest.fixture(params=["folder", "s3"])
def remote(request, tmp_path) -> Iterator[ArtifactStore]:
    if request.param == "folder":
        yield LocalStore(tmp_path / "store")
        return
    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="arts")
        yield open_store("s3://arts/dbt")


def run_ids(folder: Path) -> list[str]:
    with duckdb.connect() as con:
        rows = con.execute(f"select run_id from '{folder / RUNS_TABLE}' order by 1")
        return [r[0] for r in rows.fetchall()]


def node_rows(folder: Path) -> list[tuple]:
    with duckdb.connect() as con:
        return con.execute(
            f"select record, id, s from '{folder / NODES_TABLE}' order by all"
        ).fetchall()


def add(remote: ArtifactStore, tmp_path: Path, n: int, seconds: float = 1.0) -> store.Written:
    """Run `n` recorded as a run does: the history read, then its own part written."""
    folder = tmp_path / f"run-{n}-{seconds}"
    store.download(remote, "shop", "prod", folder)
    return store.add_run(
        remote, "shop", "prod", folder, record(n, {"model.shop.m": seconds}), keep_since=SINCE
    )


def read(remote: ArtifactStore, tmp_path: Path, name: str = "read") -> tuple[store.Snapshot, Path]:
    folder = tmp_path / name
    return store.download(remote, "shop", "prod", folder), folder


def keys(remote: ArtifactStore) -> list[str]:
    return sorted(remote.list_keys(f"{PREFIX}/"))


def test_a_run_writes_only_its_own_small_part(remote, tmp_path):
    add(remote, tmp_path, 1)
    before = keys(remote)
    written = add(remote, tmp_path, 2)

    assert [k for k in keys(remote) if k not in before] == sorted(written.keys)
    assert len(written.keys) == 2 and written.bytes < 20_000
    nodes_key, runs_key = written.keys
    assert nodes_key.endswith(".nodes.parquet") and runs_key.endswith(".runs.parquet")
    assert runs_key.startswith(f"{PREFIX}/parts/{datetime.now(UTC):%Y-%m-%d}/")
    assert runs_key.endswith("-run-002.runs.parquet")
    snapshot, folder = read(remote, tmp_path)
    assert snapshot.found and len(snapshot.parts) == 2
    assert run_ids(folder) == ["run-001", "run-002"]


def test_a_part_is_read_only_once_its_runs_file_is_there(remote, tmp_path):
    for n in (1, 2):
        add(remote, tmp_path, n)
    built = store._built(tmp_path / "half", record(3, {"model.shop.m": 1.0}))
    now = datetime.now(UTC)
    key = f"{PREFIX}/parts/{now:%Y-%m-%d}/{store.stamp(now)}-run-003"
    remote.put_file(f"{key}.nodes.parquet", built / NODES_TABLE)  # a writer that stopped here

    snapshot, folder = read(remote, tmp_path)
    assert len(snapshot.parts) == 2 and run_ids(folder) == ["run-001", "run-002"]

    remote.put_file(f"{key}.runs.parquet", built / RUNS_TABLE)  # the commit marker lands
    snapshot, folder = read(remote, tmp_path, "again")
    assert len(snapshot.parts) == 3 and run_ids(folder) == ["run-001", "run-002", "run-003"]


def test_compaction_folds_the_parts_and_keeps_every_run(remote, tmp_path):
    for n in range(1, 6):
        add(remote, tmp_path, n, seconds=float(n))
    add(remote, tmp_path, 3, seconds=30.0)  # run 3's history step ran again: it replaces run 3
    _, before = read(remote, tmp_path, "before")

    done = store.compact(remote, "shop", "prod", tmp_path / "compact", keep_since=SINCE)

    assert done is not None
    current = store.Current.model_validate_json(remote.get_bytes(done.keys[-1]) or b"")
    assert done.keys[1] == f"{PREFIX}/base/{current.base}.runs.parquet"
    # the parts were all written within MARGIN of the compaction: held past the watermark
    assert current.watermark <= store.stamp(datetime.now(UTC) - store.MARGIN)
    assert len(current.included_after_watermark) == 6
    snapshot, after = read(remote, tmp_path, "after")
    assert snapshot.parts == [] and snapshot.current == current
    assert run_ids(after) == ["run-001", "run-002", "run-003", "run-004", "run-005"]
    assert node_rows(after) == node_rows(before)
    assert ("shop__run-003.json", "model.shop.m", 30.0) in node_rows(after)
    assert store.compact(remote, "shop", "prod", tmp_path / "again", keep_since=SINCE) is None

    add(remote, tmp_path, 6)  # after the compaction: read on top of the base
    snapshot, last = read(remote, tmp_path, "last")
    assert [p[-7:] for p in snapshot.parts] == ["run-006"]
    assert run_ids(last)[-1] == "run-006" and len(run_ids(last)) == 6


def test_a_run_reads_the_recent_base_and_judges_as_the_whole_base_would(
    remote, tmp_path, monkeypatch
):
    """The recent base: the newest runs whole and each node's newest successful results, so a
    node that ran only long ago is still judged; a window larger than it keeps reads it all."""
    every, rare = "model.shop.every", "model.shop.rare"
    for n in range(1, 13):
        nodes = {every: 1.0 + n / 100}
        if n <= 3:
            nodes[rare] = 1.0 + n / 100
        elif n == 4:
            nodes[rare] = ("error", 0.1, None)  # not a result it is judged against
        folder = tmp_path / f"run-{n}"
        store.download(remote, "shop", "prod", folder)
        store.add_run(remote, "shop", "prod", folder, record(n, nodes), keep_since=SINCE)
    monkeypatch.setattr(store, "RECENT_RUNS", 4)
    monkeypatch.setattr(store, "RECENT_PER_NODE", 2)
    done = store.compact(remote, "shop", "prod", tmp_path / "compact", keep_since=SINCE)
    assert done is not None and f"{PREFIX}/base/" in done.keys[2] and ".recent." in done.keys[2]

    recent = store.download(remote, "shop", "prod", tmp_path / "recent", window=2)
    assert recent.since == T0 + timedelta(hours=9)  # the oldest of the newest 4 runs
    assert run_ids(tmp_path / "recent") == ["run-002", "run-003"] + [
        f"run-{n:03d}" for n in range(9, 13)
    ]
    for window in (3, None):  # more than the recent base keeps, or a reader of every run
        whole = store.download(remote, "shop", "prod", tmp_path / f"whole-{window}", window=window)
        assert whole.since is None and len(run_ids(tmp_path / f"whole-{window}")) == 12

    slow = [result(every, 30.0), result(rare, 30.0)]
    rules = Rules(min_runs=2, window=2, regression_floor_s=1.0)
    found = {
        name: find(tmp_path / name, slow, project="shop", env="prod", rules=rules)
        for name in ("recent", "whole-None")
    }
    assert found["recent"] == found["whole-None"]
    assert sorted((r.unique_id, r.usual_s) for r in found["recent"].regressions) == [
        (every, 1.115),  # runs 11 and 12
        (rare, 1.025),  # runs 2 and 3, ten runs back
    ]
    page = report(
        tmp_path / "recent", env="prod", project="shop", store_url="s", since=recent.since
    )
    assert page.runs == 4


def test_parts_named_before_the_watermark_are_held_by_the_base_and_not_read_again(remote, tmp_path):
    """A later compaction moves the watermark past the older parts: they count once, from the
    base, and only the day folders from the watermark's day are listed."""
    early = datetime.now(UTC) - timedelta(days=2)
    for n, at in ((1, early), (2, early + timedelta(hours=1))):
        put_part(remote, tmp_path, record(n, {"model.shop.m": 1.0}), at)
    add(remote, tmp_path, 3)
    store.compact(remote, "shop", "prod", tmp_path / "compact", keep_since=SINCE)
    current = store.read_current(remote, "shop", "prod")
    assert current.watermark > store.stamp(early + timedelta(hours=1))
    assert [p[-7:] for p in current.included_after_watermark] == ["run-003"]

    listed = ListingStore(remote)
    snapshot, folder = read(listed, tmp_path)

    assert snapshot.parts == [] and run_ids(folder) == ["run-001", "run-002", "run-003"]
    assert listed.listed == [f"{PREFIX}/parts/{datetime.now(UTC):%Y-%m-%d}/"]


def test_runs_older_than_the_kept_days_drop_out_at_compaction(remote, tmp_path):
    for n in (1, 24 * 20, 24 * 40):
        add(remote, tmp_path, n)
    store.compact(remote, "shop", "prod", tmp_path / "c", keep_since=T0 + timedelta(days=10))
    _, folder = read(remote, tmp_path)
    assert run_ids(folder) == ["run-480", "run-960"]
    assert {r[0] for r in node_rows(folder)} == {"shop__run-480.json", "shop__run-960.json"}


def test_a_part_written_while_a_compaction_runs_is_still_read_afterwards(remote, tmp_path):
    """The compaction lists the parts, then another run writes its part before current.json is
    written: the new base lacks it, so readers must read it beside the base."""
    for n in (1, 2):
        add(remote, tmp_path, n)
    racing = RacingStore(remote, lambda: add(remote, tmp_path, 3))

    done = store.compact(racing, "shop", "prod", tmp_path / "compact", keep_since=SINCE)

    assert done is not None and racing.raced
    current = store.read_current(remote, "shop", "prod")
    assert all("run-003" not in p for p in current.included_after_watermark)
    with duckdb.connect() as con:
        base = remote.get_bytes(done.keys[1]) or b""
        (tmp_path / "base.parquet").write_bytes(base)
        in_base = con.execute(f"select run_id from '{tmp_path / 'base.parquet'}' order by 1")
        assert [r[0] for r in in_base.fetchall()] == ["run-001", "run-002"]
    snapshot, folder = read(remote, tmp_path)
    assert [p[-7:] for p in snapshot.parts] == ["run-003"]
    assert run_ids(folder) == ["run-001", "run-002", "run-003"]


def test_two_compactions_at_once_each_leave_every_run(remote, tmp_path):
    for n in range(1, 5):
        add(remote, tmp_path, n)
    start = threading.Barrier(2)

    def compaction(name: str) -> store.Written | None:
        start.wait()
        return store.compact(remote, "shop", "prod", tmp_path / name, keep_since=SINCE)

    with ThreadPoolExecutor(2) as pool:
        done = list(pool.map(compaction, ["a", "b"]))

    assert all(d is not None for d in done)
    assert len({d.keys[1] for d in done if d}) == 2  # each its own base; both stay
    _, folder = read(remote, tmp_path)
    assert run_ids(folder) == ["run-001", "run-002", "run-003", "run-004"]


def test_the_legacy_tables_are_the_base_until_a_compaction_folds_them(remote, tmp_path):
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    for n in (1, 2):
        store.append(legacy, record(n, {"model.shop.m": float(n)}), keep_since=SINCE)
    for name in (RUNS_TABLE, NODES_TABLE):
        remote.put_file(f"{PREFIX}/{name}", legacy / name)
    add(remote, tmp_path, 3)

    snapshot, folder = read(remote, tmp_path, "before")
    assert snapshot.current.base == store.LEGACY and len(snapshot.parts) == 1
    assert run_ids(folder) == ["run-001", "run-002", "run-003"]

    store.compact(remote, "shop", "prod", tmp_path / "compact", keep_since=SINCE)

    snapshot, folder = read(remote, tmp_path, "after")
    assert snapshot.current.base != store.LEGACY and snapshot.parts == []
    assert run_ids(folder) == ["run-001", "run-002", "run-003"]
    assert remote.get_bytes(f"{PREFIX}/{RUNS_TABLE}") == (legacy / RUNS_TABLE).read_bytes()


def test_the_legacy_tables_alone_are_folded_by_a_compaction(remote, tmp_path):
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    store.append(legacy, record(1, {"model.shop.m": 1.0}), keep_since=SINCE)
    for name in (RUNS_TABLE, NODES_TABLE):
        remote.put_file(f"{PREFIX}/{name}", legacy / name)

    assert store.compact(remote, "shop", "prod", tmp_path / "c", keep_since=SINCE) is not None
    snapshot, folder = read(remote, tmp_path)
    assert snapshot.current.base != store.LEGACY and run_ids(folder) == ["run-001"]


def test_a_current_json_naming_a_missing_base_is_an_error_not_an_empty_history(tmp_path):
    remote = LocalStore(tmp_path / "store")
    pointer = store.Current(base="20261201T000000000000Z-gone", watermark="")
    remote.put_bytes(store.current_key("shop", "prod"), pointer.model_dump_json().encode())
    with pytest.raises(ArtifactStoreError, match="missing base"):
        store.download(remote, "shop", "prod", tmp_path / "read")


# --- the run's history step: compare then record, as flows.run.owner calls them ---------------


def history_step(settings, run_id: str, seconds: float, compared: threading.Barrier) -> None:
    """One run's history step, as flows.run.owner runs it; `compared`: where it waits between
    compare and record."""
    planned = plan(RunRequest.build(command="build"), settings, run_id=run_id)
    now = datetime.now(UTC)
    node = NodeResult(
        unique_id="model.shop.m",
        resource_type="model",
        name="m",
        status=NodeStatus.SUCCESS,
        message=None,
        started_at=now,
        finished_at=now,
        execution_time=seconds,
        rows=None,
    )
    log = logging.getLogger(f"test.{run_id}")
    comparison = history.compare(planned, [node], log)
    assert comparison.tables is not None
    compared.wait()  # both read the history before either adds itself: the race of old
    summary = stored_run(run_id=run_id, project="shop", env="prod", started_at=now)
    stored = StoredRun(location="x", local_copy=planned.run_dir)
    history.record(summary, planned, [node], comparison, stored, log)


def test_two_runs_recording_at_once_both_stay(shop_project, tmp_path):
    settings = make_settings(shop_project, tmp_path, env="prod")
    remote = open_store(settings.store.artifacts)
    history_step(settings, "run-first", 1.0, threading.Barrier(1))
    compared = threading.Barrier(2)

    with ThreadPoolExecutor(2) as pool:
        done = [
            pool.submit(history_step, settings, f"run-{name}", 2.0, compared) for name in ("a", "b")
        ]
        for future in done:
            future.result()

    snapshot, folder = read(remote, tmp_path)
    assert run_ids(folder) == ["run-a", "run-b", "run-first"]
    assert len(snapshot.parts) == 3
    page = remote.get_bytes(store.report_key("shop", "prod")) or b""
    assert b"run-first" in page or b"model.shop.m" in page  # the report was refreshed


def test_a_run_compacts_once_it_finds_more_parts_than_the_limit(
    shop_project, tmp_path, monkeypatch
):
    monkeypatch.setattr(store, "COMPACT_AFTER", 2)
    monkeypatch.setattr(store, "RECENT_RUNS", 2)
    settings = make_settings(shop_project, tmp_path, env="prod")
    remote = open_store(settings.store.artifacts)
    once = threading.Barrier(1)
    for n in range(3):
        history_step(settings, f"run-{n}", 1.0, once)
        assert store.read_current(remote, "shop", "prod").base == store.LEGACY  # 0, 1, 2 found

    history_step(settings, "run-3", 1.0, once)  # found 3 parts: more than 2

    snapshot, folder = read(remote, tmp_path)
    assert snapshot.current.base != store.LEGACY and snapshot.parts == []
    assert run_ids(folder) == ["run-0", "run-1", "run-2", "run-3"]

    # The next run reads the recent base: its report draws the runs since its newest 2 began.
    history_step(settings, "run-4", 1.0, once)
    since = snapshot.current.recent_since
    assert since is not None
    page = (remote.get_bytes(store.report_key("shop", "prod")) or b"").decode()
    assert f"<dt>since</dt><dd>{since:%Y-%m-%d %H:%M} UTC</dd>" in page
    assert re.search(r"<dt>runs</dt><dd>3 \(", page), page[:2000]  # run-2, run-3, run-4


# --- ferry history compact --------------------------------------------------------------------


def test_ferry_history_compact_folds_each_project_of_the_env(tmp_path, capsys):
    remote = LocalStore(tmp_path / "store")
    add(remote, tmp_path, 1)
    other = tmp_path / "other"
    store.download(remote, "jaffle", "prod", other)
    rec = record(2, {"model.jaffle.x": 1.0}, project="jaffle")
    store.add_run(remote, "jaffle", "prod", other, rec, keep_since=SINCE)
    remote.put_bytes("shop/staging/index/x.json", b"{}")  # another env: left alone
    argv = ["history", "compact", "--env", "prod", "--artifacts", str(remote.root)]

    assert ferry(argv) == ExitCode.OK

    out = capsys.readouterr().out
    assert "jaffle/prod/history: compacted into" in out and "shop/prod/history: compacted" in out
    for project in ("shop", "jaffle"):
        assert store.read_current(remote, project, "prod").base != store.LEGACY
    assert store.read_current(remote, "shop", "staging").base == store.LEGACY
    assert ferry([*argv, "--project", "shop"]) == ExitCode.OK
    assert capsys.readouterr().out.strip().endswith("shop/prod/history: nothing to fold")


def test_ferry_history_compact_refuses_the_flags_that_only_show(tmp_path, capsys):
    argv = ["history", "compact", "--env", "prod", "--artifacts", str(tmp_path), "--json"]
    assert ferry(argv) == ExitCode.INVALID
    assert "--json: compact folds the whole history" in capsys.readouterr().err


# --- store wrappers: the real store underneath, something else happening at a chosen moment ---


def put_part(remote: ArtifactStore, tmp_path: Path, rec: dict, at: datetime) -> None:
    """A part as `add_run` writes it, named as if written at `at`."""
    folder = tmp_path / f"part-{rec['run_id']}"
    built = store._built(folder, rec)
    key = f"{PREFIX}/parts/{at:%Y-%m-%d}/{store.stamp(at)}-{rec['run_id']}"
    remote.put_file(f"{key}.nodes.parquet", built / NODES_TABLE)
    remote.put_file(f"{key}.runs.parquet", built / RUNS_TABLE)


class _Wrapped:
    def __init__(self, inner: ArtifactStore):
        self.inner = inner
        self.url = inner.url

    def put_file(self, key, path):
        self.inner.put_file(key, path)

    def put_bytes(self, key, data):
        self.inner.put_bytes(key, data)

    def get_bytes(self, key):
        return self.inner.get_bytes(key)

    def list_folders(self, prefix):
        return self.inner.list_folders(prefix)

    def list_keys(self, prefix):
        return self.inner.list_keys(prefix)


class ListingStore(_Wrapped):
    """Notes every prefix listed."""

    def __init__(self, inner: ArtifactStore):
        super().__init__(inner)
        self.listed: list[str] = []

    def list_keys(self, prefix):
        self.listed.append(prefix)
        return self.inner.list_keys(prefix)


class RacingStore(_Wrapped):
    """Runs `race` right after the first listing of parts was taken, before it is returned."""

    def __init__(self, inner: ArtifactStore, race):
        super().__init__(inner)
        self.race, self.raced = race, False

    def list_keys(self, prefix):
        listing = list(self.inner.list_keys(prefix))
        if "/parts/" in prefix and not self.raced:
            self.raced = True
            self.race()
        return iter(listing)
