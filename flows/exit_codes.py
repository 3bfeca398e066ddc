"""The exit codes of every `ferry` command, and of a run's process."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """What a `ferry` command's exit status means, the same for every command."""

    OK = 0
    """The work succeeded (a run's warnings included)."""
    FAILED = 1
    """The work was tried and failed: dbt failed, a service or the store failed, time ran out."""
    INVALID = 2
    """Bad input, refused before anything was changed: fix the flags, settings or files named."""
    OUTPUT_CLOSED = 141
    """The reader of the command's output went away (`ferry history | head`): 128 + SIGPIPE,
    the status a command killed by SIGPIPE has; nothing more is printed, no traceback."""
