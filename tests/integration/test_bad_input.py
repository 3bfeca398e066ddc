"""Bad input of every kind: `ferry run` exits 2 with a message to act on, before the warehouse.

Each case runs the real CLI in a subprocess (`--no-prefect --json`, as CI runs it). Most inputs
are judged before dbt parses the project and are refused in well under a second; the few that
need dbt's view of the project (selections, selectors, a profile's credentials) parse it. The
cases share one copy of the project, which no case changes: the first parse is kept in its
`target/`, as a user's is, and the later ones are partial.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from flows.exit_codes import ExitCode
from tests.conftest import SHOP, copy_project

pytestmark = pytest.mark.integration

FERRY = Path(sys.executable).with_name("ferry")


@dataclass(frozen=True)
class Case:
    """One bad input: the flags (and FERRY_* variables) and what the refusal must say.

    `{tmp}` and `{project}` in args and env stand for the test's temp dir and project copy.
    """

    args: tuple[str, ...]
    message: str
    env: dict[str, str] = field(default_factory=dict)
    setup: Callable[[Path], None] | None = None
    by_argparse: bool = False
    """Refused by argparse: a usage line on stderr, nothing on stdout (exit 2 all the same)."""


def _file(name: str, content: bytes = b"") -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)

    return setup


_OTHER_PROFILE = b"other:\n  target: dev\n  outputs:\n    dev: {type: duckdb, path: o.duckdb}\n"
_NO_SUCH_DEFAULT = (
    b"shop:\n  target: nope\n  outputs:\n    duckdb: {type: duckdb, path: s.duckdb}\n"
)


def case(
    *args: str, message: str, marks: pytest.MarkDecorator | tuple[()] = (), **kwargs: Any
) -> Any:
    return pytest.param(Case(args, message, **kwargs), marks=marks)


CASES = {
    # --- selections (dbt parses the project to judge them: the slow few) ---
    "select-malformed": case("--select", "tagg:daily", message="'tagg' is not a valid method"),
    "select-matches-nothing": case(
        "--select", "no_such_model", message="matches no node in project 'shop'"
    ),
    "select-only-nodes-the-command-skips": case(
        "--command", "seed", "--select", "fct_orders", message="but 'seed' runs only seed"
    ),
    "select-looks-like-a-flag": case("--select=--full-refresh", message="looks like a flag"),
    "select-with-a-selector": case(
        "--selector", "daily", "--select", "fct_orders", message="cannot be combined"
    ),
    # --- selector names ---
    "selector-unknown": case(
        "--selector", "no_such_selector", message="Could not find selector named no_such_selector"
    ),
    # --- vars ---
    "vars-malformed": case("--vars", '{"day": ', message="vars is not valid JSON or YAML"),
    "vars-a-list": case("--vars", "[1, 2]", message="vars must be a mapping"),
    "vars-a-scalar": case("--vars", "42", message="vars must be a mapping"),
    "vars-a-date-json-cannot-carry": case(
        "--vars", "day: 2024-01-02", message="vars must be JSON-serialisable"
    ),
    # --- commands ---
    "command-unknown": case("--command", "deploy", message="unknown dbt command 'deploy'"),
    # --- targets ---
    "target-unknown": case(
        "--target", "prod", message="target 'prod' is not defined in profile 'shop'"
    ),
    "target-unknown-from-env": case(
        message="target 'prod' is not defined in profile 'shop'", env={"FERRY_TARGET": "prod"}
    ),
    "target-without-its-credentials": case(
        "--target", "redshift", message="Env var required but not provided: 'FERRY_REDSHIFT_HOST'"
    ),
    "target-default-undefined": case(
        "--profiles-dir",
        "{tmp}/profiles",
        message="names 'nope' as its default target, but defines only duckdb",
        setup=_file("profiles/profiles.yml", _NO_SUCH_DEFAULT),
    ),
    # --- threads ---
    "threads-zero": case("--threads", "0", message="threads must be between 1 and 64, got 0"),
    "threads-negative": case("--threads", "-2", message="threads must be between 1 and 64"),
    "threads-too-many": case("--threads", "65", message="threads must be between 1 and 64"),
    "threads-not-a-number": case(
        "--threads", "abc", message="--threads: invalid int value: 'abc'", by_argparse=True
    ),
    "threads-a-fraction": case(
        "--threads", "1.5", message="--threads: invalid int value: '1.5'", by_argparse=True
    ),
    # --- paths ---
    "project-dir-missing": case(
        "--project-dir", "{tmp}/nowhere", message="nowhere does not exist; pass the directory"
    ),
    "project-dir-not-a-dbt-project": case(
        "--project-dir", "{project}/models", message="no dbt_project.yml in"
    ),
    "project-dir-a-file": case(
        "--project-dir", "{project}/dbt_project.yml", message="dbt_project.yml is a file"
    ),
    "project-file-not-yaml": case(
        "--project-dir",
        "{tmp}/broken",
        message="dbt_project.yml is not valid YAML",
        setup=_file("broken/dbt_project.yml", b"name: [shop\n"),
    ),
    "project-file-not-text": case(
        "--project-dir",
        "{tmp}/binary",
        message="as a YAML text file",
        setup=_file("binary/dbt_project.yml", b"\xff\xfe\x00name"),
    ),
    "profiles-dir-without-profiles-yml": case(
        "--profiles-dir", "{project}/models", message="no profiles.yml in"
    ),
    "profiles-dir-missing": case(
        "--profiles-dir", "{tmp}/nowhere", message="nowhere does not exist; pass the directory"
    ),
    "profile-missing": case(
        "--profiles-dir",
        "{tmp}/profiles",
        message="profile 'shop' (named in dbt_project.yml) is not in",
        setup=_file("profiles/profiles.yml", _OTHER_PROFILE),
    ),
    # --- artifact locations ---
    "artifacts-s3-without-bucket": case("--artifacts", "s3://", message="has no bucket"),
    "artifacts-s3-empty-bucket": case("--artifacts", "s3:///dbt", message="has no bucket"),
    "artifacts-s3-one-slash": case("--artifacts", "s3:/x", message="is not an S3 URL"),
    "artifacts-s3-no-slash": case("--artifacts", "s3:bucket/x", message="is not an S3 URL"),
    "artifacts-s3-capitals": case("--artifacts", "S3://bucket/x", message="is not an S3 URL"),
    "artifacts-s3-bad-bucket": case(
        "--artifacts", "s3://my bucket/x", message="'my bucket' is not an S3 bucket name"
    ),
    "artifacts-ftp": case("--artifacts", "ftp://host/x", message="ftp:// is not supported"),
    "artifacts-http": case("--artifacts", "http://host/x", message="http:// is not supported"),
    "artifacts-file-url": case("--artifacts", "file:///tmp/x", message="file:// is not supported"),
    "artifacts-empty": case(message="the artifact location is empty", env={"FERRY_ARTIFACTS": ""}),
    "artifacts-a-file": case(
        "--artifacts", "{tmp}/a-file/dbt", message="a-file is a file", setup=_file("a-file")
    ),
    "artifacts-s3-endpoint-not-a-url": case(
        "--artifacts",
        "s3://ferry-artifacts/dbt",
        message="FERRY_S3_ENDPOINT_URL",
        env={"FERRY_S3_ENDPOINT_URL": "not a url"},
    ),
    "state-from-ftp": case(
        "--defer", "--state-from", "ftp://host/x", message="ftp:// is not supported"
    ),
    # A run that compares no state ignores FERRY_STATE_FROM today: a build goes on to the
    # warehouse. A retry (which never reads that state) shows it without the cost of a build.
    "state-from-ftp-unused": case(
        "--command",
        "retry",
        message="ftp:// is not supported",
        env={"FERRY_STATE_FROM": "ftp://host/x"},
    ),
    # --- settings given as environment variables (or the flags that set them) ---
    "env-capitalised": case(
        message="FERRY_ENV='Prod' must be lowercase",
        env={"FERRY_ENV": "Prod"},
    ),
    "env-flag-a-path": case("--env", "../prod", message="FERRY_ENV='../prod' must be"),
    "state-env-a-path": case(
        "--defer",
        "--state-env",
        "../prod",
        message="FERRY_STATE_ENV='../prod' must be",
    ),
    "target-schema-not-an-identifier": case(
        message="FERRY_TARGET_SCHEMA='CI PR' must be a plain lowercase identifier",
        env={"FERRY_TARGET_SCHEMA": "CI PR"},
    ),
    "flow-timeout-negative": case(
        message="FERRY_FLOW_TIMEOUT_S='-1': Input should be greater than 0",
        env={"FERRY_FLOW_TIMEOUT_S": "-1"},
    ),
    "node-reporting-unknown": case(
        message="FERRY_NODE_REPORTING='loud'",
        env={"FERRY_NODE_REPORTING": "loud"},
    ),
    "work-dir-a-file": case(
        message="FERRY_WORK_DIR=",
        env={"FERRY_WORK_DIR": "{tmp}/a-file"},
        setup=_file("a-file"),
    ),
    "target-path-a-file": case(
        message="FERRY_TARGET_PATH=",
        env={"FERRY_TARGET_PATH": "{tmp}/a-file"},
        setup=_file("a-file"),
    ),
    # --- retry, deferral, state ---
    "retry-without-a-failed-run": case(
        "--command", "retry", message="no failed run of project 'shop' in environment 'local'"
    ),
    "retry-of-an-unknown-run": case(
        "--command", "retry", "--retry-of", "run-9", message="no run run-9 of project 'shop'"
    ),
    "retry-of-not-a-run-id": case(
        "--command", "retry", "--retry-of", "../../x", message="'../../x' is not a run id"
    ),
    "retry-of-without-retry": case(
        "--retry-of", "run-9", message="retry_of is only meaningful with command 'retry'"
    ),
    "retry-with-a-selection": case(
        "--command", "retry", "--select", "fct_orders", message="it takes no select"
    ),
    "retry-with-defer": case("--command", "retry", "--defer", message="it cannot defer"),
    "defer-without-state": case(
        "--defer", message="no state manifest of project 'shop' in environment 'prod'"
    ),
    "state-selection-without-state": case(
        "--select", "state:modified+", message="no state manifest of project 'shop'"
    ),
    # --- flags the command does not take ---
    "full-refresh-with-test": case(
        "--command", "test", "--full-refresh", message="full_refresh applies to build, run"
    ),
}


@pytest.fixture(scope="module")
def shop_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One copy of the example project for every case; its warehouse is `shop.duckdb` beside it,
    which no case may create."""
    return copy_project(SHOP, tmp_path_factory.mktemp("bad-input") / "shop")


