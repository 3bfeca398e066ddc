"""The warehouse of a profile's target, through dbt's own adapter, for any warehouse.

What ferry does in the warehouse outside a dbt command - dropping pull-request schemas, comparing
a pull request's tables with production's - goes through the same profile, target and
credentials dbt builds with, so it works wherever dbt does (Redshift, PostgreSQL, DuckDB...) and
needs no driver or secret of its own.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flows.dbt.profiles import DbtProject


class QueryFailed(RuntimeError):
    """The warehouse refused or failed one statement; the message is the warehouse's."""


class WarehouseUnreachable(RuntimeError):
    """No connection to the warehouse could be opened (exit code 1)."""


@dataclass(frozen=True)
class Column:
    """A relation's column as the warehouse describes it."""

    name: str
    data_type: str
    numeric: bool


class Warehouse:
    """One target's warehouse, through an open dbt adapter connection."""

    def __init__(self, adapter: Any, database: str) -> None:
        self._adapter = adapter
        self.database = database

    @property
    def adapter_type(self) -> str:
        """dbt's name for the warehouse: `duckdb`, `postgres`, `redshift`..."""
        return str(self._adapter.type())

    def list_schemas(self) -> list[str]:
        return sorted(str(s) for s in self._adapter.list_schemas(self.database))

    def drop_schema(self, schema: str) -> None:
        """Drops the schema and everything in it (`drop schema ... cascade`)."""
        relation = self._adapter.Relation.create(database=self.database, schema=schema)
        self._adapter.drop_schema(relation)

    def columns(self, database: str | None, schema: str, identifier: str) -> list[Column]:
        """The relation's columns in order; none when it does not exist."""
        relation = self._adapter.Relation.create(
            database=database, schema=schema, identifier=identifier
        )
        try:
            with _translated():
                found = self._adapter.get_columns_in_relation(relation)
        finally:
            self._end_transaction()
        return [
            Column(name=str(c.name), data_type=str(c.data_type), numeric=is_number(c))
            for c in found
        ]

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """The rows of one read-only statement, as the driver returns them (no type guessing).

        Raises:
            QueryFailed: the warehouse refused it; the connection stays usable for the next
                statement (dbt rolls back a failed transaction).
            WarehouseUnreachable: the connection could not be opened.
        """
        try:
            with _translated():
                _, cursor = self._adapter.connections.add_query(sql, auto_begin=False)
                return [tuple(row) for row in cursor.fetchall()]
        finally:
            self._end_transaction()

    def run_in_transaction(self, statements: Sequence[str]) -> None:
        """Runs the statements in one transaction: all of them are committed, or none.

        `begin` and `commit` are sent as SQL, not through dbt's `begin()`, which sends nothing
        when a profile sets `autocommit` (dbt-redshift's default): each statement would then
        commit on its own, and a failure halfway would leave half of the change behind.

        Raises:
            QueryFailed: one statement failed; the transaction was rolled back.
            WarehouseUnreachable: the connection could not be opened.
        """
        connections = self._adapter.connections
        self._end_transaction()  # a transaction a read left open would swallow ours
        begun = False
        try:
            with _translated():
                connections.add_query("begin", auto_begin=False)
                begun = True
                for sql in statements:
                    connections.add_query(sql, auto_begin=False)
                connections.add_query("commit", auto_begin=False)
                begun = False
        finally:
            if begun:  # what was sent is undone, whatever the driver's autocommit
                with contextlib.suppress(Exception):
                    connections.add_query("rollback", auto_begin=False)
            self._end_transaction()

    def _end_transaction(self) -> None:
        """Ends whatever transaction a read began - dbt's, or the one psycopg2 opens by itself -
        so no lock on production's tables outlives the statement (a build there would wait
        for it), and a failed statement does not abort the next one (PostgreSQL)."""
        connections = self._adapter.connections
        with contextlib.suppress(Exception):  # nothing was written: a failed rollback loses none
            connection = connections.get_if_exists()
            if connection is None or connection.state != "open":
                return
            if connection.transaction_open:
                connections.rollback_if_open()
            handle = connection.handle
            if getattr(handle, "autocommit", True) is False:  # psycopg2's implicit transaction
                handle.rollback()


