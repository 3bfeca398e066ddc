"""Storing a run: its artifacts copied beside its log, then stored, then the pointers moved.

A `docs generate` that succeeded also publishes its page as the environment's docs site
(`<project>/<env>/docs/index.html`), once the run's own copy is stored. Never raises: a store
that fails leaves the local copy as the record, and the summary says so.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from flows.artifacts import DOCS_PAGE, StoredRun, docs_key, mark_retried, store_run
from flows.dbt.commands import DbtCommand
from flows.dbt.docs import STATIC_PAGE
from flows.dbt.invoke import ARTIFACT_FILES
from flows.dbt.transient import earlier_attempts
from flows.run.plan import Log, RunPlan
from flows.run.summary import RunSummary
from flows.run.verdict import Outcome


def store(summary: RunSummary, plan: RunPlan, log: Log) -> tuple[RunSummary, StoredRun]:
    """Copies the artifacts next to the run's log, then stores them.

    Returns:
        The summary as stored (it names the local copy when the store failed) and what the
        store took.
    """
    local = plan.run_dir / "artifacts"
    local.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    for name in ARTIFACT_FILES:
        if (plan.target_path / name).is_file():
            files[name] = Path(shutil.copyfile(plan.target_path / name, local / name))
    for name, earlier in earlier_attempts(plan.run_dir).items():  # transient retries
        files[name] = Path(shutil.copyfile(earlier, local / name))
    if (plan.run_dir / "dbt.log").is_file():
        files["dbt.log"] = Path(shutil.copyfile(plan.run_dir / "dbt.log", local / "dbt.log"))
    if (plan.target_path / STATIC_PAGE).is_file():  # docs generate's page travels with the run
        (local / DOCS_PAGE).parent.mkdir(exist_ok=True)
        files[DOCS_PAGE] = Path(shutil.copyfile(plan.target_path / STATIC_PAGE, local / DOCS_PAGE))
    files["summary.json"] = write_summary(summary, plan)

    request = summary.request
    pointer = {
        "run_id": summary.run_id,
        "flow_run_id": summary.flow_run_id,
        "command": request.describe(),
        "publish": request.publish.value,
        "outcome": summary.outcome.value,
        "finished_at": summary.finished_at.isoformat(),
        "git_sha": summary.git_sha,
    }
    stored = store_run(
        plan.store,
        plan.layout,
        files,
        local,
        failed=summary.outcome is Outcome.FAILED,
        update_state=summary.outcome is not Outcome.FAILED and request.command.materializes,
        pointer=pointer,
    )
    if stored.errors:
        summary = summary.model_copy(
            update={
                "artifact_errors": stored.errors,
                "artifacts": f"{local} (local copy; the store at {plan.store.url} failed)",
            }
        )
        write_summary(summary, plan)
        log.warning(
            "artifact store failed (%s); artifacts kept at %s",
            "; ".join(stored.errors),
            local,
        )
    elif DOCS_PAGE in files and summary.outcome is not Outcome.FAILED:
        summary = _store_docs(summary, plan, files[DOCS_PAGE], log)
    if request.command is DbtCommand.RETRY and summary.outcome is not Outcome.FAILED:
        try:
            mark_retried(
                plan.store,
                plan.project.name,
                plan.settings.run.env,
                str(request.retry_of),
                plan.run_id,
            )
        except Exception as exc:  # the retry's own verdict stands
            log.warning("could not mark run %s as retried: %s", request.retry_of, exc)
    return summary, stored


def _store_docs(summary: RunSummary, plan: RunPlan, page: Path, log: Log) -> RunSummary:
    """The run's page as its environment's docs site, over the previous one; a store that
    refuses it leaves the previous site, and the summary says so."""
    key = docs_key(plan.project.name, plan.settings.run.env)
    try:
        plan.store.put_file(key, page)
    except Exception as exc:
        summary = summary.model_copy(
            update={"artifact_errors": [*summary.artifact_errors, f"{key}: {exc}"]}
        )
        rewrite_summary(summary, plan, log)
        log.warning("could not publish the docs site: %s", exc)
        return summary
    log.info("docs site published: %s/%s", plan.store.url, key)
    return summary


def rewrite_summary(summary: RunSummary, plan: RunPlan, log: Log) -> None:
    """Writes a changed summary again, locally and to the store, over the one just stored."""
    local = write_summary(summary, plan)
    try:
        plan.store.put_file(f"{plan.layout.run_prefix}/summary.json", local)
    except Exception as exc:  # the local copy holds it
        log.warning("could not store the changed summary: %s", exc)


def write_summary(summary: RunSummary, plan: RunPlan) -> Path:
    path = plan.run_dir / "artifacts" / "summary.json"
    path.write_text(summary.model_dump_json(indent=2))
    return path
