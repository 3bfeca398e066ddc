"""`ferry release bake` and a run that starts from its state, with real dbt on the example
project."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from flows.dbt.bake import BakeError, BakeSpec, bake
from flows.dbt.profiles import DbtProject
from flows.exit_codes import ExitCode
from flows.run.owner import run
from flows.run.request import RunRequest
from tests.conftest import load_generator, make_settings

pytestmark = pytest.mark.integration

REDSHIFT = {
    "FERRY_REDSHIFT_HOST": "cluster.example.internal",
    "FERRY_REDSHIFT_DATABASE": "analytics",
    "FERRY_REDSHIFT_SCHEMA": "analytics",
    "FERRY_REDSHIFT_USER": "dbt_prod",
}


def test_a_run_starts_from_the_baked_state_of_its_env_and_target(shop_duckdb, tmp_path):
    baked = bake(DbtProject.load(shop_duckdb), BakeSpec(env="test"), tmp_path / "baked")
    assert baked.name == "test/duckdb" and baked.nodes > 100
    assert (baked.path / "partial_parse.msgpack").is_file()
    assert (baked.path / "manifest.json").is_file()

    settings = make_settings(
        shop_duckdb, tmp_path, baked_dir=tmp_path / "baked", target_path=tmp_path / "target"
    )
    summary = run(RunRequest.build(command="run", select="stg_shop__orders"), settings).summary
    assert summary.outcome.value == "success", summary.verdict
    assert summary.parse is not None
    assert (summary.parse.baked, summary.parse.partial, summary.parse.reason) == (
        "test/duckdb",
        True,
        None,
    )
    # dbt_project/ itself is untouched: the bake and the run wrote only where they were told
    assert not (shop_duckdb / "target").exists() and not (shop_duckdb / "logs").exists()


def test_a_changed_connection_value_makes_dbt_parse_in_full_and_ferry_says_why(
    shop_duckdb, tmp_path, monkeypatch, caplog
):
    bake(DbtProject.load(shop_duckdb), BakeSpec(env="test"), tmp_path / "baked")
    moved = tmp_path / "moved.duckdb"  # the profile's path is one of the values dbt hashes
    generator = load_generator(shop_duckdb)
    assert generator.main(["--target", "duckdb", "--duckdb-path", str(moved)]) == 0
    monkeypatch.setenv("FERRY_DUCKDB_PATH", str(moved))
    settings = make_settings(
        shop_duckdb, tmp_path, baked_dir=tmp_path / "baked", target_path=tmp_path / "target"
    )
    with caplog.at_level(logging.INFO, logger="flows.run.owner"):
        summary = run(RunRequest.build(command="run", select="stg_shop__orders"), settings).summary
    assert summary.outcome.value == "success", summary.verdict
    assert summary.parse is not None
    assert summary.parse.baked == "test/duckdb" and not summary.parse.partial
    assert summary.parse.reason == "profile has changed"
    assert "not from the baked parse state test/duckdb: profile has changed" in caplog.text


def test_a_run_of_another_environment_does_not_use_the_state(shop_duckdb, tmp_path):
    bake(DbtProject.load(shop_duckdb), BakeSpec(env="prod"), tmp_path / "baked")
    settings = make_settings(
        shop_duckdb, tmp_path, baked_dir=tmp_path / "baked", target_path=tmp_path / "target"
    )  # env "test"
    summary = run(RunRequest.build(command="run", select="stg_shop__orders"), settings).summary
    assert summary.parse is not None and summary.parse.baked is None
    assert not summary.parse.partial and "saved manifest not found" in (summary.parse.reason or "")


def test_redshift_is_baked_from_its_non_secret_values_without_the_password(
    shop_project, tmp_path, monkeypatch
):
    for name in [*REDSHIFT, "FERRY_REDSHIFT_PASSWORD"]:
        monkeypatch.delenv(name, raising=False)
    spec = BakeSpec(env="prod", target="redshift", environment=REDSHIFT)
    baked = bake(DbtProject.load(shop_project), spec, tmp_path / "baked")
    assert baked.name == "prod/redshift" and baked.placeholders == ()
    info = (baked.path / "bake.json").read_text()
    assert "cluster.example.internal" not in info  # names only, never the values


def test_a_value_left_out_of_the_spec_that_dbt_hashes_fails_the_bake(
    shop_project, tmp_path, monkeypatch
):
    for name in REDSHIFT:
        monkeypatch.delenv(name, raising=False)
    without_user = {k: v for k, v in REDSHIFT.items() if k != "FERRY_REDSHIFT_USER"}
    spec = BakeSpec(env="prod", target="redshift", environment=without_user)
    with pytest.raises(BakeError, match="FERRY_REDSHIFT_USER") as raised:
        bake(DbtProject.load(shop_project), spec, tmp_path / "baked")
    assert "profile has changed" in str(raised.value)
    assert not (tmp_path / "baked" / "prod").exists()


def test_a_secret_that_dbt_does_not_hash_gets_a_placeholder_proven_harmless(
    shop_project, tmp_path, monkeypatch
):
    profiles = shop_project / "profiles.yml"
    data = yaml.safe_load(profiles.read_text())
    data["shop"]["outputs"]["duckdb"]["secrets"] = [  # DuckDB's S3 secret: not in dbt's hash
        {"type": "s3", "key_id": "{{ env_var('SHOP_S3_KEY_ID') }}"}
    ]
    profiles.write_text(yaml.safe_dump(data, sort_keys=False))
    monkeypatch.delenv("SHOP_S3_KEY_ID", raising=False)
    baked = bake(DbtProject.load(shop_project), BakeSpec(env="ci"), tmp_path / "baked")
    assert baked.placeholders == ("SHOP_S3_KEY_ID",)
    assert "SHOP_S3_KEY_ID" not in os.environ  # the bake's environment is restored


def ferry_bake(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`ferry release bake ...` in its own process, as the image build runs it."""
    return subprocess.run(
        [str(Path(sys.executable).with_name("ferry")), "release", "bake", *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_the_command_bakes_with_the_settings_its_flags_give(shop_project, tmp_path, monkeypatch):
    """The flags win over FERRY_* variables, and are not smuggled through the environment."""
    monkeypatch.setenv("FERRY_PROJECT_DIR", str(tmp_path / "not-a-project"))
    monkeypatch.setenv("FERRY_ENV", "staging")
    project = str(shop_project)
    flags = ["--project-dir", project, "--profiles-dir", project, "--env", "test"]
    done = ferry_bake(*flags, "--baked-dir", str(tmp_path / "baked"))
    assert done.returncode == ExitCode.OK, done.stdout + done.stderr
    assert "ferry: baked test/duckdb" in done.stdout
    assert (tmp_path / "baked" / "test" / "duckdb" / "partial_parse.msgpack").is_file()
    assert not (tmp_path / "baked" / "staging").exists()


def test_bad_input_is_refused_before_dbt_parses(shop_project, tmp_path, monkeypatch):
    monkeypatch.delenv("FERRY_BAKED_DIR", raising=False)
    project = str(shop_project)
    flags = ["--project-dir", project, "--profiles-dir", project]
    baked = ["--baked-dir", str(tmp_path / "baked")]
    cases = [
        ((*flags,), "set FERRY_BAKED_DIR or pass --baked-dir"),
        ((*flags, *baked, "--env", "Prod Env"), "FERRY_ENV='Prod Env' must be lowercase"),
        ((*flags, *baked, "--spec", "{env: prod"), "bake spec is not JSON"),
        ((*flags, *baked, "--spec", '{"env": "prod"}', "--target", "duckdb"), "drop --target"),
        ((*flags, *baked, "--target", "nope"), "target 'nope' is not defined in profile"),
        (("--project-dir", str(tmp_path / "nope"), *baked), str(tmp_path / "nope")),
    ]
    for args, message in cases:
        done = ferry_bake(*args)
        assert done.returncode == ExitCode.INVALID, (args, done.stdout + done.stderr)
        assert done.stderr.startswith("ferry release bake: "), done.stderr
        assert message in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not (tmp_path / "baked").exists()


def test_a_bake_that_fails_exits_1_and_keeps_nothing(shop_project, tmp_path, monkeypatch):
    for name in [*REDSHIFT, "FERRY_REDSHIFT_PASSWORD"]:
        monkeypatch.delenv(name, raising=False)
    without_user = {k: v for k, v in REDSHIFT.items() if k != "FERRY_REDSHIFT_USER"}
    spec = {"env": "prod", "target": "redshift", "environment": without_user}
    project = str(shop_project)
    done = ferry_bake(
        "--project-dir", project, "--profiles-dir", project,
        "--baked-dir", str(tmp_path / "baked"), "--spec", json.dumps(spec),
    )  # fmt: skip
    assert done.returncode == ExitCode.FAILED, done.stdout + done.stderr
    assert "ferry release bake: " in done.stderr and "FERRY_REDSHIFT_USER" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "baked" / "prod").exists()
