"""dbt's parse, baked into the image at build time and handed to every run.

A run in a fresh container would otherwise parse the project from scratch before its first node.
dbt re-uses saved parse state (`partial_parse.msgpack`) only when its state check matches the
run: the same dbt version, `--vars`, `--profile`/`--target`, env vars read by dbt_project.yml,
and the profile's connection values (host, user, port, database, schema...; never the password).
So the image bakes one state per environment and target, parsed with that environment's
non-secret connection values, and a run seeds its empty target path with the matching one.
dbt still decides whether the state holds; the run's summary says what dbt decided.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from flows.dbt import packages
from flows.dbt.args import DbtArgs, check_vars
from flows.dbt.commands import DbtCommand
from flows.dbt.errors import InvalidDbtInput
from flows.dbt.invoke import DbtInvocation, DbtProjectError, Parsed, ParseReport, dbt_version
from flows.dbt.profiles import DbtProject
from flows.settings import environment_name_problem

#: dbt's own name for its saved parse state in the target path.
PARSE_STATE_FILE = "partial_parse.msgpack"
#: What `bake` records beside the state: what was baked, never a value of the environment.
BAKE_INFO_FILE = "bake.json"
_BAKED_FILES = (PARSE_STATE_FILE, "manifest.json")
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_MISSING_ENV_VAR = re.compile(r"Env var required but not provided: '([^']+)'")
# Two different stand-ins: if the state depends on one, dbt's state check says so.
_PLACEHOLDERS = ("ferry-bake-placeholder-a", "ferry-bake-placeholder-b")


class BakeError(RuntimeError):
    """The bake cannot produce a state that runs would re-use; the message says why."""


class BakeSpec(BaseModel):
    """One parse state to bake: the environment and target a run will have, and its values."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    env: str = Field(default="local", description="FERRY_ENV of the runs that will use it.")
    target: str | None = Field(
        default=None, description="profiles.yml target; default FERRY_TARGET, else the profile's."
    )
    environment: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Environment variables the profile reads, as the runs will have them: the "
            "connection values dbt hashes into its state (host, user, database, schema...). "
            "Never secrets: a variable dbt requires but the state does not depend on (the "
            "password) is filled with a placeholder, and the bake proves it does not matter."
        ),
    )
    vars: dict[str, Any] = Field(
        default_factory=dict, description="dbt --vars the runs will pass (usually none)."
    )

    @field_validator("env")
    @classmethod
    def _env_is_an_environment_name(cls, value: str) -> str:
        if problem := environment_name_problem(value):  # as FERRY_ENV: a run could not use it
            raise ValueError(f"env {value!r} {problem}")
        return value

    @field_validator("vars")
    @classmethod
    def _vars_are_dbt_vars(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:  # the rule a run's request applies too
            return check_vars(value)
        except InvalidDbtInput as exc:
            raise ValueError(str(exc)) from None

    @classmethod
    def parse_many(cls, text: str) -> list[BakeSpec]:
        """Specs from JSON: one object or a list of them (a Docker build argument).

        Raises:
            InvalidDbtInput: the text is not such JSON; the message shows the expected shape.
        """
        shape = '[{"env": "prod", "target": "redshift", "environment": {"NAME": "value"}}]'
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidDbtInput(f"bake spec is not JSON ({exc}); expected {shape}") from None
        items = data if isinstance(data, list) else [data]
        try:
            specs = [cls.model_validate(item) for item in items]
        except ValidationError as exc:
            errors = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'spec'}: {e['msg']}" for e in exc.errors()
            )
            raise InvalidDbtInput(f"bad bake spec ({errors}); expected {shape}") from None
        if not specs:
            raise InvalidDbtInput(f"bake spec lists nothing to bake; expected {shape}")
        return specs


