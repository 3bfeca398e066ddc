"""The dbt project's packages, installed from its lock file before dbt parses.

A project declares packages in `packages.yml` (or `dependencies.yml`) and pins them in
`package-lock.yml`, which dbt writes and the team commits. `ensure` installs them in this
process as `dbt deps` does, but only when they are missing or out of date: after an install it
records what the installed packages were made from (both files' hashes and dbt's version) in the
install folder, and when that record still matches it only reads a few small files (0.6 ms).

The image installs them when it is built (`ferry packages install --frozen`), so a run in ECS
never reaches the dbt hub or a Git host. Frozen means the committed lock is the only source: a
missing lock, or one that no longer matches packages.yml, is refused instead of re-resolved.
`ferry packages update` re-resolves every package to the newest version its range allows and
rewrites the lock.

Failures (an unreachable hub or repository, an unknown revision, a malformed packages.yml) raise
`InvalidDbtInput`: the run is refused before the warehouse is touched, with dbt's reason.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from flows.dbt.errors import InvalidDbtInput
from flows.dbt.invoke import dbt_runner, dbt_version

#: dbt's file names: where packages are declared, and the lock `dbt deps` writes.
DECLARATION_FILES = ("packages.yml", "dependencies.yml")
LOCK_FILE = "package-lock.yml"
#: ferry's record, in the install folder, of what the installed packages were made from.
RECORD_FILE = ".ferry-packages.json"
#: Held while installing: runs that share the project's folder install one at a time.
INSTALL_LOCK_FILE = ".ferry-packages.lock"

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's, when PyYAML has it


@dataclass(frozen=True)
class Installed:
    """What `ensure` did: nothing (already up to date), or which packages it installed."""

    packages: tuple[str, ...] = ()
    """Each package installed and its pin (`Pinned.describe`); empty when nothing was."""
    locked: bool = False
    """dbt (re)wrote package-lock.yml: the lock was missing or packages.yml had changed."""
    declared: int = 0
    elapsed_s: float = 0.0

    def describe(self) -> str | None:
        """A line for the run's log, or None when the project declares no packages."""
        if not self.declared:
            return None
        if not self.packages:
            return f"dbt packages: {self.declared} declared, installed as {LOCK_FILE} pins them"
        lock = f"; wrote {LOCK_FILE} (commit it)" if self.locked else ""
        return f"dbt packages: installed {', '.join(self.packages)} in {self.elapsed_s:.1f} s{lock}"


@dataclass(frozen=True)
class ProjectPackages:
    """A project's package files, read, and where dbt installs the packages."""

    project_dir: Path
    declaration: Path | None
    declared: int
    install_path: Path
    lock: Path = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "lock", self.project_dir / LOCK_FILE)

    @classmethod
    def read(cls, project_dir: Path) -> ProjectPackages:
        """Raises InvalidDbtInput when the folder holds no dbt project, or when packages.yml
        (or dependencies.yml) is not YAML."""
        project_dir = project_dir.resolve()
        if not (project_dir / "dbt_project.yml").is_file():
            raise InvalidDbtInput(
                f"no dbt_project.yml in {project_dir}; pass the dbt project's directory "
                "(--project-dir / FERRY_PROJECT_DIR)"
            )
        declaration, declared = None, 0
        for name in DECLARATION_FILES:
            path = project_dir / name
            if path.is_file():
                packages = _read_yaml(path).get("packages") or []
                if packages:
                    declaration, declared = path, len(packages)
                    break
        config = _read_yaml(project_dir / "dbt_project.yml")
        folder = str(config.get("packages-install-path") or "dbt_packages")
        return cls(project_dir, declaration, declared, (project_dir / folder).resolve())

    def fingerprint(self) -> dict[str, str | None]:
        """What an install is made from: the declaration and the lock (their bytes), and dbt."""
        return {
            "declaration": _sha1(self.declaration),
            "lock": _sha1(self.lock),
            "dbt": dbt_version(),
        }

    def up_to_date(self) -> bool:
        """The installed packages were made from today's files by this dbt, and are all there."""
        record = self.install_path / RECORD_FILE
        try:
            recorded = json.loads(record.read_text())
        except (OSError, ValueError):
            return False
        if recorded.get("made_from") != self.fingerprint():
            return False
        return all((self.install_path / name).is_dir() for name in recorded.get("names", []))

    def pinned(self) -> list[Pinned]:
        """The packages the lock pins, as dbt wrote them."""
        if not self.lock.is_file():
            return []
        entries = _read_yaml(self.lock).get("packages") or []
        return [Pinned(e) for e in entries if isinstance(e, dict) and e.get("name")]


