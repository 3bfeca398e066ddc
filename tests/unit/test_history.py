"""`ferry history`: the store listed, runs fetched once into the cache, the answers DuckDB gives."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from flows.artifacts import LocalStore, S3Store, index_key, open_store
from flows.cli import main as ferry
from flows.exit_codes import ExitCode
from flows.history import fetch
from flows.history.query import ask, parse_since
from flows.run.history import record_of, record_of_stored
from tests.stored_runs import SUMMARY_V1, stored_run

T0 = datetime(2026, 11, 1, 6, 0, tzinfo=UTC)


def sync(store, env, cache_root, project=None):
    """`ferry history`'s fetch, with the run's record as the CLI gives it."""
    return fetch.sync(store, env, cache_root, project, record_of=record_of_stored)


def write_run(store, n, *, project="shop", env="prod", nodes, outcome="success", **summary):
    """Run number `n` (started n hours after T0): `nodes` maps unique_id to (status, seconds,
    rows affected or None)."""
    run_id = f"run-{n:03d}"
    started = T0 + timedelta(hours=n)
    prefix = f"{project}/{env}/runs/{started:%Y-%m-%d}/{run_id}"
    results = []
    for uid, (status, seconds, rows) in nodes.items():
        adapter = {"_message": "OK"} | ({"rows_affected": rows} if rows is not None else {})
        results.append(
            {
                "unique_id": uid,
                "status": status,
                "execution_time": seconds,
                "adapter_response": adapter,
            }
        )
    body = stored_run(
        run_id=run_id,
        project=project,
        env=env,
        request={"command": "build", "select": ["tag:daily"]},
        outcome=outcome,
        verdict=outcome,
        started_at=started,
        git_sha="abc1234def",
        nodes_total=len(nodes),
        failed=[{"unique_id": u} for u, (s, _, _) in nodes.items() if s in {"error", "fail"}],
        **summary,
    )
    store.put_bytes(f"{prefix}/summary.json", body.model_dump_json().encode())
    store.put_bytes(f"{prefix}/run_results.json", json.dumps({"results": results}).encode())
    store.put_bytes(
        index_key(project, env, run_id), json.dumps({"run_id": run_id, "prefix": prefix}).encode()
    )
    return run_id


class CountingStore:
    """A store that counts what is read from it."""

    def __init__(self, store):
        self.inner, self.reads = store, []
        self.url = store.url

    def get_bytes(self, key):
        self.reads.append(key)
        return self.inner.get_bytes(key)

    def list_keys(self, prefix):
        return self.inner.list_keys(prefix)

    def list_folders(self, prefix):
        return self.inner.list_folders(prefix)


def ten_runs(store):
    """model.a: 1..10 s, 500 rows each time; test.b fails in runs 3 and 7, warns in run 5."""
    for n in range(1, 11):
        status = "fail" if n in (3, 7) else "warn" if n == 5 else "pass"
        write_run(
            store,
            n,
            nodes={
                "model.shop.a": ("success", float(n), 500 + n),
                "test.shop.b": (status, 0.1, None),
            },
            outcome="failed" if status == "fail" else "success",
        )


SLOW = {"unique_id": "model.shop.fct_orders", "s": 42.0, "usual_s": 12.0, "runs": 20}
NOTHING_NEW = {
    "unique_id": "model.shop.dim_x",
    "kind": "nothing_new",
    "rows": 0,
    "usual_rows": 1000.0,
    "deviation": 8.0,
    "runs": 20,
}


def by_node(history):
    return {n["node"]: n for n in history.nodes}


def test_local_store_lists_keys_under_a_prefix(tmp_path):
    store = LocalStore(tmp_path / "store")
    assert list(store.list_keys("shop/")) == []  # no folder yet
    for key in ("shop/prod/index/a.json", "shop/prod/runs/d/a/summary.json", "other/x.json"):
        store.put_bytes(key, b"{}")
    assert sorted(store.list_keys("shop/prod/")) == [
        "shop/prod/index/a.json",
        "shop/prod/runs/d/a/summary.json",
    ]
    assert len(list(store.list_keys(""))) == 3
    assert store.list_folders("") == ["other", "shop"]
    assert store.list_folders("shop/prod/") == ["index", "runs"]
    assert store.list_folders("none/") == []


@mock_aws
def test_s3_store_lists_every_page_under_its_prefix(monkeypatch):
    monkeypatch.setattr(S3Store, "list_page_size", 2)  # 7 keys: four pages
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="arts")
    for i in range(7):
        s3.put_object(Bucket="arts", Key=f"dbt/shop/prod/index/{i}.json", Body=b"{}")
    s3.put_object(Bucket="arts", Key="dbt/other/prod/index/x.json", Body=b"{}")
    s3.put_object(Bucket="arts", Key="elsewhere/shop/prod/index/x.json", Body=b"{}")
    keys = list(open_store("s3://arts/dbt").list_keys("shop/prod/index/"))
    assert keys == [f"shop/prod/index/{i}.json" for i in range(7)]
    assert len(list(open_store("s3://arts/dbt").list_keys(""))) == 8
    assert len(list(open_store("s3://arts").list_keys(""))) == 9
    assert open_store("s3://arts/dbt").list_folders("") == ["other", "shop"]
    assert open_store("s3://arts").list_folders("") == ["dbt", "elsewhere"]
    assert open_store("s3://arts/dbt").list_folders("shop/prod/") == ["index"]
    assert open_store("s3://arts/dbt").list_folders("none/") == []


def test_per_node_stats_over_the_runs(tmp_path):
    store = LocalStore(tmp_path / "store")
    ten_runs(store)
    found = ask(sync(store, "prod", tmp_path / "cache").folder)
    assert found.runs_total == 10
    a, b = by_node(found)["model.shop.a"], by_node(found)["test.shop.b"]
    assert (a["runs"], a["median_s"], a["last_s"]) == (10, 5.5, 10.0)
    assert a["p95_s"] == pytest.approx(9.55)
    assert (a["failure_rate"], a["last_rows"], a["median_rows"]) == (0.0, 510, 505.5)
    assert (b["failure_rate"], b["warning_rate"], b["last_rows"]) == (0.2, 0.1, None)
    assert [n["node"] for n in found.nodes] == ["model.shop.a", "test.shop.b"]  # slowest first


def test_runs_newest_first_with_what_ran_and_what_failed(tmp_path):
    store = LocalStore(tmp_path / "store")
    ten_runs(store)
    runs = ask(sync(store, "prod", tmp_path / "cache").folder, limit=4).runs
    assert [r["run_id"] for r in runs] == ["run-010", "run-009", "run-008", "run-007"]
    assert runs[3]["failed"] == ["test.shop.b"] and runs[3]["outcome"] == "failed"
    assert runs[0]["deployment"] == "ad-hoc"
    assert runs[0]["selection"] == "build --select tag:daily"
    assert runs[0]["started_at"] == T0 + timedelta(hours=10)
    assert runs[0]["git_sha"] == "abc1234def" and runs[0]["duration_s"] == 60.0


def test_since_limits_the_runs_and_the_stats(tmp_path):
    store = LocalStore(tmp_path / "store")
    ten_runs(store)
    folder = sync(store, "prod", tmp_path / "cache").folder
    found = ask(folder, since=T0 + timedelta(hours=8))
    assert found.runs_total == 3 and len(found.runs) == 3
    assert by_node(found)["model.shop.a"]["median_s"] == 9.0
    assert by_node(found)["test.shop.b"]["failure_rate"] == 0.0


def test_the_deployment_is_recorded_and_other_envs_and_projects_stay_apart(tmp_path):
    store = LocalStore(tmp_path / "store")
    write_run(store, 1, nodes={"model.shop.a": ("success", 1.0, None)}, deployment="dbt/build-prod")
    write_run(store, 2, env="staging", nodes={"model.shop.a": ("success", 2.0, None)})
    write_run(store, 3, project="other", nodes={"model.other.z": ("success", 3.0, None)})
    prod = ask(sync(store, "prod", tmp_path / "cache").folder)
    assert {r["run_id"]: r["deployment"] for r in prod.runs} == {
        "run-001": "dbt/build-prod",
        "run-003": "ad-hoc",
    }
    only_shop = ask(sync(store, "prod", tmp_path / "cache", "shop").folder, project="shop")
    assert [r["run_id"] for r in only_shop.runs] == ["run-001"]
    assert [n["node"] for n in only_shop.nodes] == ["model.shop.a"]
    staging = ask(sync(store, "staging", tmp_path / "cache").folder)
    assert [r["run_id"] for r in staging.runs] == ["run-002"]


@mock_aws
def test_from_s3_only_runs_not_seen_before_are_fetched(tmp_path):
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="arts")
    store = CountingStore(open_store("s3://arts/dbt"))
    ten_runs(store.inner)
    first = sync(store, "prod", tmp_path / "cache")
    assert (first.known, first.fetched) == (10, 10) and len(store.reads) == 30
    store.reads.clear()
    assert ask(first.folder).runs_total == 10

    again = sync(store, "prod", tmp_path / "cache")
    assert (again.known, again.fetched, store.reads) == (10, 0, [])
    new = write_run(store.inner, 11, nodes={"model.shop.a": ("success", 11.0, None)})
    third = sync(store, "prod", tmp_path / "cache")
    assert third.fetched == 1 and len(store.reads) == 3 and all(new in k for k in store.reads)
    found = ask(third.folder)  # the tables are rebuilt with the new run
    assert found.runs_total == 11 and by_node(found)["model.shop.a"]["last_s"] == 11.0


def test_a_run_without_its_summary_is_skipped_and_asked_again(tmp_path):
    store = LocalStore(tmp_path / "store")
    write_run(store, 1, nodes={"model.shop.a": ("success", 1.0, None)})
    store.put_bytes(index_key("shop", "prod", "run-002"), b'{"prefix": "shop/prod/runs/x/run-002"}')
    synced = sync(store, "prod", tmp_path / "cache")
    assert (synced.fetched, synced.unreadable) == (1, ["run-002"])
    write_run(store, 2, nodes={"model.shop.a": ("success", 2.0, None)})
    assert sync(store, "prod", tmp_path / "cache").fetched == 1


def test_a_run_stored_before_summaries_had_a_version_still_reads(tmp_path):
    """A summary.json of schema 1 (no schema_version, no deployment): its deployment is not
    known, so the history says "-", never "ad-hoc"."""
    store = LocalStore(tmp_path / "store")
    old = json.loads(SUMMARY_V1.read_text())
    prefix = f"shop/local/runs/2026-12-06/{old['run_id']}"
    store.put_bytes(f"{prefix}/summary.json", SUMMARY_V1.read_bytes())
    store.put_bytes(
        index_key("shop", "local", old["run_id"]),
        json.dumps({"run_id": old["run_id"], "prefix": prefix}).encode(),
    )
    write_run(store, 1, env="local", nodes={"model.shop.a": ("success", 1.0, None)})
    synced = sync(store, "local", tmp_path / "cache")
    assert (synced.fetched, synced.unreadable) == (2, [])
    runs = {r["run_id"]: r for r in ask(synced.folder).runs}
    assert runs[old["run_id"]]["deployment"] == "-"
    assert runs[old["run_id"]]["selection"] == "build --select tag:daily --exclude tag:lookup"
    assert runs[old["run_id"]]["outcome"] == "failed" and len(runs[old["run_id"]]["failed"]) == 6
    assert (runs[old["run_id"]]["regressions"], runs[old["run_id"]]["anomalies"]) == ([], [])
    assert runs["run-001"]["deployment"] == "ad-hoc"


def test_a_record_kept_before_records_had_signals_shows_none(tmp_path):
    """A cached record without `regressions` and `anomalies` (one older than them, or written
    by hand) reads as a run that found none, beside one that found some."""
    folder = tmp_path / "records"
    folder.mkdir()
    for n, found in ((1, {}), (2, {"regressions": [SLOW], "anomalies": [NOTHING_NEW]})):
        summary = stored_run(run_id=f"run-{n:03d}", started_at=T0 + timedelta(hours=n))
        record = record_of(summary, [])
        del record["regressions"], record["anomalies"]
        (folder / f"shop__run-{n:03d}.json").write_text(json.dumps(record | found))
    newest, oldest = ask(folder).runs
    assert (oldest["regressions"], oldest["anomalies"]) == ([], [])
    assert (newest["regressions"], newest["anomalies"]) == ([SLOW], [NOTHING_NEW])


def test_an_empty_store_answers_nothing(tmp_path):
    found = ask(sync(LocalStore(tmp_path / "store"), "prod", tmp_path / "cache").folder)
    assert (found.runs, found.nodes, found.runs_total) == ([], [], 0)


def test_two_stores_never_share_a_cache(tmp_path):
    one, two = LocalStore(tmp_path / "one"), LocalStore(tmp_path / "two")
    write_run(one, 1, nodes={"model.shop.a": ("success", 1.0, None)})
    assert (
        sync(one, "prod", tmp_path / "cache").folder != sync(two, "prod", tmp_path / "cache").folder
    )
    assert ask(sync(two, "prod", tmp_path / "cache").folder).runs_total == 0


def test_compact_keeps_only_real_row_counts():
    record = record_of(
        stored_run(started_at=T0, request={"command": "run", "selector": "nightly"}),
        [
            {
                "unique_id": "model.x",
                "status": "success",
                "adapter_response": {"rows_affected": -1},
            },
            {"unique_id": "model.y", "status": "error", "adapter_response": {"rows_affected": 7}},
        ],
    )
    assert (record["deployment"], record["selection"]) == ("ad-hoc", "run --selector nightly")
    assert [(n["rows"], n["failed"]) for n in record["nodes"]] == [(None, False), (7, True)]


NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7d", NOW - timedelta(days=7)),
        ("12h", NOW - timedelta(hours=12)),
        ("30m", NOW - timedelta(minutes=30)),
        ("2w", NOW - timedelta(weeks=2)),
        ("2026-12-01", datetime(2026, 12, 1, tzinfo=UTC)),
        ("2026-12-01T08:30", datetime(2026, 12, 1, 8, 30, tzinfo=UTC)),
    ],
)
def test_since_takes_a_duration_or_a_date(text, expected):
    assert parse_since(text, now=NOW) == expected


@pytest.mark.parametrize("text", ["7", "7x", "yesterday", "2026-13-01", "-3d"])
def test_a_malformed_since_is_refused(text):
    with pytest.raises(ValueError, match="neither a duration"):
        parse_since(text, now=NOW)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--since", "7x"], "--since '7x' is neither a duration"),
        (["--artifacts", "ftp://host/x"], "ftp:// is not supported"),
        (["--limit", "0"], "--limit 0"),
        (["--env", "a/b"], "FERRY_ENV"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, flags, message):
    argv = ["history", "--artifacts", str(tmp_path / "store"), "--cache-dir", str(tmp_path), *flags]
    assert ferry(argv) == ExitCode.INVALID
    err = capsys.readouterr().err
    assert err.startswith("ferry history: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "store").exists()


def test_the_table_shows_runs_and_nodes(tmp_path, capsys):
    store = LocalStore(tmp_path / "store")
    ten_runs(store)
    argv = [
        "history",
        "--artifacts",
        str(store.root),
        "--env",
        "prod",
        "--cache-dir",
        str(tmp_path),
    ]
    assert ferry([*argv, "--limit", "2"]) == ExitCode.OK
    out = capsys.readouterr().out
    assert out.startswith("10 run(s) of environment 'prod'") and "(10 newly fetched)" in out
    lines = out.splitlines()
    assert lines[2].split() == [
        "started",
        "(UTC)",
        "deployment",
        "request",
        "outcome",
        "took",
        "failed",
        "signals",
        "git",
        "image",
    ]
    assert lines[3].split()[:7] == [
        "2026-11-01",
        "16:00",
        "ad-hoc",
        "build",
        "--select",
        "tag:daily",
        "success",
    ]
    assert "model.shop.a" in out and "20%" in out and "510" in out
    assert ferry([*argv, "--nodes", "--json"]) == ExitCode.OK
    data = json.loads(capsys.readouterr().out)
    assert data["fetched"] == 0 and data["runs_total"] == 10 and len(data["runs"]) == 10


def test_an_unreadable_store_fails_with_one_line(tmp_path, capsys):
    store = LocalStore(tmp_path / "store")
    ten_runs(store)
    blocker = tmp_path / "cache-is-a-file"
    blocker.write_text("")
    argv = ["history", "--artifacts", str(store.root), "--env", "prod", "--cache-dir", str(blocker)]
    assert ferry(argv) == ExitCode.FAILED
    err = capsys.readouterr().err
    assert err.startswith("ferry history: ") and err.count("\n") == 1


def test_a_reader_that_stops_reading_ends_it_quietly(tmp_path):
    """`ferry history | head`: no traceback, the status SIGPIPE gives other commands."""
    store = LocalStore(tmp_path / "store")
    ten_runs(store)
    ferry_cli = str(Path(sys.executable).with_name("ferry"))
    argv = ["history", "--env", "prod", "--artifacts", str(store.root)]
    argv += ["--cache-dir", str(tmp_path / "cache")]
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first line
    try:
        done = subprocess.run(
            [ferry_cli, *argv],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
    finally:
        os.close(write)
    assert (done.returncode, done.stderr) == (ExitCode.OUTPUT_CLOSED, "")


def test_each_run_shows_what_it_found_against_the_runs_before_it(tmp_path, capsys):
    store = LocalStore(tmp_path / "store")
    nodes = {"model.shop.fct_orders": ("success", 42.0, None)}
    write_run(store, 1, nodes=nodes)
    write_run(store, 2, nodes=nodes, regressions=[SLOW])
    write_run(store, 3, nodes=nodes, anomalies=[NOTHING_NEW])
    unusual = NOTHING_NEW | {"kind": "unusual", "rows": 90_000, "usual_rows": 120.0}
    long = SLOW | {"unique_id": "model.shop." + "a_very_long_model_name_" * 3, "s": 900.0}
    write_run(store, 4, nodes=nodes, regressions=[long, SLOW], anomalies=[unusual])
    argv = ["history", "--artifacts", str(store.root), "--env", "prod"]
    argv += ["--cache-dir", str(tmp_path / "cache")]
    assert ferry(argv) == ExitCode.OK
    lines = capsys.readouterr().out.splitlines()
    start = lines[2].index("signals")
    end = lines[2].index("git")
    cells = {line[:16]: line[start:end].rstrip() for line in lines[3:7]}
    assert cells == {
        "2026-11-01 10:00": "slow: a_very_long_model_na... 15m (usual 12.0s) +2",
        "2026-11-01 09:00": "rows: dim_x 0 (usual 1,000)",
        "2026-11-01 08:00": "slow: fct_orders 42.0s (usual 12.0s)",
        "2026-11-01 07:00": "",
    }
    assert len(cells["2026-11-01 10:00"]) == 50  # the name is cut, the times and +N are kept
    assert ferry([*argv, "--json"]) == ExitCode.OK
    runs = {r["run_id"]: r for r in json.loads(capsys.readouterr().out)["runs"]}
    assert (runs["run-001"]["regressions"], runs["run-001"]["anomalies"]) == ([], [])
    assert (runs["run-002"]["regressions"], runs["run-002"]["anomalies"]) == ([SLOW], [])
    assert (runs["run-003"]["regressions"], runs["run-003"]["anomalies"]) == ([], [NOTHING_NEW])
    assert runs["run-004"]["regressions"] == [long, SLOW]
    assert runs["run-004"]["anomalies"] == [unusual]