@dataclass(frozen=True)
class Baked:
    """A parse state that `bake` wrote, proven re-usable by dbt."""

    name: str
    path: Path
    nodes: int
    placeholders: tuple[str, ...]
    parse_s: float
    installed: packages.Installed = field(default_factory=packages.Installed)
    """The project's dbt packages, installed first if they were missing or out of date."""

    def describe(self) -> str:
        text = f"{self.name}: {self.nodes} nodes; re-used by a second parse in {self.parse_s:.1f} s"
        if self.placeholders:
            text += f" (placeholders, proven not to matter: {', '.join(self.placeholders)})"
        return text


@dataclass(frozen=True)
class Seeded:
    """What a run found to start its parse from."""

    name: str | None
    """The baked state copied into the target path (`<env>/<target>`), or None."""
    note: str
    """What happened, for the run's log."""


def state_name(env: str, target: str) -> str:
    return f"{env}/{target}"


def bake(
    project: DbtProject,
    spec: BakeSpec,
    baked_dir: Path,
    *,
    default_target: str | None = None,
) -> Baked:
    """Parses the project as a run of `spec` would, and keeps dbt's state under `baked_dir`.

    The parse goes through the same `DbtInvocation.parse` as a run, so its flags are a run's.
    Environment variables the profile requires but `spec` does not give are filled with a
    placeholder; a second parse with a different placeholder must then re-use the state, which
    proves the state does not depend on them (a password never does; a host always does).

    Args:
        default_target: the target when `spec` names none (a deployment's FERRY_TARGET).

    Raises:
        InvalidDbtInput: the spec names a target the profile lacks, or the project's packages
            cannot be installed.
        BakeError: the project does not parse, or the state would not be re-used.
    """
    target = project.check_target(spec.target or default_target)
    if target is None or not _SEGMENT.match(target):
        raise InvalidDbtInput(
            f"cannot tell which target to bake for profile {project.profile_name!r} (its "
            f"default is {target!r}); name it in the spec's target"
        )
    # Runs name their target explicitly (flows.run.plan), and dbt hashes whether --target was given.
    args = DbtArgs(command=DbtCommand.BUILD, target=target, vars=dict(spec.vars))
    name = state_name(spec.env, target)
    with (
        tempfile.TemporaryDirectory(prefix="ferry-bake-") as tmp,
        _environment(spec.environment),
        project.rendered_profiles_dir() as profiles_dir,
    ):
        work = Path(tmp)
        # A run installs them before it parses: so does the bake, and the state includes them.
        installed = packages.ensure(project.project_dir, log_path=work / "deps", vars=spec.vars)

        def invocation(folder: str) -> DbtInvocation:
            return DbtInvocation(
                project=project,
                args=args,
                profiles_dir=profiles_dir,
                target_path=work / folder / "target",
                log_path=work / folder / "logs",
            )

        first = invocation("first")
        manifest, placeholders = _parse_with_placeholders(first)
        # The proof: a fresh target path seeded with the state, every placeholder changed.
        second = invocation("second")
        second.target_path.mkdir(parents=True)
        shutil.copyfile(first.target_path / PARSE_STATE_FILE, second.target_path / PARSE_STATE_FILE)
        for variable in placeholders:
            os.environ[variable] = _PLACEHOLDERS[1]
        report = _parse_or_fail(second).report
        if not report.partial:
            raise BakeError(_not_reused(name, report, placeholders))
        dest = baked_dir / spec.env / target
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        for file_name in _BAKED_FILES:
            shutil.copyfile(first.target_path / file_name, dest / file_name)
    nodes = len(getattr(manifest, "nodes", {}) or {})
    info = {
        "name": name,
        "env": spec.env,
        "target": target,
        "project": project.name,
        "dbt_version": dbt_version(),
        "nodes": nodes,
        "vars": spec.vars,
        "environment": sorted(spec.environment),  # names only: the values are the runs'
        "placeholders": placeholders,
        "baked_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    (dest / BAKE_INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
    return Baked(name, dest, nodes, tuple(placeholders), report.elapsed_s, installed)


def seed(baked_dir: Path | None, env: str, target: str | None, target_path: Path) -> Seeded:
    """Copies the baked state of `env`/`target` into a target path that has no state of its own.

    A state already in the target path (a previous run on the same disk) is newer than the
    image's, so it is left alone. Never raises: without a state, dbt parses from scratch.
    """
    if baked_dir is None:
        return Seeded(None, "no baked parse state (FERRY_BAKED_DIR is not set)")
    if target is None:
        return Seeded(None, "no baked parse state used: the profile's default target is unknown")
    name = state_name(env, target)
    source = baked_dir / env / target / PARSE_STATE_FILE
    if (target_path / PARSE_STATE_FILE).exists():
        return Seeded(None, f"the target path already holds dbt's parse state; {name} not used")
    if not source.is_file():
        known = ", ".join(baked_names(baked_dir)) or "none"
        return Seeded(None, f"no baked parse state for {name} in {baked_dir} (baked: {known})")
    try:
        target_path.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target_path / PARSE_STATE_FILE)
    except OSError as exc:
        return Seeded(None, f"could not copy the baked parse state {name}: {exc}")
    return Seeded(name, f"starting from the baked parse state {name}")


