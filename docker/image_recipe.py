"""Perform docker/Dockerfile's build steps outside Docker, read from the Dockerfile itself.

The image tests run without a Docker engine, so the recipe is proven by doing what the
Dockerfile says, stage by stage, in a temporary directory that stands in for the image's
filesystem: ENV, ARG, WORKDIR, COPY (through .dockerignore) and RUN (bind mounts included).
The image's own paths (/app, /tmp) are mapped into that directory; nothing else is changed, so a
RUN executes its own words. tests/integration/test_image.py and bench/startup.py use it.

Reading is not ours: BuildKit's own parser (the `dockerfile` package) splits the file into
instructions and flags, and Docker's Python SDK (docker-py's PatternMatcher, a port of Docker's
matcher) applies .dockerignore. Ours: the order of stages, Docker's $VAR substitution in the
words of ENV, ARG, WORKDIR and COPY, and performing the steps. It does not stand in for the base
image (the host's Python 3.11 takes its place), the uv binary (install_uv puts the Dockerfile's
uv version on PATH), OS packages (an `apt-get install` RUN is not performed: the host's tools of
those names must exist), cache mounts (the host's uv cache) or root-only steps (the final stage's
useradd): docs/image.md says what only a real build proves.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import dockerfile
from docker.utils.build import PatternMatcher

Command = dockerfile.Command
_NOOP = {"LABEL", "USER", "CMD", "ENTRYPOINT", "EXPOSE", "HEALTHCHECK", "STOPSIGNAL", "VOLUME"}
_VAR = re.compile(r"\$(?:\{([A-Za-z_]\w*)\}|([A-Za-z_]\w*))")


class RecipeError(RuntimeError):
    """A step of the recipe failed or cannot be performed outside Docker; says which line."""


def flag(command: Command, name: str) -> list[str]:
    """The values of a command's `--name=value` flags (RUN's --mount, COPY's --from)."""
    return [f.split("=", 1)[1] for f in command.flags if f.startswith(f"--{name}=")]


@dataclass
class Stage:
    """A FROM and the instructions after it (their keywords upper-cased)."""

    base: str
    name: str | None
    instructions: list[Command] = field(default_factory=list)

    def of(self, keyword: str) -> list[Command]:
        return [c for c in self.instructions if c.cmd == keyword]


class Recipe:
    """The parsed Dockerfile, and its build steps performed in a directory."""

    def __init__(self, path: Path, stages: list[Stage]) -> None:
        self.path = path
        self.stages = stages

    @classmethod
    def load(cls, path: Path) -> Recipe:
        stages: list[Stage] = []
        for command in dockerfile.parse_file(str(path)):
            command = command._replace(cmd=command.cmd.upper())
            if command.cmd == "FROM":
                image, *alias = command.value  # image [AS name]
                stages.append(Stage(image, alias[1] if len(alias) == 2 else None))
            elif stages:
                stages[-1].instructions.append(command)
            else:
                raise RecipeError(f"{path}:{command.start_line}: {command.cmd} before any FROM")
        return cls(path, stages)

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise RecipeError(f"{self.path} has no stage {name!r}")

    def chain(self, name: str) -> list[Stage]:
        """The stage and the stages it is built FROM, base first."""
        chain = [self.stage(name)]
        while chain[0].base in {s.name for s in self.stages}:
            chain.insert(0, self.stage(chain[0].base))
        return chain

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def external_images(self) -> list[str]:
        """Every image pulled from a registry (FROM or COPY --from), as written."""
        names = {s.name for s in self.stages}
        images = [s.base for s in self.stages if s.base not in names]
        for stage in self.stages:
            for copy in stage.of("COPY"):
                images += [src for src in flag(copy, "from") if src not in names]
        return images

    def uv_version(self) -> str:
        """The uv version the image installs with (the tag of the astral-sh/uv image)."""
        for image in self.external_images():
            if image.startswith("ghcr.io/astral-sh/uv:"):
                return image.split(":", 1)[1].split("@", 1)[0]
        raise RecipeError(f"{self.path} takes uv from no ghcr.io/astral-sh/uv image")

    def env(
        self,
        name: str,
        roots: Mapping[str, Path],
        *,
        build_args: Mapping[str, str] | None = None,
        host_env: Mapping[str, str] | None = None,
    ) -> dict[str, str]:
        """The environment of a stage's container: host basics, then the stages' ENV, mapped."""
        env = _base_env(host_env)
        for stage in self.chain(name):
            args: dict[str, str] = {}
            for command in stage.instructions:
                _declare(command, roots, env, args, build_args or {})
        return env

    def replay(
        self,
        name: str,
        context: Path,
        roots: Mapping[str, Path],
        *,
        build_args: Mapping[str, str] | None = None,
        host_env: Mapping[str, str] | None = None,
        log: Path | None = None,
    ) -> dict[str, str]:
        """Performs a stage (and the stages it is built from) in `roots`; returns its env.

        Raises:
            RecipeError: a RUN failed (with its output) or an instruction cannot be replayed.
        """
        ignore = dockerignore(context)
        env = _base_env(host_env)
        for root in roots.values():
            root.mkdir(parents=True, exist_ok=True)
        workdir: Path | None = None  # inherited by a stage built FROM another, as in Docker
        for stage in self.chain(name):
            args: dict[str, str] = {}
            for command in stage.instructions:
                where = f"{self.path.name}:{command.start_line}"
                words = [_map_paths(w, roots) for w in command.value]
                if command.cmd in {"ENV", "ARG"}:
                    _declare(command, roots, env, args, build_args or {})
                elif command.cmd == "WORKDIR":
                    workdir = Path(_expand(words[0], {**env, **args}))
                    workdir.mkdir(parents=True, exist_ok=True)
                elif command.cmd in _NOOP or flag(command, "from"):
                    continue  # COPY --from another stage or image: the caller provides (uv)
                elif workdir is None or command.cmd not in {"COPY", "RUN"} or command.heredocs:
                    raise RecipeError(f"{where}: {command.original!r} is not replayed")
                elif command.cmd == "COPY":
                    *sources, dest = (_expand(w, {**env, **args}) for w in words)
                    _copy(context, ignore, sources, workdir / dest, dest.endswith("/"))
                elif not command.json and (tools := _os_packages(words[0])) is not None:
                    if missing := [t for t in tools if shutil.which(t) is None]:
                        raise RecipeError(f"{where}: the host lacks {', '.join(missing)}")
                else:
                    argv = words if command.json else ["/bin/sh", "-c", words[0]]
                    binds = _binds(command, context, ignore, workdir, roots, where)
                    _run(argv, binds, workdir, {**env, **args}, where, log)
        return env


