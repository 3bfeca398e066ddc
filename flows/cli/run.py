"""`ferry run`: one dbt command through the `dbt` flow, or the same steps without Prefect."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from typing import Any

from flows.dbt.request import DbtCommand

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2

COMMANDS = tuple(command.value for command in DbtCommand)


def add_parser(sub: Any) -> None:
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


def main(args: argparse.Namespace) -> int:
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
