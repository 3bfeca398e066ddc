"""`ferry`: run the `dbt` flow once from a shell, for any dbt project.

Thin: flags become the same FERRY_* settings a deployment sets, then the flow runs in this
process. Exit 0 on success (warnings allowed), 1 when dbt reports a failure, 2 on bad input.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from flows.ci import commands as ci_commands
from flows.dbt.request import DbtCommand

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2

COMMANDS = tuple(command.value for command in DbtCommand)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ferry", description=__doc__)
    sub = parser.add_subparsers(dest="action", required=True)
    run = sub.add_parser("run", help="run one dbt command through the dbt flow")
    run.add_argument("--project-dir", help="dbt project directory (default: dbt_project)")
    run.add_argument("--profiles-dir", help="directory of profiles.yml (default: as dbt)")
    run.add_argument("--target", help="profiles.yml target (default: the profile's)")
    run.add_argument(
        "--command",
        default="build",
        help=f"dbt command: {', '.join(COMMANDS)} (default: build)",
    )
    run.add_argument("--select", "-s", nargs="+", help="dbt node selection")
    run.add_argument("--exclude", nargs="+", help="nodes to exclude")
    run.add_argument("--selector", help="a named selector from selectors.yml")
    run.add_argument("--vars", help='dbt vars as JSON or YAML, e.g. \'{"day": "2024-01-01"}\'')
    run.add_argument("--full-refresh", action="store_true", help="rebuild incrementals/seeds")
    run.add_argument("--threads", type=int, help="dbt threads")
    run.add_argument("--fail-fast", action="store_true", help="stop at the first failure")
    run.add_argument("--retry-of", help="with --command retry: the failed run's id")
    run.add_argument("--artifacts", help="artifact store: s3://bucket/prefix or a folder")
    run.add_argument("--env", help="environment name for the artifact layout (default: local)")
    run.add_argument("--json", action="store_true", help="print the run summary as JSON")
    run.add_argument(
        "--defer", action="store_true", help="defer unselected refs to the state environment"
    )
    run.add_argument("--state-env", help="environment whose state --defer/state: use (prod)")
    run.add_argument(
        "--state-from", help="artifact store holding that state (default: --artifacts)"
    )
    run.add_argument("--target-schema", help="build into this schema instead of the target's")
    run.add_argument(
        "--no-prefect",
        action="store_true",
        help="run the same steps without a Prefect flow run or API (CI)",
    )

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
    return _run(args)


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


def _run(args: argparse.Namespace) -> int:
    from flows.dbt.request import InvalidRunRequest, parse_command
    from flows.settings import FerrySettings, InvalidSettings

    try:
        settings = FerrySettings.from_env()
    except InvalidSettings as exc:
        return _refused(f"Invalid setting: {exc}", args.json)
    try:
        command = parse_command(args.command).value
    except InvalidRunRequest:
        command = args.command  # the flow refuses it, so the refusal is recorded in Prefect

    params: dict[str, Any] = {
        "command": command,
        "select": " ".join(args.select) if args.select else None,
        "exclude": " ".join(args.exclude) if args.exclude else None,
        "selector": args.selector,
        "vars": args.vars,
        "full_refresh": args.full_refresh,
        "target": args.target,
        "threads": args.threads,
        "fail_fast": args.fail_fast,
        "retry_of": args.retry_of,
        "defer": args.defer,
    }
    no_prefect = args.no_prefect
    if not no_prefect:
        from flows import prefect_api

        api_url = prefect_api.configured_url()
        if api_url is None:
            # Prefect would start a temporary server of its own for this one run: tens of
            # seconds, on SQLite, gone afterwards. The same steps without Prefect are faster and
            # leave the same artifacts; the run's record is the artifact store.
            print(
                "ferry: no Prefect API configured (PREFECT_API_URL): running without Prefect; "
                "set PREFECT_API_URL to see the run in Prefect",
                file=sys.stderr,
            )
            no_prefect = True
        elif reason := prefect_api.unreachable(api_url):
            print(
                f"ferry: the Prefect API at {api_url} is unreachable ({reason}); start it, point "
                "PREFECT_API_URL at one that answers, or run without Prefect: --no-prefect",
                file=sys.stderr,
            )
            if args.json:
                print(
                    json.dumps(
                        {"outcome": "failed", "verdict": f"Prefect API unreachable: {api_url}"}
                    )
                )
            return EXIT_FAILED
    if no_prefect:
        return _run_without_prefect(params, settings, as_json=args.json)
    return _run_flow(params, as_json=args.json)


def _console(as_json: bool) -> contextlib.AbstractContextManager[Any]:
    """With --json, stdout carries the summary alone (CI redirects it into a file): dbt's and
    Prefect's own console output goes to stderr meanwhile."""
    return contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext()


