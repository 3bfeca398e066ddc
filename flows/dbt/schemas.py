"""Listing and dropping a target's schemas through dbt's own adapter, for any warehouse.

Pull-request schemas are cleaned up with the same profile and target that built them, so the
clean-up works wherever dbt does (Redshift, PostgreSQL, DuckDB...) and needs no driver of its own.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flows.dbt.profiles import DbtProject


class WarehouseSchemas:
    """The schemas of one target's database, through an open dbt adapter connection."""

    def __init__(self, adapter: Any, database: str) -> None:
        self._adapter = adapter
        self.database = database

    def list(self) -> list[str]:
        return sorted(str(s) for s in self._adapter.list_schemas(self.database))

    def drop(self, schema: str) -> None:
        """Drops the schema and everything in it (`drop schema ... cascade`)."""
        relation = self._adapter.Relation.create(database=self.database, schema=schema)
        self._adapter.drop_schema(relation)


@contextlib.contextmanager
def open_schemas(
    project: DbtProject, target: str | None, work_dir: Path
) -> Iterator[WarehouseSchemas]:
    """Opens the target's warehouse with dbt's adapter, loading only dbt's own macros.

    Raises:
        InvalidRunRequest: the target is not in the profile.
    """
    from dbt.adapters.factory import get_adapter, register_adapter, reset_adapters
    from dbt.cli.flags import Flags
    from dbt.cli.main import cli
    from dbt.config.runtime import RuntimeConfig, load_profile, load_project
    from dbt.context.providers import generate_runtime_macro_context
    from dbt.flags import set_from_args
    from dbt.mp_context import get_mp_context
    from dbt.parser.manifest import ManifestLoader
    from dbt_common.context import set_invocation_context

    target = project.check_target(target)
    project_dir = str(project.project_dir)
    args = [
        "--project-dir",
        project_dir,
        "--profiles-dir",
        str(project.profiles_dir),
        "--target-path",
        str(work_dir / "target"),
        "--log-path",
        str(work_dir),
        "--quiet",
    ]
    if target:
        args += ["--target", target]
    ctx = cli.commands["parse"].make_context("parse", args)
    set_invocation_context(dict(os.environ))  # what env_var() in profiles.yml reads
    flags = Flags(ctx)
    set_from_args(flags, {})  # type: ignore[arg-type]  # dbt's own CLI does the same
    profile = load_profile(project_dir, {}, None, target, None)
    config = RuntimeConfig.from_parts(load_project(project_dir, False, profile, {}), profile, flags)
    reset_adapters()
    register_adapter(config, get_mp_context())
    adapter = get_adapter(config)
    macros = ManifestLoader.load_macros(
        config, adapter.connections.set_query_header, base_macros_only=True
    )
    adapter.set_macro_resolver(macros)
    adapter.set_macro_context_generator(generate_runtime_macro_context)
    try:
        with adapter.connection_named("ferry-schemas"):
            yield WarehouseSchemas(adapter, str(config.credentials.database))
    finally:
        adapter.cleanup_connections()
        reset_adapters()
