"""`ferry alerts channels apply`, `ferry alerts automations apply`: automations.yaml on the
Prefect API in PREFECT_API_URL (flows/notify), one line per change."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from flows.cli._common import Failed, classify, group, leaf, prefect_api_url
from flows.exit_codes import ExitCode

_NOUNS = {
    "channels": (
        "the notification blocks the automations send to",
        "Creates or updates a notification block per channel of the file; each channel's "
        "secrets come from the environment variables the file names for it.",
    ),
    "automations": (
        "ferry's alerting automations, matched by name, and the writer limits",
        "Creates or updates the file's automations (matched by name; duplicates are deleted, "
        "and so are automations tagged ferry that the file no longer names) "
        "and the ferry-writer-<env> concurrency limit of each environment of the prefect.yaml "
        "beside the file. Their channels' blocks must exist: apply the channels first.",
    ),
}


def add_parser(sub: Any) -> None:
    nouns = group(sub, "alerts", "alerting: the channels and automations of automations.yaml")
    for noun, (what, description) in _NOUNS.items():
        verbs = group(nouns, noun, what)
        apply = leaf(verbs, "apply", _apply, f"create or update {what}", description)
        apply.add_argument("--file", default="automations.yaml", help="default: automations.yaml")
        apply.add_argument("--dry-run", action="store_true", help="show changes, make none")


def _apply(args: argparse.Namespace) -> ExitCode:
    import asyncio

    import httpx
    from prefect.client.orchestration import get_client

    from flows.notify import automations, channels
    from flows.notify.changes import Change, NotifyConfigError
    from flows.prefect import holds
    from flows.prefect.deployments import DeploymentConfigError, environments

    api_url = prefect_api_url("to change")
    path = Path(args.file)

    async def apply() -> list[Change]:
        spec = automations.load(path)
        async with get_client() as client:
            if args.alerts_verb == "channels":
                return await channels.apply_channels(
                    spec.channels, client, os.environ, dry_run=args.dry_run
                )
            # The writers' queue of each environment the deployments beside this file run in
            # (flows/prefect/holds.py): their global concurrency limits go with the
            # automations.
            envs = environments(path.resolve().with_name("prefect.yaml"))
            changes = await automations.apply(spec, client, dry_run=args.dry_run)
            return changes + await holds.apply_limits(envs, client, dry_run=args.dry_run)

    # A file that is missing or wrong, a channel's secret unset, a channel without its block on
    # the server: bad input. The API failing or unreachable: a failure.
    with classify(invalid=(NotifyConfigError, DeploymentConfigError)):
        try:
            changes = asyncio.run(apply())
        except httpx.HTTPError as exc:
            raise Failed(f"the Prefect API at {api_url} failed: {exc}") from None
    for change in changes:
        print(f"(dry run) {change}" if args.dry_run else str(change))
    return ExitCode.OK
