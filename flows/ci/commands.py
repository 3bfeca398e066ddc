"""`ferry promote`, `ferry deploy`, `ferry smoke`, `ferry ci-schema ...`, `ferry ci ...`: what
the GitHub workflows run. Thin: each parses flags and calls one tested function."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2


def add_parsers(sub: Any) -> None:
    promote = sub.add_parser("promote", help="retag an ECR image by its manifest (no rebuild)")
    promote.add_argument("--repository", required=True, help="ECR repository name, e.g. ferry")
    promote.add_argument("--from-tag", required=True, help="the tag staging tested: sha-<sha>")
    promote.add_argument("--to-tag", required=True, help="the new tag: prod-<sha>")
    promote.add_argument(
        "--expect-digest", help="refuse unless the source tag names this digest (what staging ran)"
    )

    scan = sub.add_parser("scan", help="wait for ECR's scan of an image and judge it")
    scan.add_argument("--repository", required=True)
    scan.add_argument("--digest", required=True, help="sha256:...")
    scan.add_argument("--fail-on", default="CRITICAL", help="lowest blocking severity")
    scan.add_argument("--timeout", type=float, default=900)

    deploy = sub.add_parser("deploy", help="prefect deploy one environment's deployments")
    deploy.add_argument("--env", required=True, help="staging or prod (or local)")
    deploy.add_argument("--prefect-file", default="prefect.yaml", type=Path)

    smoke = sub.add_parser("smoke", help="run a deployment once and wait for its verdict")
    smoke.add_argument("--deployment", required=True, help="flow/deployment, e.g. dbt/run-staging")
    smoke.add_argument("--params", default="{}", help="flow parameters as JSON")
    smoke.add_argument("--timeout", type=float, default=1800, help="seconds to wait")

    schemas = sub.add_parser("ci-schema", help="pull-request schemas in the CI warehouse")
    verbs = schemas.add_subparsers(dest="verb", required=True)
    drop = verbs.add_parser("drop", help="drop one pull request's schemas")
    drop.add_argument("--pr", type=int, required=True)
    sweep = verbs.add_parser("sweep", help="drop the schemas of pull requests no longer open")
    group = sweep.add_mutually_exclusive_group(required=True)
    group.add_argument("--open-prs", type=int, nargs="*", help="numbers of the open PRs")
    group.add_argument(
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

    ci = sub.add_parser("ci", help="helpers of the GitHub workflows").add_subparsers(
        dest="verb", required=True
    )
    outputs = ci.add_parser("stack-env", help="CloudFormation outputs as FERRY_* variables")
    outputs.add_argument("--stack", action="append", required=True, help="stack name (repeat)")
    outputs.add_argument("--github-env", type=Path, help="append to this file ($GITHUB_ENV)")
    report = ci.add_parser("report", help="the Slim CI comment (markdown) of a run")
    report.add_argument("run", type=Path, help="the run's folder, or `ferry run --json` output")
    report.add_argument("--schema", help="the schema the run built into")
    report.add_argument("--state-env", default="prod")
    report.add_argument("--run-url", help="link to the workflow run")
    report.add_argument("--out", type=Path, help="write here instead of stdout")
    comment = ci.add_parser("comment", help="create or update ferry's comment on a PR")
    comment.add_argument("--pr", type=int, required=True)
    comment.add_argument("--file", type=Path, required=True, help="markdown body")


ACTIONS = ("promote", "scan", "deploy", "smoke", "ci-schema", "ci")


def dispatch(args: argparse.Namespace) -> int:
    handler = {
        "promote": _promote,
        "scan": _scan,
        "deploy": _deploy,
        "smoke": _smoke,
        "ci-schema": _ci_schema,
        "ci": _ci,
    }[args.action]
    try:
        return handler(args)
    except (ValueError, LookupError, RuntimeError) as exc:
        print(f"ferry {args.action}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except subprocess.CalledProcessError as exc:  # e.g. `prefect deploy` without its work pool
        command = " ".join(str(part) for part in exc.cmd[:2])
        print(
            f"ferry {args.action}: {command} failed with exit code {exc.returncode} "
            "(its own output is above)",
            file=sys.stderr,
        )
        return EXIT_FAILED


def _promote(args: argparse.Namespace) -> int:
    import boto3  # honours AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_ECR (moto in tests)

    from flows.ci.promote import promote

    promotion = promote(
        boto3.client("ecr"), args.repository, args.from_tag, args.to_tag, args.expect_digest
    )
    print(promotion.describe())
    print(f"digest={promotion.digest}")
    return EXIT_OK


def _scan(args: argparse.Namespace) -> int:
    import boto3

    from flows.ci.scan import scan_gate

    verdict = scan_gate(
        boto3.client("ecr"), args.repository, args.digest, args.fail_on, args.timeout
    )
    print(verdict.describe())
    return EXIT_OK if verdict.passed else EXIT_FAILED


def _deploy(args: argparse.Namespace) -> int:
    import asyncio

    import httpx
    from prefect.client.orchestration import get_client
    from prefect.settings import get_current_settings

    from flows import writer_slot
    from flows.deployments import check_deployable, deploy, environments

    path = args.prefect_file.resolve()
    names = check_deployable(args.env, os.environ, path)  # nothing changes before this passes
    api_url = get_current_settings().api.url
    if not api_url:  # Prefect would deploy to a throwaway in-process server instead
        raise ValueError("set PREFECT_API_URL to the Prefect API to deploy to")

    async def apply_limits() -> list[Any]:
        # Before the deployments: their first run finds its environment's writer limit.
        async with get_client() as client:
            return await writer_slot.apply_limits(environments(path, names), client)

    try:
        changes = asyncio.run(apply_limits())
    except httpx.HTTPError as exc:
        raise RuntimeError(f"the Prefect API at {api_url} failed: {exc}") from exc
    for change in changes:
        print(change)
    deploy(args.env, os.environ, path)
    print(f"deployed {', '.join(names)}")
    return EXIT_OK


def _smoke(args: argparse.Namespace) -> int:
    from flows.ci.smoke import smoke

    result = smoke(args.deployment, json.loads(args.params), args.timeout)
    print(result.describe())
    return EXIT_OK if result.passed else EXIT_FAILED


def _ci_schema(args: argparse.Namespace) -> int:
    from flows.ci.pr_schemas import orphaned, schemas_of_pr
    from flows.dbt.profiles import DbtProject
    from flows.dbt.schemas import open_schemas
    from flows.settings import FerrySettings

    settings = FerrySettings()  # --project-dir/--profiles-dir are in it (flows.cli.main)
    project = DbtProject.load(settings.project_dir, settings.profiles_dir)
    target = args.target or settings.target
    open_prs: list[int] = getattr(args, "open_prs", None) or []  # sweep's flags only
    if getattr(args, "open_prs_from_github", False):
        open_prs = _github(settings).open_pull_requests()

    work_dir = settings.work_dir.resolve() / "ci-schema"
    work_dir.mkdir(parents=True, exist_ok=True)
    with open_schemas(project, target, work_dir) as warehouse:
        present = warehouse.list()
        if args.verb == "drop":
            cleanup = schemas_of_pr(present, args.pr, args.prefix)
        else:
            cleanup = orphaned(present, open_prs, args.prefix)
        for schema in cleanup.drop:
            if not args.dry_run:
                warehouse.drop(schema)
            print(f"{'would drop' if args.dry_run else 'dropped'} {schema}")
    kept = f"; left {len(cleanup.keep)} of other pull requests" if cleanup.keep else ""
    print(f"{len(cleanup.drop)} schema(s) {'to drop' if args.dry_run else 'dropped'}{kept}")
    return EXIT_OK


def _github(settings: Any) -> Any:
    from flows.ci.github import GitHub

    if not settings.github_repository or not settings.github_token:
        raise ValueError("set GITHUB_REPOSITORY and GITHUB_TOKEN (GitHub Actions sets both)")
    return GitHub(
        settings.github_repository,
        settings.github_token.get_secret_value(),
        settings.github_api_url,
    )


def _ci(args: argparse.Namespace) -> int:
    if args.verb == "stack-env":
        import boto3

        from flows.ci.stack_outputs import github_env_lines, stack_env

        lines = github_env_lines(stack_env(boto3.client("cloudformation"), args.stack))
        if args.github_env:
            with args.github_env.open("a") as out:
                out.write(lines)
            print(f"wrote {lines.count(chr(10))} variables to {args.github_env}")
        else:
            print(lines, end="")
    elif args.verb == "report":
        from flows.ci.slim_report import load_run, render

        summary, results = load_run(args.run)
        body = render(
            summary, results, schema=args.schema, state_env=args.state_env, run_url=args.run_url
        )
        if args.out:
            args.out.write_text(body)
        else:
            print(body, end="")
    elif args.verb == "comment":
        from flows.ci.slim_report import MARKER
        from flows.settings import FerrySettings

        action = _github(FerrySettings()).upsert_comment(args.pr, MARKER, args.file.read_text())
        print(f"{action} the Slim CI comment on pull request {args.pr}")
    return EXIT_OK
