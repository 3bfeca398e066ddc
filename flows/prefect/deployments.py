"""ferry's deployments as `prefect deploy` will see them, and the ECS work pool they run on.

`prefect.yaml` takes the values only the infrastructure knows from `{{ $NAME }}` environment
placeholders at deploy time. Prefect leaves a placeholder whose variable is unset in place, so a
missing output of the infrastructure stack would deploy the literal text `{{ $FERRY_IMAGE }}`;
`job_variables` refuses that, and an image not pinned by digest, before anything is deployed.

The ECS pool's base job template is prefect-aws's default plus what ferry's job variables need
(`ecs_base_job_template`); regenerate the committed copy when prefect-aws changes with
`ferry release ecs-template`.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from prefect.utilities.templating import (
    ENV_VAR_PLACEHOLDER_PREFIX,
    PlaceholderType,
    find_placeholders,
)

REPO = Path(__file__).resolve().parents[2]
PREFECT_YAML = REPO / "prefect.yaml"
ECS_BASE_JOB_TEMPLATE = REPO / "infra" / "prefect" / "ecs-base-job-template.json"

# repo[:tag]@sha256:<64 hex>: the digest names the bytes, a tag can move.
_PINNED_IMAGE = re.compile(r"^[^\s@]+@sha256:[0-9a-f]{64}$")

# Settings a worker has for itself that a flow run's task must never inherit. Prefect's workers
# copy every setting set in the worker's environment into the job's environment; a worker next to
# a self-hosted server would hand its database URL and password to every dbt task. An env value of
# null makes the worker drop the variable (`BaseJobConfiguration.prepare_for_flow_run`).
WORKER_LOCAL_SETTINGS: tuple[str, ...] = (
    "PREFECT_SERVER_DATABASE_CONNECTION_URL",
    "PREFECT_API_DATABASE_CONNECTION_URL",  # the same setting's older name
    "PREFECT_SERVER_DATABASE_PASSWORD",
    "PREFECT_API_DATABASE_PASSWORD",
    "PREFECT_SERVER_API_AUTH_STRING",
    "PREFECT_HOME",
    "PREFECT_PROFILES_PATH",
)

_T = TypeVar("_T")


class DeploymentConfigError(ValueError):
    """prefect.yaml cannot be deployed as it is."""


class MissingDeployVariablesError(DeploymentConfigError):
    """`{{ $NAME }}` placeholders whose environment variable is not set."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = sorted(set(names))
        super().__init__(
            "prefect.yaml needs these environment variables at deploy time, and they are not "
            f"set: {', '.join(self.names)}. Set them from the infrastructure stack's outputs "
            "(CI does) before `prefect deploy`."
        )


class ImageNotPinnedError(DeploymentConfigError):
    """A deployment's image is named by tag, not by digest."""


def load_deployments(path: Path = PREFECT_YAML) -> list[dict[str, Any]]:
    """The `deployments` of a prefect.yaml, YAML anchors and merge keys expanded.

    Placeholders are left as written; `job_variables` resolves them.
    """
    try:
        document = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise DeploymentConfigError(f"{path}: no such file") from None
    deployments = document.get("deployments") if isinstance(document, dict) else None
    if not isinstance(deployments, list):
        raise DeploymentConfigError(f"{path.name} has no list of `deployments`.")
    for deployment in deployments:
        if not isinstance(deployment, dict) or not deployment.get("name"):
            raise DeploymentConfigError(f"{path.name}: every deployment needs a `name`.")
    return deployments


def missing_env_placeholders(template: Any, env: Mapping[str, str]) -> set[str]:
    """Names of the `{{ $NAME }}` placeholders in `template` that `env` does not set."""
    return {
        placeholder.name.removeprefix(ENV_VAR_PLACEHOLDER_PREFIX)
        for placeholder in _env_placeholders(template)
        if placeholder.name.removeprefix(ENV_VAR_PLACEHOLDER_PREFIX) not in env
    }


def resolve_env_placeholders(template: _T, env: Mapping[str, str]) -> _T:
    """Replace `{{ $NAME }}` placeholders with values from `env`, as `prefect deploy` does.

    Like Prefect, a value is substituted as text (a whole-string placeholder yields a string).
    Other placeholders (`{{ prefect.variables.x }}`, job variables) are left for Prefect.

    Raises:
        MissingDeployVariablesError: naming every variable that `env` lacks.
    """
    if missing := missing_env_placeholders(template, env):
        raise MissingDeployVariablesError(sorted(missing))
    return _substitute(template, env)


def require_pinned_image(image: str, deployment: str = "") -> str:
    """Return `image` if it is pinned by digest (`repo@sha256:<64 hex>`).

    Raises:
        ImageNotPinnedError: for a tag or anything else that can point at other bytes later.
    """
    if not _PINNED_IMAGE.match(image):
        where = f"{deployment}: " if deployment else ""
        raise ImageNotPinnedError(
            f"{where}image {image!r} is not pinned by digest. Set FERRY_IMAGE to the image CI "
            "built, as <repository>@sha256:<64 hex digits>: prod must run the bytes staging "
            "tested."
        )
    return image