_APT_INSTALL = re.compile(r"apt-get install\b([^&;|]*)")


def _os_packages(line: str) -> list[str] | None:
    """The OS packages a RUN of `apt-get update && apt-get install ...` installs, or None for
    any other RUN. Such a RUN is not performed: the host's own tools of the same names (git)
    stand in for them, as the host's Python stands in for the base image's."""
    if not line.lstrip().startswith("apt-get update"):
        return None
    words = [w for m in _APT_INSTALL.finditer(line) for w in m.group(1).split()]
    return [w.split("=", 1)[0] for w in words if not w.startswith("-")]


def dockerignore(context: Path) -> PatternMatcher:
    """The context's .dockerignore as Docker reads it: patterns anchored at the context's root,
    the last match wins, `!` re-includes, a pattern that matches a folder matches all below."""
    path = context / ".dockerignore"
    lines = path.read_text().splitlines() if path.is_file() else []
    return PatternMatcher([s for s in map(str.strip, lines) if s and not s.startswith("#")])


def install_uv(bin_dir: Path, version: str) -> Path:
    """Puts a `uv` into `bin_dir` that runs uv `version`, as the image's /bin/uv would.

    The host's uv (on PATH, or `python3 -m uv`) fetches that version from PyPI once and caches it.

    Raises:
        RecipeError: the host has no uv to start from.
    """
    host = _host_uv()
    bin_dir.mkdir(parents=True, exist_ok=True)
    shim = bin_dir / "uv"
    command = " ".join(f"'{word}'" for word in host)
    shim.write_text(f'#!/bin/sh\nexec {command} tool run --quiet --from uv=={version} uv "$@"\n')
    shim.chmod(0o755)
    check = subprocess.run([str(shim), "--version"], capture_output=True, text=True, check=False)
    if check.returncode != 0 or version not in check.stdout:
        raise RecipeError(f"cannot run uv {version} via {host}: {check.stdout}{check.stderr}")
    return shim