def _run_without_prefect(params: dict[str, Any], settings: Any, *, as_json: bool) -> int:
    """The flow's steps without a Prefect API (CI jobs, or no API configured)."""
    from flows.dbt.request import InvalidRunRequest
    from flows.dbt_run import execute

    try:
        with _console(as_json):
            summary = execute(params, settings).summary
    except InvalidRunRequest as exc:
        return _refused(f"Invalid input: {exc}", as_json)
    return _print_summary(summary, as_json)


def _run_flow(params: dict[str, Any], *, as_json: bool) -> int:
    """The `dbt` flow in this process; the exit code follows the run's verdict, not Prefect's
    bookkeeping, so an API that fails after dbt ended cannot change it (or hold the process)."""
    from flows import prefect_api
    from flows.dbt_flow import dbt_flow, finished_in_this_process

    def farewell(outcome: Any) -> None:  # from the API's watchdog, while dbt's console is on
        with contextlib.redirect_stdout(sys.__stdout__):
            _say(outcome, as_json)

    prefect_api.own_process_end(farewell)
    state: Any = None
    failure: Exception | None = None
    try:
        with _console(as_json):
            state = dbt_flow(**params, return_state=True)
    except Exception as exc:  # Prefect itself failed (its API went away mid-run, most often)
        failure = exc
    outcome = finished_in_this_process()
    if outcome is None:  # refused by Prefect's parameter validation, or crashed before a verdict
        message = (state.message if state is not None else None) or str(failure)
        invalid = state is not None and _is_parameter_refusal(state)
        print(f"ferry: {message}", file=sys.stderr)
        if as_json:
            print(json.dumps(_state_json(state, message, invalid)))
        return EXIT_INVALID if invalid else EXIT_FAILED
    if failure is not None:
        print(
            f"ferry: the run ended, but Prefect could not record it ({type(failure).__name__}: "
            f"{failure}); the verdict below and the stored artifacts stand",
            file=sys.stderr,
        )
    prefect_api.said_farewell()
    return _say(outcome, as_json)


def _say(outcome: Any, as_json: bool) -> int:
    from flows.dbt_flow import Refusal

    if isinstance(outcome, Refusal):
        return _refused(outcome.message, as_json, flow_run_id=outcome.flow_run_id)
    return _print_summary(outcome, as_json)


def _refused(message: str, as_json: bool, flow_run_id: str | None = None) -> int:
    print(f"ferry: {message}", file=sys.stderr)
    if as_json:
        refusal = {"outcome": "invalid", "verdict": message}
        print(json.dumps({**refusal, "flow_run_id": flow_run_id} if flow_run_id else refusal))
    return EXIT_INVALID


def _print_summary(summary: Any, as_json: bool) -> int:
    if as_json:
        print(summary.model_dump_json())
    else:
        print(f"ferry: {summary.outcome.value}: {summary.verdict}")
        print(f"ferry: artifacts: {summary.artifacts}")
    return int(summary.exit_code)


def _is_parameter_refusal(state: Any) -> bool:
    """Prefect refused the parameters before the flow began (a wrong type)."""
    from prefect.exceptions import ParameterTypeError

    if (state.message or "").startswith("Validation of flow parameters failed"):
        return True
    try:
        data = state.result(raise_on_failure=False)
    except Exception:
        return False
    return isinstance(data, ParameterTypeError)


def _state_json(state: Any, message: str, invalid: bool) -> dict[str, Any]:
    flow_run_id = state.state_details.flow_run_id if state is not None else None
    return {
        "outcome": "invalid" if invalid else "failed",
        "verdict": message,
        "state": state.name if state is not None else None,
        "flow_run_id": str(flow_run_id) if flow_run_id else None,
    }


if __name__ == "__main__":
    sys.exit(main())
