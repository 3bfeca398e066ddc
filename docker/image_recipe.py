"""Read docker/Dockerfile and perform its build steps outside Docker.

There is no Docker engine where ferry is developed and tested, so the image's recipe is proven
by doing what the Dockerfile says, read from the Dockerfile itself: its ENV, ARG, WORKDIR, COPY
(through .dockerignore) and RUN instructions (bind mounts included), stage by stage, in a
temporary directory that stands in for the image's filesystem. Absolute image paths (/app, /tmp)
are mapped into that directory; nothing else is changed, so a RUN executes its own words.

What it cannot stand in for: the base image itself (the host's Python 3.11 takes its place), the
uv binary (the caller puts the Dockerfile's uv version on PATH), cache mounts (the host's uv
cache), and instructions that need root (the final stage's useradd), which it does not run.
tests/integration/test_image.py and bench/startup.py use it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

IMAGE_ROOTS = ("/app", "/tmp")  # the image's own paths that a replay maps into its directory
_NOOP = {"LABEL", "USER", "CMD", "ENTRYPOINT", "EXPOSE", "HEALTHCHECK", "STOPSIGNAL", "VOLUME"}
_FLAG = re.compile(r"--([a-z-]+)(?:=(\S+))?\s+")
_VAR = re.compile(r"\$\{([A-Za-z_]\w*)\}|\$([A-Za-z_]\w*)")
_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


class RecipeError(RuntimeError):
    """A step of the recipe failed or cannot be performed outside Docker; says which line."""


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction: its keyword, leading --flags and the rest, as written."""

    line: int
    keyword: str
    flags: tuple[tuple[str, str], ...]
    args: str

    def flag(self, name: str) -> list[str]:
        return [value for key, value in self.flags if key == name]


