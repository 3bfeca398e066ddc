"""`ferry run`: one dbt command through the `dbt` flow, or the same steps without Prefect.

Its run flags are RunRequest's fields (flows/run/request.py) and its setting flags are the
settings SETTING_FLAGS names (`FerrySettings.setting`): both are derived from there, with their
help and variable. The settings are built
from the flags and passed to the run; nothing is written into the environment.
"""

from __future__ import annotations

import argparse
import contextlib
import enum
import json
import logging
import sys
import types
import typing
from typing import Any

from flows.dbt.commands import DbtCommand
from flows.exit_codes import ExitCode
from flows.run.request import RunRequest, cli_flags
from flows.run.session import Output, RunSession
from flows.run.verdict import Refusal
from flows.settings import FerrySettings

# Settings a run takes as flags too (the rest only as FERRY_* variables).
SETTING_FLAGS = (
    "project_dir",
    "profiles_dir",
    "artifacts",
    "env",
    "state_env",
    "state_from",
    "target_schema",
)


def add_parser(sub: Any) -> None:
    run = sub.add_parser(
        "run",
        help="run one dbt command through the dbt flow",
        description="Runs one dbt command as the deployments do: every node in Prefect (when "
        "PREFECT_API_URL is set), the artifacts stored, exit 0 success (warnings allowed), 1 "
        "failed, 2 bad input.",
    )
    for name, field in RunRequest.model_fields.items():
        run.add_argument(
            *cli_flags(name, field),
            dest=name,
            help=_first_sentence(field.description),
            **_argument(name, field.annotation),
        )
    for name in SETTING_FLAGS:
        setting = FerrySettings.setting(name)
        run.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            help=f"{_first_sentence(setting.description)} ({setting.variable})",
        )
    run.add_argument("--json", action="store_true", help="print the run summary as JSON")
    run.add_argument(
        "--no-prefect",
        action="store_true",
        help="run the same steps without a Prefect flow run or API (CI)",
    )


def _argument(name: str, annotation: Any) -> dict[str, Any]:
    """argparse options for a request field of this type."""
    if annotation is bool:
        return {"action": "store_true"}
    if annotation is DbtCommand:
        commands = ", ".join(c.value for c in DbtCommand)
        return {"default": DbtCommand.BUILD.value, "metavar": f"{{{commands}}}"}
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        members = [member.value for member in annotation]
        return {"choices": members, "default": members[0]}
    args = typing.get_args(annotation)
    choices = [a for a in args if isinstance(a, type) and issubclass(a, enum.Enum)]
    if choices:
        return {"choices": [member.value for member in choices[0]]}
    if typing.get_origin(annotation) is tuple:
        return {"nargs": "+", "metavar": name.upper()}
    if int in args and typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return {"type": int}
    return {}


def _first_sentence(text: str | None) -> str:
    return (text or "").split("; ")[0].rstrip(".")


def main(args: argparse.Namespace) -> int:
    from flows.run.request import InvalidRunRequest, parse_command
    from flows.settings import InvalidSettings

    output = Output(as_json=args.json)
    try:
        settings = FerrySettings.from_env(**{name: getattr(args, name) for name in SETTING_FLAGS})
    except InvalidSettings as exc:
        return output.tell(Refusal.of_settings(str(exc)))
    params = {name: getattr(args, name) for name in RunRequest.model_fields}
    with contextlib.suppress(InvalidRunRequest):  # else the flow refuses it, in Prefect's record
        params["command"] = parse_command(args.command).value
    if args.no_prefect:
        return _run_without_prefect(params, RunSession(settings, output=output))
    from flows.prefect import api as prefect_api

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
        return _run_without_prefect(params, RunSession(settings, output=output))
    if reason := prefect_api.unreachable(api_url):
        print(
            f"ferry: the Prefect API at {api_url} is unreachable ({reason}); start it, point "
            "PREFECT_API_URL at one that answers, or run without Prefect: --no-prefect",
            file=sys.stderr,
        )
        if args.json:
            print(
                json.dumps({"outcome": "failed", "verdict": f"Prefect API unreachable: {api_url}"})
            )
        return ExitCode.FAILED
    from flows.prefect.process_end import ProcessEnd

    return _run_flow(params, RunSession(settings, output=output, ending=ProcessEnd()))


def _run_without_prefect(params: dict[str, Any], session: RunSession) -> int:
    """The flow's steps without a Prefect API (CI jobs, or no API configured)."""
    from flows.run.owner import run
    from flows.run.request import InvalidRunRequest

    try:
        with _console(session):
            report = run(RunRequest.build(**params), session.settings, log=_steps_log())
    except InvalidRunRequest as exc:
        session.finish(Refusal.of_input(str(exc)))
    else:
        session.finish(report.summary)
    return session.tell()


def _steps_log() -> logging.Logger:
    """Where a run without Prefect says its steps (packages installed, how dbt parsed): stderr,
    a `ferry: ` line each, as the flow's logger says them in Prefect."""
    log = logging.getLogger("ferry.run")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("ferry: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    return log


def _run_flow(params: dict[str, Any], session: RunSession) -> int:
    """The `dbt` flow in this process; the exit code follows the run's verdict, not Prefect's
    bookkeeping, so an API that fails after dbt ended cannot change it (or hold the process)."""
    import inspect

    from flows.dbt_flow import dbt_flow_for

    flow = dbt_flow_for(session)
    state: Any = None
    failure: Exception | None = None
    # The flow's text parameters take "" for "not given"; its other ones None.
    defaults = {name: p.default for name, p in inspect.signature(flow.fn).parameters.items()}
    for name, value in params.items():
        if isinstance(value, list):
            params[name] = " ".join(value)
        elif value is None and defaults[name] == "":
            params[name] = ""
    try:
        with _console(session):
            state = flow(**params, return_state=True)
    except Exception as exc:  # Prefect itself failed (its API went away mid-run, most often)
        failure = exc
    if session.outcome is None:  # refused by Prefect's parameter check, or crashed before a verdict
        message = (state.message if state is not None else None) or str(failure)
        invalid = state is not None and _is_parameter_refusal(state)
        print(f"ferry: {message}", file=sys.stderr)
        if session.output is not None and session.output.as_json:
            print(json.dumps(_state_json(state, message, invalid)))
        return ExitCode.INVALID if invalid else ExitCode.FAILED
    if failure is not None:
        print(
            f"ferry: the run ended, but Prefect could not record it ({type(failure).__name__}: "
            f"{failure}); the verdict below and the stored artifacts stand",
            file=sys.stderr,
        )
    return session.tell()


def _console(session: RunSession) -> contextlib.AbstractContextManager[Any]:
    """With --json, stdout carries the summary alone (CI redirects it into a file): dbt's and
    Prefect's own console output goes to stderr meanwhile."""
    as_json = session.output is not None and session.output.as_json
    return contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext()


def _is_parameter_refusal(state: Any) -> bool:
    """Prefect refused the parameters before the flow began (a wrong type)."""
    from prefect.exceptions import ParameterTypeError

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
