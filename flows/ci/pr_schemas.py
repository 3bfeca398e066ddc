"""The schemas a pull request builds into, and which of them to drop.

A pull request N builds into `<prefix>_pr_<N>` (FERRY_TARGET_SCHEMA); dbt's custom schemas
become `<prefix>_pr_<N>_<name>`. Ownership is read back from the name alone, so clean-up drops a
schema only when its name says, unambiguously, that it belongs to a pull request - never one
that merely starts alike (`ci_pr_1` never matches `ci_pr_12`, and `analytics` never matches).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

DEFAULT_PREFIX = "ci"
_PREFIX = re.compile(r"^[a-z][a-z0-9_]{0,30}$")


def _check_prefix(prefix: str) -> str:
    if not _PREFIX.match(prefix):
        raise ValueError(f"schema prefix {prefix!r} must be a lowercase identifier, e.g. 'ci'")
    return prefix


def pr_schema(pr: int, prefix: str = DEFAULT_PREFIX) -> str:
    """The schema pull request `pr` builds into."""
    if pr <= 0:
        raise ValueError(f"pull request number must be positive, got {pr}")
    return f"{_check_prefix(prefix)}_pr_{pr}"


def owner_of(schema: str, prefix: str = DEFAULT_PREFIX) -> int | None:
    """The pull request a schema belongs to, or None when it belongs to none."""
    match = re.fullmatch(rf"{re.escape(_check_prefix(prefix))}_pr_([1-9][0-9]*)(?:_.+)?", schema)
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class Cleanup:
    """The schemas to drop, and the pull-request schemas left alone (with their reason)."""

    drop: tuple[str, ...]
    keep: tuple[str, ...]


def schemas_of_pr(schemas: Iterable[str], pr: int, prefix: str = DEFAULT_PREFIX) -> Cleanup:
    """The schemas of pull request `pr` (closed: drop them all)."""
    pr_schema(pr, prefix)  # validates
    owned = [s for s in schemas if owner_of(s, prefix) is not None]
    return Cleanup(
        drop=tuple(sorted(s for s in owned if owner_of(s, prefix) == pr)),
        keep=tuple(sorted(s for s in owned if owner_of(s, prefix) != pr)),
    )


def orphaned(
    schemas: Iterable[str], open_prs: Iterable[int], prefix: str = DEFAULT_PREFIX
) -> Cleanup:
    """Pull-request schemas whose pull request is no longer open (the nightly sweep)."""
    still_open = set(open_prs)
    owned = [s for s in schemas if owner_of(s, prefix) is not None]
    return Cleanup(
        drop=tuple(sorted(s for s in owned if owner_of(s, prefix) not in still_open)),
        keep=tuple(sorted(s for s in owned if owner_of(s, prefix) in still_open)),
    )
