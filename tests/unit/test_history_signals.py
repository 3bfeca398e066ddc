"""A run against its history: which nodes are timing regressions or volume anomalies, and the
history tables the store keeps for it (real DuckDB, real records made by `record_of`)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from flows.artifacts import LocalStore
from flows.dbt.nodes import NodeResult, NodeStatus
from flows.history import store
from flows.history.query import NODES_TABLE, RUNS_TABLE, build_tables
from flows.history.signals import Regression, Rules, VolumeAnomaly, find
from flows.run.history import record_of
from tests.stored_runs import stored_run

T0 = datetime(2026, 11, 1, 6, 0, tzinfo=UTC)
RULES = Rules(
    min_runs=3, window=5, regression_factor=2.0, regression_floor_s=10.0, volume_deviation=5.0
)


def record(n: int, nodes: dict, *, project: str = "shop", env: str = "prod") -> dict:
    """Run `n`'s record (started n hours after T0): `nodes` maps unique_id to seconds, or to
    (status, seconds, rows affected or None)."""
    summary = stored_run(
        run_id=f"run-{n:03d}",
        project=project,
        env=env,
        request={"command": "build", "selector": "daily"},
        started_at=T0 + timedelta(hours=n),
        nodes_total=len(nodes),
    )
    results = []
    for uid, value in nodes.items():
        status, seconds, rows = value if isinstance(value, tuple) else ("success", value, None)
        results.append(
            {
                "unique_id": uid,
                "status": status,
                "execution_time": seconds,
                "adapter_response": {} if rows is None else {"rows_affected": rows},
            }
        )
    return record_of(summary, results)


def tables(folder: Path, records: list[dict]) -> Path:
    """The two history tables built from `records`, as `ferry history` builds them."""
    folder.mkdir(parents=True, exist_ok=True)
    for rec in records:
        (folder / f"{rec['project']}__{rec['run_id']}.json").write_text(json.dumps(rec))
    build_tables(str(folder / "*__*.json"), folder)
    return folder


def result(
    uid: str,
    seconds: float,
    *,
    status: str = "success",
    rows: int | None = None,
    resource_type: str | None = None,
) -> NodeResult:
    return NodeResult(
        unique_id=uid,
        resource_type=resource_type or uid.split(".")[0],
        name=uid.split(".")[-1],
        status=NodeStatus(status),
        message=None,
        started_at=T0,
        finished_at=T0,
        execution_time=seconds,
        rows=rows,
    )


def judge(
    folder: Path | None,
    nodes: list[NodeResult],
    rules: Rules = RULES,
    *,
    project: str = "shop",
    env: str = "prod",
):
    return find(folder, nodes, project=project, env=env, rules=rules)


def history(tmp_path: Path, runs: list[dict]) -> Path:
    """Runs (uid -> value as `record` takes them), one hour apart, as tables."""
    return tables(tmp_path / "tables", [record(n, nodes) for n, nodes in enumerate(runs)])


# --- timing regressions --------------------------------------------------------------------------


def test_a_node_over_the_factor_and_the_floor_is_a_regression_and_only_that_one(tmp_path):
    usual = {"model.shop.slow": 10.0, "model.shop.quick": 2.0, "model.shop.steady": 20.0}
    folder = history(tmp_path, [usual] * 3)

    found = judge(
        folder,
        [
            result("model.shop.slow", 25.0),  # 2.5x its 10 s, over the 10 s floor
            result("model.shop.quick", 8.0),  # 4x its 2 s, but under the floor
            result("model.shop.steady", 30.0),  # over the floor, but 1.5x its 20 s
        ],
    )

    assert found.regressions == [
        Regression(unique_id="model.shop.slow", s=25.0, usual_s=10.0, runs=3)
    ]
    assert found.anomalies == []
    assert found.regressions[0].describe() == "model.shop.slow: 25.0 s, usually 10.0 s"


def test_fewer_earlier_runs_than_min_runs_find_nothing(tmp_path):
    folder = history(tmp_path, [{"model.shop.slow": 10.0}] * 2)

    found = judge(folder, [result("model.shop.slow", 100.0)])

    assert found.regressions == [] and found.anomalies == []


def test_no_history_finds_nothing(tmp_path):
    nodes = [result("model.shop.slow", 100.0, rows=0)]
    empty = tmp_path / "empty"
    empty.mkdir()

    assert judge(None, nodes).regressions == []
    assert judge(empty, nodes).regressions == []
    folder = history(tmp_path, [{"model.shop.other": 10.0}] * 5)
    assert judge(folder, nodes).regressions == []  # a new node has no usual time


def test_only_the_last_window_runs_make_the_usual_time(tmp_path):
    # An old slow era (100 s) then the last 5 runs at 10 s: with a window of 5 the median is
    # 10 s; had the old runs counted, it would be 55 s and 25 s no regression.
    folder = history(tmp_path, [{"model.shop.m": 100.0}] * 5 + [{"model.shop.m": 10.0}] * 5)

    found = judge(folder, [result("model.shop.m", 25.0)])

    assert found.regressions == [Regression(unique_id="model.shop.m", s=25.0, usual_s=10.0, runs=5)]


def test_failed_and_skipped_earlier_runs_are_not_part_of_the_usual_time(tmp_path):
    # The most recent runs failed or were skipped (at 1000 s): they neither count as runs nor
    # take places in the window.
    ok = {"model.shop.m": ("success", 10.0, None)}
    bad = [("error", 1000.0, None), ("skipped", 1000.0, None), ("runtime error", 1000.0, None)]
    runs = [ok] * 3 + [{"model.shop.m": b} for b in bad]
    folder = history(tmp_path, runs)

    found = judge(folder, [result("model.shop.m", 25.0)], Rules(min_runs=3, window=3))

    assert found.regressions == [Regression(unique_id="model.shop.m", s=25.0, usual_s=10.0, runs=3)]


def test_warned_earlier_runs_count_and_a_failed_node_now_is_not_judged(tmp_path):
    folder = history(tmp_path, [{"model.shop.m": ("warn", 10.0, None)}] * 3)

    assert [r.unique_id for r in judge(folder, [result("model.shop.m", 25.0)]).regressions] == [
        "model.shop.m"
    ]
    assert judge(folder, [result("model.shop.m", 250.0, status="error")]).regressions == []


def test_other_environments_and_projects_are_ignored(tmp_path):
    m = "model.shop.m"
    records = [record(n, {m: 10.0}) for n in range(3)]
    records += [record(10 + n, {m: 1.0}, env="staging") for n in range(5)]
    records += [record(20 + n, {m: 1.0}, project="other") for n in range(5)]
    folder = tables(tmp_path / "tables", records)

    found = judge(folder, [result(m, 25.0)])

    assert found.regressions == [Regression(unique_id=m, s=25.0, usual_s=10.0, runs=3)]
    assert judge(folder, [result(m, 25.0)], env="dev").regressions == []
    staging = judge(folder, [result(m, 25.0)], env="staging").regressions
    assert staging == [Regression(unique_id=m, s=25.0, usual_s=1.0, runs=5)]


def test_regressions_come_worst_ratio_first(tmp_path):
    usual = {"model.shop.a": 10.0, "model.shop.b": 10.0, "model.shop.c": 5.0}
    folder = history(tmp_path, [usual] * 3)

    found = judge(
        folder,
        [
            result("model.shop.a", 25.0),  # 2.5x
            result("model.shop.b", 60.0),  # 6x
            result("model.shop.c", 15.0),  # 3x
        ],
    )

    assert [r.unique_id for r in found.regressions] == [
        "model.shop.b",
        "model.shop.c",
        "model.shop.a",
    ]


# --- volume anomalies ----------------------------------------------------------------------------

ROWS = [100, 110, 90, 105, 95]  # median 100, MAD 5: a spread of 1.4826 x 5 = 7.413 rows


def counted(tmp_path: Path, rows: list[int], uid: str = "model.shop.orders") -> Path:
    return history(tmp_path, [{uid: ("success", 1.0, r)} for r in rows])


def test_zero_rows_where_there_usually_are_some_is_nothing_new(tmp_path):
    folder = counted(tmp_path, ROWS)

    [anomaly] = judge(folder, [result("model.shop.orders", 1.0, rows=0)]).anomalies

    assert anomaly == VolumeAnomaly(
        unique_id="model.shop.orders",
        kind="nothing_new",
        rows=0,
        usual_rows=100.0,
        deviation=round(100 / 7.413, 2),
        runs=5,
    )
    assert anomaly.describe() == (
        "model.shop.orders: 0 rows, usually 100 (did its sources deliver nothing new?)"
    )


def test_ten_times_the_usual_count_is_unusual_with_its_deviation(tmp_path):
    folder = counted(tmp_path, ROWS)

    [anomaly] = judge(folder, [result("model.shop.orders", 1.0, rows=1000)]).anomalies

    assert (anomaly.kind, anomaly.rows, anomaly.usual_rows) == ("unusual", 1000, 100.0)
    assert anomaly.deviation == pytest.approx(900 / 7.413, abs=0.01)
    assert anomaly.describe() == "model.shop.orders: 1,000 rows, usually 100 (121.4 sd)"


def test_a_count_within_the_usual_spread_is_nothing(tmp_path):
    folder = counted(tmp_path, ROWS)

    assert judge(folder, [result("model.shop.orders", 1.0, rows=120)]).anomalies == []


def test_zero_rows_where_there_usually_are_none_is_nothing(tmp_path):
    folder = counted(tmp_path, [0] * 5)

    assert judge(folder, [result("model.shop.orders", 1.0, rows=0)]).anomalies == []


@pytest.mark.parametrize(("rows", "kind"), [(1040, None), (1200, None), (1300, "unusual")])
def test_a_count_that_never_moved_has_a_spread_of_five_percent(tmp_path, rows, kind):
    # MAD 0: the spread is 5% of the median (50 rows), so 5 sd is a 25% change.
    folder = counted(tmp_path, [1000] * 5)

    found = judge(folder, [result("model.shop.orders", 1.0, rows=rows)]).anomalies

    assert [a.kind for a in found] == ([kind] if kind else [])
    if kind:
        assert found[0].deviation == 6.0


def test_fewer_counted_runs_than_min_runs_find_no_anomaly(tmp_path):
    folder = counted(tmp_path, [100, 100])

    assert judge(folder, [result("model.shop.orders", 1.0, rows=0)]).anomalies == []


def test_tests_seeds_and_views_are_never_judged_on_volume(tmp_path):
    ids = ["model.shop.view", "seed.shop.countries", "test.shop.unique_x", "snapshot.shop.snap"]
    folder = history(tmp_path, [{uid: ("success", 1.0, 100) for uid in ids}] * 5)

    found = judge(
        folder,
        [
            result("model.shop.view", 1.0, rows=None),  # a view: the adapter reports no rows
            result("seed.shop.countries", 1.0, rows=0),
            result("test.shop.unique_x", 1.0, status="pass", rows=0),
            result("snapshot.shop.snap", 1.0, rows=0),  # snapshots are counted
        ],
    )

    assert [(a.unique_id, a.kind) for a in found.anomalies] == [
        ("snapshot.shop.snap", "nothing_new")
    ]


def test_anomalies_come_nothing_new_first_then_the_largest_deviation(tmp_path):
    ids = ["model.shop.a", "model.shop.b", "model.shop.c"]
    folder = history(tmp_path, [{uid: ("success", 1.0, r) for uid in ids} for r in ROWS])

    found = judge(
        folder,
        [
            result("model.shop.a", 1.0, rows=200),  # 13.5 sd
            result("model.shop.b", 1.0, rows=1000),  # 121.4 sd
            result("model.shop.c", 1.0, rows=0),  # nothing new (13.5 sd)
        ],
    )

    assert [(a.unique_id, a.kind) for a in found.anomalies] == [
        ("model.shop.c", "nothing_new"),
        ("model.shop.b", "unusual"),
        ("model.shop.a", "unusual"),
    ]


# --- the tables kept in the store ----------------------------------------------------------------


def table(folder: Path, name: str, columns: str) -> list[tuple]:
    with duckdb.connect() as con:
        return con.execute(
            f"select {columns} from read_parquet(?) order by all", [str(folder / name)]
        ).fetchall()


def test_append_adds_runs_and_drops_those_older_than_keep_since(tmp_path):
    folder = tmp_path / "history"
    folder.mkdir()
    old, kept, new = (record(h, {"model.shop.m": 1.0}) for h in (0, 24 * 6, 24 * 10))

    store.append(folder, old, keep_since=T0 - timedelta(days=1))
    store.append(folder, kept, keep_since=T0 - timedelta(days=1))
    assert table(folder, RUNS_TABLE, "run_id") == [("run-000",), ("run-144",)]
    store.append(folder, new, keep_since=T0 + timedelta(days=5))

    assert table(folder, RUNS_TABLE, "run_id") == [("run-144",), ("run-240",)]
    assert table(folder, NODES_TABLE, "record, id") == [
        ("shop__run-144.json", "model.shop.m"),
        ("shop__run-240.json", "model.shop.m"),
    ]


def test_appending_the_same_run_again_replaces_it(tmp_path):
    folder = tmp_path / "history"
    folder.mkdir()
    since = T0 - timedelta(days=1)
    store.append(folder, record(1, {"model.shop.a": 1.0, "model.shop.b": 2.0}), keep_since=since)
    store.append(folder, record(2, {"model.shop.a": 1.0}), keep_since=since)

    store.append(folder, record(1, {"model.shop.a": 5.0, "model.shop.b": 6.0}), keep_since=since)

    assert table(folder, RUNS_TABLE, "run_id") == [("run-001",), ("run-002",)]
    assert table(folder, NODES_TABLE, "record, id, s") == [
        ("shop__run-001.json", "model.shop.a", 5.0),
        ("shop__run-001.json", "model.shop.b", 6.0),
        ("shop__run-002.json", "model.shop.a", 1.0),
    ]


def test_the_tables_hold_no_local_path_and_older_tables_that_did_lose_it(tmp_path):
    """The tables travel to the store: a run is its record's name, never where this machine kept
    it. Tables written with the former `filename` column still read, and lose it on append."""
    folder = tmp_path / "history"
    folder.mkdir()
    since = T0 - timedelta(days=1)
    store.append(folder, record(1, {"model.shop.a": 1.0}), keep_since=since)
    columns = duckdb.sql(f"describe select * from read_parquet('{folder / RUNS_TABLE}')")
    assert "filename" not in [c[0] for c in columns.fetchall()]

    runs = str(folder / RUNS_TABLE)  # as an older ferry wrote it
    duckdb.sql(
        f"copy (select *, '/home/someone/.ferry/history/x/' || record as filename "
        f"from read_parquet('{runs}')) to '{runs}.old' (format parquet)"
    )
    Path(f"{runs}.old").replace(runs)
    assert judge(folder, [result("model.shop.a", 1.0)]).regressions == []
    store.append(folder, record(2, {"model.shop.a": 1.0}), keep_since=since)
    columns = duckdb.sql(f"describe select * from read_parquet('{runs}')")
    assert "filename" not in [c[0] for c in columns.fetchall()]
    assert table(folder, RUNS_TABLE, "run_id, deployment") == [
        ("run-001", "ad-hoc"),
        ("run-002", "ad-hoc"),
    ]


def test_download_of_half_a_legacy_history_finds_none_and_leaves_neither_table(tmp_path):
    remote = LocalStore(tmp_path / "store")
    built = history(tmp_path, [{"model.shop.m": 1.0}])
    remote.put_file(f"{store.history_prefix('shop', 'prod')}/{RUNS_TABLE}", built / RUNS_TABLE)
    folder = tmp_path / "downloaded"

    assert store.download(remote, "shop", "prod", folder).found is False

    assert sorted(p.name for p in folder.iterdir()) == []
    assert store.download(LocalStore(tmp_path / "nothing"), "shop", "prod", folder).found is False


def test_the_legacy_tables_download_as_they_are(tmp_path):
    """The whole tables an older ferry kept at history/ are the base while no current.json is."""
    remote = LocalStore(tmp_path / "store")
    folder = tmp_path / "history"
    folder.mkdir()
    for n in range(3):
        rows = 100 + n
        store.append(folder, record(n, {"model.shop.m": ("success", 10.0, rows)}), keep_since=T0)
    for name in (RUNS_TABLE, NODES_TABLE):
        remote.put_file(f"{store.history_prefix('shop', 'prod')}/{name}", folder / name)
    back = tmp_path / "back"

    read = store.download(remote, "shop", "prod", back)

    assert read.found is True and read.current.base == store.LEGACY and read.parts == []
    assert (back / RUNS_TABLE).read_bytes() == (folder / RUNS_TABLE).read_bytes()
    assert (back / NODES_TABLE).read_bytes() == (folder / NODES_TABLE).read_bytes()
    assert store.download(remote, "shop", "staging", tmp_path / "other").found is False
    found = judge(back, [result("model.shop.m", 25.0, rows=0)])
    assert [r.usual_s for r in found.regressions] == [10.0]
    assert [(a.kind, a.usual_rows) for a in found.anomalies] == [("nothing_new", 101.0)]
