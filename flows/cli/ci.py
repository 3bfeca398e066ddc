"""`ferry ci schema drop|sweep`, `ferry ci stack-env|diff|report|comment`: the helpers of the
GitHub workflows. Thin: each verb calls one tested function."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from flows.cli._common import Failed, Refused, aws_client, classify, group, leaf
from flows.exit_codes import ExitCode


def add_parser(sub: Any) -> None:
    verbs = group(
        sub,
        "ci",
        "helpers of the GitHub workflows: pull-request schemas, stack outputs, the PR comment",
    )
    _add_schema(verbs)

    outputs = leaf(
        verbs,
        "stack-env",
        _stack_env,
        "CloudFormation outputs as FERRY_* variables",
        "The Ferry* outputs of the stacks as the FERRY_* variables prefect.yaml reads "
        "(FerryEcsCluster becomes FERRY_ECS_CLUSTER), later stacks overriding earlier ones.",
    )
    outputs.add_argument("--stack", action="append", required=True, help="stack name (repeat)")
    outputs.add_argument("--github-env", type=Path, help="append to this file ($GITHUB_ENV)")

    _add_diff(verbs)

    report = leaf(
        verbs,
        "report",
        _report,
        "the Slim CI comment (markdown) of a run",
        "The Slim CI comment of a run: what it built and failed, then what changed in the data "
        "when `ferry ci diff` stored its diff.json beside the run.",
    )
    report.add_argument("run", type=Path, help="the run's folder, or `ferry run --json` output")
    report.add_argument("--schema", help="the schema the run built into")
    report.add_argument("--state-env", default="prod", help="the state compared with (prod)")
    report.add_argument("--run-url", help="link to the workflow run")
    report.add_argument(
        "--docs",
        help="the pull request's dbt docs: a link, or its `docs generate` run (folder or "
        "`ferry run --json` output) whose docs/index.html travels with the artifacts",
    )
    report.add_argument("--out", type=Path, help="write here instead of stdout")

    comment = leaf(
        verbs,
        "comment",
        _comment,
        "create or update ferry's comment on a PR",
        "Creates ferry's Slim CI comment on the pull request, or updates the one it made "
        "before (GITHUB_REPOSITORY, GITHUB_TOKEN).",
    )
    comment.add_argument("--pr", type=int, required=True, help="pull request number")
    comment.add_argument("--file", type=Path, required=True, help="markdown body")


# --- schema: pull-request schemas in the CI warehouse (flows/ci/pr_schemas.py) ------------------
def _add_schema(ci: Any) -> None:
    verbs = group(ci, "schema", "pull-request schemas in the CI warehouse")
    drop = leaf(verbs, "drop", _schema, "drop one pull request's schemas")
    drop.add_argument("--pr", type=int, required=True, help="pull request number")
    sweep = leaf(verbs, "sweep", _schema, "drop the schemas of pull requests no longer open")
    open_prs = sweep.add_mutually_exclusive_group(required=True)
    open_prs.add_argument("--open-prs", type=int, nargs="*", help="numbers of the open PRs")
    open_prs.add_argument(
        "--open-prs-from-github",
        action="store_true",
        help="ask GitHub (GITHUB_REPOSITORY, GITHUB_TOKEN) which are open",
    )
    for verb in (drop, sweep):
        verb.add_argument("--prefix", default="ci", help="schema prefix (default: ci)")
        verb.add_argument("--target", help="profiles.yml target of the CI warehouse")
        verb.add_argument("--project-dir", help="dbt project directory (default: dbt_project)")
        verb.add_argument("--profiles-dir", help="directory of profiles.yml")
        verb.add_argument("--dry-run", action="store_true", help="say what would be dropped")


def _schema(args: argparse.Namespace) -> ExitCode:
    from dbt.exceptions import DbtConfigError, EnvVarMissingError
    from dbt_common.exceptions import DbtBaseException

    from flows.ci.github import GitHubError
    from flows.ci.pr_schemas import orphaned, pr_schema, schemas_of_pr
    from flows.dbt.errors import InvalidDbtInput
    from flows.dbt.profiles import DbtProject
    from flows.dbt.warehouse import open_warehouse
    from flows.settings import FerrySettings, InvalidSettings

    drop = args.schema_verb == "drop"
    try:
        pr_schema(args.pr if drop else 1, args.prefix)  # the prefix and number, checked
    except ValueError as exc:
        raise Refused(str(exc)) from None
    # Settings, project, profile or target wrong, a variable the profile needs unset: bad input.
    # GitHub or the warehouse failing (unreachable, refusing the credentials or a drop): a
    # failure.
    with classify(
        invalid=(InvalidSettings, InvalidDbtInput, DbtConfigError, EnvVarMissingError),
        failed=(GitHubError, DbtBaseException, OSError),
    ):
        settings = FerrySettings.from_env(
            project_dir=args.project_dir, profiles_dir=args.profiles_dir, target=args.target
        )
        project = DbtProject.load(settings.run.project_dir, settings.run.profiles_dir)
        project.check_target(settings.run.target)
        open_prs: list[int] = [] if drop else (args.open_prs or [])
        if not drop and args.open_prs_from_github:
            open_prs = _github(settings).open_pull_requests()

        work_dir = settings.run.work_dir.resolve() / "ci-schema"
        work_dir.mkdir(parents=True, exist_ok=True)
        with open_warehouse(project, settings.run.target, work_dir) as warehouse:
            present = warehouse.list_schemas()
            if drop:
                cleanup = schemas_of_pr(present, args.pr, args.prefix)
            else:
                cleanup = orphaned(present, open_prs, args.prefix)
            for schema in cleanup.drop:
                if not args.dry_run:
                    warehouse.drop_schema(schema)
                print(f"{'would drop' if args.dry_run else 'dropped'} {schema}")
    kept = f"; left {len(cleanup.keep)} of other pull requests" if cleanup.keep else ""
    print(f"{len(cleanup.drop)} schema(s) {'to drop' if args.dry_run else 'dropped'}{kept}")
    return ExitCode.OK


def _github(settings: Any) -> Any:
    from flows.ci.github import GitHub

    github = settings.github
    if not github.repository or not github.token:
        raise Refused("set GITHUB_REPOSITORY and GITHUB_TOKEN (GitHub Actions sets both)")
    return GitHub(github.repository, github.token.get_secret_value(), github.api_url)


# --- diff: what the pull request did to the data (flows/ci/diff/) -------------------------------
def _add_diff(ci: Any) -> None:
    verb = leaf(
        ci,
        "diff",
        _diff,
        "what a Slim CI run's models changed in the data, against production",
        "Compares each model a Slim CI run built with production's (the state it deferred to), "
        "in the warehouse, through the run's own profile and target: columns, rows, and with a "
        "key the rows added, removed and changed per column. Stores diff.json beside the run. "
        "Exit 0 when every model was compared or reported, 2 on bad input, 1 when the "
        "warehouse cannot be reached.",
    )
    verb.add_argument("run", type=Path, help="the run's folder, or `ferry run --json` output")
    verb.add_argument("--json", action="store_true", help="print diff.json instead of markdown")
    verb.add_argument("--out", type=Path, help="write here instead of stdout")
    verb.add_argument(
        "--no-values",
        action="store_true",
        help="counts only: no example rows, no min/max/mean (values never leave the warehouse)",
    )
    verb.add_argument(
        "--max-rows",
        type=_at_least(int, 0, above=True),
        default=10_000_000,
        help="above this many rows on either side, compare a sample of keys (default 10000000)",
    )
    verb.add_argument(
        "--budget-s",
        type=_at_least(float, 0, above=True),
        default=600.0,
        help="models not reached within this many seconds are listed as skipped (default 600)",
    )
    verb.add_argument(
        "--examples",
        type=_at_least(int, 0),
        default=5,
        help="example rows per kind of change (default 5)",
    )
    verb.add_argument("--target", help="profiles.yml target (default: FERRY_TARGET, the run's)")
    verb.add_argument("--project-dir", help="dbt project directory (default: dbt_project)")
    verb.add_argument("--profiles-dir", help="directory of profiles.yml")
    verb.add_argument("--state-env", help="environment compared with (FERRY_STATE_ENV, prod)")
    verb.add_argument("--state-from", help="store holding its state (FERRY_STATE_FROM)")


def _at_least(kind: type[int] | type[float], minimum: float, *, above: bool = False) -> Any:
    """An argparse type: a number of `kind`, at least `minimum` (or above it)."""

    def parse(text: str) -> int | float:
        value = kind(text)
        if value < minimum or (above and value == minimum):
            raise argparse.ArgumentTypeError(
                f"must be {'above' if above else 'at least'} {minimum:g}, not {text}"
            )
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its message
    return parse


def _diff(args: argparse.Namespace) -> ExitCode:
    from flows.ci.diff.compare import Limits
    from flows.ci.diff.of_run import NoState, diff_run
    from flows.ci.diff.render import render
    from flows.ci.slim_report import NotARun, load_run
    from flows.dbt.errors import InvalidDbtInput
    from flows.dbt.warehouse import WarehouseUnreachable
    from flows.settings import FerrySettings, InvalidSettings

    # No such run, no production state, a wrong project, profile or target: bad input. The
    # warehouse unreachable: a failure. A model the warehouse cannot compare is that model's
    # `error` in the diff, not the command's.
    with classify(
        invalid=(NotARun, NoState, InvalidSettings, InvalidDbtInput),
        failed=(WarehouseUnreachable, OSError),
    ):
        settings = FerrySettings.from_env(
            project_dir=args.project_dir,
            profiles_dir=args.profiles_dir,
            state_env=args.state_env,
            state_from=args.state_from,
        )
        limits = Limits(
            max_rows=args.max_rows,
            budget_s=args.budget_s,
            examples=args.examples,
            values=not args.no_values,
        )
        found = diff_run(load_run(args.run), settings, target=args.target, limits=limits)
    body = found.model_dump_json(indent=2) + "\n" if args.json else render(found)
    _write(body, args.out)
    return ExitCode.OK


def _write(body: str, out: Path | None) -> None:
    if out is None:
        print(body, end="")
        return
    try:
        out.write_text(body)
    except OSError as exc:
        raise Failed(f"cannot write {out}: {exc}") from None


# --- stack-env, report, comment -----------------------------------------------------------------
def _stack_env(args: argparse.Namespace) -> ExitCode:
    from flows.ci.stack_outputs import StackOutputError, UnknownStack, github_env_lines, stack_env

    cloudformation = aws_client("cloudformation")
    # A stack that does not exist or is not ferry's: bad input. CloudFormation failing, an
    # output that cannot go into GITHUB_ENV, the file not written: a failure.
    with classify(invalid=(UnknownStack,), failed=(StackOutputError, OSError), aws=True):
        lines = github_env_lines(stack_env(cloudformation, args.stack))
        if args.github_env:
            with args.github_env.open("a") as out:
                out.write(lines)
    if args.github_env:
        print(f"wrote {lines.count(chr(10))} variables to {args.github_env}")
    else:
        print(lines, end="")
    return ExitCode.OK


def _report(args: argparse.Namespace) -> ExitCode:
    from flows.ci.slim_report import NotARun, docs_location, load_run, render

    with classify(invalid=(NotARun,)):  # missing, or not what a run (or a diff) writes
        run = load_run(args.run)
        data_diff = run.data_diff()
    body = render(
        run.summary,
        run.results,
        schema=args.schema,
        state_env=args.state_env,
        run_url=args.run_url,
        data_diff=data_diff,
        docs=docs_location(args.docs),
    )
    _write(body, args.out)
    return ExitCode.OK


def _comment(args: argparse.Namespace) -> ExitCode:
    from flows.ci.github import GitHubError
    from flows.ci.slim_report import MARKER
    from flows.settings import FerrySettings, InvalidSettings

    try:
        body = args.file.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise Refused(f"cannot read --file {args.file}: {exc}") from None
    # GitHub refusing or unreachable: a failure.
    with classify(invalid=(InvalidSettings,), failed=(GitHubError, OSError)):
        action = _github(FerrySettings.from_env()).upsert_comment(args.pr, MARKER, body)
    print(f"{action} the Slim CI comment on pull request {args.pr}")
    return ExitCode.OK