_NUMBER = re.compile(
    r"^(u?(tiny|small|big|huge)?int(eger)?\d*|numeric|decimal|real|float\d*|double)\b"
)


def is_number(column: Any) -> bool:
    """dbt's own test knows PostgreSQL's names; DuckDB adds TINYINT, HUGEINT, UBIGINT..."""
    if column.is_numeric() or column.is_integer() or column.is_float():
        return True
    return bool(_NUMBER.match(str(column.dtype).lower()))


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    """dbt's exceptions as ferry's: callers above `flows/dbt/` never import dbt."""
    from dbt.adapters.exceptions.connection import FailedToConnectError
    from dbt_common.exceptions import DbtBaseException

    try:
        yield
    except FailedToConnectError as exc:
        raise WarehouseUnreachable(_first_line(exc)) from None
    except DbtBaseException as exc:
        raise QueryFailed(_first_line(exc)) from None


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    lines = [line for line in lines if line not in ("Database Error", "Runtime Error")]
    return lines[0] if lines else type(exc).__name__


@contextlib.contextmanager
def open_warehouse(
    project: DbtProject, target: str | None, work_dir: Path, *, check: bool = False
) -> Iterator[Warehouse]:
    """Opens the target's warehouse with dbt's adapter, loading only dbt's own macros.

    Args:
        check: run `select 1` first, so an unreachable warehouse fails here, not halfway.

    Raises:
        InvalidDbtInput: the target is not in the profile.
        WarehouseUnreachable: with `check`, no connection could be opened.
    """
    from dbt.adapters.factory import get_adapter, register_adapter, reset_adapters
    from dbt.cli.flags import Flags
    from dbt.cli.main import cli
    from dbt.config.runtime import RuntimeConfig, load_profile, load_project
    from dbt.context.providers import generate_runtime_macro_context
    from dbt.events.logging import setup_event_logger
    from dbt.flags import set_from_args
    from dbt.mp_context import get_mp_context
    from dbt.parser.manifest import ManifestLoader
    from dbt_common.context import set_invocation_context

    target = project.check_target(target)
    project_dir = str(project.project_dir)
    with project.rendered_profiles_dir(target) as profiles_dir:
        args = [
            "--project-dir",
            project_dir,
            "--profiles-dir",
            str(profiles_dir),
            "--target-path",
            str(work_dir / "target"),
            "--log-path",
            str(work_dir),
            "--log-level",
            "none",  # stdout may be a command's output (`--json`): dbt's log goes to its file
        ]
        if target:
            args += ["--target", target]
        ctx = cli.commands["parse"].make_context("parse", args)
        set_invocation_context(dict(os.environ))  # what env_var() in profiles.yml reads
        flags = Flags(ctx)
        set_from_args(flags, {})  # type: ignore[arg-type]  # dbt's own CLI does the same
        setup_event_logger(flags)
        profile = load_profile(project_dir, {}, None, target, None)
        config = RuntimeConfig.from_parts(
            load_project(project_dir, False, profile, {}), profile, flags
        )
    reset_adapters()
    register_adapter(config, get_mp_context())
    adapter = get_adapter(config)
    macros = ManifestLoader.load_macros(
        config, adapter.connections.set_query_header, base_macros_only=True
    )
    adapter.set_macro_resolver(macros)
    adapter.set_macro_context_generator(generate_runtime_macro_context)
    try:
        with adapter.connection_named("ferry"):
            warehouse = Warehouse(adapter, str(config.credentials.database))
            if check:
                try:
                    warehouse.query("select 1")
                except QueryFailed as exc:  # some drivers fail on use, not on connect
                    raise WarehouseUnreachable(str(exc)) from None
            yield warehouse
    finally:
        adapter.cleanup_connections()
        reset_adapters()
