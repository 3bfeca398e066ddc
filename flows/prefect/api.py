"""The Prefect API a run would report to, found fast: which one, and whether it answers.

Prefect's client retries an unreachable API for about a minute per call, so `ferry run` checks
it first, in seconds (`unreachable`). Once a run's verdict is known, its process's end is bounded
by flows/prefect/process_end.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx


def configured_url(environ: dict[str, str] | os._Environ[str] = os.environ) -> str | None:
    """The Prefect API a flow run would report to: PREFECT_API_URL or the active profile's.

    None when there is none: Prefect would start a throwaway temporary server instead.
    """
    if environ.get("PREFECT_API_URL"):
        return environ["PREFECT_API_URL"]
    home = Path(environ.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()
    if not (Path(environ.get("PREFECT_PROFILES_PATH") or home / "profiles.toml")).is_file():
        return None  # no profile can name an API: skip importing Prefect to find out
    from prefect.settings import get_current_settings

    return get_current_settings().api.url or None


def unreachable(api_url: str, timeout_s: float = 5.0) -> str | None:
    """Why the API cannot be reached, or None when it answers (with any HTTP status)."""
    try:
        httpx.get(f"{api_url.rstrip('/')}/health", timeout=timeout_s)
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return None
