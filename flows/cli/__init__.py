"""`ferry`: run the `dbt` flow once from a shell, for any dbt project.

Thin: flags become the same FERRY_* settings a deployment sets, then the flow runs in this
process. Exit 0 on success (warnings allowed), 1 when dbt reports a failure, 2 on bad input.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from flows.ci import commands as ci_commands
from flows.cli import run as run_cli
from flows.dbt.request import DbtCommand

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2

COMMANDS = tuple(command.value for command in DbtCommand)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ferry", description=__doc__)
    sub = parser.add_subparsers(dest="action", required=True)
    run_cli.add_parser(sub)

    stack = sub.add_parser("stack", help="the local stack of make demo (127.0.0.1)")
    stack.add_argument("state", choices=["up", "down", "demo"])
    stack.add_argument("--home", default=".ferry/demo", help="pid files, logs, the DuckDB file")
    stack.add_argument("--port", type=int, default=4200, help="Prefect's port (receiver: +1)")

    _add_alert_commands(sub)
    _add_bake_command(sub)
    ci_commands.add_parsers(sub)
    return parser


# Flags that are deployment settings rather than flow parameters.
_SETTING_FLAGS = {
    "project_dir": "FERRY_PROJECT_DIR",
    "profiles_dir": "FERRY_PROFILES_DIR",
    "artifacts": "FERRY_ARTIFACTS",
    "env": "FERRY_ENV",
    "state_env": "FERRY_STATE_ENV",
    "state_from": "FERRY_STATE_FROM",
    "target_schema": "FERRY_TARGET_SCHEMA",
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    for flag, env_name in _SETTING_FLAGS.items():
        value = getattr(args, flag, None)
        if value:
            os.environ[env_name] = value  # the flow reads these as a deployment's settings
    if args.action == "stack":
        return _stack(args)
    if args.action in _ALERT_GROUPS:
        return _alerts(args)
    if args.action in ci_commands.ACTIONS:
        return ci_commands.dispatch(args)
    if args.action == "bake":
        return _bake(args)
    return run_cli.main(args)


def _stack(args: argparse.Namespace) -> int:
    from functools import partial
    from pathlib import Path

    from flows import local_stack

    home = Path(args.home).resolve()
    if args.state == "down":
        stopped = local_stack.down(home)
        print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
        return EXIT_OK
    stack = local_stack.Stack(home=home, port=args.port, repo=Path.cwd())
    say = partial(print, flush=True)  # each step as it happens, even when stdout is a pipe
    if args.state == "up":
        local_stack.up(stack, say)
        print(f"stack up: Prefect UI {stack.ui_url}")
        return EXIT_OK
    return local_stack.demo(stack, say)


# --- alerts: `ferry channels apply`, `ferry automations apply` (flows/notify) ----------------
_ALERT_GROUPS = {
    "channels": "create or update the notification blocks the automations send to",
    "automations": "create or update ferry's alerting automations, matched by name",
}


def _add_alert_commands(sub: Any) -> None:
    for group, help_text in _ALERT_GROUPS.items():
        verbs = sub.add_parser(group, help=help_text).add_subparsers(dest="verb", required=True)
        apply = verbs.add_parser("apply", help=help_text)
        apply.add_argument("--file", default="automations.yaml", help="default: automations.yaml")
        apply.add_argument("--dry-run", action="store_true", help="show changes, make none")


def _alerts(args: argparse.Namespace) -> int:
    """Applies automations.yaml to the Prefect API in PREFECT_API_URL; one line per change."""
    import asyncio
    from pathlib import Path

    import httpx
    from prefect.client.orchestration import get_client
    from prefect.settings import get_current_settings

    from flows import writer_slot
    from flows.deployments import DeploymentConfigError, environments
    from flows.notify import automations, channels
    from flows.notify.changes import Change, NotifyConfigError

    api_url = get_current_settings().api.url
    if not api_url:  # Prefect would apply to a throwaway in-process server instead
        print("ferry: set PREFECT_API_URL to the Prefect API to change", file=sys.stderr)
        return EXIT_INVALID

    async def apply() -> list[Change]:
        spec = automations.load(Path(args.file))
        async with get_client() as client:
            if args.action == "channels":
                return await channels.apply_channels(
                    spec.channels, client, os.environ, dry_run=args.dry_run
                )
            # One writer at a time per environment the deployments beside this file run in
            # (flows/writer_slot.py): their global concurrency limits go with the automations.
            envs = environments(Path(args.file).resolve().with_name("prefect.yaml"))
            changes = await automations.apply(spec, client, dry_run=args.dry_run)
            return changes + await writer_slot.apply_limits(envs, client, dry_run=args.dry_run)

    try:
        changes = asyncio.run(apply())
    except (NotifyConfigError, DeploymentConfigError) as exc:
        print(f"ferry: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except httpx.HTTPError as exc:
        print(f"ferry: the Prefect API at {api_url} failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    for change in changes:
        print(f"(dry run) {change}" if args.dry_run else str(change))
    return EXIT_OK


# --- bake: dbt's parse state, made at image build (flows/dbt/bake.py, docs/image.md) ----------
def _add_bake_command(sub: Any) -> None:
    bake = sub.add_parser(
        "bake",
        help="parse the dbt project now and keep dbt's state for runs (image build)",
        description="Parses the project as a run of each environment will, and keeps dbt's "
        "parse state in FERRY_BAKED_DIR/<env>/<target>, so those runs parse only what changed.",
    )
    bake.add_argument("--project-dir", help="dbt project directory (default: dbt_project)")
    bake.add_argument("--profiles-dir", help="directory of profiles.yml (default: as dbt)")
    bake.add_argument("--env", help="FERRY_ENV of the runs (default: local)")
    bake.add_argument(
        "--target", help="profiles.yml target (default: FERRY_TARGET or the profile's)"
    )
    bake.add_argument("--baked-dir", help="where to keep the states (default: FERRY_BAKED_DIR)")
    bake.add_argument(
        "--spec",
        help="JSON: one or a list of {env, target, environment, vars}, one state each; "
        "environment holds the runs' non-secret connection values (host, user, schema...)",
    )


def _bake(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pydantic import ValidationError

    from flows.dbt.bake import BakeError, BakeSpec, bake
    from flows.dbt.profiles import DbtProject
    from flows.dbt.request import InvalidRunRequest
    from flows.settings import FerrySettings, InvalidSettings

    try:
        settings = FerrySettings.from_env()
        baked_dir = Path(args.baked_dir) if args.baked_dir else settings.baked_dir
        if baked_dir is None:
            raise InvalidRunRequest("set FERRY_BAKED_DIR or pass --baked-dir")
        if args.spec and args.target:
            raise InvalidRunRequest("--spec names the targets to bake; drop --target")
        if args.spec:
            specs = BakeSpec.parse_many(args.spec)
        else:
            specs = [BakeSpec(env=settings.env, target=args.target)]
        project = DbtProject.load(settings.project_dir, settings.profiles_dir)
        for spec in specs:
            baked = bake(project, spec, baked_dir, default_target=settings.target)
            print(f"ferry: baked {baked.describe()}")
    except (ValidationError, InvalidSettings, InvalidRunRequest) as exc:
        print(f"ferry: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except BakeError as exc:
        print(f"ferry: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
