"""`ferry packages install|update`: the dbt project's packages, from its committed lock
(flows/dbt/packages.py). `ferry run` and `ferry release bake` install them on their own; these
verbs are for the image build (`install --frozen`) and for moving to newer versions (`update`)."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from flows.cli._common import classify, group, leaf
from flows.exit_codes import ExitCode


def add_parser(sub: Any) -> None:
    verbs = group(
        sub,
        "packages",
        "the dbt project's packages: install them from package-lock.yml, or update the lock",
        "dbt packages declared in packages.yml and pinned in package-lock.yml (commit both). "
        "ferry run and ferry release bake install them when they are missing or out of date.",
    )
    install = leaf(
        verbs,
        "install",
        _packages,
        "install the packages package-lock.yml pins, unless they already are",
        "Installs the project's packages as package-lock.yml pins them (dbt deps, in this "
        "process), or does nothing when they already are. With --frozen (the image build), a "
        "missing lock or one that no longer matches packages.yml is refused, not re-resolved.",
    )
    install.add_argument(
        "--frozen", action="store_true", help="install from the committed lock only"
    )
    update = leaf(
        verbs,
        "update",
        _packages,
        "re-resolve every package to the newest allowed version and rewrite package-lock.yml",
        "Resolves packages.yml again (the dbt hub, Git hosts), to the newest version each "
        "range allows, rewrites package-lock.yml and installs it. Commit the new lock.",
    )
    for verb in (install, update):
        verb.add_argument("--project-dir", help="dbt project directory (default: dbt_project)")


def _packages(args: argparse.Namespace) -> ExitCode:
    from flows.dbt import packages
    from flows.dbt.errors import InvalidDbtInput
    from flows.settings import FerrySettings, InvalidSettings

    updating = args.packages_verb == "update"
    with classify(invalid=(InvalidSettings, InvalidDbtInput)):
        settings = FerrySettings.from_env(project_dir=args.project_dir)
        with tempfile.TemporaryDirectory(prefix="ferry-deps-") as logs:
            installed = packages.ensure(
                settings.run.project_dir,
                log_path=Path(logs),
                frozen=getattr(args, "frozen", False),
                upgrade=updating,
            )
    print(f"ferry: {installed.describe() or 'the project declares no dbt packages'}")
    return ExitCode.OK