def reuse(cache: Path, target_path: Path) -> bool:
    """Starts a run's own target path from the parse state the runs before it left in `cache`
    (each run has a target path of its own: two runs at once never share dbt's files). Never
    raises: without it, the baked state or a full parse follows."""
    source = cache / PARSE_STATE_FILE
    if not source.is_file() or (target_path / PARSE_STATE_FILE).exists():
        return False
    try:
        target_path.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target_path / PARSE_STATE_FILE)
    except OSError:
        return False
    return True


def keep(target_path: Path, cache: Path) -> None:
    """Leaves a run's parse state in `cache` for the next run, replacing the file at once so a
    run starting meanwhile reads a whole one. Never raises: the next run parses more, that is
    all."""
    source = target_path / PARSE_STATE_FILE
    if not source.is_file():
        return
    partial = cache / f".{PARSE_STATE_FILE}.{os.getpid()}"
    try:
        cache.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, partial)
        os.replace(partial, cache / PARSE_STATE_FILE)
    except OSError:
        partial.unlink(missing_ok=True)


def baked_names(baked_dir: Path) -> list[str]:
    """The `<env>/<target>` states under `baked_dir`."""
    return sorted(
        f"{path.parent.parent.name}/{path.parent.name}"
        for path in baked_dir.glob(f"*/*/{PARSE_STATE_FILE}")
    )


def _parse_with_placeholders(invocation: DbtInvocation) -> tuple[Any, list[str]]:
    """Parses, filling each env var dbt says is missing with a placeholder, one at a time."""
    filled: list[str] = []
    while True:
        try:
            return _parse_or_fail(invocation).manifest, filled
        except InvalidDbtInput as exc:
            missing = _MISSING_ENV_VAR.search(str(exc))
            if missing is None or missing.group(1) in filled:
                raise
            filled.append(missing.group(1))
            os.environ[missing.group(1)] = _PLACEHOLDERS[0]


def _parse_or_fail(invocation: DbtInvocation) -> Parsed:
    try:
        return invocation.parse()
    except DbtProjectError as exc:
        raise BakeError(str(exc)) from None


def _not_reused(name: str, report: ParseReport, placeholders: list[str]) -> str:
    reason = report.reason or "dbt did not say why"
    if placeholders:
        return (
            f"the parse state of {name} would not be re-used by runs: dbt parsed in full "
            f"({reason}) when the placeholders of {', '.join(placeholders)} changed, so the "
            "state depends on one of them. Give their run-time values in the spec's "
            "environment (non-secret connection values such as the host, user or schema)"
        )
    return f"the parse state of {name} would not be re-used by runs: dbt parsed in full ({reason})"


@contextlib.contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """Sets `values` (and whatever placeholders the bake adds) for dbt, then restores."""
    saved = dict(os.environ)
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