def job_variables(deployment: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """A deployment's work pool job variables with placeholders resolved and the image checked.

    Raises:
        MissingDeployVariablesError: a `{{ $NAME }}` the job variables use is not in `env`.
        ImageNotPinnedError: the resolved `image` has no digest.
    """
    work_pool = deployment.get("work_pool") or {}
    variables: dict[str, Any] = resolve_env_placeholders(
        copy.deepcopy(work_pool.get("job_variables") or {}), env
    )
    if "image" in variables:
        require_pinned_image(str(variables["image"]), str(deployment.get("name", "")))
    return variables


def ecs_base_job_template() -> dict[str, Any]:
    """The base job template of ferry's ECS work pools: prefect-aws's default, plus

    - `container_secrets`, rendered as the container's `secrets` (valueFrom Secrets Manager),
      so warehouse credentials never travel as plain environment variables;
    - cpu and memory on the container definition as well as the task (moto insists, and ECS
      then reserves them for the one container that matters);
    - the task role on the task definition, so the registered definition says what it may do;
    - `env` defaulting to null for `WORKER_LOCAL_SETTINGS`, so the worker's own settings
      never reach a flow run's task.
    """
    # Imported here: prefect-aws is only needed to write the template, not to read prefect.yaml.
    from prefect_aws.workers.ecs_worker import ECSWorker

    template = copy.deepcopy(ECSWorker.get_default_base_job_template())
    properties = template["variables"]["properties"]
    properties["container_secrets"] = {
        "title": "Container Secrets",
        "description": (
            "Secrets the Prefect container reads from Secrets Manager or SSM Parameter Store at "
            "start, as environment variables: a list of {name, valueFrom} (valueFrom may select "
            "a JSON key, `<secret-arn>:password::`). The execution role needs read access."
        ),
        "type": "array",
        "items": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "valueFrom": {"type": "string"},
            },
            "required": ["name", "valueFrom"],
            "additionalProperties": False,
        },
        "default": [],
    }
    properties["env"]["default"] = dict.fromkeys(WORKER_LOCAL_SETTINGS)
    properties["env"]["description"] += (
        " The defaults set to null remove the worker's own settings (its database URL and "
        "password, its home) from the task's environment."
    )

    task_definition = template["job_configuration"]["task_definition"]
    task_definition["taskRoleArn"] = "{{ task_role_arn }}"
    container = task_definition["containerDefinitions"][0]
    container["cpu"] = "{{ cpu }}"
    container["memory"] = "{{ memory }}"
    container["secrets"] = "{{ container_secrets }}"
    return template


def render_ecs_base_job_template() -> str:
    """`ecs_base_job_template` as the committed JSON file's text."""
    return json.dumps(ecs_base_job_template(), indent=2, ensure_ascii=False) + "\n"


def write_ecs_base_job_template(path: Path = ECS_BASE_JOB_TEMPLATE) -> Path:
    """Write the ECS work pool's base job template (for `prefect work-pool create/update`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_ecs_base_job_template())
    return path


def _env_placeholders(template: Any) -> list[Any]:
    return [p for p in find_placeholders(template) if p.type is PlaceholderType.ENV_VAR]


def _substitute(template: Any, env: Mapping[str, str]) -> Any:
    if isinstance(template, str):
        for placeholder in _env_placeholders(template):
            name = placeholder.name.removeprefix(ENV_VAR_PLACEHOLDER_PREFIX)
            template = template.replace(placeholder.full_match, str(env[name]))
        return template
    if isinstance(template, dict):
        return {key: _substitute(value, env) for key, value in template.items()}
    if isinstance(template, list):
        return [_substitute(item, env) for item in template]
    return template


def names_of_env(env_name: str, path: Path = PREFECT_YAML) -> list[str]:
    """The deployments of one environment (`<kind>-<env>`), e.g. run-staging, build-staging."""
    names = [
        str(d["name"]) for d in load_deployments(path) if str(d["name"]).endswith(f"-{env_name}")
    ]
    if not names:
        raise DeploymentConfigError(f"{path.name} has no deployment named *-{env_name}")
    return names


def environments(path: Path = PREFECT_YAML, names: Iterable[str] | None = None) -> list[str]:
    """The environments the deployments run in (their FERRY_ENV), in file order, each once.

    Args:
        names: Only these deployments (default: all).
    """
    from flows.settings import FerrySettings

    default = str(FerrySettings.setting("env").info.default)
    wanted = None if names is None else set(names)
    found: dict[str, None] = {}
    for deployment in load_deployments(path):
        if wanted is None or deployment["name"] in wanted:
            env = ((deployment.get("work_pool") or {}).get("job_variables") or {}).get("env")
            found[str((env or {}).get("FERRY_ENV") or default)] = None
    return list(found)


def check_deployable(env_name: str, env: Mapping[str, str], path: Path = PREFECT_YAML) -> list[str]:
    """The names of one environment's deployments, once everything they need is in `env`.

    Raises:
        DeploymentConfigError: a variable is missing or the image is not pinned.
    """
    names = names_of_env(env_name, path)
    chosen = [d for d in load_deployments(path) if d["name"] in names]
    missing: set[str] = set()
    for deployment in chosen:
        missing |= missing_env_placeholders(deployment, env)
    if missing:
        raise MissingDeployVariablesError(sorted(missing))
    for deployment in chosen:
        job_variables(deployment, env)
    return names


def deploy(env_name: str, env: Mapping[str, str], path: Path = PREFECT_YAML) -> list[str]:
    """`prefect deploy` of one environment's deployments, after checking what they need.

    Every `{{ $NAME }}` must be set and the image pinned by digest before anything is sent to
    Prefect, so a half-configured CI job deploys nothing rather than literal placeholders.

    Returns:
        The deployment names deployed.

    Raises:
        DeploymentConfigError: a variable is missing or the image is not pinned.
        subprocess.CalledProcessError: `prefect deploy` failed (its output is on stderr).
    """
    names = check_deployable(env_name, env, path)
    prefect = shutil.which("prefect", path=str(Path(sys.executable).parent)) or "prefect"
    subprocess.run(
        [prefect, "--no-prompt", "deploy", "--prefect-file", str(path)]
        + [arg for name in names for arg in ("--name", name)],
        check=True,
        cwd=path.parent,
        env=dict(env),
    )
    return names
