"""What every benchmark records beside its figures: the machine and the packages it measured."""

from __future__ import annotations

import os
import platform
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
