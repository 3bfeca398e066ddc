"""`end_process`: the `ferry` command ends with its code once its output and logs are out,
without the interpreter's teardown of the objects it leaves."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from flows.exit_codes import ExitCode

# The process leaves a big object graph and an object whose finalizer would say so; its last
# print and log line are still buffered when it ends.
_SCRIPT = textwrap.dedent(
    """
    import logging, sys
    from flows.prefect.process_end import end_process

    class Noisy:
        def __del__(self):
            sys.stderr.write("torn down\\n")

    kept = [Noisy(), [{"i": i} for i in range(200_000)]]
    log = logging.getLogger("ferry-test")
    handler = logging.StreamHandler(open(sys.argv[1], "w", buffering=1 << 20))
    log.addHandler(handler)
    log.warning("the last log line")
    print("the last line", end="")
    end_process(int(sys.argv[2]))
    """
)


@pytest.mark.parametrize("code", [ExitCode.OK, ExitCode.FAILED, ExitCode.INVALID])
def test_the_process_ends_with_its_code_its_output_and_logs_out_and_nothing_torn_down(
    tmp_path: Path, code: int
) -> None:
    log = tmp_path / "run.log"
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(log), str(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == code, done.stderr
    assert done.stdout == "the last line"  # stdout flushed
    assert log.read_text() == "the last log line\n"  # every log handler flushed and closed
    assert "torn down" not in done.stderr  # the interpreter's teardown skipped
    assert "Traceback" not in done.stderr


def test_the_ferry_command_ends_through_it() -> None:
    # The console script is `script`, which ends a run's process with end_process; `main`
    # returns (tests call it in their own process).
    import tomllib

    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    scripts = tomllib.loads(pyproject.read_text())["project"]["scripts"]
    assert scripts["ferry"] == "flows.cli:script"