@dataclass(frozen=True)
class Pinned:
    """One entry of package-lock.yml."""

    entry: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.entry["name"])

    def describe(self) -> str:
        """`dbt_utils 1.3.0`, `shop_dates (git <url> @ <revision>)`, `x (local <path>)`."""
        e = self.entry
        if "package" in e:
            return f"{self.name} {e.get('version', '')}".strip()
        for source in ("git", "private"):
            if source in e:
                return f"{self.name} ({source} {e[source]} @ {str(e.get('revision', ''))[:12]})"
        for source in ("local", "tarball"):
            if source in e:
                return f"{self.name} ({source} {e[source]})"
        return self.name


def ensure(
    project_dir: Path,
    *,
    log_path: Path,
    vars: dict[str, Any] | None = None,
    frozen: bool = False,
    upgrade: bool = False,
) -> Installed:
    """Installs the project's packages unless they are installed as the lock pins them.

    Args:
        log_path: Where dbt writes its log of the install (the run's folder).
        vars: The run's --vars (packages.yml may render them).
        frozen: Install only what the committed lock pins; refuse a missing or stale lock.
        upgrade: Re-resolve every package to the newest version allowed, rewriting the lock.

    Raises:
        InvalidDbtInput: the packages cannot be installed; nothing else was done.
    """
    packages = ProjectPackages.read(project_dir)
    if not packages.declared:
        return Installed()
    if not upgrade and packages.up_to_date():
        return Installed(declared=packages.declared)
    with _one_install_at_a_time(packages):
        if not upgrade and packages.up_to_date():  # another run installed them meanwhile
            return Installed(declared=packages.declared)
        return _install(packages, log_path=log_path, vars=vars, frozen=frozen, upgrade=upgrade)


def _install(
    packages: ProjectPackages,
    *,
    log_path: Path,
    vars: dict[str, Any] | None,
    frozen: bool,
    upgrade: bool,
) -> Installed:
    dbtRunner = dbt_runner()

    declaration = packages.declaration.name if packages.declaration else "packages.yml"
    if frozen and not packages.lock.is_file():
        raise InvalidDbtInput(
            f"{packages.project_dir / declaration} declares packages but there is no "
            f"{LOCK_FILE} to install them from; run `ferry packages update` and commit "
            f"{LOCK_FILE}"
        )
    lock_before = packages.lock.read_bytes() if packages.lock.is_file() else None
    args = ["deps", "--project-dir", str(packages.project_dir), "--log-path", str(log_path)]
    if vars:
        args += ["--vars", json.dumps(vars)]
    if upgrade:
        args.append("--upgrade")
    started = time.perf_counter()
    result = dbtRunner().invoke([*args, "--quiet"])
    elapsed = time.perf_counter() - started
    lock_after = packages.lock.read_bytes() if packages.lock.is_file() else None
    if frozen and lock_after != lock_before:
        if lock_before is not None:
            packages.lock.write_bytes(lock_before)  # the committed lock stays as it was
        raise InvalidDbtInput(
            f"{LOCK_FILE} does not match {declaration} (it was changed after the lock was "
            f"written); run `ferry packages update` and commit {LOCK_FILE}"
        )
    if not result.success:
        raise InvalidDbtInput(_refusal(result.exception, declaration))
    pinned = packages.pinned()
    record = {"made_from": packages.fingerprint(), "names": [p.name for p in pinned]}
    (packages.install_path / RECORD_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return Installed(
        packages=tuple(p.describe() for p in pinned),
        locked=lock_after != lock_before,
        declared=packages.declared,
        elapsed_s=round(elapsed, 3),
    )


def _refusal(exc: BaseException | None, declaration: str) -> str:
    reason = " ".join(str(exc).split()).rstrip(".") if exc is not None else "dbt deps failed"
    return (
        f"dbt could not install the project's packages: {reason}. Check {declaration} and "
        f"{LOCK_FILE} (each package's name, version or revision, and repository address) and "
        "that the dbt hub or Git host is reachable; `ferry packages install` retries the "
        "install on its own"
    )


@contextlib.contextmanager
def _one_install_at_a_time(packages: ProjectPackages) -> Iterator[None]:
    """Runs sharing a project's folder (the local stack's worker) install one at a time: dbt's
    deps empties the install folder first."""
    lock_file = packages.project_dir / INSTALL_LOCK_FILE
    try:
        handle = lock_file.open("a")
    except OSError as exc:  # a read-only project (the image) with packages not installed
        raise InvalidDbtInput(
            f"the project's packages are not installed and {packages.project_dir} cannot be "
            f"written ({exc.strerror}); install them where the project is built "
            "(`ferry packages install --frozen`, as the image does)"
        ) from None
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.load(path.read_text(), Loader=_Loader) if path.is_file() else {}
    except yaml.YAMLError as exc:
        raise InvalidDbtInput(f"{path} is not valid YAML: {' '.join(str(exc).split())}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InvalidDbtInput(f"{path} must be a YAML mapping (with `packages:`)")
    return data


def _sha1(path: Path | None) -> str | None:
    if path is None or not path.is_file():
        return None
    return hashlib.sha1(path.read_bytes(), usedforsecurity=False).hexdigest()
