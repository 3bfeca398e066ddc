"""`ferry release bake|promote|scan|deploy|smoke|ecs-template`: an image from its build to
production, as the Dockerfile and the GitHub workflows run it. Thin: each verb calls one tested
function."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from pathlib import Path
from typing import Any

from flows.cli._common import (
    Failed,
    Refused,
    aws_client,
    classify,
    group,
    leaf,
    prefect_api_url,
)
from flows.exit_codes import ExitCode


def add_parser(sub: Any) -> None:
    verbs = group(
        sub,
        "release",
        "an image's way to production: bake, promote, scan, deploy, smoke",
        "What the image build and the GitHub workflows run: bake dbt's parse into the image, "
        "gate it on ECR's scan, deploy it by digest, smoke-test it, promote the same bytes.",
    )
    _add_bake(verbs)

    template = leaf(
        verbs,
        "ecs-template",
        _ecs_template,
        "write the ECS work pool's base job template",
        "Writes the ECS push pool's base job template: prefect-aws's default plus what ferry's "
        "job variables need. Regenerate the committed copy after upgrading prefect-aws.",
    )
    template.add_argument(
        "path",
        nargs="?",
        type=Path,
        help="where to write it (default: infra/prefect/ecs-base-job-template.json)",
    )

    promote = leaf(
        verbs,
        "promote",
        _promote,
        "retag an ECR image by its manifest (no rebuild)",
        "Gives the image tagged --from-tag the tag --to-tag as well, by its manifest: the same "
        "bytes, the same digest. Idempotent; refuses other bytes than --expect-digest.",
    )
    promote.add_argument("--repository", required=True, help="ECR repository name, e.g. ferry")
    promote.add_argument("--from-tag", required=True, help="the tag staging tested: sha-<sha>")
    promote.add_argument("--to-tag", required=True, help="the new tag: prod-<sha>")
    promote.add_argument(
        "--expect-digest", help="refuse unless the source tag names this digest (what staging ran)"
    )

    scan = leaf(
        verbs,
        "scan",
        _scan,
        "wait for ECR's scan of an image and judge it",
        "Waits for ECR's scan of the digest, then fails when it found anything at or above "
        "--fail-on.",
    )
    scan.add_argument("--repository", required=True, help="ECR repository name, e.g. ferry")
    scan.add_argument("--digest", required=True, help="sha256:...")
    scan.add_argument("--fail-on", default="CRITICAL", help="lowest blocking severity")
    scan.add_argument("--timeout", type=float, default=900, help="seconds to wait (900)")

    deploy = leaf(
        verbs,
        "deploy",
        _deploy,
        "prefect deploy one environment's deployments",
        "Checks that every {{ $VAR }} of the environment's deployments is set and the image "
        "pinned by digest, creates the environment's writer limit, then runs prefect deploy.",
    )
    deploy.add_argument("--env", required=True, help="staging or prod (or local)")
    deploy.add_argument("--prefect-file", default="prefect.yaml", type=Path)

    smoke = leaf(
        verbs,
        "smoke",
        _smoke,
        "run a deployment once and wait for its verdict",
        "Runs the deployment once, waits for the run's final state; succeeds only when it "
        "ends Completed.",
    )
    smoke.add_argument("--deployment", required=True, help="flow/deployment, e.g. dbt/run-staging")
    smoke.add_argument("--params", default="{}", help="flow parameters as a JSON object")
    smoke.add_argument("--timeout", type=float, default=1800, help="seconds to wait (1800)")


# --- bake: dbt's parse state, made at image build (flows/dbt/bake.py, docs/image.md) ----------
def _add_bake(verbs: Any) -> None:
    bake = leaf(
        verbs,
        "bake",
        _bake,
        "parse the dbt project now and keep dbt's state for runs (image build)",
        "Parses the project as a run of each environment will, and keeps dbt's parse state in "
        "FERRY_BAKED_DIR/<env>/<target>, so those runs parse only what changed.",
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


def _bake(args: argparse.Namespace) -> ExitCode:
    from pydantic import ValidationError

    from flows.dbt.bake import BakeError, BakeSpec, bake
    from flows.dbt.errors import InvalidDbtInput
    from flows.dbt.profiles import DbtProject
    from flows.settings import FerrySettings, InvalidSettings

    # The settings, the spec, the project and its target: bad input. dbt failing to parse the
    # project, or a state that runs would not re-use: the bake failed.
    with classify(
        invalid=(InvalidSettings, InvalidDbtInput, ValidationError), failed=(BakeError, OSError)
    ):
        settings = FerrySettings.from_env(
            project_dir=args.project_dir,
            profiles_dir=args.profiles_dir,
            env=args.env,
            baked_dir=args.baked_dir,
        )
        if settings.run.baked_dir is None:
            raise Refused("set FERRY_BAKED_DIR or pass --baked-dir")
        if args.spec and args.target:
            raise Refused("--spec names the targets to bake; drop --target")
        if args.spec:
            specs = BakeSpec.parse_many(args.spec)
        else:
            specs = [BakeSpec(env=settings.run.env, target=args.target)]
        project = DbtProject.load(settings.run.project_dir, settings.run.profiles_dir)
        baked_dir, default_target = settings.run.baked_dir, settings.run.target
        for spec in specs:
            baked = bake(project, spec, baked_dir, default_target=default_target)
            if baked.installed.packages:
                print(f"ferry: {baked.installed.describe()}")
            print(f"ferry: baked {baked.describe()}")
    return ExitCode.OK


# --- promote, scan: ECR (flows/ci/promote.py, flows/ci/scan.py) --------------------------------
def _promote(args: argparse.Namespace) -> ExitCode:
    from flows.ci.promote import InvalidPromotion, PromotionError, promote

    ecr = aws_client("ecr")
    # A malformed tag or digest, a repository or source tag that does not exist: bad input.
    # Other bytes than staging tested, a new tag already naming others: the release refused.
    with classify(invalid=(InvalidPromotion,), failed=(PromotionError,), aws=True):
        promotion = promote(ecr, args.repository, args.from_tag, args.to_tag, args.expect_digest)
    print(promotion.describe())
    print(f"digest={promotion.digest}")
    return ExitCode.OK


def _scan(args: argparse.Namespace) -> ExitCode:
    from flows.ci.scan import InvalidScanRequest, ScanError, scan_gate

    ecr = aws_client("ecr")
    # A severity or digest that is none, an image that does not exist: bad input. The scan
    # failing, not completing in time, or finding what blocks: the gate failed.
    with classify(invalid=(InvalidScanRequest,), failed=(ScanError,), aws=True):
        verdict = scan_gate(ecr, args.repository, args.digest, args.fail_on, args.timeout)
    print(verdict.describe())
    if not verdict.passed:
        raise Failed(verdict.describe())
    return ExitCode.OK


# --- deploy, smoke: Prefect (flows/prefect/deployments.py, flows/ci/smoke.py) -----------------
def _deploy(args: argparse.Namespace) -> ExitCode:
    import asyncio

    import httpx
    from prefect.client.orchestration import get_client

    from flows.prefect import holds
    from flows.prefect.deployments import (
        DeploymentConfigError,
        check_deployable,
        deploy,
        environments,
    )

    path = args.prefect_file.resolve()
    # prefect.yaml missing or wrong, a {{ $VAR }} unset, an image not pinned by digest, no
    # API to deploy to: bad input, refused before anything changes.
    with classify(invalid=(DeploymentConfigError,)):
        names = check_deployable(args.env, os.environ, path)
        api_url = prefect_api_url("to deploy to")

    async def apply_limits() -> list[Any]:
        # Before the deployments: their first run finds its environment's writer limit.
        async with get_client() as client:
            return await holds.apply_limits(environments(path, names), client)

    try:
        changes = asyncio.run(apply_limits())
    except httpx.HTTPError as exc:
        raise Failed(f"the Prefect API at {api_url} failed: {exc}") from None
    for change in changes:
        print(change)
    try:
        deploy(args.env, os.environ, path)
    except subprocess.CalledProcessError as exc:  # e.g. `prefect deploy` without its work pool
        command = " ".join(str(part) for part in exc.cmd[:2])
        raise Failed(
            f"{command} failed with exit code {exc.returncode} (its own output is above)"
        ) from None
    print(f"deployed {', '.join(names)}")
    return ExitCode.OK


def _smoke(args: argparse.Namespace) -> ExitCode:
    import httpx

    from flows.ci.smoke import InvalidSmokeRequest, smoke

    try:
        params = json.loads(args.params)
    except json.JSONDecodeError as exc:
        raise Refused(f"--params is not JSON ({exc}); expected an object") from None
    if not isinstance(params, dict):
        raise Refused(f"--params must be a JSON object of flow parameters, got {args.params}")
    api_url = prefect_api_url("whose deployment to run")
    # A deployment that is not there, parameters it refuses: bad input. The API failing: a
    # failure; so is a run that does not end Completed in time.
    with classify(invalid=(InvalidSmokeRequest,)):
        try:
            result = smoke(args.deployment, params, args.timeout)
        except httpx.HTTPError as exc:
            raise Failed(f"the Prefect API at {api_url} failed: {exc}") from None
    print(result.describe())
    if not result.passed:
        raise Failed(result.describe())
    return ExitCode.OK


# --- ecs-template: the ECS pool's base job template (flows/prefect/deployments.py) -------------
def _ecs_template(args: argparse.Namespace) -> ExitCode:
    from flows.prefect.deployments import ECS_BASE_JOB_TEMPLATE, write_ecs_base_job_template

    with classify(failed=(OSError,)):  # the file cannot be written
        written = write_ecs_base_job_template(args.path or ECS_BASE_JOB_TEMPLATE)
    print(f"wrote {written}")
    return ExitCode.OK
