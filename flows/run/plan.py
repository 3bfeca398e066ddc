"""Planning a run: everything that can refuse it, judged before anything is changed.

`plan` reads (the project, the profile, the artifact store, a failed run to retry, the state to
compare with) and writes nothing: no folder is created and no earlier artifact is removed until
the request has passed. Refusals raise `InvalidRunRequest` (exit code 2). What only dbt's parse
can judge (a selection's nodes) is judged first thing in `flows.run.execute`, before the
warehouse is touched.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flows.artifacts import (
    ArtifactStore,
    FailedRun,
    RunLayout,
    find_failed_run,
    open_store,
    read_state_manifest,
)
from flows.dbt.commands import DbtCommand
from flows.dbt.profiles import DbtProject
from flows.run.request import InvalidRunRequest, PublishMode, RunRequest, refused_as_request
from flows.settings import FerrySettings

Log = logging.Logger | logging.LoggerAdapter[Any]
"""Where a run's steps log: the flow run's logger (the Prefect UI) or a module's."""


@dataclass(frozen=True)
class RunPlan:
    """A request that passed every check that needs no dbt parse, and where it will go."""

    request: RunRequest
    """The request as it will run: the target resolved, a retry's run id filled in."""
    settings: FerrySettings
    project: DbtProject
    target: str | None
    store: ArtifactStore
    run_id: str
    flow_run_id: str | None
    started_at: datetime
    failed_run: FailedRun | None = None
    """With `retry`: the run to retry, its files read."""
    state_manifest: bytes | None = None
    """With `--defer` or a `state:` selection: the state environment's manifest, read."""

    @property
    def run_dir(self) -> Path:
        """This run's local folder: dbt's log, the states it reads, the artifacts' copy."""
        return (self.settings.run.work_dir / self.run_id).resolve()

    @property
    def target_path(self) -> Path:
        """dbt's target directory for this run alone: two runs at once never share one."""
        return self.run_dir / "target"

    @property
    def parse_cache(self) -> Path:
        """Where dbt's parse state is kept from one run to the next (FERRY_TARGET_PATH)."""
        return (self.settings.run.target_path or self.project.project_dir / "target").resolve()

    @property
    def layout(self) -> RunLayout:
        return RunLayout(self.project.name, self.settings.run.env, self.run_id, self.started_at)


@refused_as_request()
def plan(
    request: RunRequest,
    settings: FerrySettings,
    *,
    run_id: str | None = None,
    flow_run_id: str | None = None,
) -> RunPlan:
    """Checks `request` against the settings, the project and the store; changes nothing.

    Args:
        run_id: names the run in the artifact store; the flow run id when there is one.

    Raises:
        InvalidRunRequest: the request cannot run; the message says what to change.
    """
    started_at = datetime.now(UTC)
    if request.target is None and settings.run.target:
        request = request.model_copy(update={"target": settings.run.target})
    project = DbtProject.load(settings.run.project_dir, settings.run.profiles_dir)
    target = project.check_target(request.target)
    if request.target is None and target and request.command is not DbtCommand.RETRY:
        # dbt hashes whether --target was given into its parse state: always naming it (as
        # `ferry release bake` does) lets the default and an explicit target share the state.
        request = request.model_copy(update={"target": target})
    try:
        store = open_store(settings.store.artifacts, settings.store.s3_endpoint_url)
        state_store = store
        if settings.run.state_from:  # checked whether or not this run reads it
            state_store = open_store(settings.run.state_from, settings.store.s3_endpoint_url)
        failed_run, state_manifest = None, None
        if request.command is DbtCommand.RETRY:
            failed_run = find_failed_run(store, project.name, settings.run.env, request.retry_of)
            if failed_run.pointer.get("publish") == PublishMode.BLUE_GREEN:
                raise InvalidRunRequest(
                    f"run {failed_run.run_id} was a blue-green build: run the build again "
                    "(its version was never published; a retry would build its failed models "
                    "straight into what consumers read)"
                )
            request = request.model_copy(update={"retry_of": failed_run.run_id})
        elif request.needs_state:
            state_manifest = read_state_manifest(state_store, project.name, settings.run.state_env)
    except (LookupError, ValueError) as exc:
        raise InvalidRunRequest(str(exc)) from None
    return RunPlan(
        request=request,
        settings=settings,
        project=project,
        target=target,
        store=store,
        run_id=run_id or flow_run_id or str(uuid.uuid4()),
        flow_run_id=flow_run_id,
        started_at=started_at,
        failed_run=failed_run,
        state_manifest=state_manifest,
    )