@pytest.mark.parametrize("bad", list(CASES.values()), ids=list(CASES))
def test_bad_input_exits_2_before_the_warehouse_is_touched(
    bad: Case, shop_project: Path, tmp_path: Path
) -> None:
    if bad.setup is not None:
        bad.setup(tmp_path)
    before = set(os.listdir(tmp_path))
    warehouse = shop_project.parent / "shop.duckdb"

    result = _ferry_run(bad, shop_project, tmp_path, warehouse)

    assert result.returncode == ExitCode.INVALID, result.stderr[-3000:]
    assert bad.message in result.stderr, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    if bad.by_argparse:
        assert result.stdout == "" and "usage: ferry run" in result.stderr
    else:
        refusal = json.loads(result.stdout)  # the whole of stdout: one JSON object
        assert refusal["outcome"] == "invalid", refusal
        assert bad.message in refusal["verdict"]
    assert not warehouse.exists(), "the warehouse was opened"
    artifacts = tmp_path / "artifacts"
    assert not artifacts.exists() or not any(artifacts.iterdir()), "artifacts were stored"
    # nothing else was created either (say, a folder named after a mistyped URL): at most the
    # run's scratch folder, where dbt logged its parse or a lookup in the store was kept
    assert set(os.listdir(tmp_path)) - before <= {"runs"}


def _ferry_run(
    bad: Case, project: Path, tmp: Path, warehouse: Path
) -> subprocess.CompletedProcess[str]:
    def fill(text: str) -> str:
        return text.replace("{tmp}", str(tmp)).replace("{project}", str(project))

    env = {k: v for k, v in os.environ.items() if not k.startswith("FERRY_")}
    env.update(
        FERRY_DUCKDB_PATH=str(warehouse),
        FERRY_PROJECT_DIR=str(project),
        FERRY_ARTIFACTS=str(tmp / "artifacts"),
        FERRY_WORK_DIR=str(tmp / "runs"),
    )
    env.update({name: fill(value) for name, value in bad.env.items()})
    return subprocess.run(
        [str(FERRY), "run", "--no-prefect", "--json", *(fill(a) for a in bad.args)],
        env=env,
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=180,
    )
