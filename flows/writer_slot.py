"""One dbt invocation writing to an environment's warehouse at a time (placeholder)."""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager

from flows.dbt.request import DbtCommand


def writer_slot(
    env: str, command: DbtCommand, adapter_type: str | None
) -> AbstractContextManager[None]:
    """Held around every dbt invocation that may write to `env`'s warehouse."""
    return contextlib.nullcontext()
