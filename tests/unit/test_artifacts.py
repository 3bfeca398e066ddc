"""The artifact store: layout, pointers, retry lookups, S3 (moto) and failure behaviour."""

import json
from datetime import UTC, datetime

import boto3
import pytest
from moto import mock_aws

from flows.artifacts import (
    FailedRun,
    LocalStore,
    RunLayout,
    find_failed_run,
    mark_retried,
    open_store,
    store_run,
)

DAY = datetime(2026, 3, 4, 5, 6, tzinfo=UTC)


@pytest.fixture
def run_files(tmp_path):
    files = {}
    for name in ("manifest.json", "run_results.json", "dbt.log", "summary.json"):
        path = tmp_path / "local" / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps({"file": name}))
        files[name] = path
    return files


def publish(store, files, run_id, *, failed, update_state=False):
    layout = RunLayout("shop", "prod", run_id, DAY)
    pub = store_run(
        store,
        layout,
        files,
        files["dbt.log"].parent,
        failed=failed,
        update_state=update_state,
        pointer={"run_id": run_id},
    )
    return layout, pub


def test_runs_are_laid_out_by_project_environment_date_and_run(tmp_path, run_files):
    store = LocalStore(tmp_path / "store")
    layout, pub = publish(store, run_files, "run-1", failed=False, update_state=True)
    assert pub.complete and sorted(pub.stored) == sorted(run_files)
    run_dir = tmp_path / "store" / "shop/prod/runs/2026-03-04/run-1"
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(run_files)
    assert pub.location == f"{tmp_path / 'store'}/shop/prod/runs/2026-03-04/run-1"
    index = json.loads((tmp_path / "store/shop/prod/index/run-1.json").read_text())
    assert index == {"run_id": "run-1", "prefix": layout.run_prefix}
    # a successful build moves the production state that Slim CI and --defer read
    state = tmp_path / "store/shop/prod/state"
    assert json.loads((state / "manifest.json").read_text()) == {"file": "manifest.json"}
    assert not (state / "last-failure.json").exists()


def test_a_failed_run_becomes_the_one_retry_fetches(tmp_path, run_files):
    store = LocalStore(tmp_path / "store")
    publish(store, run_files, "run-1", failed=True)
    fetched = find_failed_run(store, "shop", "prod", None)
    assert fetched.run_id == "run-1"
    assert not (tmp_path / "state").exists()  # found, nothing written
    fetched.write(tmp_path / "state")
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == [
        "manifest.json",
        "run_results.json",
    ]
    assert not (tmp_path / "store/shop/prod/state/manifest.json").exists()

    mark_retried(store, "shop", "prod", "run-1", by="run-2")
    with pytest.raises(LookupError, match="already retried by run run-2"):
        find_failed_run(store, "shop", "prod", None)
    # naming the run explicitly still works
    assert find_failed_run(store, "shop", "prod", "run-1").run_id == "run-1"


def test_a_failed_run_says_its_command_adapter_and_the_nodes_retry_runs_again():
    results = {
        "args": {"which": "run"},
        "results": [
            {"unique_id": "model.shop.a", "status": "success"},
            {"unique_id": "test.shop.t", "status": "warn"},
            {"unique_id": "model.shop.b", "status": "error"},
            {"unique_id": "model.shop.c", "status": "skipped"},
            {"unique_id": "test.shop.u", "status": "fail"},
        ],
    }
    failed = FailedRun(
        run_id="run-1",
        pointer={},
        files={
            "run_results.json": json.dumps(results).encode(),
            "manifest.json": json.dumps({"metadata": {"adapter_type": "postgres"}}).encode(),
        },
    )
    assert failed.command == "run"
    assert failed.not_passed == ("model.shop.b", "model.shop.c", "test.shop.u")
    assert failed.adapter_type == "postgres"
    # files that say nothing: a build, nothing to run again, the adapter unknown
    blank = FailedRun(run_id="run-2", pointer={}, files={"run_results.json": b"{}"})
    assert (blank.command, blank.not_passed, blank.adapter_type) == ("build", (), None)


def test_retry_lookups_explain_what_is_missing(tmp_path):
    store = LocalStore(tmp_path / "store")
    with pytest.raises(LookupError, match="no failed run of project 'shop' in environment 'prod'"):
        find_failed_run(store, "shop", "prod", None)
    with pytest.raises(LookupError, match="no run abc of project 'shop'"):
        find_failed_run(store, "shop", "prod", "abc")


