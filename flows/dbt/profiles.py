"""Finding the dbt project and its profile, and checking the target before dbt starts.

profiles.yml may reference Prefect blocks and variables (`{{ prefect.blocks.secret.x }}`,
`{{ prefect.variables.schema }}`); prefect-dbt's `PrefectDbtSettings` renders those into a
temporary profiles.yml whose secrets stay in environment variables, never on disk.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from flows.dbt.errors import InvalidDbtInput


@dataclass(frozen=True)
class DbtProject:
    """A dbt project on disk and the profile it runs with."""

    project_dir: Path
    profiles_dir: Path
    name: str
    profile_name: str
    targets: tuple[str, ...]
    default_target: str | None
    vars: dict[str, Any] = field(default_factory=dict)
    """dbt_project.yml's `vars:`, as written (global ones, and per-project scopes)."""

    @classmethod
    def load(cls, project_dir: Path, profiles_dir: Path | None = None) -> DbtProject:
        """Reads dbt_project.yml and profiles.yml far enough to check a run against them.

        Raises:
            InvalidDbtInput: when a directory, file or profile is missing.
        """
        project_dir = project_dir.expanduser().resolve()
        _check_dir(
            project_dir, "dbt project", "dbt_project.yml", "--project-dir / FERRY_PROJECT_DIR"
        )
        project_file = project_dir / "dbt_project.yml"
        if not project_file.is_file():
            raise InvalidDbtInput(
                f"no dbt_project.yml in {project_dir}; pass the dbt project's directory "
                "(--project-dir / FERRY_PROJECT_DIR)"
            )
        project = _read_yaml(project_file)
        name = str(project.get("name") or project_dir.name)
        profile_name = str(project.get("profile") or name)

        profiles_dir = _find_profiles_dir(project_dir, profiles_dir)
        profiles = _read_yaml(profiles_dir / "profiles.yml")
        profile = profiles.get(profile_name)
        if not isinstance(profile, dict):
            known = ", ".join(sorted(k for k in profiles if k != "config")) or "none"
            raise InvalidDbtInput(
                f"profile {profile_name!r} (named in dbt_project.yml) is not in "
                f"{profiles_dir / 'profiles.yml'}; profiles there: {known}"
            )
        outputs = profile.get("outputs")
        if not isinstance(outputs, dict) or not outputs:
            raise InvalidDbtInput(
                f"profile {profile_name!r} in {profiles_dir / 'profiles.yml'} defines no "
                "targets; add them under its `outputs:`"
            )
        default = profile.get("target")
        return cls(
            project_dir=project_dir,
            profiles_dir=profiles_dir,
            name=name,
            profile_name=profile_name,
            targets=tuple(str(t) for t in outputs),
            default_target=str(default) if default and "{{" not in str(default) else None,
            vars=dict(project.get("vars") or {}),
        )

    def check_target(self, target: str | None) -> str | None:
        """The target to run, refusing one the profile does not define.

        Raises:
            InvalidDbtInput: naming the targets that exist.
        """
        if target is None:
            target = self.default_target
            if target is None or target in self.targets:
                return target
            raise InvalidDbtInput(
                f"profile {self.profile_name!r} ({self.profiles_dir / 'profiles.yml'}) names "
                f"{target!r} as its default target, but defines only "
                f"{', '.join(self.targets)}; fix its `target:` or pass --target"
            )
        if target not in self.targets:
            raise InvalidDbtInput(
                f"target {target!r} is not defined in profile {self.profile_name!r} "
                f"({self.profiles_dir / 'profiles.yml'}); defined targets: "
                f"{', '.join(self.targets) or 'none'}"
            )
        return target

    @contextlib.contextmanager
    def rendered_profiles_dir(
        self, target: str | None = None, schema: str | None = None
    ) -> Iterator[Path]:
        """profiles.yml with Prefect block and variable references resolved.

        Without such references (and without `schema`) the original directory is used as is,
        so a run needs no Prefect API to start (the CLI works against a bare dbt project).

        Args:
            target: the target `schema` applies to (default: the profile's default).
            schema: replaces that target's schema in a temporary copy of profiles.yml; every
                other value, env_var() calls included, stays as written.
        """
        with contextlib.ExitStack() as stack:
            profiles_dir = self.profiles_dir
            if schema is not None:
                profiles_dir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
                self._write_with_schema(profiles_dir / "profiles.yml", target, schema)
            if "prefect." not in (profiles_dir / "profiles.yml").read_text():
                yield profiles_dir
                return
            from prefect_dbt.core.settings import PrefectDbtSettings

            settings = PrefectDbtSettings(profiles_dir=profiles_dir, project_dir=self.project_dir)
            with settings.resolve_profiles_yml() as rendered:
                yield Path(rendered)

    def _write_with_schema(self, dest: Path, target: str | None, schema: str) -> None:
        profiles = _read_yaml(self.profiles_dir / "profiles.yml")
        name = target or self.default_target
        outputs = profiles[self.profile_name].get("outputs") or {}
        if name not in outputs:
            raise InvalidDbtInput(
                f"cannot build into schema {schema!r}: profile {self.profile_name!r} has no "
                "default target; pass the target"
            )
        outputs[name]["schema"] = schema
        dest.write_text(yaml.safe_dump(profiles, sort_keys=False))


def _find_profiles_dir(project_dir: Path, profiles_dir: Path | None) -> Path:
    if profiles_dir is not None:
        profiles_dir = profiles_dir.expanduser().resolve()
        _check_dir(profiles_dir, "profiles", "profiles.yml", "--profiles-dir / FERRY_PROFILES_DIR")
        if not (profiles_dir / "profiles.yml").is_file():
            raise InvalidDbtInput(
                f"no profiles.yml in {profiles_dir}; pass the directory that holds it "
                "(--profiles-dir / FERRY_PROFILES_DIR)"
            )
        return profiles_dir
    for candidate in (project_dir, Path.home() / ".dbt"):
        if (candidate / "profiles.yml").is_file():
            return candidate
    raise InvalidDbtInput(
        f"no profiles.yml in {project_dir} or ~/.dbt; pass --profiles-dir / FERRY_PROFILES_DIR"
    )


def _check_dir(path: Path, what: str, holds: str, flag: str) -> None:
    """Refuses a directory that is missing or is a file, saying which (the common typos)."""
    if not path.exists():
        raise InvalidDbtInput(
            f"the {what} directory {path} does not exist; pass the directory that holds "
            f"{holds} ({flag})"
        )
    if not path.is_dir():
        raise InvalidDbtInput(
            f"the {what} directory {path} is a file; pass the directory that holds {holds} ({flag})"
        )


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise InvalidDbtInput(f"{path} is not valid YAML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidDbtInput(f"cannot read {path} as a YAML text file: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidDbtInput(f"{path} must hold a mapping")
    return data