def _host_uv() -> list[str]:
    found = shutil.which("uv")
    if found:
        return [found]
    for python in filter(None, (shutil.which("python3"), "/usr/bin/python3")):
        probe = subprocess.run([python, "-m", "uv", "--version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return [python, "-m", "uv"]
    raise RecipeError("no uv on this machine: install it (python3 -m pip install uv)")


def _declare(
    command: Command,
    roots: Mapping[str, Path],
    env: dict[str, str],
    args: dict[str, str],
    build_args: Mapping[str, str],
) -> None:
    """ENV into `env`, ARG into `args`; each value sees only what was set before the command."""
    before = {**env, **args}
    if command.cmd == "ENV":  # BuildKit's parser gives name, value, name, value...
        names, values = command.value[::2], command.value[1::2]
        env.update(
            {n: _expand(_map_paths(v, roots), before) for n, v in zip(names, values, strict=True)}
        )
    elif command.cmd == "ARG":
        for word in command.value:
            name, _, default = word.partition("=")
            args[name] = build_args.get(name, _expand(default, before))


def _expand(word: str, env: Mapping[str, str]) -> str:
    """A word as Docker reads it in ENV, ARG, WORKDIR and COPY: quotes removed, $VAR and ${VAR}
    replaced except inside single quotes, a backslash outside quotes keeps the next character.

    Raises:
        RecipeError: a ${VAR...} form other than ${VAR} (Docker's :- and :+ are not replayed).
    """
    out: list[str] = []
    quote, i = "", 0
    while i < len(word):
        char, skip = word[i], 1
        if char == "$" and quote != "'" and (match := _VAR.match(word, i)):
            out.append(env.get(match[1] or match[2], ""))
            skip = match.end() - i
        elif char == "$" and quote != "'" and word.startswith("${", i):
            raise RecipeError(f"unsupported substitution in {word!r}")
        elif char == "\\" and not quote and i + 1 < len(word):
            out.append(word[i + 1])
            skip = 2
        elif char in "'\"" and quote in ("", char):
            quote = "" if quote else char
        else:
            out.append(char)
        i += skip
    return "".join(out)


def _map_paths(text: str, roots: Mapping[str, Path]) -> str:
    """/app/x becomes <root of /app>/x wherever a path starts (after a space, =, : or quote).

    One pass for all prefixes, so a mapped path is never mapped again.
    """
    prefixes = "|".join(re.escape(p) for p in sorted(roots, key=len, reverse=True))
    pattern = re.compile(rf"(^|[\s=:\"'])({prefixes})(?=[/\s:\"']|$)")
    return pattern.sub(lambda m: m.group(1) + str(roots[m.group(2)]), text)


def _base_env(host_env: Mapping[str, str] | None) -> dict[str, str]:
    """What a RUN sees besides the image's ENV: the host's PATH and HOME (for the host's
    interpreter and uv cache) and nothing of ferry's, dbt's or Prefect's own settings."""
    host = dict(os.environ if host_env is None else host_env)
    scrubbed = ("FERRY_", "DBT_", "PREFECT_", "SYNTH_", "VIRTUAL_ENV")
    return {k: v for k, v in host.items() if not k.startswith(scrubbed)}


def _copy(
    context: Path, ignore: PatternMatcher, sources: list[str], dest: Path, slash: bool
) -> None:
    """COPY: a folder's contents into `dest`; files into `dest` if it is a folder (or ends in
    a slash, or there are several), else onto it. Only what the build context holds."""
    for source in sources:
        if any(c in source for c in "*?["):
            raise RecipeError(f"COPY {source}: wildcards are not replayed")
        path = context / source
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        files = [f for f in files if not ignore.matches(f.relative_to(context).as_posix())]
        if not files:
            raise RecipeError(f"COPY {source}: not in the build context (see .dockerignore)")
        into = path.is_dir() or len(sources) > 1 or slash or dest.is_dir()
        for file in files:
            target = dest / file.relative_to(path if path.is_dir() else path.parent)
            target = target if into else dest
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(file, target)


def _binds(
    command: Command,
    context: Path,
    ignore: PatternMatcher,
    workdir: Path,
    roots: Mapping[str, Path],
    where: str,
) -> list[tuple[Path, Path]]:
    """A RUN's bind mounts from the context, as (source, target); cache mounts are the host's."""
    binds = []
    for spec in flag(command, "mount"):
        mount = dict(item.split("=", 1) for item in spec.split(","))
        kind = mount.get("type", "bind")
        if kind == "cache":
            continue  # the host's own cache serves (uv's, via the host HOME)
        if kind != "bind" or "from" in mount:
            raise RecipeError(f"{where}: a {kind} mount is not replayed")
        source = context / mount["source"]
        if ignore.matches(mount["source"]) or not source.exists():
            raise RecipeError(f"{where}: bind source {mount['source']} not in the context")
        target = workdir / _map_paths(mount["target"], roots)
        if target.exists():
            raise RecipeError(f"{where}: bind target {mount['target']} already exists")
        binds.append((source, target))
    return binds


def _run(
    argv: list[str],
    binds: list[tuple[Path, Path]],
    workdir: Path,
    env: Mapping[str, str],
    where: str,
    log: Path | None,
) -> None:
    try:
        for source, target in binds:
            shutil.copy2(source, target)
        done = subprocess.run(
            argv, cwd=workdir, env=dict(env), capture_output=True, text=True, check=False
        )
        if log is not None:
            with log.open("a") as out:
                out.write(f"### {where}: RUN {argv[-1]}\n{done.stdout}{done.stderr}\n")
        if done.returncode != 0:
            output = (done.stdout + done.stderr)[-4000:]
            raise RecipeError(f"{where}: RUN {argv[-1]!r} exited {done.returncode}:\n{output}")
    finally:
        for _, target in binds:
            target.unlink(missing_ok=True)
