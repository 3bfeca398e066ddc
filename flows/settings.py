"""The one settings object of ferry.

Every knob that is not a per-run parameter of the `dbt` flow lives here, read from `FERRY_`
environment variables (or given by the `ferry` command's flags). Nothing else in ferry reads
`os.environ` (dbt and Prefect read their own).

Three families of `FERRY_*` names share the prefix; each has one reader:
- run settings: the fields below (`FERRY_ENV`, `FERRY_ARTIFACTS`...), read here;
- profile variables: what the dbt project's profiles.yml reads with `env_var()`
  (`FERRY_PG_HOST`, `FERRY_REDSHIFT_PASSWORD`...), read by dbt;
- alert-channel secrets: what automations.yaml names (`FERRY_SLACK_WEBHOOK_URL`...), read by
  `ferry alerts channels apply`.
No name is in two families (tests/unit/test_settings.py checks it), so a profile variable is
never taken for a setting.
"""

from __future__ import annotations

import os
import re
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from flows.artifacts import file_in_the_way


class NodeReporting(StrEnum):
    """How dbt nodes appear in Prefect as task runs."""

    LIVE = "live"
    """A task run per node, shown Running when it starts and final when it ends (2 events)."""
    FINAL = "final"
    """A task run per node, recorded once when it ends (1 event): cheapest with visibility."""
    OFF = "off"
    """No task run per node; the flow's summary artifact still lists every node."""


_ENV_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_SCHEMA_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


def environment_name_problem(value: str) -> str | None:
    """What is wrong with an environment name, or None: one rule for runs, bakes and state.

    An environment name becomes a folder of the artifact store and a Prefect tag, so it is a
    plain lowercase name.
    """
    if _ENV_NAME.match(value):
        return None
    return (
        "must be lowercase letters, digits, '-' or '_' (it becomes a folder of the artifact "
        "store), e.g. 'prod' or 'ci-pr-42'"
    )


class InvalidSettings(ValueError):
    """A FERRY_* variable holds a value ferry cannot use; the message names it. Exit code 2."""


