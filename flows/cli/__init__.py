"""`ferry`: dbt in production with Prefect, grouped by job.

Every command exits 0 when its work succeeded, 1 when the work was tried and failed, 2 on bad
input refused before anything changed (flows.exit_codes.ExitCode); it says why on stderr as
`ferry <group> <verb>: <message>`. A reader that stops reading (`ferry history | head`) ends it
quietly with 141 (`ExitCode.OUTPUT_CLOSED`), as SIGPIPE ends other commands.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from flows.cli import alerts, ci, packages, release, rollback, stack
from flows.cli import history as history_cli
from flows.cli import report as report_cli
from flows.cli import run as run_cli
from flows.exit_codes import ExitCode

GROUPS = ("run", "history", "report", "rollback", "stack", "packages", "alerts", "release", "ci")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ferry", description=__doc__)
    sub = parser.add_subparsers(dest="action", metavar="COMMAND", required=True)
    run_cli.add_parser(sub)
    history_cli.add_parser(sub)
    report_cli.add_parser(sub)
    rollback.add_parser(sub)
    for group in (stack, packages, alerts, release, ci):
        group.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return _dispatch(_parser().parse_args(argv))


def script() -> NoReturn:
    """The `ferry` command. A run's process ends as soon as its verdict and Prefect's last
    updates are out (flows.prefect.process_end.end_process), not after Python has freed dbt's
    objects one by one; `main` is the same without ending the process (tests call it)."""
    args = _parser().parse_args()
    code = _dispatch(args)
    if args.action == "run":
        from flows.prefect.process_end import end_process

        end_process(code)
    sys.exit(code)


def _dispatch(args: argparse.Namespace) -> int:
    try:
        code = run_cli.main(args) if args.action == "run" else int(args.leaf(args))
        sys.stdout.flush()  # here, not at exit, where a closed pipe could no longer be handled
        return code
    except BrokenPipeError:
        # Whatever is still buffered for stdout goes nowhere, so that Python's flush at exit
        # does not fail on the closed pipe as well.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return ExitCode.OUTPUT_CLOSED


if __name__ == "__main__":
    script()
