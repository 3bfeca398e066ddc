"""`ferry stack up|down|demo`: the local stack of `make demo` on 127.0.0.1.

The stack itself is flows/prefect/local_stack.py.
"""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path
from typing import Any

from flows.cli._common import Failed, Refused, classify, group, leaf
from flows.exit_codes import ExitCode

HOME = ".ferry/demo"


def add_parser(sub: Any) -> None:
    verbs = group(
        sub,
        "stack",
        "the local stack of make demo: Prefect server, worker, deployments, alerts (127.0.0.1)",
    )
    up = leaf(
        verbs,
        "up",
        _up,
        "start the Prefect server, the worker, the local deployments and the alerts",
        "Starts what is not running yet: the Prefect server, a webhook receiver for the "
        "alerts, the ferry-local process pool and its worker, the local deployments, the "
        "channels and automations. Running it twice is harmless.",
    )
    demo = leaf(
        verbs,
        "demo",
        _demo,
        "make demo: the stack up, a passing and a failing run, the failure's alert",
    )
    down = leaf(verbs, "down", _down, "stop what up or demo started")
    for verb in (up, demo, down):
        verb.add_argument("--home", default=HOME, help=f"pid files, logs, DuckDB (default: {HOME})")
    for verb in (up, demo):
        verb.add_argument(
            "--port", type=int, default=4200, help="Prefect's port (the receiver's: +1)"
        )


def _home(args: argparse.Namespace) -> Path:
    from flows.artifacts import file_in_the_way

    home = Path(args.home).resolve()
    if (blocker := file_in_the_way(home)) is not None:
        raise Refused(f"--home {args.home} must be a folder, but {blocker} is a file")
    return home


def _stack(args: argparse.Namespace) -> Any:
    from flows.prefect import local_stack

    if not 0 < args.port < 65535:
        raise Refused(f"--port {args.port} is no port: 1 to 65534 (the receiver takes +1)")
    return local_stack.Stack(home=_home(args), port=args.port, repo=Path.cwd())


def _failures() -> tuple[type[BaseException], ...]:
    import httpx

    # A step's command failed, a process did not start, a run did not end in time, the
    # Prefect API failed: all named in the message.
    return (RuntimeError, OSError, httpx.HTTPError)


def _up(args: argparse.Namespace) -> ExitCode:
    from flows.prefect import local_stack

    stack = _stack(args)
    with classify(failed=_failures()):
        local_stack.up(stack, partial(print, flush=True))  # each step as it happens
    print(f"stack up: Prefect UI {stack.ui_url}")
    return ExitCode.OK


def _demo(args: argparse.Namespace) -> ExitCode:
    from flows.prefect import local_stack

    stack = _stack(args)
    with classify(failed=_failures()):
        if local_stack.demo(stack, partial(print, flush=True)) != ExitCode.OK:
            raise Failed("the failed run's alert did not arrive (see above)")
    return ExitCode.OK


def _down(args: argparse.Namespace) -> ExitCode:
    from flows.prefect import local_stack

    home = _home(args)
    with classify(failed=(OSError,)):
        stopped = local_stack.down(home)
    print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
    return ExitCode.OK