def test_a_pointer_write_leaves_another_writers_half_written_file_alone(tmp_path):
    """Two writers of one pointer at once (two compactions): each renames its own file into
    place, never the other's, and no temporary file is left or listed."""
    store = LocalStore(tmp_path / "store")
    other = tmp_path / "store/shop/prod/history/current.json.tmp"  # another writer, mid-write
    other.parent.mkdir(parents=True)
    other.write_bytes(b'{"base": "other')
    store.put_bytes("shop/prod/history/current.json", b'{"base": "mine"}')
    assert store.get_bytes("shop/prod/history/current.json") == b'{"base": "mine"}'
    assert other.read_bytes() == b'{"base": "other'
    assert list(store.list_keys("shop")) == ["shop/prod/history/current.json"]
    assert sorted(p.name for p in other.parent.iterdir()) == ["current.json", other.name]
    # A write that fails leaves its temporary file behind neither.
    (other.parent / "stale.json").mkdir()  # a folder where the pointer would go
    with pytest.raises(OSError):
        store.put_bytes("shop/prod/history/stale.json", b"{}")
    assert sorted(p.name for p in other.parent.iterdir()) == [
        "current.json",
        other.name,
        "stale.json",
    ]


class BrokenStore(LocalStore):
    def put_file(self, key, path):
        if key.endswith("run_results.json"):
            raise OSError("disk full")
        super().put_file(key, path)


def test_a_store_failure_is_reported_not_raised_and_pointers_stay(tmp_path, run_files):
    store = BrokenStore(tmp_path / "store")
    _, pub = publish(store, run_files, "run-1", failed=True, update_state=True)
    assert not pub.complete
    assert pub.errors == ["run_results.json: disk full"]
    # no pointer may name a run whose files are missing
    assert not (tmp_path / "store/shop/prod/index").exists()
    assert not (tmp_path / "store/shop/prod/state").exists()


def test_open_store_refuses_unknown_schemes():
    with pytest.raises(ValueError, match="only s3:// URLs and local folders"):
        open_store("gs://bucket/x")
    with pytest.raises(ValueError, match="no bucket"):
        open_store("s3:///x")


@pytest.mark.parametrize(
    ("location", "message"),
    [
        ("", "the artifact location is empty"),
        ("s3:/bucket/x", "is not an S3 URL; write it as s3://bucket/prefix"),
        ("s3:bucket", "is not an S3 URL"),
        ("S3://bucket/x", "is not an S3 URL"),
        ("s3://my bucket/x", "'my bucket' is not an S3 bucket name"),
        ("http:/host/x", "http:// is not supported"),
        ("file:///tmp/x", "file:// is not supported"),
    ],
)
def test_open_store_refuses_what_is_no_store_before_any_write(location, message):
    # A location that would only fail on the first write would fail after the warehouse ran.
    with pytest.raises(ValueError, match=message):
        open_store(location)


def test_open_store_refuses_a_folder_that_a_file_is_in_the_way_of(tmp_path):
    (tmp_path / "a-file").write_text("")
    for folder in (tmp_path / "a-file", tmp_path / "a-file" / "dbt"):
        with pytest.raises(ValueError, match="a-file is a file; pass a folder"):
            open_store(str(folder))
    assert open_store(str(tmp_path / "new" / "dbt")).url == str(tmp_path / "new" / "dbt")
    assert not (tmp_path / "new").exists()  # opening a store writes nothing


def test_open_store_checks_the_s3_endpoint():
    with pytest.raises(ValueError, match="FERRY_S3_ENDPOINT_URL"):
        open_store("s3://ferry-artifacts/dbt", "not a url")


def test_open_store_accepts_legacy_bucket_names_and_folders_with_colons(tmp_path):
    assert open_store("s3://Legacy_Bucket/dbt").url == "s3://Legacy_Bucket/dbt"
    assert open_store(str(tmp_path / "runs:2026")).url == str(tmp_path / "runs:2026")


@mock_aws
def test_s3_store_round_trip_with_prefix(tmp_path, run_files):
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="ferry-artifacts")
    store = open_store("s3://ferry-artifacts/dbt/")
    assert store.url == "s3://ferry-artifacts/dbt"
    layout, pub = publish(store, run_files, "run-9", failed=True)
    assert pub.complete
    keys = {
        o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket="ferry-artifacts")["Contents"]
    }
    assert f"dbt/{layout.run_prefix}/run_results.json" in keys
    assert "dbt/shop/prod/state/last-failure.json" in keys
    fetched = find_failed_run(store, "shop", "prod", None)
    assert fetched.run_id == "run-9"
    assert store.get_bytes("nope/missing.json") is None


@mock_aws
def test_s3_store_without_its_bucket_reports_errors(run_files):
    store = open_store("s3://no-such-bucket/x")
    _, pub = publish(store, run_files, "run-1", failed=False)
    assert len(pub.errors) == len(run_files)
    assert "no-such-bucket" in pub.errors[0]
