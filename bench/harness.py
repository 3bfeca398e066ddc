"""What the benchmarks share: the machine and packages they record beside their figures, and
how they end on SIGTERM (cleaning up what they made)."""

from __future__ import annotations

import contextlib
import os
import platform
import signal
from collections.abc import Iterator
from importlib import metadata
from typing import Any


def version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"


def environment(*packages: str) -> dict[str, Any]:
    """Python, the platform, the CPUs, and each package's installed version (by its
    distribution name, `dbt-core` as `dbt_core`)."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        **{package.replace("-", "_"): version(package) for package in packages},
    }


@contextlib.contextmanager
def terminated_as_exit() -> Iterator[None]:
    """SIGTERM raises SystemExit, so a benchmark's `finally` (dropping its schemas, stopping
    its server) still runs, and subprocess.run kills the run in progress on its way out."""

    def _exit(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, _exit)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