class FerrySettings(BaseSettings):
    """Deployment-wide settings, from `FERRY_*` environment variables."""

    model_config = SettingsConfigDict(env_prefix="FERRY_", extra="ignore")

    # --- What a run belongs to and reads ----------------------------------------------
    env: str = Field(
        default="local",
        description=(
            "Environment this run belongs to (local, staging, prod, ci-pr-42...). It partitions "
            "the artifact store, so retry and Slim CI find the runs of the right environment."
        ),
    )

    target: str | None = Field(
        default=None,
        description=(
            "The profiles.yml target a run uses when its `target` parameter is empty "
            "(e.g. redshift in staging and prod). Empty: the profile's own default."
        ),
    )

    project_dir: Path = Field(
        default=Path("dbt_project"),
        description="dbt project directory (holds dbt_project.yml).",
    )

    profiles_dir: Path | None = Field(
        default=None,
        description=(
            "Directory holding profiles.yml. Default: the project directory when it has one, "
            "else ~/.dbt, as dbt itself does."
        ),
    )

    target_schema: str | None = Field(
        default=None,
        description=(
            "Build into this schema instead of the target's own (profiles.yml is copied with "
            "the target's schema replaced). Slim CI gives each pull request its own, e.g. "
            "ci_pr_42; dbt's custom schemas become ci_pr_42_<name>."
        ),
    )

    state_env: str = Field(
        default="prod",
        description=(
            "Environment whose state manifest `--defer` and `state:` selectors compare against "
            "(its last successful build)."
        ),
    )

    state_from: str | None = Field(
        default=None,
        description=(
            "Artifact store holding that state (s3://bucket/prefix or a folder). Default: the "
            "artifact store itself. Slim CI reads production's store, writes its own locally."
        ),
    )

    # --- Where its files go -----------------------------------------------------------
    artifacts: str = Field(
        default=".ferry/artifacts",
        description=(
            "Where run artifacts go: an S3 URL (s3://bucket/prefix) or a local folder. "
            "Relative folders are resolved from the working directory."
        ),
    )

    s3_endpoint_url: str | None = Field(
        default=None,
        description="S3 endpoint override (moto, MinIO). Falls back to AWS_ENDPOINT_URL.",
    )

    work_dir: Path = Field(
        default=Path(".ferry/runs"),
        description=(
            "Local scratch space: each run's logs and its local copy of the artifacts. In a "
            "container this is the one writable path besides the dbt target directory."
        ),
    )

    target_path: Path | None = Field(
        default=None,
        description="dbt's target directory. Default: <project_dir>/target, as dbt's own.",
    )

    baked_dir: Path | None = Field(
        default=None,
        description=(
            "Where `ferry release bake` put dbt's parse state at image build, one folder per "
            "<env>/<target>. A run whose target path holds no state of its own starts from the "
            "matching one, so dbt parses only what changed; dbt's own state check decides "
            "whether it still holds. Empty: every fresh run parses from scratch."
        ),
    )

    # --- Time limits and retries ------------------------------------------------------
    flow_timeout_s: float | None = Field(
        default=None,
        gt=0,
        description="Fail a run as TimedOut after this many seconds (None: no limit).",
    )

    transient_retries: int = Field(
        default=2,
        ge=0,
        le=10,
        description=(
            "Retries of a run whose every failure is transient (connection refused or dropped, "
            "throttling): only the failed and skipped nodes run again. A model's own failure "
            "is never retried."
        ),
    )

    transient_retry_delay_s: float = Field(
        default=10.0,
        ge=0,
        description="Wait before the first transient retry; doubles for the second, and so on.",
    )

    prefect_api_wait_s: float = Field(
        default=30.0,
        gt=0,
        description=(
            "Once dbt has ended and the artifacts are stored, the longest a run waits on the "
            "Prefect API (its report, outcome event, final state, queued task-run events and "
            "logs). Past it the process ends with the run's exit code and says how many "
            "updates it dropped; run_results.json in the artifact store stays the record."
        ),
    )

    # --- How it shows in Prefect ------------------------------------------------------
    node_reporting: NodeReporting = Field(
        default=NodeReporting.LIVE,
        description="How dbt nodes appear in the Prefect UI: live, final or off.",
    )

    node_running_after_s: float = Field(
        default=1.0,
        ge=0,
        description=(
            "In live reporting, show a node Running once it has run this long (0: at once). "
            "Faster nodes appear only with their final state, which halves the events."
        ),
    )

    worker_flow_run_id: str | None = Field(
        default=None,
        validation_alias=AliasChoices("PREFECT__FLOW_RUN_ID"),
        description=(
            "Set by a Prefect worker in the process it starts for a deployment's flow run: the "
            "run then owns its process's end (FERRY_PREFECT_API_WAIT_S applies)."
        ),
    )

    # --- Metrics for CloudWatch -------------------------------------------------------
    metrics: bool = Field(
        default_factory=lambda: bool(os.environ.get("ECS_CONTAINER_METADATA_URI_V4")),
        description=(
            "Write the run's CloudWatch metrics as Embedded Metric Format lines to stdout when "
            "it ends (flows/run/metrics.py). Default: on in an ECS task, where the log driver "
            "delivers them, off elsewhere."
        ),
    )

    # --- History: the environment's record across runs (flows/history/) ---------------
    history: bool = Field(
        default=True,
        description=(
            "After each run: compare it with the environment's history (timing regressions, "
            "volume anomalies), add it to the history kept in the artifact store and refresh "
            "the environment's report there (<store>/<project>/<env>/report/index.html)."
        ),
    )

    history_days: int = Field(
        default=90,
        ge=1,
        description="Days of runs the history in the artifact store keeps (older ones drop).",
    )

    history_min_runs: int = Field(
        default=5,
        ge=1,
        description=(
            "Earlier successful runs of a node needed before its time or its rows are judged "
            "against them: fewer and it is never reported."
        ),
    )

    history_window: int = Field(
        default=20,
        ge=1,
        description="A node's usual time and rows: the median of its last this-many runs.",
    )

    regression_factor: float = Field(
        default=2.0,
        gt=1,
        description="A node is a timing regression when it took more than this many times "
        "its usual time...",
    )

    regression_floor_s: float = Field(
        default=10.0,
        ge=0,
        description="...and more than this many seconds (a 0.2 s model taking 1 s is noise).",
    )

    volume_deviation: float = Field(
        default=5.0,
        gt=0,
        description=(
            "A model's rows affected are a volume anomaly when they are this many robust "
            "standard deviations (1.4826 x the median absolute deviation, at least 5% of the "
            "median) from their usual count; 0 rows where there usually are some always is."
        ),
    )

    # --- Provenance, recorded in every summary ----------------------------------------
    git_sha: str | None = Field(
        default=None, description="Git commit the image was built from (set at image build)."
    )

    image_digest: str | None = Field(
        default=None, description="Digest of the running image (set by the deployment)."
    )

    # --- GitHub, for the CI commands --------------------------------------------------
    github_repository: str | None = Field(
        default=None,
        validation_alias=AliasChoices("FERRY_GITHUB_REPOSITORY", "GITHUB_REPOSITORY"),
        description="owner/name of the repository CI comments on (GitHub Actions sets it).",
    )

    github_token: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("FERRY_GITHUB_TOKEN", "GITHUB_TOKEN"),
        description="Token for GitHub's API: the workflow's own GITHUB_TOKEN, never a PAT.",
    )

    github_api_url: str = Field(
        default="https://api.github.com",
        validation_alias=AliasChoices("FERRY_GITHUB_API_URL", "GITHUB_API_URL"),
        description="GitHub's REST API (GitHub Actions sets it; GitHub Enterprise differs).",
    )

    @classmethod
    def from_env(cls, **flags: Any) -> FerrySettings:
        """The settings of this process, checked: what the CLI and the flow start from.

        Args:
            flags: values given on the command line (`--project-dir` as `project_dir`); each
                one not None wins over its environment variable. Nothing is written back to
                the environment.

        Raises:
            InvalidSettings: naming each variable to fix, e.g.
                "FERRY_FLOW_TIMEOUT_S='-1': Input should be greater than 0".
        """
        unknown = sorted(set(flags) - set(cls.model_fields))
        if unknown:
            raise TypeError(f"not ferry settings: {', '.join(unknown)}")
        try:
            return cls(**{name: value for name, value in flags.items() if value is not None})
        except ValidationError as exc:
            raise InvalidSettings(_describe(exc)) from None

    @field_validator("env", "state_env")
    @classmethod
    def _env_is_a_path_segment(cls, value: str, info: ValidationInfo) -> str:
        if problem := environment_name_problem(value):
            raise ValueError(f"{_variable(info.field_name)}={value!r} {problem}")
        return value

    @field_validator("work_dir", "target_path")
    @classmethod
    def _can_be_a_folder(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        # Checked here, not when the run first writes there (after the project was parsed).
        blocker = file_in_the_way(value) if value is not None else None
        if blocker is not None:
            raise ValueError(
                f"{_variable(info.field_name)}={str(value)!r} must be a folder, but {blocker} "
                "is a file; point it at a folder (it is created if missing)"
            )
        return value

    @field_validator("target_schema")
    @classmethod
    def _schema_is_an_identifier(cls, value: str | None) -> str | None:
        if value is not None and not _SCHEMA_NAME.match(value):
            raise ValueError(
                f"FERRY_TARGET_SCHEMA={value!r} must be a plain lowercase identifier (letters, "
                "digits, '_', starting with a letter), e.g. 'ci_pr_42'"
            )
        return value


def _variable(field_name: str | None) -> str:
    """The environment variable a field is read from (its first alias, if it has any)."""
    field = FerrySettings.model_fields.get(field_name or "")
    alias = field.validation_alias if field is not None else None
    if isinstance(alias, AliasChoices) and isinstance(alias.choices[0], str):
        return alias.choices[0]
    return f"FERRY_{(field_name or '').upper()}"


def _describe(exc: ValidationError) -> str:
    """pydantic's report as one line per variable, without its URLs and type codes."""
    problems = []
    for error in exc.errors():
        variable = _variable(str(error["loc"][0]) if error["loc"] else None)
        message = str(error["msg"]).removeprefix("Value error, ")
        if not message.startswith(variable):
            message = f"{variable}={error['input']!r}: {message}"
        problems.append(message)
    return "; ".join(problems)
