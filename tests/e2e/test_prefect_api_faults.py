"""`ferry run` when the Prefect API is away: at the start, mid-run, or never configured.

Each run is the real CLI in a subprocess, on the example project on DuckDB; the API is a real
Prefect server on 127.0.0.1 that the test stops by its pid.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from flows.exit_codes import ExitCode
from flows.prefect import server as prefect_server
from tests.conftest import load_generator
from tests.e2e.conftest import FERRY

pytestmark = pytest.mark.e2e


@pytest.fixture
def shop_env(shop_project: Path, tmp_path: Path) -> dict[str, str]:
    """The example project with its raw data, and a Prefect home of its own (no profile)."""
    db = tmp_path / "shop.duckdb"
    load_generator(shop_project).main(["--target", "duckdb", "--duckdb-path", str(db)])
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    return {
        **env,
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "FERRY_DUCKDB_PATH": str(db),
        "FERRY_WORK_DIR": str(tmp_path / "runs"),
        "FERRY_PROJECT_DIR": str(shop_project),
        "FERRY_PROFILES_DIR": str(shop_project),
        "FERRY_ARTIFACTS": str(tmp_path / "artifacts"),
    }


def ferry(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(FERRY), "run", "--json", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_an_api_that_dies_mid_run_holds_the_verdict_only_for_the_wait_setting(shop_env, tmp_path):
    server = prefect_server.start(tmp_path / "server")
    env = {**shop_env, "PREFECT_API_URL": server.api_url, "FERRY_PREFECT_API_WAIT_S": "5"}
    proc = subprocess.Popen(
        [str(FERRY), "run", "--json"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    stderr: list[str] = []
    killed = threading.Event()

    def read_stderr() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            stderr.append(line)
            if not killed.is_set() and " of 1" in line and " START " in line:
                prefect_server.stop(server.pid)  # dbt's first node started: the API goes away
                killed.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        assert proc.stdout is not None
        stdout = proc.stdout.read()  # until the process closes it: at its end
        ended = datetime.now(UTC)
        proc.wait(timeout=60)
    finally:
        prefect_server.stop(server.pid)
    reader.join(timeout=10)
    err = "".join(stderr)
    assert killed.is_set(), err[-3000:]
    assert proc.returncode == ExitCode.OK, err[-3000:]  # the build passed (with a warning): exit 0
    summary = json.loads(stdout)
    assert summary["outcome"] == "warnings"
    waited = (ended - datetime.fromisoformat(summary["finished_at"])).total_seconds()
    print(f"\nverdict and artifacts -> process end, the API gone: {waited:.1f} s (bound: 5 s)")
    assert waited < 5 + 10, err[-3000:]  # the wait setting plus the process's own exit
    assert "dropped" in err and "FERRY_PREFECT_API_WAIT_S" in err
    assert "Traceback" not in err
    assert Path(summary["artifacts"], "run_results.json").is_file()


def test_an_unreachable_api_fails_fast_naming_it(shop_env, tmp_path):
    url = f"http://127.0.0.1:{prefect_server.free_port()}/api"
    started = time.monotonic()
    proc = ferry({**shop_env, "PREFECT_API_URL": url}, "--select", "stg_shop__customers")
    elapsed = time.monotonic() - started
    assert proc.returncode == ExitCode.FAILED, proc.stderr[-2000:]
    assert url in proc.stderr and "--no-prefect" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert elapsed < 15, elapsed  # seconds, not Prefect's minute of retries
    assert not (tmp_path / "artifacts").exists()


def test_without_an_api_it_runs_without_prefect_and_bad_input_always_exits_2(shop_env, tmp_path):
    ok = ferry(shop_env, "--command", "run", "--select", "stg_shop__customers")
    assert ok.returncode == ExitCode.OK, ok.stderr[-2000:]
    assert "running without Prefect" in ok.stderr
    assert json.loads(ok.stdout)["flow_run_id"] is None
    for _ in range(5):  # the same bad input, the same exit code, every time
        bad = ferry(shop_env, "--select", "no_such_model")
        assert bad.returncode == ExitCode.INVALID, bad.stderr[-2000:]
        assert "matches no node" in bad.stderr and "Traceback" not in bad.stderr
        assert json.loads(bad.stdout)["outcome"] == "invalid"
