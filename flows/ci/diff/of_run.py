"""A Slim CI run's data diff, end to end: its files read, production's state found, the
warehouse opened with the run's own profile and target, each model compared, diff.json stored
beside the run's artifacts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flows.artifacts import open_store, read_state_manifest
from flows.ci.diff.compare import Limits, diff
from flows.ci.diff.records import DIFF_FILE, DataDiff
from flows.ci.diff.targets import targets
from flows.ci.slim_report import NotARun, SlimRun
from flows.dbt.profiles import DbtProject
from flows.dbt.warehouse import open_warehouse
from flows.run.summary import RunSummary
from flows.settings import FerrySettings


class NoState(LookupError):
    """No production state to compare with (exit code 2)."""


def diff_run(
    run: SlimRun, settings: FerrySettings, *, target: str | None, limits: Limits
) -> DataDiff:
    """Compares every model the run built with production's, and stores diff.json beside it.

    Args:
        target: the profiles.yml target (default: FERRY_TARGET, then the run's own, then the
            profile's default) - the connection the run built with.

    Raises:
        NotARun: the run was refused, or its folder has no manifest.json to say what it built.
        NoState: production's state manifest cannot be read.
        InvalidDbtInput: the project, profile or target is wrong.
        WarehouseUnreachable: no connection to the warehouse.
    """
    if not isinstance(run.summary, RunSummary):
        raise NotARun(f"the run was refused before dbt started: {run.summary.verdict}")
    pr_manifest = _manifest(run.folder / "manifest.json")
    project = DbtProject.load(settings.run.project_dir, settings.run.profiles_dir)
    target = project.check_target(target or settings.run.target or run.summary.target)
    state_store = open_store(
        settings.run.state_from or settings.store.artifacts, settings.store.s3_endpoint_url
    )
    try:
        state = json.loads(read_state_manifest(state_store, project.name, settings.run.state_env))
    except (LookupError, ValueError) as exc:
        problem = str(exc).split("; ")[0]
        raise NoState(
            f"{problem}; the diff compares with the state the Slim CI run deferred to: pass "
            "its --state-env / --state-from (FERRY_STATE_ENV / FERRY_STATE_FROM)"
        ) from None
    found = targets(pr_manifest, state, run.results)
    work_dir = settings.run.work_dir.resolve() / "ci-diff"
    work_dir.mkdir(parents=True, exist_ok=True)
    with open_warehouse(project, target, work_dir, check=True) as warehouse:
        result = diff(
            warehouse,
            found,
            run_id=run.summary.run_id,
            project=project.name,
            state_env=settings.run.state_env,
            limits=limits,
        )
    (run.folder / DIFF_FILE).write_text(result.model_dump_json(indent=2))
    return result


def _manifest(path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise NotARun(
            f"no dbt manifest of the run at {path} ({exc}); pass the Slim CI run's folder or "
            "the file `ferry run --json` wrote"
        ) from None
    if not isinstance(manifest, dict):
        raise NotARun(f"{path} is not a dbt manifest")
    return manifest
