"""What the benchmarks share: the machine and packages they record beside their figures, how
they end on SIGTERM (cleaning up what they made), the environment their runs start with, the
CPU their processes used, and PostgreSQL on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import platform
import signal
from collections.abc import Iterator, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

PG_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test"
QUIET_ENV = {"DO_NOT_TRACK": "1", "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}


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


def clean_env(scrubbed: tuple[str, ...], extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without the variables starting with `scrubbed` (the caller's
    own settings must not reach a measured run), quiet about usage stats, then `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(scrubbed)}
    return {**env, **QUIET_ENV, **extra}


def tail(path: Path, lines: int = 40) -> str:
    """The last lines of a run's output file, for an error message."""
    if not path.exists():
        return "(no output)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def cpu_seconds_below(pid: int) -> float:
    """The CPU seconds the live processes under `pid` have used (Linux's /proc): a server's,
    a browser's. Unlike wall time, it hardly moves with what else the machine is doing."""
    children: dict[int, list[int]] = {}
    ticks: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        children.setdefault(int(fields[1]), []).append(int(entry.name))
        ticks[int(entry.name)] = int(fields[11]) + int(fields[12])  # utime + stime
    total, todo = 0, list(children.get(pid, []))
    while todo:
        child = todo.pop()
        total += ticks.get(child, 0)
        todo.extend(children.get(child, []))
    return total / os.sysconf("SC_CLK_TCK")


def pg(sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """One statement on PostgreSQL at PG_DSN, autocommitted; its rows, if it returns any."""
    import psycopg2  # only the benchmarks on PostgreSQL need it

    conn = psycopg2.connect(PG_DSN)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params or None)  # none: a literal % stays as it is
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def like_prefix(prefix: str) -> str:
    """A LIKE pattern of the names starting with `prefix` (its underscores taken literally)."""
    return prefix.replace("_", r"\_") + "%"


def drop_pg_schemas(prefix: str) -> None:
    """Every schema whose name starts with `prefix` (dbt's test audit schemas included)."""
    for (name,) in pg(
        "select nspname from pg_namespace where nspname like %s", (like_prefix(prefix),)
    ):
        pg(f'drop schema if exists "{name}" cascade')


def clean_up_pg_schemas(prefix: str) -> None:
    """`drop_pg_schemas` on the way out of a benchmark: a failure is said, not raised, so the
    rest of the clean-up still happens."""
    import psycopg2

    try:
        drop_pg_schemas(prefix)
    except psycopg2.Error as exc:
        print(f"could not drop the schemas {prefix}*: {exc}; drop them by hand")