@dataclass
class Stage:
    """A FROM and what follows it."""

    base: str
    name: str | None
    line: int
    instructions: list[Instruction] = field(default_factory=list)

    def of(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


class Recipe:
    """The parsed Dockerfile, and its build steps performed in a directory."""

    def __init__(self, path: Path, stages: list[Stage]) -> None:
        self.path = path
        self.stages = stages

    @classmethod
    def load(cls, path: Path) -> Recipe:
        stages: list[Stage] = []
        for line, text in _logical_lines(path.read_text()):
            keyword, _, rest = text.strip().partition(" ")
            keyword = keyword.upper()
            flags, rest = _leading_flags(rest.strip())
            if keyword == "FROM":
                words = rest.split()
                name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
                stages.append(Stage(words[0], name, line))
            elif not stages:
                raise RecipeError(f"{path}:{line}: {keyword} before the first FROM")
            else:
                stages[-1].instructions.append(Instruction(line, keyword, flags, rest))
        return cls(path, stages)

    # --- reading ---------------------------------------------------------------------------

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise RecipeError(f"{self.path} has no stage {name!r}")

    def chain(self, name: str) -> list[Stage]:
        """The stage and the stages it is built FROM, base first."""
        chain = [self.stage(name)]
        names = {s.name for s in self.stages}
        while chain[0].base in names:
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
                images += [src for src in copy.flag("from") if src not in names]
        return images

    @staticmethod
    def pinned(image: str) -> bool:
        return bool(_DIGEST.search(image))

    def uv_version(self) -> str:
        """The uv version the image installs with (the tag of the astral-sh/uv image)."""
        for image in self.external_images():
            if image.startswith("ghcr.io/astral-sh/uv:"):
                return image.split(":", 1)[1].split("@", 1)[0]
        raise RecipeError(f"{self.path} takes uv from no ghcr.io/astral-sh/uv image")

    def uv_commands(self, name: str) -> list[list[str]]:
        """The `uv ...` commands of a stage's RUN instructions, as words."""
        commands = []
        for run in self.stage(name).of("RUN"):
            for part in re.split(r"&&|;", run.args):
                words = part.split()
                if words and words[0] == "uv":
                    commands.append(words)
        return commands

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
            for instruction in stage.instructions:
                if instruction.keyword == "ARG":
                    args.update(_arg(instruction, build_args or {}, {**env, **args}))
                elif instruction.keyword == "ENV":
                    env.update(_env_pairs(_map_paths(instruction.args, roots), {**env, **args}))
        return env

    # --- doing -----------------------------------------------------------------------------

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
        ignore = DockerIgnore.load(context)
        env = _base_env(host_env)
        for root in roots.values():
            root.mkdir(parents=True, exist_ok=True)
        workdir: Path | None = None  # inherited by a stage built FROM another, as in Docker
        for stage in self.chain(name):
            args: dict[str, str] = {}
            for ins in stage.instructions:
                where = f"{self.path.name}:{ins.line}"
                if ins.keyword in {"COPY", "RUN"} and workdir is None:
                    raise RecipeError(f"{where}: {ins.keyword} before any WORKDIR is not replayed")
                text = _map_paths(ins.args, roots)
                if ins.keyword == "ARG":
                    args.update(_arg(ins, build_args or {}, {**env, **args}))
                elif ins.keyword == "ENV":
                    env.update(_env_pairs(text, {**env, **args}))
                elif ins.keyword == "WORKDIR":
                    (workdir := Path(_words(text, env)[0])).mkdir(parents=True, exist_ok=True)
                elif ins.keyword == "COPY":
                    assert workdir is not None
                    if ins.flag("from"):
                        continue  # another stage or image: the caller provides (uv on PATH)
                    *sources, dest = _words(text, {**env, **args})
                    _copy(context, ignore, sources, workdir / dest, many=len(sources) > 1)
                elif ins.keyword == "RUN":
                    assert workdir is not None
                    _run(ins, text, context, ignore, workdir, roots, {**env, **args}, where, log)
                elif ins.keyword not in _NOOP:
                    raise RecipeError(f"{where}: {ins.keyword} cannot be replayed outside Docker")
        return env


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


# --- .dockerignore -----------------------------------------------------------------------------


class DockerIgnore:
    """Docker's .dockerignore rules: the last matching pattern wins, `!` re-includes, a pattern
    that matches a folder matches all below it, `**` spans folders."""

    def __init__(self, patterns: list[str]) -> None:
        self.rules = [
            (p.startswith("!"), _glob_regex(p.lstrip("!").strip("/"))) for p in patterns if p
        ]

    @classmethod
    def load(cls, context: Path) -> DockerIgnore:
        path = context / ".dockerignore"
        if not path.is_file():
            return cls([])
        lines = (line.strip() for line in path.read_text().splitlines())
        return cls([line for line in lines if line and not line.startswith("#")])

    def excludes(self, relative: str) -> bool:
        parts = relative.strip("/").split("/")
        candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        excluded = False
        for negated, regex in self.rules:
            if any(regex.fullmatch(c) for c in candidates):
                excluded = not negated
        return excluded

    def files(self, context: Path, source: Path) -> Iterator[Path]:
        """Files under `source` (a file or folder of the context) that the build context holds."""
        paths = [source] if source.is_file() else sorted(source.rglob("*"))
        for path in paths:
            if path.is_file() and not self.excludes(path.relative_to(context).as_posix()):
                yield path


def _glob_regex(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "[" and "]" in pattern[i + 1 :]:
            end = pattern.index("]", i + 1)
            out, i = out + pattern[i : end + 1].replace("[!", "[^"), end + 1
        else:
            char = pattern[i]
            out += "[^/]*" if char == "*" else "[^/]" if char == "?" else re.escape(char)
            i += 1
    return re.compile(out)


# --- instructions ------------------------------------------------------------------------------


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """Instructions with their continuations joined (as Docker does: the backslash and newline
    go, nothing is inserted); comment lines inside a continuation are dropped."""
    buffer, start = "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not buffer):
            continue
        if not buffer:
            start = number
        if raw.rstrip().endswith("\\"):
            buffer += raw.rstrip()[:-1]
            continue
        yield start, buffer + raw
        buffer = ""
    if buffer:
        yield start, buffer


def _leading_flags(rest: str) -> tuple[tuple[tuple[str, str], ...], str]:
    flags = []
    while match := _FLAG.match(rest):
        flags.append((match.group(1), match.group(2) or ""))
        rest = rest[match.end() :]
    return tuple(flags), rest.strip()


def _map_paths(text: str, roots: Mapping[str, Path]) -> str:
    """/app/x becomes <root of /app>/x wherever a path starts (after a space, =, : or quote).

    One pass for all prefixes, so a mapped path is never mapped again.
    """
    prefixes = "|".join(re.escape(p) for p in sorted(roots, key=len, reverse=True))
    pattern = re.compile(rf"(^|[\s=:\"'])({prefixes})(?=[/\s:\"']|$)")
    return pattern.sub(lambda m: m.group(1) + str(roots[m.group(2)]), text)


def _words(text: str, env: Mapping[str, str]) -> list[str]:
    """Shell-like words with $VAR / ${VAR} expanded outside single quotes, as Docker does."""
    words: list[str] = []
    current: list[str] = []
    in_word, quote, i = False, "", 0
    while i < len(text):
        char = text[i]
        if quote == "'":
            if char == "'":
                quote = ""
            else:
                current.append(char)
        elif char == "$" and (match := _VAR.match(text, i)):
            current.append(env.get(match.group(1) or match.group(2), ""))
            in_word, i = True, match.end()
            continue
        elif char == "$" and text.startswith("${", i):
            raise RecipeError(f"unsupported substitution in {text!r}")
        elif char == "\\" and i + 1 < len(text) and quote != '"':
            current.append(text[i + 1])
            in_word, i = True, i + 2
            continue
        elif quote == '"':
            if char == '"':
                quote = ""
            else:
                current.append(char)
        elif char in "'\"":
            quote, in_word = char, True
        elif char.isspace():
            if in_word:
                words.append("".join(current))
                current, in_word = [], False
        else:
            current.append(char)
            in_word = True
        i += 1
    if in_word:
        words.append("".join(current))
    return words


def _env_pairs(text: str, env: Mapping[str, str]) -> dict[str, str]:
    words = _words(text, env)
    if words and "=" not in words[0]:  # the legacy `ENV NAME value` form
        return {words[0]: " ".join(words[1:])}
    return dict(word.split("=", 1) for word in words)


def _arg(ins: Instruction, build_args: Mapping[str, str], env: Mapping[str, str]) -> dict[str, str]:
    name, _, default = _words(ins.args, env)[0].partition("=")
    return {name: build_args.get(name, default)}


def _base_env(host_env: Mapping[str, str] | None) -> dict[str, str]:
    """What a RUN sees besides the image's ENV: the host's PATH and HOME (for the host's
    interpreter and uv cache) and nothing of ferry's, dbt's or Prefect's own settings."""
    host = dict(os.environ if host_env is None else host_env)
    scrubbed = ("FERRY_", "DBT_", "PREFECT_", "SYNTH_", "VIRTUAL_ENV")
    return {k: v for k, v in host.items() if not k.startswith(scrubbed)}


def _copy(context: Path, ignore: DockerIgnore, sources: list[str], dest: Path, many: bool) -> None:
    for source in sources:
        if any(c in source for c in "*?["):
            raise RecipeError(f"COPY with a wildcard ({source}) is not replayed")
        path = context / source
        files = list(ignore.files(context, path))
        if not files:
            raise RecipeError(f"COPY {source}: not in the build context (see .dockerignore)")
        for file in files:
            if path.is_dir():
                target = dest / file.relative_to(path)
            elif many or str(dest).endswith("/") or dest.is_dir():
                target = dest / file.name
            else:
                target = dest
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(file, target)


def _run(
    ins: Instruction,
    command: str,
    context: Path,
    ignore: DockerIgnore,
    workdir: Path,
    roots: Mapping[str, Path],
    env: Mapping[str, str],
    where: str,
    log: Path | None,
) -> None:
    bound: list[Path] = []
    try:
        for spec in ins.flag("mount"):
            mount = dict(item.split("=", 1) for item in spec.split(","))
            kind = mount.get("type", "bind")
            if kind == "cache":
                continue  # the host's own cache serves (uv's, via the host HOME)
            if kind != "bind" or "from" in mount:
                raise RecipeError(f"{where}: a {kind} mount is not replayed")
            source = context / mount["source"]
            if ignore.excludes(mount["source"]) or not source.exists():
                raise RecipeError(f"{where}: bind source {mount['source']} not in the context")
            target = workdir / _map_paths(mount["target"], roots)
            if target.exists():
                raise RecipeError(f"{where}: bind target {mount['target']} already exists")
            shutil.copy2(source, target)
            bound.append(target)
        done = subprocess.run(
            ["/bin/sh", "-c", command],
            cwd=workdir,
            env=dict(env),
            capture_output=True,
            text=True,
            check=False,
        )
        if log is not None:
            with log.open("a") as out:
                out.write(f"### {where}: RUN {command}\n{done.stdout}{done.stderr}\n")
        if done.returncode != 0:
            output = (done.stdout + done.stderr)[-4000:]
            raise RecipeError(f"{where}: RUN {command!r} exited {done.returncode}:\n{output}")
    finally:
        for target in bound:
            target.unlink(missing_ok=True)
